"""`Experiment`: an operation, a context, a parameter source and a seed plan, addressed by index.

Run `i` of an experiment with `C` cases and `R` replicates is case `i // R`, replicate `i % R`.
Everything about run `i` (params, seeds, run id) is computed from `i` in O(1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import _identity, working_directory
from .context import check_context, context_manifest, manifest_fingerprint, resolved_context
from .errors import ValidationError
from .operation import OperationWrapper, operation
from .params import ParamSource
from .run_ids import RunIds
from .seeds import SeedBundle, SeedPlan

MANIFEST_FORMAT = "metalab.experiment/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
MAX_NAME_LENGTH = 100
"""Most characters of a name or a version: both name files and directories (a file store's
manifest file name holds both), which hold at most 255 bytes."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that identifies run `index` of an experiment."""

    index: int
    case: int
    replicate: int
    run_id: str
    params: dict[str, Any]
    seeds: SeedBundle
    params_fingerprint: str
    seed_fingerprint: str


def _check_text(field: str, value: Any, *, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"Experiment {field} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"Experiment {field} {value[:20] + '...'!r} has {len(value)} characters; at most "
            f"{MAX_NAME_LENGTH} are allowed (it names directories and files)"
        )
    if pattern is not None and not pattern.match(value):
        raise ValidationError(
            f"Experiment {field} {value!r} may hold only letters, digits and . _ + - "
            "(it names directories and files), starting with a letter or digit"
        )
    return value


class Experiment:
    """A sweep: `operation` run on every (params case x seed replicate) with a shared context."""

    def __init__(
        self,
        name: str,
        version: str,
        context: Any,
        operation: Any,
        params: ParamSource,
        seeds: SeedPlan,
        metadata: Mapping[str, Any] | None = None,
        description: str = "",
        tags: Sequence[str] | None = None,
    ):
        self.name = _check_text("name", name, pattern=_NAME)
        self.version = _check_text("version", version, pattern=_NAME)
        self.context = check_context(context)
        self.operation = _check_operation(operation)
        self.params = _check_params(params)
        self.seeds = _check_seeds(seeds)
        self.metadata = _check_metadata(metadata)
        if not isinstance(description, str):
            raise ValidationError(f"Experiment description must be a string, got {description!r}")
        self.description = description
        self.tags = _check_tags(tags)
        self._context_fp: str | None = None
        self._prepared: _Prepared | None = None
        self._described_params: tuple[Any, dict[str, Any]] | None = None
        self._make_run_id: tuple[tuple[str, str], Any] | None = None

    # ---------------------------------------------------------------- identity
    @property
    def experiment_id(self) -> str:
        """`name:version`: the part of every run id that names the experiment."""
        return f"{self.name}:{self.version}"

    @property
    def n_cases(self) -> int:
        """How many parameter cases the source holds."""
        return len(self.params)

    @property
    def total_runs(self) -> int:
        """Cases times replicates."""
        return len(self.params) * self.seeds.replicates

    def __len__(self) -> int:
        return self.total_runs

    def prepare(self) -> None:
        """Check params can identify runs and fingerprint the context now (files must exist).

        Called by `metalab.run()`; the fingerprint is then fixed for the sweep and travels
        with the experiment to workers, which never re-read the files' metadata. Relative
        `FilePath`/`DirPath`s are resolved against the current directory now: runs receive
        them as the absolute paths that were fingerprinted.
        """
        self.params.validate()
        context = resolved_context(self.context)
        described = context_manifest(context, resolve=True)
        self._prepared = _Prepared(context, described, working_directory.origin().path)
        self._context_fp = manifest_fingerprint(described)

    @property
    def run_context(self) -> Any:
        """The context runs receive: the one fingerprinted at `prepare()`, its paths absolute."""
        if self._prepared is None and self._context_fp is not None:
            return self.context  # unpickled from a metalab that kept no resolved context
        return self._prepared_now().context

    @property
    def context_fingerprint(self) -> str:
        """The context's content hash (computed on first use, or at `prepare()`)."""
        if self._context_fp is None:
            self.prepare()
        return self._context_fp  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        """A hash of everything that decides which runs exist: id, context, params, seeds."""
        material = _identity.canonical_json(
            {
                "experiment": self.experiment_id,
                "context": self.context_fingerprint,
                "params": self._params_manifest(),
                "seeds": self.seeds.to_manifest(),
            }
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _params_manifest(self) -> dict[str, Any]:
        """`params.to_manifest()`, made once per params object (a sweep asks three times:
        for the fingerprint, the run ids' cache key and the manifest)."""
        cached = self._described_params
        if cached is None or cached[0] is not self.params:
            cached = self._described_params = (self.params, self.params.to_manifest())
        return cached[1]

    # ---------------------------------------------------------------- index space
    def _locate(self, index: int) -> tuple[int, int]:
        n = self.total_runs
        if isinstance(index, bool) or not isinstance(index, int):
            index = _as_int(index)
        if not -n <= index < n:
            raise IndexError(
                f"run index {index} out of range for {n} runs"
                + (f" (0..{n - 1}, or -{n}..-1 from the end)" if n else "")
            )
        return divmod(index + n if index < 0 else index, self.seeds.replicates)

    def run_id(self, index: int) -> str:
        """Return the run id of run `index` in O(1)."""
        case, replicate = self._locate(index)
        params_fp = _identity.sha256_hex(self.params.canonical_at(case))
        return _identity.run_id_from(
            self.experiment_id,
            self.context_fingerprint,
            params_fp,
            self.seeds.fingerprint(replicate),
        )

    def run_ids(self, indices: Sequence[int] | range | None = None) -> list[str]:
        """Return the run ids of `indices` (all runs when omitted)."""
        if indices is not None:
            return [self.run_id(i) for i in indices]
        # every run: each case's params hashed once for all its replicates
        make = _identity.run_id_maker(self.experiment_id, self.context_fingerprint)
        seed_fps = [self.seeds.fingerprint(r) for r in range(self.seeds.replicates)]
        out: list[str] = []
        for text in self.params.canonicals():
            params_fp = hashlib.sha256(text.encode()).hexdigest()
            out.extend([make(params_fp, seed_fp) for seed_fp in seed_fps])
        return out

    def packed_run_ids(self) -> RunIds:
        """Every run id, in index order, as `RunIds` (16 bytes a run, no string per run)."""
        make = _identity.run_digest_maker(self.experiment_id, self.context_fingerprint)
        seed_fps = [self.seeds.fingerprint(r) for r in range(self.seeds.replicates)]
        out = bytearray()
        for text in self.params.canonicals():
            params_fp = hashlib.sha256(text.encode()).hexdigest()
            for seed_fp in seed_fps:
                out += make(params_fp, seed_fp)
        return RunIds(bytes(out))

    def params_at(self, index: int) -> dict[str, Any]:
        """Return the parameters of run `index` as the operation receives them."""
        case, _ = self._locate(index)
        return _identity.normalize(self.params.case(case), "params")

    def seeds_at(self, index: int) -> SeedBundle:
        """Return the seed bundle of run `index`."""
        _, replicate = self._locate(index)
        return self.seeds.bundle(replicate)

    def run_spec(self, index: int) -> RunSpec:
        """Return everything that identifies run `index`."""
        case, replicate = self._locate(index)
        params, canonical = self.params.resolve(case)
        params_fp = _identity.sha256_hex(canonical)
        seed_fp = self.seeds.fingerprint(replicate)
        return RunSpec(
            index=case * self.seeds.replicates + replicate,
            case=case,
            replicate=replicate,
            run_id=self._run_id_maker()(params_fp, seed_fp),
            params=params,
            seeds=self.seeds.bundle(replicate),
            params_fingerprint=params_fp,
            seed_fingerprint=seed_fp,
        )

    def _run_id_maker(self) -> Any:
        """`run_id_from` of this experiment and context, their common prefix hashed once
        (`run_spec` asks once per run)."""
        key = (self.experiment_id, self.context_fingerprint)
        cached = self._make_run_id
        if cached is None or cached[0] != key:
            cached = self._make_run_id = (key, _identity.run_id_maker(*key))
        return cached[1]

    # ---------------------------------------------------------------- manifest
    def manifest(self) -> dict[str, Any]:
        """Describe the experiment as JSON: what `{store}/experiments/*.json` records."""
        return {
            "format": MANIFEST_FORMAT,
            "experiment_id": self.experiment_id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": list(self.tags),
            "operation": {
                "name": self.operation.name,
                "ref": self.operation.ref,
                "code_hash": self.operation.code_hash,
            },
            "params": self._params_manifest(),
            "seeds": self.seeds.to_manifest(),
            "context": self._prepared_now().description,
            "context_fingerprint": self.context_fingerprint,
            "working_directory": self._prepared_now().directory,
            "metadata": self.metadata,
            "n_cases": self.n_cases,
            "replicates": self.seeds.replicates,
            "total_runs": self.total_runs,
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        return (
            f"Experiment({self.experiment_id!r}, operation={self.operation.name!r}, "
            f"cases={self.n_cases}, replicates={self.seeds.replicates}, runs={self.total_runs})"
        )

    def _prepared_now(self) -> _Prepared:
        if self._prepared is None:
            self.prepare()
        return self._prepared  # type: ignore[return-value]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_described_params"] = None  # made again where needed, never sent
        state["_make_run_id"] = None  # (a hash object does not pickle)
        return state

    def __setstate__(self, state):
        state.setdefault("_prepared", None)  # pickled by a metalab that did not keep it
        state.setdefault("_described_params", None)
        state.setdefault("_make_run_id", None)
        self.__dict__.update(state)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """What `Experiment.prepare()` fixed for a sweep."""

    context: Any
    """The context with its paths resolved (what runs receive)."""
    description: dict[str, Any]
    """Its manifest entry, file metadata included (what the fingerprint hashes)."""
    directory: str | None
    """The working directory relative paths were resolved against."""


def _as_int(index: Any) -> int:
    try:
        return index.__index__()
    except AttributeError:
        raise TypeError(f"run index must be an integer, got {index!r}") from None


def _check_operation(op: Any) -> OperationWrapper:
    if isinstance(op, OperationWrapper):
        return op
    if callable(op):
        return operation(op)
    raise ValidationError(
        f"Experiment operation must be a function decorated with @metalab.operation, got {op!r}"
    )


def _check_params(params: Any) -> ParamSource:
    if isinstance(params, ParamSource):
        return params
    raise ValidationError(
        f"Experiment params must be a parameter source such as metalab.grid(...), "
        f"metalab.random(...) or metalab.manual([...]), got {params!r}"
    )


def _check_seeds(seeds: Any) -> SeedPlan:
    if isinstance(seeds, SeedPlan):
        return seeds
    raise ValidationError(
        f"Experiment seeds must be a seed plan such as metalab.seeds(base=42, replicates=3), "
        f"got {seeds!r}"
    )


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError(f"Experiment metadata must be a dict, got {metadata!r}")
    try:
        checked = _identity.normalize(
            dict(metadata),
            "metadata",
            "metadata is kept as JSON in the experiment's manifest, and JSON has no NaN or "
            "infinity",
        )
    except ValidationError as exc:
        raise ValidationError(f"Experiment {exc}") from exc
    hints = checked.get("resource_hints", {})
    if not isinstance(hints, dict):
        raise ValidationError(
            f"Experiment metadata['resource_hints'] must be a dict such as "
            f"{{'gpu': True, 'memory_gb': 32}}, got {hints!r}"
        )
    return checked


def _check_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ValidationError(f"Experiment tags must be a list of strings, got {tags!r}")
    for tag in tags:
        if not isinstance(tag, str):
            raise ValidationError(f"Experiment tags must be strings, got {tag!r}")
    return tuple(tags)
