"""The dashboard's local users file: who may sign in, with which roles, seeing which tenants.

``COMPUTEWATCH_DASHBOARD_USERS_FILE`` names a TOML (``.toml``) or JSON file::

    [[users]]
    name = "fin"
    password = "scrypt$16384$8$1$..."   # a hash made by `python -m dashboards.users add/hash`
    roles = ["finance"]
    tenants = ["acme"]                  # optional; omitted means every tenant

JSON holds the same list: ``{"users": [{"name": "fin", ...}]}``. An entry without ``password``
cannot use the sign-in form: it gives roles to an OIDC identity (``name`` is the e-mail address
the provider reports; see :mod:`access`). Roles are ``admin`` (every page) or any of
:data:`ROLES`.

Passwords are kept as scrypt hashes (standard library: n=2**14, r=8, p=1, a random 16-byte salt
per user) and checked in constant time; an unknown name costs the same hash as a known one, so
timing does not tell which names exist. This module has no Streamlit in it; run it to manage the
file::

    python -m dashboards.users add fin --role finance --tenant acme --file users.toml
    python -m dashboards.users hash            # print a hash to paste into a file

>>> encoded = hash_password("correct horse", salt=bytes(16))
>>> encoded.split("$")[:4]
['scrypt', '16384', '8', '1']
>>> verify_password("correct horse", encoded), verify_password("wrong horse", encoded)
(True, False)
>>> verify_password("anything", "not-a-hash")
False
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import tomllib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

ADMIN: Final = "admin"
ROLES: Final = ("security", "engineering", "finance", "operations")
"""Security triages alerts, engineering reads efficiency, finance usage, operations health."""
KNOWN_ROLES: Final = frozenset({ADMIN, *ROLES})
MIN_PASSWORD_LENGTH: Final = 8

_SCHEME: Final = "scrypt"
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_DUMMY: Final = f"{_SCHEME}${_N}${_R}${_P}${'A' * 22}${'A' * 43}"
"""Checked against when a name is unknown, so that answer takes as long as a wrong password."""


class UsersFileError(ValueError):
    """The users file cannot be read or breaks its format (the message names file and entry)."""


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One person in the users file. ``tenants`` None means every tenant."""

    name: str
    roles: frozenset[str]
    tenants: tuple[str, ...] | None = None
    password_hash: str | None = None


# -- password hashes ----------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password`` with a fresh random salt (or ``salt``)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded`` (constant-time compare; malformed = False)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):  # wrong field count, bad base64, bad scrypt parameters
        return False
    return hmac.compare_digest(actual, expected)


def authenticate(users: dict[str, UserEntry], name: str, password: str) -> UserEntry | None:
    """The entry if ``name`` exists, has a password and ``password`` matches; else None.

    Unknown names and entries without a password are checked against a dummy hash, so every
    refusal costs one scrypt.
    """
    entry = users.get(name.strip())
    encoded = entry.password_hash if entry is not None and entry.password_hash else _DUMMY
    matches = verify_password(password, encoded)
    return entry if matches and entry is not None and entry.password_hash else None


# -- the file -----------------------------------------------------------------------------------

def load_users(path: Path) -> dict[str, UserEntry]:
    """Every entry of the users file by name (re-read only when the file changes)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise UsersFileError(f"cannot read users file {path}: {exc.strerror}") from None
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> dict[str, UserEntry]:
    raw = _read(Path(path))
    items = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise UsersFileError(f"{path}: expected a list of users under the key 'users'")
    users: dict[str, UserEntry] = {}
    for index, item in enumerate(items):
        entry = _entry(item, f"{path}: users[{index}]")
        if entry.name in users:
            raise UsersFileError(f"{path}: user {entry.name!r} is listed twice")
        users[entry.name] = entry
    return users


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise UsersFileError(f"cannot read users file {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSON, TOML and UTF-8 errors
        raise UsersFileError(f"users file {path} is not valid {path.suffix[1:] or 'TOML'}: "
                             f"{str(exc).splitlines()[0]}") from None


def _entry(item: Any, where: str) -> UserEntry:
    if not isinstance(item, dict):
        raise UsersFileError(f"{where}: expected a table with name, roles, password")
    name, password, roles, tenants = (item.get(k) for k in ("name", "password", "roles",
                                                            "tenants"))
    if not isinstance(name, str) or not name.strip():
        raise UsersFileError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name!r})"
    if password is not None and (not isinstance(password, str)
                                 or not password.startswith(f"{_SCHEME}$")):
        raise UsersFileError(f"{where}: 'password' must be a hash from "
                             "`python -m dashboards.users hash`, never the password itself")
    return UserEntry(name.strip(), _roles(roles, where), _tenants(tenants, where), password)


def _roles(roles: Any, where: str) -> frozenset[str]:
    if not _strings(roles) or not roles:
        raise UsersFileError(f"{where}: 'roles' must be a non-empty list of role names")
    unknown = sorted(set(roles) - KNOWN_ROLES)
    if unknown:
        raise UsersFileError(f"{where}: unknown roles {unknown}; use {sorted(KNOWN_ROLES)}")
    return frozenset(roles)


def _tenants(tenants: Any, where: str) -> tuple[str, ...] | None:
    if tenants is None:
        return None
    if not _strings(tenants) or not tenants:
        raise UsersFileError(f"{where}: 'tenants' must be a non-empty list (omit it for all)")
    return tuple(tenants)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def add_user(path: Path, entry: UserEntry) -> None:
    """Add ``entry`` to the users file (created if missing; TOML appended, JSON rewritten)."""
    users = load_users(path) if path.exists() else {}
    if entry.name in users:
        raise UsersFileError(f"{path}: user {entry.name!r} exists already")
    record: dict[str, Any] = {"name": entry.name, "roles": sorted(entry.roles)}
    if entry.password_hash:
        record["password"] = entry.password_hash
    if entry.tenants is not None:
        record["tenants"] = list(entry.tenants)
    if path.suffix.lower() == ".json":
        raw = _read(path) if path.exists() else {"users": []}
        raw["users"].append(record)
        text, mode = json.dumps(raw, indent=2) + "\n", "w"
    else:
        lines = ["", "[[users]]",
                 *(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in record.items())]
        text, mode = "\n".join(lines) + "\n", "a"  # JSON strings and lists are TOML too...
        if not _round_trips(text, record):  # ...except for a few odd characters
            raise UsersFileError(f"{path}: cannot write {entry.name!r} as TOML; use JSON")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC),
                 0o600)
    with os.fdopen(fd, mode, encoding="utf-8") as fh:
        fh.write(text)


def _round_trips(toml: str, record: dict[str, Any]) -> bool:
    try:
        return tomllib.loads(toml) == {"users": [record]}
    except tomllib.TOMLDecodeError:
        return False


# -- sign-in throttling -------------------------------------------------------------------------

class LoginThrottle:
    """Refuses a name for ``lockout_s`` after ``max_failures`` wrong passwords in ``window_s``.

    Times are passed in (seconds, monotonic), so it is deterministic under test; memory is
    bounded by ``max_names`` (the oldest names are forgotten first).

    >>> throttle = LoginThrottle(max_failures=2, window_s=60, lockout_s=30)
    >>> throttle.failed("fin", 0.0); throttle.failed("fin", 1.0)
    >>> throttle.retry_after("fin", 2.0), throttle.retry_after("fin", 31.5)
    (29.0, 0.0)
    """

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 max_names: int = 10_000) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_names = max_names
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, name: str, now: float) -> float:
        """Seconds until ``name`` may try again (0 when it may now)."""
        times = [t for t in self._failures.get(name, []) if now - t < self.window_s]
        if len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[-1] + self.lockout_s - now)

    def failed(self, name: str, now: float) -> None:
        """Record a wrong password for ``name``."""
        times = [t for t in self._failures.pop(name, []) if now - t < self.window_s]
        self._failures[name] = [*times, now][-self.max_failures:]
        while len(self._failures) > self.max_names:
            self._failures.popitem(last=False)

    def succeeded(self, name: str) -> None:
        """Forget ``name``'s failures."""
        self._failures.pop(name, None)


# -- command line -------------------------------------------------------------------------------

def _ask_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("error: the passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SystemExit(f"error: use at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _default_file() -> Path | None:
    from pipeline.config import Settings  # the one reader of COMPUTEWATCH_* variables

    return Settings().dashboard_users_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dashboards.users",
                                     description="Manage the dashboard's local users file.")
    commands = parser.add_subparsers(dest="command", required=True)
    hashing = commands.add_parser("hash", help="print the hash of a password")
    add = commands.add_parser("add", help="add a user to the users file")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=sorted(KNOWN_ROLES))
    add.add_argument("--tenant", action="append", help="repeat for several; omit for all")
    add.add_argument("--file", type=Path, help="default: COMPUTEWATCH_DASHBOARD_USERS_FILE")
    add.add_argument("--oidc", action="store_true",
                     help="no password: roles for an OIDC identity (name = its e-mail)")
    for command in (hashing, add):
        command.add_argument("--password-stdin", action="store_true",
                             help="read the password from the first line of stdin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dashboards.users hash|add``: prints to stdout, errors exit non-zero."""
    args = _parser().parse_args(argv)
    if args.command == "hash":
        print(hash_password(_ask_password(args.password_stdin)))  # noqa: T201
        return 0
    path = args.file or _default_file()
    if path is None:
        raise SystemExit("error: give --file or set COMPUTEWATCH_DASHBOARD_USERS_FILE")
    password = None if args.oidc else hash_password(_ask_password(args.password_stdin))
    entry = UserEntry(args.name, frozenset(args.role), _tuple(args.tenant), password)
    try:
        add_user(path, entry)
    except UsersFileError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"added {entry.name} ({', '.join(sorted(entry.roles))}) to {path}")  # noqa: T201
    return 0


def _tuple(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values else None


if __name__ == "__main__":
    raise SystemExit(main())
