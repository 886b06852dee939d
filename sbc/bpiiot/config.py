"""The SBC's one TOML config file: typed sections, strict keys, atomic 0600 writes.

Default path: ``$BPIIOT_CONFIG``, else ``~/.config/bpiiot/config.toml``. Each section is a
dataclass; a key the dataclass does not have is an error naming the key and the file, so a
typo never silently falls back to a default. Sections owned by other layers (e.g. ``[link]``)
register their dataclass with :func:`register_section`; until then their table is kept as
is in :attr:`Config.extra` and written back unchanged.

The file may name a password file, so it is written with mode 0600. Saving rewrites the
whole file (comments are not kept).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bpiiot.errors import BpiiotError
from bpiiot.files import write_private

DEFAULT_PATH = Path("~/.config/bpiiot/config.toml")


class ConfigError(BpiiotError):
    """The config file is missing, malformed, or has an unknown key or a wrong type."""


@dataclass
class ChainConfig:
    """``[chain]``: the node, the chain and the deployed agreements."""

    node_url: str = "http://127.0.0.1:8545"
    #: Expected chain id; the node's is checked against it. 0 means "accept the node's".
    chain_id: int = 31337
    confirmations: int = 1
    #: Upper bound on max fee per gas (or gas price), in gwei.
    max_fee_cap_gwei: float = 500.0
    #: Tip in gwei; unset (negative) asks the node (eth_maxPriorityFeePerGas).
    priority_fee_gwei: float = -1.0
    #: Seconds a transaction may stay unmined before it is replaced with bumped fees.
    replace_after_s: float = 60.0
    receipt_timeout_s: float = 300.0
    rpc_timeout_s: float = 10.0
    #: SQLite file of the nonce journal and the outbox.
    state_db: str = "~/.local/state/bpiiot/chain.sqlite"
    machine_service: str = ""
    part_replacement: str = ""


@dataclass
class WalletConfig:
    """``[wallet]``: where the keystore is and where its password comes from."""

    keystore: str = "~/.config/bpiiot/keystore.json"
    password_env: str = "BPIIOT_WALLET_PASSWORD"
    password_file: str = ""
    #: "scrypt" (default, geth's n = 2**18: 256 MB, ~1 s) or "pbkdf2"; see bpiiot.wallet.
    kdf: str = "scrypt"
    kdf_iterations: int = 2**18


SECTIONS: dict[str, type[Any]] = {"chain": ChainConfig, "wallet": WalletConfig}
#: Sections other layers will register; kept raw (not an error) until they do.
RESERVED_SECTIONS = {"link", "board", "rule", "store", "service", "controller"}


def register_section(name: str, cls: type[Any]) -> None:
    """Let another layer add a typed section (``[link]``...) to the config."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError("a config section must be a dataclass")
    SECTIONS[name] = cls


@dataclass
class Config:
    """The whole config: the typed sections, and where it was read from."""

    chain: ChainConfig = field(default_factory=ChainConfig)
    wallet: WalletConfig = field(default_factory=WalletConfig)
    #: Registered sections other than chain/wallet, and reserved ones kept raw.
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def section(self, name: str) -> Any:
        """A section by name (typed if registered)."""
        if name in ("chain", "wallet"):
            return getattr(self, name)
        return self.extra.get(name)


def default_path() -> Path:
    """``$BPIIOT_CONFIG`` or ``~/.config/bpiiot/config.toml``."""
    return Path(os.environ.get("BPIIOT_CONFIG") or DEFAULT_PATH).expanduser()


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected nothing, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (
        type(value) is not hint or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    return value


def _build(cls: type[Any], table: Any, name: str, path: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(
                f"{path}: unknown key {key!r} in [{name}] (known: {', '.join(sorted(names))})"
            )
        values[key] = _check_type(value, hints[key], f"{path}: [{name}] {key}")
    return cls(**values)


def build_section(cls: type[Any], table: Any, name: str, path: Path) -> Any:
    """Build dataclass ``cls`` from a TOML table, strictly (unknown keys and types refused)."""
    return _build(cls, table, name, path)


def parse(text: str, path: Path) -> Config:
    """Parse config ``text`` (``path`` is for messages)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    config = Config(path=path)
    for name, table in doc.items():
        if name in ("chain", "wallet"):
            setattr(config, name, _build(SECTIONS[name], table, name, path))
        elif name in SECTIONS:
            config.extra[name] = _build(SECTIONS[name], table, name, path)
        elif name in RESERVED_SECTIONS:
            config.extra[name] = table
        else:
            raise ConfigError(
                f"{path}: unknown section [{name}] (known: {', '.join(sorted(SECTIONS))})"
            )
    return config


def load(path: Path | str | None = None, *, missing_ok: bool = True) -> Config:
    """Read the config; a missing file gives the defaults unless ``missing_ok`` is False."""
    p = Path(path).expanduser() if path else default_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Config(path=p)
        raise ConfigError(f"config file {p} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    return parse(text, p)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ConfigError(f"{where}: cannot write a {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return _toml_value(key, "key")


def _table(name: str, values: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {_toml_value(value, f'[{name}] {key}')}")
    return "\n".join(lines) + "\n"


def dumps(config: Config) -> str:
    """The config as TOML text."""
    parts = [
        _table("chain", dataclasses.asdict(config.chain)),
        _table("wallet", dataclasses.asdict(config.wallet)),
    ]
    for name, section in config.extra.items():
        if isinstance(section, list):
            # An array of tables ([[board]], [[rule]]).
            for item in section:
                body = _table(name, dict(item)).split("\n", 1)[1]
                parts.append(f"[[{name}]]\n{body}")
            continue
        is_instance = dataclasses.is_dataclass(section) and not isinstance(section, type)
        values = dataclasses.asdict(section) if is_instance else section
        parts.append(_table(name, dict(values)))
    return "\n".join(parts)


def save(config: Config, path: Path | str | None = None) -> Path:
    """Write the config atomically (temp file + os.replace) with mode 0600."""
    p = Path(path).expanduser() if path else (config.path or default_path())
    text = dumps(config)
    write_private(p, text)
    config.path = p
    return p
