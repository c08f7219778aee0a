"""Where a sweep's SLURM files go, under the work directory the array tasks also see.

    <root>/slurm/<session>/job.pkl                         the sweep's job description
    <root>/slurm/<session>/array-<position>-attempt-<k>.sh  one sbatch script per array job
    <root>/slurm/<session>/submission.json                 the submission record
    <root>/slurm/<session>/returned/<job id>_<task id>.json runs a task gave back (`returns`)
    <root>/slurm/<session>/release-<k>.sh                   a release job's script (`release`)
    <root>/slurm/<session>/released/batch-<k>.json          what it submitted (`released`)
    <root>/slurm/logs/<job id>_<task id>.out|.err           the array tasks' output
    <root>/slurm/logs/release-<session>-<k>.out             a release job's output

`<root>` is `SlurmExecutor(work_dir=...)`, or else the store's own work directory (a file
store's directory on the shared filesystem).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

SESSIONS = "slurm"
"""The directory, under the work directory, of every sweep's files (and of the logs)."""


def session_directory(root: Path, session: str) -> Path:
    """Return `<root>/slurm/<session>`: the job file, the scripts and `submission.json`."""
    return root / SESSIONS / session


def submission_file(directory: Path) -> Path:
    """Return the submission record of the sweep whose files are in `directory`."""
    return directory / "submission.json"


def job_file(directory: Path) -> Path:
    """Return the job description the array tasks of the sweep in `directory` read."""
    return directory / "job.pkl"


def script_file(directory: Path, position: int, attempt: int) -> Path:
    """Return the sbatch script of the array job at `position`, submitted for `attempt`."""
    return directory / f"array-{position:04d}-attempt-{attempt}.sh"


def submission_files(root: Path) -> Iterator[Path]:
    """Yield the submission record of every sweep submitted from `root`."""
    return (root / SESSIONS).glob("*/submission.json")
