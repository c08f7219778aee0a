"""Files written whole or not at all, read whole, and what a killed writer leaves of them.

Every file a reader might look at is written to a temporary file in its directory and renamed
over its name (`atomic_write`); a file that must be created once is written aside and
hard-linked to its name, which fails if it exists (`link_exclusive`). A temporary name says
who writes it (`.<name>.<host>-<pid>.<n>.tmp`): one left by a killed writer is removed when a
listing comes across it (`remove_if_left`), once its writer is dead by the rule claims follow
(`metalab.claims.is_alive`). Reads are os-level calls: records are small files, read by
the thousand.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import time

from .. import claims

_counter = itertools.count()
_tag = [claims.writer_tag()]  # who writes a temporary file, as its name says


def _after_fork_in_child() -> None:
    _tag[0] = claims.writer_tag()


os.register_at_fork(after_in_child=_after_fork_in_child)


def atomic_write(path: str | os.PathLike, data: bytes, *, make_dir: bool = False) -> os.stat_result:
    """Write `data` to `path` through a temporary file and a rename; with `make_dir`, make
    the directory first if it is missing. Returns the file's stat as written."""
    directory, slash, name = os.fspath(path).rpartition("/")
    tmp = f"{directory}{slash}{temporary(name)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:
        if not make_dir:
            raise
        os.makedirs(directory or ".", exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        try:
            write_fd(fd, data)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return st
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def temporary(name: str) -> str:
    """A temporary name for the file `name`, saying who writes it."""
    return f".{name}.{_tag[0]}.{next(_counter)}.tmp"


def remove_if_left(directory: str, name: str, now: float | None = None) -> bool:
    """Remove the temporary file `name` of `directory` if its writer is dead (killed while
    writing it); return whether `name` is a temporary file at all."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    parts = name.rsplit(".", 3)
    owner = claims.tag_owner(parts[1]) if len(parts) == 4 else None
    # a name of an earlier metalab (`.<name>.<pid>.<n>.tmp`): its host unknown, it is dead
    # once nobody wrote to it for a lease
    owner = owner or {"host": "", "pid": None}
    path = f"{directory}/{name}"
    try:
        age = (time.time() if now is None else now) - os.lstat(path).st_mtime
        if not claims.is_alive(owner, age):
            os.unlink(path)
    except OSError:  # removed meanwhile, or not ours to remove
        pass
    return True


def without_leftovers(directory: str, names: list[str], now: float) -> list[str]:
    """`names` of `directory` but temporary files, removing those of dead writers."""
    hidden = [name for name in names if name[:1] == "."]
    if not hidden:
        return names
    left = {name for name in hidden if remove_if_left(directory, name, now)}
    return [name for name in names if name not in left] if left else names


def create_exclusive(path: str, *, make_dir: bool = True) -> int:
    """Create the file `path` to read and write; `FileExistsError` if it exists. With
    `make_dir`, its directory (a shard not written to yet) is made if it is missing."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        if not make_dir:
            raise
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, flags, 0o644)


def write_fd(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a write may take only part of it)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def link_exclusive(source: str, path: str) -> bool | None:
    """Link `source` to `path`: True, or False if `path` exists; None where the filesystem
    has no hard links."""
    try:
        os.link(source, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            return None
        raise


def create_once(written: str, path: str, data: bytes) -> bool:
    """Give the file `written` (holding `data`) the name `path` unless it exists: True if
    it did. Where the filesystem has no hard links, `path` is created and written instead."""
    linked = link_exclusive(written, path)
    if linked is not None:
        return linked
    try:
        fd = create_exclusive(path, make_dir=False)
    except FileExistsError:
        return False
    try:
        write_fd(fd, data)
    finally:
        os.close(fd)
    return True


class NotAFile(OSError):
    """What a store holds at a file's path is no regular file: a symbolic link (which could
    lead anywhere), a directory, a FIFO (whose read would never end)."""


_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def open_file(path: str) -> tuple[int, os.stat_result] | None:
    """An open descriptor of the regular file at `path` and its stat, or None if there is
    none; `NotAFile` for anything else there (a link is not followed)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAFile(errno.ELOOP, "it is a symbolic link", path) from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "no regular file"
        raise NotAFile(errno.EINVAL, f"it is {what}", path)
    return fd, st


def read_bytes(path: str) -> bytes | None:
    """The bytes of the regular file at `path`, or None if there is none (`NotAFile` for a
    link, a directory, ...): os-level calls, about half the time of `open().read()` for the
    small files records are."""
    got = read_with_stat(path)
    return None if got is None else got[0]


def read_with_stat(path: str) -> tuple[bytes, os.stat_result] | None:
    """The bytes of the regular file at `path` and its stat as opened, or None if there is
    none (`NotAFile` for a link, a directory, ...)."""
    opened = open_file(path)
    if opened is None:
        return None
    fd, st = opened
    try:
        return read_fd(fd, st.st_size + 1), st  # one read, unless it grew since
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def read_fd(fd: int, size: int = _READ_SIZE) -> bytes:
    """Everything left to read from `fd`, asking for `size` bytes first: a regular file
    shorter than that comes in one call (a short read of one is its end)."""
    data = os.read(fd, size)
    if len(data) < size:
        return data
    parts = [data]
    while chunk := os.read(fd, max(size, _READ_SIZE)):
        parts.append(chunk)
    return b"".join(parts)
