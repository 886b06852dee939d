"""``bpiiot run``, ``bpiiot evidence``, ``bpiiot dev``, ``bpiiot demo``: thin commands over
:mod:`bpiiot.service`, :mod:`bpiiot.evidence` and :mod:`bpiiot.devenv`."""

from __future__ import annotations

import argparse
import json
import logging
import runpy
import sys
from pathlib import Path
from typing import Any

from bpiiot import config as config_mod
from bpiiot.errors import BpiiotError

log = logging.getLogger(__name__)

DEFAULT_DEV_DIR = "~/.local/state/bpiiot/dev"


def _load(args: argparse.Namespace) -> config_mod.Config:
    from bpiiot.service import register_sections

    register_sections()
    return config_mod.load(args.config, missing_ok=False)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM/SIGINT."""
    from bpiiot.service import Service

    logging.getLogger().handlers[0].setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    Service.from_config(args.config).run_forever()
    return 0


def _key_for(cfg: config_mod.Config, board: str, key_file: str | None) -> bytes | None:
    from bpiiot.service import boards_from_config, read_key_file

    if key_file:
        return read_key_file(key_file)
    for bc in boards_from_config(cfg):
        if bc.name == board and bc.key_file:
            return read_key_file(bc.key_file)
    return None


def _print_verdict(verdict: Any, bundle: dict[str, Any], as_json: bool) -> int:
    from bpiiot.evidence import Verdict

    assert isinstance(verdict, Verdict)
    if as_json:
        print(json.dumps({"verdict": verdict.as_dict(), "incident": bundle.get("incident")}))
    else:
        inc = bundle.get("incident") or {}
        tx = bundle.get("transaction") or {}
        print(f"incident  {inc.get('key')} ({inc.get('rule')} on {inc.get('board')})")
        if tx:
            print(
                f"tx        {tx.get('hash')} {tx.get('contract')}.{tx.get('function')} "
                f"block {tx.get('block')} status {tx.get('status')}"
            )
        print(f"evidence  {verdict.expected}")
        print(f"computed  {verdict.computed}")
        for f in verdict.frames:
            tag = (
                "tag ok"
                if f.tag_ok
                else (
                    "tag BAD"
                    if f.tag_ok is False
                    else ("tag not checked" if f.tagged else "untagged")
                )
            )
            print(
                f"  frame {f.index}: session {f.session} seq {f.seq} "
                f"crc {'ok' if f.crc_ok else 'BAD'}, {tag}{' ' + f.error if f.error else ''}"
            )
        for p in verdict.problems:
            print(f"  problem: {p}")
        print("VERIFIED" if verdict.ok else "NOT VERIFIED")
    return 0 if verdict.ok else 1


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    """Verify the evidence of a transaction (from the node and the store) or of a bundle."""
    from bpiiot import evidence
    from bpiiot.service import read_key_file

    if args.bundle:
        try:
            doc = evidence.load_bundle(Path(args.bundle).read_text())
        except OSError as exc:
            raise BpiiotError(f"cannot read bundle {args.bundle}: {exc.strerror}") from None
        key = read_key_file(args.key_file) if args.key_file else None
        return _print_verdict(evidence.verify_bundle(doc, key), doc, args.json)
    if not args.tx_hash:
        raise BpiiotError("give a transaction hash or --bundle FILE")
    cfg = _load(args)
    doc = evidence.tx_evidence(cfg, args.tx_hash)
    key = _key_for(cfg, str(doc["incident"]["board"]), args.key_file)
    verdict = evidence.verify_bundle(doc, key)
    if (doc.get("transaction") or {}).get("status") != 1:
        verdict.problems.append("the transaction reverted")
    return _print_verdict(verdict, doc, args.json)


def cmd_evidence_export(args: argparse.Namespace) -> int:
    """Write a self-contained evidence bundle of a transaction."""
    from bpiiot import evidence
    from bpiiot.files import write_private

    doc = evidence.tx_evidence(_load(args), args.tx_hash)
    text = json.dumps(doc, indent=2)
    if args.output and args.output != "-":
        write_private(Path(args.output), text + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_dev_up(args: argparse.Namespace) -> int:
    """Start a local chain, wallet and contracts; write the config."""
    from bpiiot.devenv import dev_up

    env = dev_up(args.dir, node_url=args.node)
    print(f"node            {env.node_url}" + (f" (pid {env.node_pid})" if env.node_pid else ""))
    print(f"machine wallet  {env.machine}")
    print(f"vendor          {env.vendor}")
    print(f"supplier        {env.supplier}")
    print(f"MachineService  {env.machine_service}")
    print(f"PartReplacement {env.part_replacement} (part {env.part_id}: {env.part_price_wei} wei)")
    print(f"config          {env.config_path}")
    print(f"\nnext: add a [[board]] to the config, then: bpiiot run --config {env.config_path}")
    return 0


def cmd_dev_down(args: argparse.Namespace) -> int:
    """Stop the node `dev up` started."""
    from bpiiot.devenv import dev_down

    print("node stopped" if dev_down(args.dir) else "no node was running")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run tools/demo.py of the source tree (the board simulator lives there)."""
    from bpiiot.chain.devnode import find_repo_root

    script = find_repo_root() / "tools" / "demo.py"
    if not script.is_file():
        raise BpiiotError(f"{script} not found: run `bpiiot demo` from the bpiiot source tree")
    argv = [str(script)]
    if args.node:
        argv += ["--node", args.node]
    if args.port:
        argv += ["--port", args.port]
    if args.duration is not None:
        argv += ["--duration", str(args.duration)]
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def register(sub: Any) -> None:
    """Add run, evidence, dev and demo."""
    p = sub.add_parser("run", help="run the service: boards, store, rules, outbox, socket")
    p.add_argument("--config", help="config file (default $BPIIOT_CONFIG or ~/.config/bpiiot/)")
    p.set_defaults(func=cmd_run)

    ev = sub.add_parser("evidence", help="verify or export the evidence behind a transaction")
    evs = ev.add_subparsers(dest="evidence_command", metavar="ACTION", required=True)
    v = evs.add_parser("verify", help="recompute and check the evidence of a transaction")
    v.add_argument("tx_hash", nargs="?", help="transaction hash (0x...)")
    v.add_argument("--bundle", help="check an exported bundle file instead (offline)")
    v.add_argument("--key-file", help="the board's link key (hex) to check frame tags")
    v.add_argument("--config", help="config file")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.set_defaults(func=cmd_evidence_verify)
    x = evs.add_parser("export", help="write a self-contained evidence bundle")
    x.add_argument("tx_hash", help="transaction hash (0x...)")
    x.add_argument("-o", "--output", help="file to write (default: stdout)")
    x.add_argument("--config", help="config file")
    x.set_defaults(func=cmd_evidence_export)

    dev = sub.add_parser("dev", help="a local dev chain: anvil, wallet, contracts, config")
    devs = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)
    up = devs.add_parser("up", help="start anvil, fund a wallet, deploy, write the config")
    up.add_argument("--dir", default=DEFAULT_DEV_DIR, help=f"where (default {DEFAULT_DEV_DIR})")
    up.add_argument("--node", help="use this node instead of starting anvil")
    up.set_defaults(func=cmd_dev_up)
    down = devs.add_parser("down", help="stop the node `dev up` started")
    down.add_argument("--dir", default=DEFAULT_DEV_DIR)
    down.set_defaults(func=cmd_dev_down)

    d = sub.add_parser("demo", help="the whole kit end to end on this machine (make demo)")
    d.add_argument("--node", help="external node URL (default: a local anvil)")
    d.add_argument("--port", help="a real board's port (default: the firmware on a pty)")
    d.add_argument("--duration", type=float, help="seconds the bearing takes to degrade")
    d.set_defaults(func=cmd_demo)
