"""``bpiiot wallet ...`` and ``bpiiot contracts ...``: thin commands over the wallet and chain API.

Passwords and private keys are never taken from the command line (other users can read it in
the process list): they come from the environment, a file, or a prompt.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot import wallet
from bpiiot.cli_link import add_insecure_permissions, int_range
from bpiiot.errors import BpiiotError

log = logging.getLogger(__name__)


def _config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(args.config)


def _keystore(cfg: config_mod.Config) -> Path:
    return Path(cfg.wallet.keystore).expanduser()


def _address(args: argparse.Namespace, cfg: config_mod.Config) -> str:
    return wallet.keystore_address(_keystore(cfg), insecure_permissions=args.insecure_permissions)


def _new_password(cfg: config_mod.Config) -> str:
    return wallet.resolve_password(
        password_env=cfg.wallet.password_env,
        password_file=cfg.wallet.password_file or None,
        prompt="New wallet password: ",
        confirm=True,
    )


def _kdf(args: argparse.Namespace, cfg: config_mod.Config) -> wallet.KdfParams:
    from bpiiot.chain.factory import kdf_from_config

    if args.kdf:
        cfg.wallet.kdf = args.kdf
    if args.kdf_iterations:
        cfg.wallet.kdf_iterations = args.kdf_iterations
    return kdf_from_config(cfg.wallet)


def cmd_wallet_new(args: argparse.Namespace) -> int:
    """Create a new account in the configured keystore."""
    cfg = _config(args)
    address = wallet.create_wallet(
        _keystore(cfg), _new_password(cfg), kdf=_kdf(args, cfg), overwrite=args.overwrite
    )
    print(address)
    return 0


def cmd_wallet_import(args: argparse.Namespace) -> int:
    """Import a private key (from a file or a prompt) or another keystore file."""
    cfg = _config(args)
    path, kdf = _keystore(cfg), _kdf(args, cfg)
    if args.keystore:
        source_password = wallet.resolve_password(
            password_env=args.source_password_env or "",
            prompt=f"Password of {args.keystore}: ",
        )
        address = wallet.import_keystore(
            path,
            Path(args.keystore),
            source_password,
            password=_new_password(cfg),
            kdf=kdf,
            overwrite=args.overwrite,
            insecure_permissions=args.insecure_permissions,
        )
    else:
        if args.key_file:
            try:
                key_text = Path(args.key_file).read_text(encoding="utf-8")
            except OSError as e:
                raise BpiiotError(f"cannot read key file {args.key_file}: {e.strerror}") from None
            except UnicodeDecodeError:
                raise BpiiotError(f"key file {args.key_file} is not UTF-8 hex text") from None
        elif sys.stdin.isatty():
            key_text = getpass.getpass("Private key (hex): ")
        else:
            raise BpiiotError("give --key-file, or run in a terminal to type the key")
        address = wallet.import_private_key(
            path, key_text, _new_password(cfg), kdf=kdf, overwrite=args.overwrite
        )
    print(address)
    return 0


def cmd_wallet_address(args: argparse.Namespace) -> int:
    """Print the wallet's address (no password needed)."""
    print(_address(args, _config(args)))
    return 0


def cmd_wallet_export_address(args: argparse.Namespace) -> int:
    """Write the address (and chain id) as JSON, for the vendor and supplier to register."""
    cfg = _config(args)
    doc = {"address": _address(args, cfg), "chain_id": cfg.chain.chain_id}
    text = json.dumps(doc, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_wallet_balance(args: argparse.Namespace) -> int:
    """Print the wallet's balance on the configured node."""
    from bpiiot.chain.factory import node_from_config

    cfg = _config(args)
    address = _address(args, cfg)
    node = node_from_config(cfg.chain)
    node.connect()
    wei = node.balance(address)
    print(f"{address} {wei / 10**18:.6f} ETH ({wei} wei) on chain {node.chain_id}")
    return 0


def cmd_contracts_deploy(args: argparse.Namespace) -> int:
    """Deploy MachineService and PartReplacement with the wallet's account; save addresses."""
    from bpiiot.chain.contracts import MachineService, PartReplacement
    from bpiiot.chain.factory import sender_from_config, unlock_from_config

    cfg = _config(args)
    if args.insecure_permissions:
        w = cfg.wallet
        password = wallet.resolve_password(
            password_env=w.password_env, password_file=w.password_file or None
        )
        signer = wallet.unlock(_keystore(cfg), password, insecure_permissions=True)
    else:
        signer = unlock_from_config(cfg.wallet)
    sender = sender_from_config(cfg.chain, signer)
    machine = args.machine or signer.address
    ms = MachineService.deploy_for(sender, machine, args.vendor)
    print(f"MachineService  {ms.address}")
    pr = PartReplacement.deploy_for(sender, machine, args.supplier, args.shipping_window_s)
    print(f"PartReplacement {pr.address}")
    cfg.chain.machine_service, cfg.chain.part_replacement = ms.address, pr.address
    saved = config_mod.save(cfg)
    log.info("recorded contract addresses in %s", saved)
    return 0


def cmd_contracts_status(args: argparse.Namespace) -> int:
    """Show the configured contracts: code present, parties, counts."""
    from bpiiot.chain.contracts import MachineService, PartReplacement, load_artifact
    from bpiiot.chain.factory import node_from_config

    cfg = _config(args)
    node = node_from_config(cfg.chain)
    node.connect()
    out: dict[str, Any] = {"node": node.url, "chain_id": node.chain_id}
    for name, address in (
        (MachineService.NAME, cfg.chain.machine_service),
        (PartReplacement.NAME, cfg.chain.part_replacement),
    ):
        entry: dict[str, Any] = {"address": address or None}
        if address:
            with node.rpc("eth_getCode"):
                code = node.w3.eth.get_code(node.w3.to_checksum_address(address))
            entry["deployed"] = len(code) > 0
            if code:
                contract = node.w3.eth.contract(
                    address=node.w3.to_checksum_address(address), abi=load_artifact(name).abi
                )
                with node.rpc(f"{name} state"):
                    entry["machine"] = contract.functions.machine().call()
                    if name == MachineService.NAME:
                        entry["vendor"] = contract.functions.vendor().call()
                        entry["requests"] = contract.functions.requestCount().call()
                    else:
                        entry["supplier"] = contract.functions.supplier().call()
                        entry["orders"] = contract.functions.orderCount().call()
        out[name] = entry
    print(json.dumps(out, indent=2))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $BPIIOT_CONFIG or ~/.config/bpiiot/config.toml)",
    )
    add_insecure_permissions(p)


def _kdf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kdf", choices=["scrypt", "pbkdf2"], help="key derivation (default: config)")
    p.add_argument(
        "--kdf-iterations",
        type=int_range(2),
        metavar="N",
        help="scrypt n or pbkdf2 rounds (default 2**18)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing keystore")


def register(sub: Any) -> None:
    """Add the ``wallet`` and ``contracts`` sub-commands to the CLI's subparsers."""
    w = sub.add_parser("wallet", help="the machine's Ethereum account")
    wsub = w.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)

    p = wsub.add_parser("new", help="create a new account and keystore")
    _common(p)
    _kdf_args(p)
    p.set_defaults(func=cmd_wallet_new)

    p = wsub.add_parser("import", help="import a private key or a keystore file")
    _common(p)
    _kdf_args(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--key-file", metavar="PATH", help="file holding the private key in hex")
    src.add_argument("--keystore", metavar="PATH", help="keystore v3 file to import")
    p.add_argument(
        "--source-password-env",
        metavar="NAME",
        help="environment variable with the imported keystore's password (else a prompt)",
    )
    p.set_defaults(func=cmd_wallet_import)

    p = wsub.add_parser("address", help="print the account address")
    _common(p)
    p.set_defaults(func=cmd_wallet_address)

    p = wsub.add_parser("export-address", help="write address and chain id as JSON")
    _common(p)
    p.add_argument("-o", "--output", metavar="PATH", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_wallet_export_address)

    p = wsub.add_parser("balance", help="balance on the configured node")
    _common(p)
    p.set_defaults(func=cmd_wallet_balance)

    c = sub.add_parser("contracts", help="the MachineService and PartReplacement agreements")
    csub = c.add_subparsers(dest="contracts_command", metavar="ACTION", required=True)

    p = csub.add_parser("deploy", help="deploy both contracts and record them in the config")
    _common(p)
    p.add_argument("--vendor", required=True, metavar="ADDRESS", help="service vendor account")
    p.add_argument("--supplier", required=True, metavar="ADDRESS", help="part supplier account")
    p.add_argument(
        "--machine", metavar="ADDRESS", help="machine account (default: the wallet's own)"
    )
    p.add_argument(
        "--shipping-window-s",
        type=int_range(1),
        default=7 * 24 * 3600,
        metavar="S",
        help="seconds the supplier has to ship before a refund is possible (default 7 days)",
    )
    p.set_defaults(func=cmd_contracts_deploy)

    p = csub.add_parser("status", help="show the configured contracts")
    _common(p)
    p.set_defaults(func=cmd_contracts_status)
