"""The machine's Ethereum wallet: a keystore v3 file and the signer unlocked from it.

This is the only module of the SDK that touches key material. Everything else gets a
:class:`Signer` (an ``address`` and ``sign_transaction``), so a hardware signer can replace
:class:`LocalSigner` without any other change. The private key is never logged, printed,
put into an exception message or a repr, and never leaves the process.

Key derivation (KDF) trade-off: the keystore password is stretched with scrypt by default.
geth's standard scrypt (n = 2**18, r = 8, p = 1) needs 256 MB of memory and about a second
to encrypt (half a second to unlock) on a desktop, several seconds on a Raspberry Pi; that
is the cost an attacker pays per guess, so keep it for real machines. ``KdfParams`` lowers it
where speed matters more than resistance to guessing (tests use scrypt n = 2**14, about
30 ms); pbkdf2 (1,000,000 rounds, about 0.2 s) needs no memory but is cheaper to attack
on GPUs.

The password comes from an environment variable (default ``BPIIOT_WALLET_PASSWORD``), a file
named in the config, or an interactive prompt; never from the command line, where other
users could read it in the process list.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_keys.main import KeyAPI
from eth_utils.address import to_checksum_address

from bpiiot.errors import BpiiotError
from bpiiot.files import InsecurePermissions, SecretFileError, read_secret_text, write_private

log = logging.getLogger(__name__)

DEFAULT_PASSWORD_ENV = "BPIIOT_WALLET_PASSWORD"
#: geth's standard scrypt cost; see the module docstring for the trade-off.
STANDARD_SCRYPT_N = 2**18


class WalletError(BpiiotError):
    """Base class of wallet errors."""


class WalletNotFound(WalletError):
    """No keystore file at the configured path."""


class WalletExists(WalletError):
    """A keystore file is already there and overwriting was not asked for."""


class WrongPassword(WalletError):
    """The password does not unlock the keystore."""


class KeystoreCorrupt(WalletError):
    """The keystore file is not a readable keystore v3 document."""


class KeystoreInsecure(WalletError):
    """Group or others can access the keystore file (``chmod 600`` it)."""


class InvalidPrivateKey(WalletError):
    """The private key given for import is not a valid secp256k1 key."""


class PasswordUnavailable(WalletError):
    """No password source is set up and there is no terminal to ask on."""


@runtime_checkable
class Signer(Protocol):
    """The narrow interface the rest of the SDK uses to sign: nothing else sees a key."""

    @property
    def address(self) -> str:
        """Checksummed address of the account."""
        ...

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTransaction:
        """Sign a transaction dict (with nonce, gas, fees, chainId) and return it signed."""
        ...


class LocalSigner:
    """A :class:`Signer` holding the key in memory, unlocked from a keystore."""

    __slots__ = ("__account",)

    def __init__(self, private_key: bytes) -> None:
        # Name-mangled and slot-only so the key is not in vars() or a casual attribute dump.
        self.__account: LocalAccount = Account.from_key(private_key)

    @property
    def address(self) -> str:
        """Checksummed address of the account."""
        return str(self.__account.address)

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTransaction:
        """Sign ``tx`` with the account's key."""
        return self.__account.sign_transaction(dict(tx))

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy the key into whatever stores the pickle.
        raise TypeError("a LocalSigner cannot be pickled")


@dataclass(frozen=True)
class KdfParams:
    """Key derivation settings for a new keystore: ``kind`` and its cost (scrypt n, pbkdf2 c)."""

    kind: Literal["scrypt", "pbkdf2"] = "scrypt"
    iterations: int = STANDARD_SCRYPT_N

    def __post_init__(self) -> None:
        if self.kind not in ("scrypt", "pbkdf2"):
            raise WalletError(f"unknown KDF {self.kind!r}: use scrypt or pbkdf2")
        if self.kind == "scrypt" and (
            self.iterations < 2 or self.iterations & (self.iterations - 1)
        ):
            raise WalletError("scrypt n must be a power of two (e.g. 262144 = 2**18)")
        if self.iterations < 2:
            raise WalletError("KDF iterations must be at least 2")


def signing_backend() -> str:
    """Name of the active eth-keys backend (``CoinCurveECCBackend`` is the fast C one)."""
    return type(KeyAPI().backend).__name__


_backend_logged = False


def log_signing_backend() -> str:
    """Log the signing backend once per process (at service start-up) and return its name."""
    global _backend_logged
    name = signing_backend()
    if not _backend_logged:
        _backend_logged = True
        if name == "CoinCurveECCBackend":
            log.info("signing backend: %s (libsecp256k1)", name)
        else:
            log.warning(
                "signing backend: %s (pure Python, about 10x slower): is coincurve installed?", name
            )
    return name


def _write_private_file(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600; refuse to clobber unless asked."""
    try:
        write_private(path, text, overwrite=overwrite)
    except FileExistsError:
        raise WalletExists(
            f"keystore {path} already exists; --overwrite (overwrite=True) replaces it"
        ) from None


def _check_can_write(path: Path, overwrite: bool) -> None:
    # Checked before the slow KDF as a courtesy; _write_private_file enforces it atomically.
    if path.exists() and not overwrite:
        raise WalletExists(
            f"keystore {path} already exists; --overwrite (overwrite=True) replaces it"
        )


def _encrypt(private_key: bytes, password: str, kdf: KdfParams) -> str:
    doc = Account.encrypt(private_key, password, kdf=kdf.kind, iterations=kdf.iterations)
    return json.dumps(doc, indent=2) + "\n"


def _parse_private_key(text: str | bytes) -> bytes:
    try:
        if isinstance(text, bytes):
            raw = text
        else:
            s = text.strip()
            raw = bytes.fromhex(s[2:] if s.lower().startswith("0x") else s)
        if len(raw) != 32:
            raise ValueError
        Account.from_key(raw)  # range check (0 < key < curve order)
    except Exception:
        # Deliberately no detail and no chaining: the message must not echo the key.
        raise InvalidPrivateKey("not a valid private key: expected 32 bytes in hex") from None
    return raw


def create_wallet(
    path: Path, password: str, *, kdf: KdfParams | None = None, overwrite: bool = False
) -> str:
    """Create a new random account, write its keystore and return its address."""
    _check_can_write(path, overwrite)
    account = Account.create()
    _write_private_file(path, _encrypt(account.key, password, kdf or KdfParams()), overwrite)
    log.info("created wallet %s in %s", account.address, path)
    return str(account.address)


def import_private_key(
    path: Path,
    private_key: str | bytes,
    password: str,
    *,
    kdf: KdfParams | None = None,
    overwrite: bool = False,
) -> str:
    """Write a keystore for an existing private key (hex text or 32 bytes); return the address."""
    raw = _parse_private_key(private_key)
    _check_can_write(path, overwrite)
    address = str(Account.from_key(raw).address)
    _write_private_file(path, _encrypt(raw, password, kdf or KdfParams()), overwrite)
    log.info("imported wallet %s into %s", address, path)
    return address


def import_keystore(
    path: Path,
    source: Path,
    source_password: str,
    *,
    password: str | None = None,
    kdf: KdfParams | None = None,
    overwrite: bool = False,
    insecure_permissions: bool = False,
) -> str:
    """Import another keystore file: it is unlocked to prove the password, then re-encrypted
    with ``password`` (default: the same) and ``kdf``. Returns the address."""
    _check_can_write(path, overwrite)
    raw = _decrypt_file(source, source_password, insecure_permissions=insecure_permissions)
    address = str(Account.from_key(raw).address)
    new_password = source_password if password is None else password
    _write_private_file(path, _encrypt(raw, new_password, kdf or KdfParams()), overwrite)
    log.info("imported keystore of %s into %s", address, path)
    return address


def _read_keystore(path: Path, *, insecure_permissions: bool = False) -> dict[str, Any]:
    if not path.exists():
        raise WalletNotFound(f"no keystore at {path}: create one with `bpiiot wallet new`")
    try:
        text = read_secret_text(path, "keystore", insecure_permissions=insecure_permissions)
    except InsecurePermissions as e:
        raise KeystoreInsecure(str(e)) from None
    except SecretFileError as e:
        raise KeystoreCorrupt(str(e)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeystoreCorrupt(f"keystore {path} is not valid JSON (line {e.lineno})") from None
    crypto = doc.get("crypto") or doc.get("Crypto") if isinstance(doc, dict) else None
    if not isinstance(crypto, dict) or doc.get("version") != 3:
        raise KeystoreCorrupt(f"keystore {path} is not a keystore v3 document")
    for field in ("cipher", "ciphertext", "cipherparams", "kdf", "kdfparams", "mac"):
        if field not in crypto:
            raise KeystoreCorrupt(f"keystore {path} lacks crypto.{field}")
    _check_crypto(path, crypto)
    return dict(doc)


#: Bounds of every KDF parameter a keystore may ask for: wider than any real wallet
#: writes (geth: scrypt n = 2**18, r = 8, p = 1; pbkdf2 c = 262144), narrow enough that
#: a damaged or hostile file cannot make unlock hang or exhaust memory.
KDF_BOUNDS: dict[str, dict[str, tuple[int, int]]] = {
    "scrypt": {"n": (2, 2**20), "r": (1, 16), "p": (1, 16), "dklen": (32, 32)},
    "pbkdf2": {"c": (1, 10_000_000), "dklen": (32, 32)},
}
#: scrypt needs 128 * n * r bytes of memory: at most 1 GiB.
SCRYPT_MAX_MEMORY = 2**30


def _hex_field(path: Path, name: str, value: Any, lengths: tuple[int, int]) -> None:
    try:
        raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None:
        raise KeystoreCorrupt(f"keystore {path}: {name} is not hex")
    lo, hi = lengths
    if not lo <= len(raw) <= hi:
        want = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise KeystoreCorrupt(f"keystore {path}: {name} is {len(raw)} bytes, expected {want}")


def _check_crypto(path: Path, crypto: dict[str, Any]) -> None:
    """Refuse unsupported ciphers and KDF parameters outside :data:`KDF_BOUNDS`."""
    if crypto["cipher"] != "aes-128-ctr":
        raise KeystoreCorrupt(
            f"keystore {path}: cipher {crypto['cipher']!r} is not supported (only aes-128-ctr)"
        )
    params = crypto["cipherparams"]
    if not isinstance(params, dict):
        raise KeystoreCorrupt(f"keystore {path}: cipherparams is not an object")
    _hex_field(path, "cipherparams.iv", params.get("iv"), (16, 16))
    _hex_field(path, "ciphertext", crypto["ciphertext"], (32, 32))
    _hex_field(path, "mac", crypto["mac"], (32, 32))
    kdf = crypto["kdf"]
    if kdf not in KDF_BOUNDS:
        raise KeystoreCorrupt(f"keystore {path}: kdf {kdf!r} is not supported (scrypt, pbkdf2)")
    kp = crypto["kdfparams"]
    if not isinstance(kp, dict):
        raise KeystoreCorrupt(f"keystore {path}: kdfparams is not an object")
    for name, (lo, hi) in KDF_BOUNDS[kdf].items():
        value = kp.get(name)
        if type(value) is not int:
            raise KeystoreCorrupt(f"keystore {path}: kdfparams.{name} is not an integer")
        if not lo <= value <= hi:
            raise KeystoreCorrupt(
                f"keystore {path}: kdfparams.{name} = {value} is outside the bound {lo}..{hi}"
            )
    _hex_field(path, "kdfparams.salt", kp.get("salt"), (16, 64))
    if kdf == "scrypt":
        n, r = kp["n"], kp["r"]
        if n & (n - 1):
            raise KeystoreCorrupt(f"keystore {path}: kdfparams.n = {n} is not a power of two")
        if 128 * n * r > SCRYPT_MAX_MEMORY:
            raise KeystoreCorrupt(
                f"keystore {path}: scrypt n = {n}, r = {r} needs {128 * n * r >> 20} MiB, "
                f"over the bound of {SCRYPT_MAX_MEMORY >> 20} MiB"
            )
    elif kp.get("prf") != "hmac-sha256":
        raise KeystoreCorrupt(f"keystore {path}: kdfparams.prf must be hmac-sha256")


def _recorded_address(path: Path, doc: dict[str, Any]) -> str:
    address = doc.get("address")
    if not isinstance(address, str):
        raise KeystoreCorrupt(f"keystore {path} has no address field")
    try:
        return str(to_checksum_address(address if address.startswith("0x") else "0x" + address))
    except ValueError:
        raise KeystoreCorrupt(f"keystore {path} has an invalid address field") from None


def _decrypt_file(path: Path, password: str, *, insecure_permissions: bool = False) -> bytes:
    doc = _read_keystore(path, insecure_permissions=insecure_permissions)
    recorded = _recorded_address(path, doc)
    try:
        raw = bytes(Account.decrypt(doc, password))
    except ValueError as e:
        if "MAC mismatch" in str(e):
            raise WrongPassword(
                f"wrong password for keystore {path} (or its ciphertext is damaged)"
            ) from None
        raise KeystoreCorrupt(f"keystore {path} cannot be decrypted: {e}") from None
    except Exception as e:  # malformed parameters inside an otherwise valid-looking file
        raise KeystoreCorrupt(
            f"keystore {path} has invalid parameters ({type(e).__name__})"
        ) from None
    # The MAC covers the ciphertext only: a changed iv decrypts, with a valid MAC, to
    # another key. The address the key derives must be the one the file records.
    try:
        derived = str(Account.from_key(raw).address)
    except Exception:
        derived = "an invalid key"
    if derived != recorded:
        raise KeystoreCorrupt(
            f"keystore {path} is damaged: it decrypts to {derived}, not to its recorded "
            f"address {recorded} (a changed iv or cipher parameter); restore it from a backup"
        )
    return raw


def unlock(path: Path, password: str, *, insecure_permissions: bool = False) -> LocalSigner:
    """Decrypt the keystore at ``path`` and return a signer for it.

    Refuses a keystore group or others can access (:class:`KeystoreInsecure`) unless
    ``insecure_permissions``, one with an unsupported cipher or KDF parameters out of
    bounds, and one that decrypts to another address than it records
    (:class:`KeystoreCorrupt`).
    """
    signer = LocalSigner(_decrypt_file(path, password, insecure_permissions=insecure_permissions))
    log.info("unlocked wallet %s", signer.address)
    return signer


def keystore_address(path: Path, *, insecure_permissions: bool = False) -> str:
    """Address recorded in the keystore file (no password needed)."""
    doc = _read_keystore(path, insecure_permissions=insecure_permissions)
    return _recorded_address(path, doc)


def resolve_password(
    *,
    password_env: str = DEFAULT_PASSWORD_ENV,
    password_file: str | Path | None = None,
    prompt: str = "Wallet password: ",
    confirm: bool = False,
    interactive: bool | None = None,
) -> str:
    """Get the wallet password: environment variable, then password file, then a prompt.

    ``confirm`` asks twice (for a new wallet). ``interactive`` None means "if stdin is a tty".
    """
    value = os.environ.get(password_env) if password_env else None
    if value:
        return value
    if password_file:
        p = Path(password_file).expanduser()
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise PasswordUnavailable(f"cannot read password file {p}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise PasswordUnavailable(f"password file {p} is not UTF-8 text") from None
        # Only the trailing newline an editor adds is dropped; other spaces are part of it.
        return text.rstrip("\r\n")
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        raise PasswordUnavailable(
            f"no wallet password: set ${password_env}, name a password_file in [wallet], "
            "or run in a terminal"
        )
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat password: ") != first:
        raise WalletError("the two passwords differ")
    if not first:
        raise WalletError("empty password refused")
    return first
