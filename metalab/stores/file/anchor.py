"""The store's directory held open, and the per-run file operations made relative to it.

A run's claim, record and `.done` marker cost a few system calls each, and each call given a
whole path makes the kernel walk every directory of it again (`/home/alice/projects/x/runs/
ab/<run_id>.json` is seven lookups). Made relative to a descriptor of the store's directory
(`openat`, `renameat`, `linkat`), a call walks only `runs/ab/<run_id>.json`: 2 to 4 us less a
run on a tmpfs, more on deep paths. A store object opens the descriptor at its first claim:
one that only reads (results being analysed) holds none.

The descriptor is checked against the store's path again (one `stat`) at the first call
after `recheck()`, which the store calls at the end of every task, and at the first call
after `RECHECK_SECONDS`: a store removed and made again at the same path between two tasks
(a script that starts over) is written at its path, never into the removed directory. A
descriptor replaced so is closed only when its store object is (threads of a worker may be
using it), and one of a store object that goes is closed with it.
"""

from __future__ import annotations

import os
import time
import weakref

RECHECK_SECONDS = 1.0
"""At most this long between two checks that the descriptor is the store's directory."""

_RELATIVE = {os.open, os.access, os.rename, os.link} <= os.supports_dir_fd
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class Anchor:
    """A descriptor of one store's directory (`top`) for the per-run paths under it."""

    def __init__(self, top: str):
        self._top = top
        self._cut = len(top) + 1  # a path under `top` without it: `runs/ab/<run_id>.json`
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._checked_at = -RECHECK_SECONDS  # monotonic time of the last check; < 0: due

    def recheck(self) -> None:
        """Check at the next call that the descriptor is still the store's directory."""
        self._checked_at = -RECHECK_SECONDS

    def _dir_fd(self, writing: bool = False) -> int | None:
        """The descriptor to make calls relative to; None to give them whole paths (no
        `*at` calls here, the directory cannot be opened, or a store object that only reads
        and has no descriptor: only `create`, a run's claim, opens one)."""
        now = time.monotonic()
        if now - self._checked_at < RECHECK_SECONDS:
            return self._fd
        if not _RELATIVE or (self._fd is None and not writing):
            return None
        try:
            st = os.stat(self._top)
        except OSError:
            return None  # gone: the calls with whole paths say so, as they would have
        if self._fd is None or self._identity != (st.st_dev, st.st_ino):
            try:
                fd = os.open(self._top, _DIRECTORY)
            except OSError:
                return None
            found = os.fstat(fd)
            if (found.st_dev, found.st_ino) != (st.st_dev, st.st_ino):  # replaced in between
                os.close(fd)
                return None
            weakref.finalize(self, _close, fd)
            self._fd, self._identity = fd, (st.st_dev, st.st_ino)
        self._checked_at = now
        return self._fd

    # ---------------------------------------------------------------- the calls
    def create(self, path: str) -> int:
        """Create the file `path` (under the store) exclusively, to read and write, making
        its directory (a shard not written to yet) when it is missing; `FileExistsError`
        if it exists."""
        fd = self._dir_fd(writing=True)
        name = path if fd is None else path[self._cut :]
        try:
            return os.open(name, _FLAGS, 0o644, dir_fd=fd)
        except FileNotFoundError:
            _make_parent(path)
            try:
                return os.open(name, _FLAGS, 0o644, dir_fd=fd)
            except OSError as exc:
                raise _named(exc, path) from None
        except OSError as exc:
            raise _named(exc, path) from None

    def exists(self, path: str) -> bool:
        """Whether `path` (under the store) exists; no exception for a missing file."""
        fd = self._dir_fd()
        return os.access(path if fd is None else path[self._cut :], os.F_OK, dir_fd=fd)

    def rename(self, source: str, path: str) -> None:
        """Rename `source` to `path` (both under the store), replacing it; its directory is
        made when it is missing. `FileNotFoundError` when `source` is missing."""
        fd = self._dir_fd()
        cut = 0 if fd is None else self._cut
        names = source[cut:], path[cut:]
        try:
            os.rename(*names, src_dir_fd=fd, dst_dir_fd=fd)
        except FileNotFoundError as exc:
            if not os.path.exists(source):
                raise _named(exc, source, path) from None
            _make_parent(path)
            try:
                os.rename(*names, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError as again:
                raise _named(again, source, path) from None
        except OSError as exc:
            raise _named(exc, source, path) from None

    def link(self, source: str, path: str) -> None:
        """Give the file `source` the second name `path` (both under the store);
        `FileExistsError` if it exists, another `OSError` where there are no hard links."""
        fd = self._dir_fd()
        if fd is None:
            os.link(source, path)
        else:
            os.link(source[self._cut :], path[self._cut :], src_dir_fd=fd, dst_dir_fd=fd)


def _named(exc: OSError, path: str, path2: str | None = None) -> OSError:
    """`exc` naming the whole paths (a relative call names what it was given)."""
    if exc.filename is not None:
        exc.filename = path
    if path2 is not None and exc.filename2 is not None:
        exc.filename2 = path2
    return exc


def _make_parent(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
