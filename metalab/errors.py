"""Exceptions and warnings raised by metalab."""

from __future__ import annotations


class MetalabError(Exception):
    """Base class of every error metalab raises on purpose."""


class ValidationError(MetalabError, ValueError):
    """A value given to metalab is not one it accepts; the message names it."""


class FingerprintError(ValidationError):
    """A parameter or context value cannot be identified (NaN, inf, or not JSON-able)."""


class ContextFileError(MetalabError, FileNotFoundError):
    """A `FilePath`/`DirPath` in the context does not exist when the sweep starts."""


class StoreError(MetalabError):
    """A store cannot be opened, read or written."""


class StoreUnavailableError(StoreError):
    """A store cannot be reached now (its server is down or unreachable); a retry may work."""


class StoreFormatError(StoreError):
    """A store holds data of a format or version this metalab cannot read."""


class UntrustedDataError(StoreError):
    """Pickled data in a store (an experiment, a pickle artifact) could have been written by
    someone other than the user, and loading it would run their code; the message says why
    and how to load it anyway (`trust=True`)."""


class ExecutorError(MetalabError):
    """An executor could not run the sweep."""


class RunCancelled(MetalabError):
    """Raised inside an operation by `runtime.check_cancelled()` once cancellation was asked."""


class RunLost(BaseException):
    """Raised inside a running operation when its task is being ended from outside (a time
    limit, a preemption, a cancellation): the run is recorded failed with `error_type` and
    `cause` (one of `CAUSES`), then the error goes on up and the task stops.

    A `BaseException`, like `KeyboardInterrupt`, so an operation's `except Exception` does not
    swallow it."""

    CAUSES = ("timeout", "out_of_memory", "preempted", "node_failure", "cancelled", "unknown")

    def __init__(self, error_type: str, message: str, cause: str):
        super().__init__(message)
        self.error_type = error_type
        self.cause = cause


class MissingDependencyError(MetalabError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class MetalabWarning(UserWarning):
    """Base class of metalab's warnings."""


class CodeChangedWarning(MetalabWarning):
    """Completed runs in the store were produced by different operation source."""


class UnsafeStoreWarning(MetalabWarning):
    """A file in a store holds an id or name metalab will not make a path of (not of its
    form, or not the one its file is named after); the file is skipped, never followed."""


def require(module: str, extra: str, feature: str):
    """Import `module` or raise `MissingDependencyError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package: {install_hint(extra)}"
        ) from exc


def install_hint(extra: str) -> str:
    """How to install metalab's `extra` (metalab installs from its source, not PyPI)."""
    return (
        f"install metalab with its '{extra}' extra (`uv add ./metalab --extra {extra}`, or "
        f"`pip install './metalab[{extra}]'`, with the path to metalab's source; in a clone of "
        f"metalab itself, `uv sync --extra {extra}`)"
    )


class UnknownNameError(ValidationError, KeyError):
    """A parameter, metric or artifact name the runs do not have; the message lists theirs.

    A `KeyError` too, as a missing key of a mapping would be."""

    __str__ = Exception.__str__


class RunsFailedWarning(MetalabWarning):
    """Runs of a sweep failed; the message counts them and names their first errors."""


class SweepInterrupted(SystemExit, KeyboardInterrupt):
    """The user interrupted a sweep (Ctrl-C): pending runs were recorded cancelled.

    A `KeyboardInterrupt` to `except` clauses; left uncaught it ends a script as `SystemExit`
    does, silently, with exit status 130 (the shell's code for an interrupt)."""

    def __init__(self, message: str):
        super().__init__(130)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ServiceError(MetalabError):
    """A service (`metalab postgres ...`) could not be started, stopped or inspected; the
    message says why."""


class PostgresNotFoundError(ServiceError, FileNotFoundError):
    """The PostgreSQL server binaries are missing; the message names where metalab looked."""


class PortInUseError(ServiceError):
    """The port asked for is taken; `host` and `port` name it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"port {port} on {host} is already in use: choose another one with --port "
            "(port=...), or leave it out to get a free port"
        )


class ServiceTimeoutError(ServiceError, TimeoutError):
    """A service did not start or stop within the time allowed."""
