"""The PostgreSQL server binaries: where `initdb`, `pg_ctl`, `postgres` and `pg_isready` are."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PostgresNotFoundError, ServiceError
from .programs import run

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_isready")
BIN_DIR_ENV = "METALAB_POSTGRES_BIN"
"""Environment variable naming the directory of the PostgreSQL binaries to use."""

DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class PostgresBinaries:
    """The directory holding `initdb`, `pg_ctl`, `postgres` and `pg_isready`."""

    bin_dir: str

    def __call__(self, name: str) -> str:
        """Return the path of program `name`."""
        return os.path.join(self.bin_dir, name)

    def major_version(self) -> str:
        """Return the server's major version (`"15"`) from `postgres --version`."""
        out = run([self("postgres"), "--version"]).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match is None:
            raise ServiceError(f"cannot tell the version of {self('postgres')}: {out.strip()!r}")
        return match.group(1)


def find_binaries(bin_dir: str | os.PathLike[str] | None = None) -> PostgresBinaries:
    """Find the PostgreSQL server binaries: `bin_dir`, `$METALAB_POSTGRES_BIN`, else search.

    The search tries the directory of each `pg_ctl` on `PATH` (symlinks resolved), then
    `/usr/lib/postgresql/*/bin`, newest version first. Raises `PostgresNotFoundError` naming
    every place it looked and what was missing there.
    """
    chosen = os.fspath(bin_dir) if bin_dir else os.environ.get(BIN_DIR_ENV, "")
    candidates = [chosen] if chosen else _candidates()
    for candidate in candidates:
        if not _missing(candidate):
            return PostgresBinaries(os.path.abspath(candidate))
    raise PostgresNotFoundError(_not_found(candidates, chosen))


def _candidates() -> list[str]:
    found = []
    for directory in filter(None, os.environ.get("PATH", "").split(os.pathsep)):
        program = os.path.join(directory, "pg_ctl")
        if os.access(program, os.X_OK):
            found += [os.path.dirname(os.path.realpath(program)), directory]
    found += sorted(glob.glob(DEBIAN_BIN_GLOB), key=_version_key, reverse=True)
    return list(dict.fromkeys(found))


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))


def _missing(directory: str) -> list[str]:
    return [n for n in REQUIRED_BINARIES if not os.access(os.path.join(directory, n), os.X_OK)]


def _not_found(candidates: Sequence[str], chosen: str) -> str:
    found = "; ".join(f"{c} lacks {', '.join(_missing(c))}" for c in candidates)
    searched = f"the directory of each pg_ctl on PATH, then {DEBIAN_BIN_GLOB}"
    where = found if chosen else f"searched {searched}: {found or 'none exists'}"
    return (
        f"PostgreSQL server binaries not found: need {', '.join(REQUIRED_BINARIES)} in one "
        f"directory ({where}). Install the PostgreSQL server (Debian/Ubuntu: apt-get "
        f"install postgresql) or name its bin directory with --bin-dir or ${BIN_DIR_ENV}"
    )
