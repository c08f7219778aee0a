"""metalab: reproducible experiment sweeps on your laptop, a Dask cluster or SLURM.

`(context, params, seed bundle) -> run record + artifacts`, addressed by run index.
"""

from __future__ import annotations

from ._version import __version__
from .capture import Capture
from .context import DirPath, FilePath, FrozenContext, context_spec
from .errors import (
    CodeChangedWarning,
    ContextFileError,
    ExecutorError,
    FingerprintError,
    MetalabError,
    MetalabWarning,
    MissingDependencyError,
    RunCancelled,
    RunsFailedWarning,
    StoreError,
    StoreFormatError,
    StoreUnavailableError,
    SweepInterrupted,
    ValidationError,
)
from .executors.dask import DaskExecutor, ProcessExecutor, ThreadExecutor
from .executors.inline import InlineExecutor
from .executors.jobqueue import JobqueueExecutor
from .executors.slurm import SlurmConfig, SlurmExecutor
from .experiment import Experiment, RunSpec
from .handle import RunHandle, RunStatus
from .operation import OperationWrapper, import_operation, operation
from .params import (
    ParamSource,
    choice,
    grid,
    loguniform,
    loguniform_int,
    manual,
    randint,
    random,
    uniform,
)
from .progress import Progress
from .record import RunRecord, Status
from .results import Results, Run, load_results, table_path
from .runner import reconnect, run, to_delayed
from .runtime import Runtime
from .seeds import SeedBundle, SeedPlan, seeds
from .serializers import Codec, register_codec

__all__ = [
    "Capture",
    "CodeChangedWarning",
    "Codec",
    "ContextFileError",
    "DaskExecutor",
    "DirPath",
    "ExecutorError",
    "Experiment",
    "FilePath",
    "FingerprintError",
    "FrozenContext",
    "InlineExecutor",
    "JobqueueExecutor",
    "MetalabError",
    "MetalabWarning",
    "MissingDependencyError",
    "OperationWrapper",
    "ParamSource",
    "ProcessExecutor",
    "Progress",
    "Results",
    "Run",
    "RunCancelled",
    "RunHandle",
    "RunRecord",
    "RunSpec",
    "RunStatus",
    "RunsFailedWarning",
    "Runtime",
    "SeedBundle",
    "SeedPlan",
    "SlurmConfig",
    "SlurmExecutor",
    "Status",
    "StoreError",
    "StoreFormatError",
    "StoreUnavailableError",
    "SweepInterrupted",
    "ThreadExecutor",
    "ValidationError",
    "__version__",
    "choice",
    "context_spec",
    "grid",
    "import_operation",
    "load_results",
    "loguniform",
    "loguniform_int",
    "manual",
    "operation",
    "randint",
    "random",
    "reconnect",
    "register_codec",
    "run",
    "seeds",
    "table_path",
    "to_delayed",
    "uniform",
]
