"""A local development chain in one call: ``bpiiot dev up`` / ``bpiiot dev down``.

:func:`dev_up` starts anvil (unless a node URL is given), creates the machine's wallet
(keystore and a random password in 0600 files), funds it, deploys ``MachineService`` and
``PartReplacement`` with the vendor and supplier roles on anvil's well-known dev accounts
1 and 2, lets the supplier list a part price, and writes a config file naming all of it
(plus a store, a service socket and two example rules), so a custom app is one command
away. :func:`dev_down` stops the node it started, by the PID it recorded.

The dev accounts' keys are public: this is for throw-away local chains only.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot.chain.contracts import MachineService, PartReplacement
from bpiiot.chain.devnode import DEV_PRIVATE_KEYS, DevNode, DevNodeError, rpc_call
from bpiiot.chain.fees import FeePolicy
from bpiiot.chain.node import Node
from bpiiot.chain.nonces import NonceJournal, open_db
from bpiiot.chain.sender import TransactionSender
from bpiiot.errors import BpiiotError
from bpiiot.files import write_private
from bpiiot.wallet import KdfParams, LocalSigner, create_wallet, unlock

log = logging.getLogger(__name__)

ETHER = 10**18
#: The part the example rules order, and its listed price.
SAMPLE_PART_ID = 7
SAMPLE_PART_PRICE_WEI = ETHER // 100

#: Example rules written by :func:`dev_up` (``[[rule]]`` tables).
EXAMPLE_RULES: list[dict[str, Any]] = [
    {
        "name": "vibration",
        "field": "vel_rms_mm_s",
        "op": ">=",
        "threshold": 4.5,
        "clear_threshold": 3.5,
        "count": 5,
        "of": 10,
        "clear_windows": 5,
        "action": "request_service",
        "fault_code": 1,
    },
    {
        "name": "bearing-hot",
        "field": "temperature_c",
        "op": ">=",
        "threshold": 70.0,
        "clear_threshold": 60.0,
        "for_s": 10.0,
        "action": "order_part",
        "part_id": SAMPLE_PART_ID,
        "quantity": 1,
    },
]


class DevEnvError(BpiiotError):
    """The dev environment could not be set up or torn down."""


@dataclass
class DevEnv:
    """What :func:`dev_up` made."""

    dir: Path
    config_path: Path
    node_url: str
    node_pid: int | None
    machine: str
    vendor: str
    supplier: str
    machine_service: str
    part_replacement: str
    part_id: int
    part_price_wei: int


def _sender(node_url: str, signer: LocalSigner, db_path: Path) -> TransactionSender:
    node = Node(node_url)
    node.connect()
    conn = open_db(db_path)
    s = TransactionSender(
        node, signer, NonceJournal(conn, node.chain_id, signer.address), FeePolicy(cache_s=0)
    )
    s.poll_s = 0.02
    s.start()
    return s


def dev_up(
    directory: Path | str,
    *,
    node_url: str | None = None,
    rules: list[dict[str, Any]] | None = None,
    boards: list[dict[str, Any]] | None = None,
    kdf: KdfParams | None = None,
) -> DevEnv:
    """Set up a dev chain and a config in ``directory`` (see the module docstring)."""
    d = Path(directory).expanduser().resolve()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    pid = None
    if node_url is None:
        dev = DevNode("anvil").start()
        node_url, pid = dev.url, dev.pid
        # The node outlives this call (own process group); dev_down stops it by PID.
        dev._proc = None
    try:
        chain_id = int(str(rpc_call(node_url, "eth_chainId")), 16)
    except (OSError, DevNodeError) as exc:
        raise DevEnvError(f"no Ethereum node answering at {node_url}: {exc}") from None
    password = secrets.token_urlsafe(24)
    pw_file = d / "wallet.password"
    write_private(pw_file, password + "\n")
    keystore = d / "keystore.json"
    if keystore.exists():
        keystore.unlink()
    machine = create_wallet(keystore, password, kdf=kdf or KdfParams("scrypt", 2**14))
    try:
        # anvil and Hardhat both answer hardhat_setBalance; a public node does not.
        rpc_call(node_url, "hardhat_setBalance", [machine, hex(100 * ETHER)])
    except DevNodeError as exc:
        raise DevEnvError(
            f"{node_url} cannot fund the new wallet {machine} ({exc}): use a dev node "
            "(anvil, Hardhat) for `dev up`"
        ) from None
    signer = unlock(keystore, password)
    vendor = LocalSigner(bytes.fromhex(DEV_PRIVATE_KEYS[1][2:]))
    supplier = LocalSigner(bytes.fromhex(DEV_PRIVATE_KEYS[2][2:]))
    setup_db = d / "setup.sqlite"
    msender = _sender(node_url, signer, setup_db)
    ms = MachineService.deploy_for(msender, machine, vendor.address)
    pr = PartReplacement.deploy_for(msender, machine, supplier.address, 7 * 86400)
    ssender = _sender(node_url, supplier, setup_db)
    pr.with_sender(ssender).set_price(SAMPLE_PART_ID, SAMPLE_PART_PRICE_WEI)
    # The service must not reuse the setup journal: a fresh state db for its own nonces.
    cfg = config_mod.Config(path=d / "config.toml")
    cfg.chain.node_url = node_url
    cfg.chain.chain_id = chain_id
    cfg.chain.machine_service = ms.address
    cfg.chain.part_replacement = pr.address
    cfg.chain.state_db = str(d / "chain.sqlite")
    cfg.chain.replace_after_s = 30.0
    cfg.wallet.keystore = str(keystore)
    cfg.wallet.password_file = str(pw_file)
    cfg.wallet.kdf_iterations = 2**14
    cfg.extra["store"] = {"path": str(d / "store.sqlite")}
    cfg.extra["service"] = {"socket": str(d / "bpiiot.sock")}
    cfg.extra["controller"] = {"max_order_value_wei": ETHER}
    if boards:
        cfg.extra["board"] = boards
    cfg.extra["rule"] = EXAMPLE_RULES if rules is None else rules
    config_mod.save(cfg)
    env = DevEnv(
        d,
        cfg.path or d / "config.toml",
        node_url,
        pid,
        machine,
        vendor.address,
        supplier.address,
        ms.address,
        pr.address,
        SAMPLE_PART_ID,
        SAMPLE_PART_PRICE_WEI,
    )
    write_private(
        d / "dev.json",
        json.dumps({**env.__dict__, "dir": str(d), "config_path": str(env.config_path)}),
    )
    return env


def dev_down(directory: Path | str) -> bool:
    """Stop the node :func:`dev_up` started in ``directory``; True if one was stopped."""
    d = Path(directory).expanduser()
    try:
        info = json.loads((d / "dev.json").read_text())
    except (OSError, ValueError):
        raise DevEnvError(f"no dev environment in {d} (dev.json missing)") from None
    pid = info.get("node_pid")
    if not pid:
        return False
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(100):
        try:
            os.waitpid(int(pid), os.WNOHANG)  # reap it when it is our own child
        except ChildProcessError:
            pass
        try:
            os.killpg(int(pid), 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.killpg(int(pid), signal.SIGKILL)
    info["node_pid"] = None
    write_private(d / "dev.json", json.dumps(info))
    return True
