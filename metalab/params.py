"""Parameter sources: `grid`, `random` and `manual`, each answering `len` and `[k]` in O(1).

A source is an indexable sequence of parameter dicts. Index `k` is computed, never looked up in
a materialized list (except `manual`, whose list is the source), which is what lets a worker or
a SLURM array task rebuild its run from an index alone (DESIGN invariant 1).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._identity import canonical_json, normalize, normalize_and_encode
from .errors import ValidationError
from .seeds import _name_words


def _copied(values: list[Any]) -> list[Any]:
    """A copy of normalized values for a manifest: its lists and dicts copied, so that what
    the caller does to the manifest never reaches the values runs receive."""
    return [copy.deepcopy(v) if type(v) in (dict, list) else v for v in values]


class ParamSource(Sequence):
    """Base class of parameter sources: subclasses provide `__len__`, `case` and `to_manifest`."""

    def case(self, k: int) -> dict[str, Any]:
        """Return the parameters of case `k` (0 <= k < len); implemented by each source."""
        raise NotImplementedError

    def to_manifest(self) -> dict:
        """Describe the source as JSON from which `params_from_manifest` rebuilds it."""
        raise NotImplementedError

    def validate(self) -> None:
        """Check every value can identify a run; raise `FingerprintError` naming the key."""

    def canonical_at(self, k: int) -> str:
        """Return the canonical JSON of case `k` (what the params fingerprint hashes)."""
        return canonical_json(normalize(self.case(k), "params"))

    def resolve(self, k: int) -> tuple[dict[str, Any], str]:
        """Return case `k` as plain JSON values and its canonical JSON, computed together."""
        params = normalize(self.case(k), "params")
        return params, canonical_json(params)

    def canonicals(self) -> Iterator[str]:
        """The canonical JSON of every case, in order (`canonical_at` of each)."""
        return (self.canonical_at(k) for k in range(len(self)))

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, int):
            try:
                k = k.__index__()
            except AttributeError:
                raise TypeError(f"parameter index must be an integer, got {k!r}") from None
        if not -n <= k < n:
            raise IndexError(
                f"parameter index {k} out of range for a source of {n} cases"
                + (f" (0..{n - 1}, or -{n}..-1 from the end)" if n else "")
            )
        return self.case(k + n if k < 0 else k)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for k in range(len(self)):
            yield self.case(k)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_manifest() == other.to_manifest()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_manifest()))


_AXIS_TYPES = (list, tuple, range)


def _axis_values(name: str, values: Any) -> list:
    if type(values).__module__ == "numpy" and getattr(values, "ndim", None) == 1:
        values = values.tolist()
    if not isinstance(values, _AXIS_TYPES):
        given = f"{values!r} ({type(values).__name__})"
        if isinstance(values, (set, frozenset)):
            advice = f"a set has no order: give a list, for example {name}=sorted({values!r})"
        elif isinstance(values, dict):
            advice = f"give a list of the values the axis takes: {name}=[...]"
        elif type(values).__module__ == "numpy" and getattr(values, "ndim", None):
            given = f"a {values.ndim}-D array of shape {values.shape}"
            advice = "a grid axis is one-dimensional: give a 1-D array or a list"
        elif hasattr(values, "__next__"):  # a generator or iterator: read once, no length
            advice = f"make a list of it: {name}=list(...)"
        else:
            advice = f"wrap a single value in a list: {name}=[{values!r}]"
        raise ValidationError(
            f"grid parameter {name!r} must be a list of values, got {given}; {advice}"
        )
    values = list(values)
    if not values:
        raise ValidationError(f"grid parameter {name!r} has no values: give at least one")
    return values


class GridSource(ParamSource):
    """The Cartesian product of named axes; the last axis varies fastest."""

    def __init__(self, axes: Mapping[str, Any]):
        for name in axes:
            if not isinstance(name, str) or not name:
                raise ValidationError(
                    f"grid parameter names must be non-empty strings, got {name!r}"
                )
        self._names = list(axes)
        self._values = [_axis_values(name, axes[name]) for name in self._names]
        self._sizes = [len(v) for v in self._values]
        self._len = math.prod(self._sizes)
        self._encoded: list[list[str]] | None = None
        self._normalized: list[list[Any]] = []
        self._sorted_axes = sorted(range(len(self._names)), key=lambda a: self._names[a])

    @property
    def axes(self) -> dict[str, list]:
        """The axes as given: name -> list of values."""
        return dict(zip(self._names, (list(v) for v in self._values)))

    def __len__(self) -> int:
        return self._len

    def _digits(self, k: int) -> list[int]:
        digits = [0] * len(self._sizes)
        for axis in range(len(self._sizes) - 1, -1, -1):
            k, digits[axis] = divmod(k, self._sizes[axis])
        return digits

    def case(self, k: int) -> dict[str, Any]:
        digits = self._digits(k)
        return {name: self._values[a][digits[a]] for a, name in enumerate(self._names)}

    def validate(self) -> None:
        if self._encoded is not None:
            return
        normalized, encoded = [], []
        for name, values in zip(self._names, self._values):
            plain, texts = normalize_and_encode(values, f"params[{name!r}]")
            normalized.append(plain)
            key = canonical_json(name)
            # canonical JSON of a case is assembled from pre-encoded "name":value pieces
            encoded.append([f"{key}:{text}" for text in texts])
        self._normalized = normalized
        self._encoded = encoded

    def canonical_at(self, k: int) -> str:
        self.validate()
        digits = self._digits(k)
        enc = self._encoded
        return "{" + ",".join([enc[a][digits[a]] for a in self._sorted_axes]) + "}"  # type: ignore[index]

    def canonicals(self) -> Iterator[str]:
        self.validate()
        order, pieces = self._sorted_axes, itertools.product(*self._encoded)  # type: ignore[misc]
        if len(order) == 1:
            return ("{" + piece + "}" for (piece,) in pieces)
        return ("{" + ",".join([combo[a] for a in order]) + "}" for combo in pieces)

    def resolve(self, k: int) -> tuple[dict[str, Any], str]:
        self.validate()
        digits = self._digits(k)
        enc, values = self._encoded, self._normalized
        params = {name: values[a][digits[a]] for a, name in enumerate(self._names)}
        canonical = "{" + ",".join([enc[a][digits[a]] for a in self._sorted_axes]) + "}"  # type: ignore[index]
        return params, canonical

    def to_manifest(self) -> dict:
        self.validate()  # the normalized values, made once
        axes = {name: _copied(values) for name, values in zip(self._names, self._normalized)}
        return {"type": "grid", "axes": axes}

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}=<{s} values>" for n, s in zip(self._names, self._sizes))
        return f"grid({inner})  # {self._len} cases"

    def __getstate__(self):
        return {"axes": dict(zip(self._names, self._values))}

    def __setstate__(self, state):
        GridSource.__init__(self, state["axes"])


def grid(_axes: Mapping[str, Any] | None = None, /, **axes: Any) -> GridSource:
    """Sweep the Cartesian product of the given axes: `grid(lr=[0.1, 0.01], batch=[32, 64])`."""
    merged = dict(_axes or {})
    overlap = set(merged) & set(axes)
    if overlap:
        raise ValidationError(f"grid parameter(s) {sorted(overlap)} given twice")
    merged.update(axes)
    return GridSource(merged)


# ---------------------------------------------------------------- distributions


class Distribution:
    """A one-dimensional distribution sampled by `random(...)` from a per-trial stream."""

    kind = ""

    def sample(self, rng) -> Any:
        """Draw one value from `rng` (a `numpy.random.Generator`)."""
        raise NotImplementedError

    def to_manifest(self) -> dict:
        """Describe the distribution as JSON."""
        raise NotImplementedError

    def _check(self, name: str) -> None:
        """Raise `ValidationError` naming parameter `name` when the bounds are invalid."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_manifest() == other.to_manifest()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_manifest()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_manifest().items() if k != "type")
        return f"{self.kind}({args})"


def _finite_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, (np.integer, np.floating)):
                value = value.item()
            else:
                raise TypeError
        except TypeError:
            raise ValidationError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValidationError(f"{what} must be finite, got {value!r}")
    return value


class _Bounded(Distribution):
    integer = False
    log = False

    def __init__(self, low: float, high: float):
        self.low = _finite_number(low, f"{self.kind} low")
        self.high = _finite_number(high, f"{self.kind} high")
        if self.integer and not all(float(b).is_integer() for b in (self.low, self.high)):
            raise ValidationError(f"{self.kind} bounds must be integers, got {low!r}, {high!r}")
        if self.integer:  # 2.0 is taken as 2: the same distribution, described the same
            self.low, self.high = int(self.low), int(self.high)

    def _check(self, name: str) -> None:
        spec = f"random parameter {name!r}: {self.kind}(low={self.low!r}, high={self.high!r})"
        if self.low >= self.high:
            raise ValidationError(f"{spec}: low must be smaller than high")
        if self.log and self.low <= 0:
            raise ValidationError(f"{spec}: both bounds must be greater than 0")

    def to_manifest(self) -> dict:
        return {"type": self.kind, "low": self.low, "high": self.high}


class Uniform(_Bounded):
    """Floats uniform on [low, high)."""

    kind = "uniform"

    def sample(self, rng) -> float:
        return float(rng.uniform(self.low, self.high))


class LogUniform(_Bounded):
    """Floats whose logarithm is uniform on [log(low), log(high)); both bounds > 0."""

    kind = "loguniform"
    log = True

    def sample(self, rng) -> float:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


class RandInt(_Bounded):
    """Integers uniform on [low, high) (high excluded, like `range`)."""

    kind = "randint"
    integer = True

    def sample(self, rng) -> int:
        return int(rng.integers(int(self.low), int(self.high)))


class LogUniformInt(_Bounded):
    """Integers in [low, high) whose logarithm is roughly uniform; both bounds > 0."""

    kind = "loguniform_int"
    integer = True
    log = True

    def sample(self, rng) -> int:
        lo, hi = math.log(self.low), math.log(self.high)
        value = math.floor(math.exp(rng.uniform(lo, hi)))
        return min(max(value, int(self.low)), int(self.high) - 1)


class Choice(Distribution):
    """One of the given options, each equally likely."""

    kind = "choice"

    def __init__(self, options: Sequence[Any]):
        if type(options).__module__ == "numpy":
            options = list(options.tolist())  # type: ignore[attr-defined]
        if not isinstance(options, (list, tuple, range)) or len(options) == 0:
            raise ValidationError(f"choice needs a non-empty list of options, got {options!r}")
        self.options = list(options)

    def sample(self, rng) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def to_manifest(self) -> dict:
        return {"type": "choice", "options": normalize(self.options, "choice options")}

    def __repr__(self) -> str:
        return f"choice({self.options!r})"


def uniform(low: float, high: float) -> Uniform:
    """Floats uniform on [low, high)."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """Floats log-uniform on [low, high), for scales such as learning rates; low > 0."""
    return LogUniform(low, high)


def randint(low: int, high: int) -> RandInt:
    """Integers uniform on [low, high)."""
    return RandInt(low, high)


def loguniform_int(low: int, high: int) -> LogUniformInt:
    """Integers log-uniform on [low, high), for sizes such as hidden dimensions; low > 0."""
    return LogUniformInt(low, high)


def choice(options: Sequence[Any]) -> Choice:
    """One of `options`, each equally likely."""
    return Choice(options)


_DISTRIBUTIONS: dict[str, type[_Bounded]] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "randint": RandInt,
    "loguniform_int": LogUniformInt,
}


def _distribution_from_manifest(m: dict) -> Distribution:
    if m["type"] == "choice":
        return Choice(m["options"])
    bounded: type[_Bounded] = _DISTRIBUTIONS[m["type"]]
    return bounded(m["low"], m["high"])


class RandomSource(ParamSource):
    """`n_trials` independent draws from `space`; trial `k` is drawn from its own stream.

    Each (trial, parameter) pair has its own `SeedSequence` derived from `seed`, so trial `k`
    is computed without drawing trials `0..k-1`, and adding a parameter to the space leaves
    the values of the others unchanged.
    """

    def __init__(self, space: Mapping[str, Distribution], n_trials: int, seed: int = 0):
        if not isinstance(space, Mapping) or not space:
            raise ValidationError(
                f"random space must be a non-empty dict of distributions, got {space!r}"
            )
        for name, dist in space.items():
            if not isinstance(name, str) or not name:
                raise ValidationError(
                    f"random parameter names must be non-empty strings, got {name!r}"
                )
            if not isinstance(dist, Distribution):
                raise ValidationError(
                    f"random parameter {name!r} must be a distribution such as "
                    f"metalab.uniform(0, 1) or metalab.choice([...]), got {dist!r}"
                )
            dist._check(name)
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials <= 0:
            raise ValidationError(f"random n_trials must be a positive integer, got {n_trials!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValidationError(f"random seed must be a non-negative integer, got {seed!r}")
        self.space = dict(space)
        self.n_trials = n_trials
        self.seed = seed
        self._keys = {name: _name_words(name) for name in self.space}

    def __len__(self) -> int:
        return self.n_trials

    def case(self, k: int) -> dict[str, Any]:
        import numpy as np

        out = {}
        for name, dist in self.space.items():
            seq = np.random.SeedSequence(entropy=self.seed, spawn_key=(k, *self._keys[name]))
            out[name] = dist.sample(np.random.Generator(np.random.PCG64(seq)))
        return out

    def validate(self) -> None:
        for name, dist in self.space.items():
            if isinstance(dist, Choice):
                normalize(dist.options, f"params[{name!r}] options")

    def to_manifest(self) -> dict:
        return {
            "type": "random",
            "space": {name: d.to_manifest() for name, d in self.space.items()},
            "n_trials": self.n_trials,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        return f"random(space={self.space!r}, n_trials={self.n_trials}, seed={self.seed})"


def random(space: Mapping[str, Distribution], n_trials: int, seed: int = 0) -> RandomSource:
    """Sample `n_trials` parameter sets from `space`, reproducibly from `seed`."""
    return RandomSource(space, n_trials, seed)


class ManualSource(ParamSource):
    """An explicit list of parameter dicts, in the order given."""

    def __init__(self, cases: Sequence[Mapping[str, Any]]):
        if isinstance(cases, (str, bytes, Mapping)) or not isinstance(cases, Sequence):
            raise ValidationError(f"manual needs a list of parameter dicts, got {cases!r}")
        if not cases:
            raise ValidationError("manual needs at least one parameter dict, got an empty list")
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping):
                raise ValidationError(
                    f"manual entry {i} must be a dict of parameters, got {case!r} "
                    f"({type(case).__name__})"
                )
            for key in case:
                if not isinstance(key, str) or not key:
                    raise ValidationError(
                        f"manual entry {i} has parameter name {key!r}: expected a non-empty string"
                    )
        self.cases = [dict(c) for c in cases]

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, k: int) -> dict[str, Any]:
        return dict(self.cases[k])

    def validate(self) -> None:
        for i, case in enumerate(self.cases):
            for key, value in case.items():
                normalize(value, f"params[{key!r}] (manual entry {i})")

    def to_manifest(self) -> dict:
        return {"type": "manual", "cases": normalize(self.cases, "manual cases")}

    def __repr__(self) -> str:
        return f"manual(<{len(self.cases)} cases>)"


def manual(cases: Sequence[Mapping[str, Any]]) -> ManualSource:
    """Run exactly the given parameter dicts, in order."""
    return ManualSource(cases)


def params_from_manifest(manifest: dict) -> ParamSource:
    """Rebuild a parameter source from its `to_manifest()` description."""
    kind = manifest.get("type")
    if kind == "grid":
        return GridSource(manifest["axes"])
    if kind == "random":
        space = {n: _distribution_from_manifest(d) for n, d in manifest["space"].items()}
        return RandomSource(space, manifest["n_trials"], manifest["seed"])
    if kind == "manual":
        return ManualSource(manifest["cases"])
    raise ValidationError(
        f"unknown parameter source type {kind!r}; known types: 'grid', 'random', 'manual'"
    )
