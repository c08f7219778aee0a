"""The service directory: where a PostgreSQL service keeps its state, and how it is written.

`{store}/services/postgres/` for a service that belongs to a file store,
`$XDG_STATE_HOME/metalab/postgres/` (default `~/.local/state/...`) otherwise. It holds the
state file (`service.json`), the password file and, by default, the data directory. Every
file metalab writes there (and into the data directory) is written atomically, mode 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ServiceError, ValidationError
from ..locators import path_from_file_uri

LOCK_NAME = ".lock"
SERVICES_SUBDIR = Path("services") / "postgres"


def service_dir(store: str | os.PathLike[str] | None = None) -> Path:
    """Return the service directory: `{store}/services/postgres`, or the user's state dir.

    `store` is a file-store directory (a path or a `file://` URI); a `postgresql://` locator
    raises `ValidationError`. Without a store: `$XDG_STATE_HOME/metalab/postgres`, by default
    `~/.local/state/metalab/postgres`. Nothing is created.
    """
    if store is None:
        return state_home() / "metalab" / "postgres"
    text = os.fspath(store)
    if text.startswith("file://"):
        text = path_from_file_uri(text)
    elif "://" in text:
        raise ValidationError(
            f"store={text!r} is not valid: expected a file-store directory (a path or a "
            "file:// URI), where the service record is kept"
        )
    return Path(text).absolute() / SERVICES_SUBDIR


def state_home(home: str | None = None) -> Path:
    """Return the XDG state directory: `$XDG_STATE_HOME`, or `<home>/.local/state`.

    `home` is another user's home directory; `$XDG_STATE_HOME` only counts for this user.
    """
    if home is None:
        configured = os.environ.get("XDG_STATE_HOME", "")
        if os.path.isabs(configured):
            return Path(configured)
        home = os.path.expanduser("~")
    return Path(home) / ".local" / "state"


def ensure_dir(path: Path, *, traversable: bool = False) -> None:
    """Create the service directory `path` (parents as usual), mode 0700.

    With `traversable`, others may pass through (0711) but not list it: an unprivileged
    server account then reaches a data directory inside. Files here are 0600 either way.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    if traversable and path.stat().st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) | 0o711)


@contextlib.contextmanager
def service_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the service directory (one start or stop at a time)."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ServiceError(f"cannot lock the service directory {directory}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private(path: Path, text: str, *, uid: int | None = None, gid: int | None = None) -> None:
    """Write `text` to `path` atomically (temp file then `os.replace`), mode 0600.

    With `uid`/`gid`, the file is handed to that owner before it appears under its name.
    """
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            if uid is not None:
                os.fchown(handle.fileno(), uid, -1 if gid is None else gid)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
