"""Claims held as files: who is running a run now, taken over when its owner is dead.

A claim is the file `claims/<aa>/<run_id>.claim`, holding its owner (`metalab.claims.owner`).
It is created exclusively (`O_EXCL`, which fails if the name exists) and its owner written
into it at once; a claim found without its owner is a writer's that was killed between the
two, dead once it is a few seconds old. The claim file is also the run's record in the
making: it stays open, and the record is written into it and renamed into `runs/`
(`write_record`), so a run's claim, record and release cost one file between them. The
heartbeat (`metalab.claims.heartbeat`) keeps the claims this process holds fresh by touching
their files.

A claim whose owner is dead (`metalab.claims.is_alive`) is taken over, under a `.takeover`
lock file, and what its owner was writing when it was killed is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from ... import _trust
from ...claims import heartbeat, is_alive
from ...errors import StoreError
from ...record import encode_record
from ..atomic import create_exclusive, remove_if_left, write_fd
from .layout import Layout

Held = tuple[float, bytes, int | None, int | None]
"""A claim this process holds: (when claimed, owner bytes, open descriptor or None once the
record was written into it, and then its inode if known)."""
Claim = tuple[dict[str, Any], float, tuple[int, int]]
"""A claim file as read: (owner, heartbeat age in seconds, identity)."""

_pid = [os.getpid()]  # this process's id (updated in a fork)
_all: weakref.WeakSet[ClaimFiles] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has a pid of its own, and the claims it inherited are its parent's."""
    _pid[0] = os.getpid()
    for claims in list(_all):
        claims.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


class ClaimFiles:
    """The claims of one store, and those this process holds in it."""

    def __init__(self, layout: Layout):
        self._layout = layout
        self._owner_cache: tuple[dict[str, Any], bytes] | None = None
        # this process's claims: (path, thread) -> what it holds
        self.held: dict[tuple[str, int], Held] = {}
        self._watched = 0  # the pid whose heartbeat thread touches the claims in `held`
        self._tidied = False
        _all.add(self)

    def forget(self) -> None:
        """In a forked child: close the parent's claims, which are not the child's."""
        for _, _, fd, _ in self.held.values():
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.held.clear()

    def held_files(self) -> list[str]:
        """The claim files this process holds (what the heartbeat touches)."""
        return [path for path, _ in list(self.held)]

    # ---------------------------------------------------------------- claiming
    def claim(self, run_id: str, owner: dict[str, Any]) -> bool:
        """Create the run's claim file, taking over a claim whose owner is dead."""
        path = self._layout.claim_path(run_id)
        if self.create(path, owner):
            return True
        current = self.read(path)
        if current is None:
            return self.create(path, owner)
        if is_alive(current[0], current[1]):
            return False
        return self.take_over(path, owner, current[2])

    def create(self, path: str, owner: dict[str, Any]) -> bool:
        """Create the claim file `path` holding `owner`; False if it exists.

        The file is created exclusively and the owner written into it at once: a reader that
        finds it empty in between takes it for a writer killed mid-write, which counts as
        alive for `OWNERLESS_SECONDS` (`metalab.claims.is_alive`), far longer than the write.
        The claim stays open for `write_record`. Claims are this process's and thread's:
        `write_record` and `release` of the same run come from the thread that claimed it.
        """
        content = self._owner_bytes(owner)
        try:
            fd = create_exclusive(path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._layout.write_failed(f"the claim on run {_run_of(path)}", exc) from exc
        try:
            write_fd(fd, content)
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            if isinstance(exc, OSError):
                raise self._layout.write_failed(f"the claim on run {_run_of(path)}", exc) from exc
            raise
        self.held[(path, threading.get_ident())] = (time.monotonic(), content, fd, None)
        if self._watched != _pid[0]:  # the heartbeat touches every claim in `held`
            heartbeat.watch_files(self)
            self._watched = _pid[0]
        return True

    def _owner_bytes(self, owner: dict[str, Any]) -> bytes:
        cached = self._owner_cache
        if cached is None or cached[0] is not owner:  # one owner dict serves a whole task
            cached = self._owner_cache = (owner, encode_record(owner))
        return cached[1]

    def take_over(self, path: str, owner: dict[str, Any], dead: tuple[int, int]) -> bool:
        """Replace the dead claim file whose identity is `dead`, unless it changed since."""
        lock = path[: -len(".claim")] + ".takeover"
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                if time.time() - os.stat(lock).st_mtime > 60:
                    os.unlink(lock)
            except FileNotFoundError:
                pass
            return False
        os.close(fd)
        try:
            current = self.read(path)
            if current is not None and current[2] != dead:
                return False  # someone else took it over, or it beat, meanwhile
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._tidy_run(path.rpartition("/")[2][: -len(".claim")])
            return self.create(path, owner)
        finally:
            os.unlink(lock)

    def _tidy_run(self, run_id: str) -> None:
        """Remove the temporary files a dead owner of `run_id`'s claim left (its log,
        derived metrics or artifacts being written when it was killed)."""
        now = time.time()
        run_dir = self._layout.run_dir
        places = [(run_dir(sub, run_id), f".{run_id}.") for sub in ("logs", "derived")]
        places.append((f"{run_dir('artifacts', run_id)}/{run_id}", "."))
        for directory, prefix in places:
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if name.startswith(prefix):
                    remove_if_left(directory, name, now)

    # ---------------------------------------------------------------- the record, the release
    def write_record(self, run_id: str, data: bytes, path: str) -> os.stat_result | None:
        """Write `data` into this thread's claim on `run_id` and rename it to `path`, which
        also releases the claim; return the file's stat, or None (nothing published) when
        this thread holds no claim on the run."""
        claim = self._layout.claim_path(run_id)
        key = (claim, threading.get_ident())
        held = self.held.get(key)
        if held is None or held[2] is None:
            return None
        fd = held[2]
        # whatever happens now, the descriptor is used once: a failed write never mixes
        # with a later one (the record then goes through a file of its own)
        self.held[key] = (held[0], held[1], None, None)
        try:
            view = memoryview(data)
            offset = 0
            while offset < len(view):
                offset += os.pwrite(fd, view[offset:], offset)
            if len(data) < len(held[1]):
                os.ftruncate(fd, len(data))
            # the file we hold is still the claim while its name is still linked to it: a
            # takeover (another host, its clock or ours having gone wrong) unlinks it first
            st = os.fstat(fd)
            ours = st if st.st_nlink > 0 else None
            self.held[key] = (held[0], held[1], None, st.st_ino)
        except BaseException:
            with contextlib.suppress(OSError):  # for `release`, which checks it is ours
                self.held[key] = (held[0], held[1], None, os.fstat(fd).st_ino)
            raise
        finally:
            # closed before the rename: on NFS a close sends the data (and reports a failed
            # write), so the record is whole on the server before its name appears there
            os.close(fd)
        if ours is None:
            return None
        try:
            try:
                os.rename(claim, path)  # the record appears whole, and the claim is gone
            except FileNotFoundError:
                if not os.path.exists(claim):
                    return None  # our claim went (removed by hand?): write the record anew
                os.makedirs(os.path.dirname(path), exist_ok=True)  # a shard not written to yet
                os.rename(claim, path)
        except OSError as exc:
            if exc.errno == errno.EXDEV:  # claims/ on another filesystem than runs/
                return None
            raise
        del self.held[key]
        return ours  # its identity as the record: a rename keeps inode and mtime

    def release(self, run_id: str) -> None:
        """Remove this thread's claim on `run_id` (nothing when `write_record` already did,
        or when the claim is not ours)."""
        path = self._layout.claim_path(run_id)
        held = self.held.pop((path, threading.get_ident()), None)
        if held is None:
            return
        fd = held[2]
        if fd is not None:
            try:
                ours = os.fstat(fd).st_nlink > 0  # see `write_record`
            except OSError:  # a stale NFS handle: not ours to touch
                ours = False
            try:
                os.close(fd)  # before the unlink: NFS renames open files it unlinks
            except OSError:
                pass
        else:
            ours = _still_ours(path, held[3]) is not None
        if ours:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # ---------------------------------------------------------------- reading
    def read(self, path: str) -> Claim | None:
        """(owner, heartbeat age in seconds, identity) of the claim file at `path`, or None.

        The identity (inode, modification time) tells this claim file from any later one at
        the same path, whatever they hold."""
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory in its place, say: no claim can be made there
            raise StoreError(
                f"cannot read the claim file {path!r}: {exc.strerror or exc}; remove it to "
                f"run run {_run_of(path)}"
            ) from exc
        age, which = time.time() - st.st_mtime, (st.st_ino, st.st_mtime_ns)
        return _owner_in(data), age, which

    def owner(self, run_id: str) -> dict[str, Any] | None:
        """Return the owner of the claim on `run_id`, alive or dead, or None when unclaimed."""
        current = self.read(self._layout.claim_path(run_id))
        return None if current is None else current[0]

    def live(self) -> dict[str, dict[str, Any]]:
        """Return the live claims: run id -> owner."""
        out = {}
        for directory, names in self.listings():
            for run_id, _ in self._layout.runs_in("claims", directory, names, "claim"):
                try:
                    current = self.read(f"{directory}/{run_id}.claim")
                except StoreError as exc:
                    _trust.skipped(f"{directory}/{run_id}.claim", str(exc.__cause__))
                    continue
                if current is not None and is_alive(current[0], current[1]):
                    out[run_id] = current[0]
        return out

    def is_claimed(self, run_id: str) -> bool:
        """Whether a claim file of `run_id` exists (its owner alive or not)."""
        return os.path.exists(self._layout.claim_path(run_id))

    # ---------------------------------------------------------------- tidying
    def listings(self) -> Iterator[tuple[str, list[str]]]:
        """`Layout.listings("claims")`, removing on the way what dead writers left:
        temporary files and the owner files of earlier versions."""
        for directory, names in self._layout.listings("claims"):
            for name in names:
                if name.startswith(".owner-"):
                    self._remove_if_dead(f"{directory}/{name}")
            yield directory, names

    def _remove_if_dead(self, owner_file: str) -> None:
        """Remove an owner file of a process that is gone. Earlier metalab versions made
        claims as hard links to one owner file per process, which a killed process left."""
        current = self.read(owner_file)
        if current is not None and not is_alive(current[0], current[1]):
            try:
                os.unlink(owner_file)
            except FileNotFoundError:
                pass

    def tidy_once(self) -> None:
        """Remove what killed writers left among the claims (temporary files, owner files of
        earlier versions): once per store object, so a resume starts from a clean store."""
        if self._tidied:
            return
        self._tidied = True
        try:
            for _ in self.listings():
                pass
        except FileNotFoundError:
            pass


def _still_ours(path: str, inode: int | None) -> os.stat_result | None:
    """The stat of the file at `path` if it is the claim file of `inode` we created (not
    one another host made after taking the run over); else None."""
    if inode is None:
        return None
    try:
        st = os.stat(path)
    except OSError:  # gone, or a stale NFS handle: not ours to touch
        return None
    return st if st.st_ino == inode else None


def _run_of(claim_path: str) -> str:
    """The run id a claim file's path names."""
    return claim_path.rpartition("/")[2].removesuffix(".claim")


def _owner_in(data: bytes) -> dict[str, Any]:
    """The owner a claim file's bytes name; `{"host": None}` when they name none."""
    try:
        found = json.loads(data)
    except ValueError:
        # no owner: cut short by a kill as it was written (dead once it is a few seconds
        # old, see `metalab.claims.is_alive`), or its record being written in now
        return {"host": None}
    if isinstance(found, dict) and "pid" in found:
        return found
    # for a moment before it is renamed, a claim holds the run's record, whose provenance
    # names the process writing it (its host and pid: no start time, so a reused pid
    # counts as alive while the heartbeat is fresh)
    provenance = found.get("provenance") if isinstance(found, dict) else None
    if not isinstance(provenance, dict):
        return {"host": None}
    writer = {key: provenance.get(key) for key in ("host", "pid", "session")}
    return {**writer, "start": None}
