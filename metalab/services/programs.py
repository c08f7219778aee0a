"""Run PostgreSQL's programs (`initdb`, `pg_ctl`, `postgres`, `pg_isready`) as the server account.

The one place the service manager starts them: through `subprocess`'s `user=`/`group=` when
the server account is not yourself, with a clean environment, from `/`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ServiceError, ServiceTimeoutError
from .account import ServerAccount, self_account

COMMAND_TIMEOUT = 120.0


def _environment(account: ServerAccount) -> dict[str, str]:
    """A clean environment: no PG* variables of the caller leak into the server's programs."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "LC_ALL": "C",
    }
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


@dataclass(frozen=True)
class _Switch:
    """`subprocess` arguments that run a program as another account (all `None`: as yourself)."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None


def _switch(account: ServerAccount | None) -> _Switch:
    if account is None or account.is_self:
        return _Switch()
    return _Switch(account.uid, account.gid, list(account.groups))


def run(
    argv: Sequence[str],
    account: ServerAccount | None = None,
    *,
    input: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (as `account`, if given), capturing its output; never raises on exit codes.

    Raises `ServiceError` if it cannot be started or takes longer than `timeout` seconds.
    """
    switch = _switch(account)
    try:
        return subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            env=_environment(account or self_account()),
            user=switch.user,
            group=switch.group,
            extra_groups=switch.extra_groups,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceTimeoutError(
            f"`{shlex.join(argv)}` did not finish within {timeout:g} s"
        ) from exc
    except OSError as exc:
        raise ServiceError(f"cannot run `{shlex.join(argv)}`: {exc}") from exc


def check(result: subprocess.CompletedProcess[str], what: str) -> None:
    """Raise `ServiceError` naming `what` and its output if `result` has a non-zero exit code."""
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip() or "(no output)"
        raise ServiceError(f"{what} failed (exit code {result.returncode}): {output}")


def popen(argv: Sequence[str], account: ServerAccount) -> subprocess.Popen[bytes]:
    """Start `argv` as `account` in the background; its output is this process's.

    Raises `ServiceError` if it cannot be started.
    """
    switch = _switch(account)
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            cwd="/",
            env=_environment(account),
            user=switch.user,
            group=switch.group,
            extra_groups=switch.extra_groups,
        )
    except OSError as exc:
        raise ServiceError(f"cannot start {argv[0]}: {exc}") from exc
