"""What metalab takes from a store it may not have written itself: ids that become paths, and
pickles.

A store is a directory or a database anyone may have written: copied from a colleague,
unpacked from an archive, shared on a cluster. So

* an id or name read from a store becomes part of a path only once it has the form metalab
  gives it (a run id is 32 hexadecimal digits, an experiment id `name:version`, ...), and a
  run id read from a file only when it is the one the file is named after. Whatever fails is
  skipped with an `UnsafeStoreWarning` naming where it was found (`skipped`), never followed;
  every path builder checks its run id again (`check_run_id`), so a bad one that slipped
  through raises instead of leaving the store;
* pickled bytes (the stored experiment, pickle artifacts), which run code when loaded, are
  loaded only when nobody but the user could have written them: a file the user owns that
  neither group nor others may write (`why_untrusted`); a store says so of what it holds
  (`Store.read_pickled`). Otherwise loading raises an `UntrustedDataError` saying why, unless
  the caller trusts the store (`trust=True`).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from typing import Any

from ._identity import RUN_ID_LENGTH
from .errors import StoreError, UnsafeStoreWarning, UntrustedDataError

RUN_ID_PATTERN = f"[0-9a-f]{{{RUN_ID_LENGTH}}}"
"""What a run id is, as a regular expression (to check many names in one pass)."""
_RUN_ID = re.compile(RUN_ID_PATTERN)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""Experiment names and versions (as `Experiment` accepts them), sessions."""
_KEY = re.compile(r"[0-9a-f]{1,64}")
_BAD_IN_FILE_NAME = re.compile(r"[/\\\x00]")


def is_run_id(value: Any) -> bool:
    """Whether `value` is a run id: 32 hexadecimal digits."""
    return type(value) is str and _RUN_ID.fullmatch(value) is not None


def check_run_id(run_id: Any) -> str:
    """Return `run_id` if it may become part of a path; raise `StoreError` otherwise."""
    if type(run_id) is str and _RUN_ID.fullmatch(run_id) is not None:
        return run_id
    raise StoreError(
        f"{run_id!r} is not a run id ({RUN_ID_LENGTH} hexadecimal digits): metalab makes no "
        "path of it"
    )


def is_name(value: Any) -> bool:
    """Whether `value` is an experiment name or version, or a session: letters, digits and
    `._+-`, starting with a letter or digit."""
    return type(value) is str and len(value) <= 200 and _NAME.fullmatch(value) is not None


def is_experiment_id(value: Any) -> bool:
    """Whether `value` is an experiment id, `name:version`."""
    if type(value) is not str:
        return False
    name, colon, version = value.partition(":")
    return bool(colon) and is_name(name) and is_name(version)


def is_experiment_key(value: Any) -> bool:
    """Whether `value` is the key of a stored experiment (hexadecimal digits)."""
    return type(value) is str and _KEY.fullmatch(value) is not None


def check_experiment_key(key: Any) -> str:
    """Return `key` if it may become part of a path; raise `StoreError` otherwise."""
    if is_experiment_key(key):
        return key
    raise StoreError(
        f"{key!r} is not an experiment key (hexadecimal digits): metalab makes no path of it"
    )


def is_file_name(value: Any) -> bool:
    """Whether `value` may name a file metalab writes in a directory of its own (an
    artifact): one path component, not hidden, not `..`."""
    return (
        type(value) is str
        and 0 < len(value) <= 255
        and not value.startswith(".")
        and _BAD_IN_FILE_NAME.search(value) is None
    )


def manifest_problem(manifest: Any) -> str | None:
    """Why the ids and names of a manifest read from a store cannot become paths, or None."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    if not is_experiment_id(manifest.get("experiment_id")):
        return f"its experiment id {manifest.get('experiment_id')!r} is not name:version"
    for field, check in (
        ("name", is_name),
        ("version", is_name),
        ("session", is_name),
        ("experiment_key", is_experiment_key),
    ):
        if field in manifest and not check(manifest[field]):
            return f"its {field} {manifest[field]!r} has not the form metalab gives it"
    return None


def usable_manifests(manifests: list[Any], store: Any) -> list[dict[str, Any]]:
    """The manifests of `manifests` (read from `store`) whose ids and names may become
    paths; the others are skipped with an `UnsafeStoreWarning`."""
    out = []
    for manifest in manifests:
        why = manifest_problem(manifest)
        if why is None:
            out.append(manifest)
        else:
            where = manifest.get("_file", "?") if isinstance(manifest, dict) else "?"
            skipped(f"manifest {where} of {store!r}", why)
    return out


def skipped(where: str, why: str) -> None:
    """Warn that `where` (a file, or a store's item) was skipped because of `why`."""
    warnings.warn(
        UnsafeStoreWarning(f"skipped {where}: {why}; metalab never follows it"), stacklevel=3
    )


# ---------------------------------------------------------------- pickles
def may_vouch(st: os.stat_result, uid: int, mode: int) -> bool:
    """Whether the file of stat `st` was written by no one who could not write a file of
    owner `uid` and `mode`: the same owner, and no group or others may write it who may not
    write that file."""
    return st.st_uid == uid and not (st.st_mode & ~mode & 0o022)


def why_untrusted(st: os.stat_result) -> str | None:
    """Why someone other than this user could have written the file of stat `st`; None when
    nobody else could (the user owns it, and neither group nor others may write it)."""
    uid = os.getuid()
    if may_vouch(st, uid, 0o644):
        return None
    if st.st_uid != uid:
        return f"it is owned by {_user(st.st_uid)}, not by you ({_user(uid)})"
    return f"its mode {stat.filemode(st.st_mode)} lets others than you write it"


def _user(uid: int) -> str:
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def read_for_unpickling(path: str) -> tuple[bytes, str | None]:
    """The bytes of the file at `path` (not followed through a link), and why someone other
    than this user could have written them (None when nobody else could), judged from the
    file as read. Raises `FileNotFoundError` when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise StoreError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
        return data, why_untrusted(os.fstat(fd))
    finally:
        os.close(fd)


def pickled_bytes(store: Any, kind: str, key: str, *, trust: bool, opt_in: str) -> bytes:
    """The bytes of a stored experiment (`kind` "experiment", `key` its key) or artifact
    ("artifact", its reference) to unpickle; raise `UntrustedDataError` when someone else
    could have written them, unless `trust`. `opt_in` says how the caller trusts the store."""
    data, why = store.read_pickled(kind, key)
    if why is None or trust:
        return data
    raise untrusted(
        f"{kind} {key!r} of {store!r}",
        why,
        f"If you trust whoever wrote this store, load it anyway with {opt_in}",
    )


def experiment_bytes(store: Any, key: str) -> bytes:
    """The bytes of the experiment a sweep's workers run: the driver named it by the hash of
    the bytes it stored (`key`), so bytes of that hash are its own whoever wrote the file
    (a colleague who stored the same experiment first, say); any other bytes must be the
    user's own."""
    data, why = store.read_pickled("experiment", key)
    if why is None or experiment_key(data) == key:
        return data
    raise untrusted(
        f"experiment {key!r} of {store!r}",
        f"{why}, and its bytes are not the ones the sweep stored under that key",
        "Submit the sweep again (which stores its experiment anew), or use a store nobody "
        "else writes to",
    )


def experiment_key(blob: bytes) -> str:
    """The key a serialized experiment is stored under: a hash of its bytes."""
    return hashlib.sha256(blob).hexdigest()[:32]


def untrusted(what: str, why: str, remedy: str) -> UntrustedDataError:
    """The error for pickled data `what` that someone else could have written (`why`)."""
    return UntrustedDataError(
        f"{what} was not unpickled: {why}, so someone else may have written it, and "
        f"unpickling runs whatever code it holds. {remedy}"
    )
