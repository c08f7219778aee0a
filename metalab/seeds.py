"""Seed plans and seed bundles: every random stream of a run derives from one base seed.

Streams come from NumPy's `SeedSequence` with the full entropy of the base seed and a spawn key
that encodes where the stream is used: replicates, preprocessing and named sub-streams occupy
disjoint key spaces, so no two of them can share a stream.
"""

from __future__ import annotations

import hashlib
import random as _random
from functools import cached_property
from typing import Any

from ._identity import canonical_json, sha256_hex
from .errors import ValidationError

_SCHEME = "metalab.seeds/1"
_REPLICATE_DOMAIN = 0
_PREPROCESSING_DOMAIN = 1
_NAME_DOMAIN = 2
_sequences: dict[tuple[int, tuple[int, ...]], Any] = {}


def _name_words(name: str) -> tuple[int, ...]:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"a seed stream name must be a non-empty string, got {name!r}")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return (_NAME_DOMAIN, *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)))


def _check_base(base: Any) -> int:
    if isinstance(base, bool) or not isinstance(base, int) or base < 0:
        import numpy as np

        if isinstance(base, np.integer) and base >= 0:
            return int(base)
        raise ValidationError(f"seed base must be a non-negative integer, got {base!r}")
    return base


class SeedBundle:
    """The random streams of one run (or of preprocessing), all derived from one base seed."""

    def __init__(self, base: int, spawn_key: tuple[int, ...] = ()):
        self._base = _check_base(base)
        self._key = tuple(int(k) for k in spawn_key)

    @classmethod
    def for_replicate(cls, base: int, replicate: int) -> SeedBundle:
        """Return the bundle of replicate `replicate` of a plan with base seed `base`."""
        return cls(base, (_REPLICATE_DOMAIN, replicate))

    @classmethod
    def _of_plan(cls, base: int, replicate: int) -> SeedBundle:
        """`for_replicate` for a plan's own checked base and replicate (once per run)."""
        bundle = cls.__new__(cls)
        bundle._base, bundle._key = base, (_REPLICATE_DOMAIN, replicate)
        return bundle

    @classmethod
    def for_preprocessing(cls, base: int) -> SeedBundle:
        """Return a bundle for work done before the sweep; it never equals a replicate's."""
        return cls(base, (_PREPROCESSING_DOMAIN,))

    @property
    def base(self) -> int:
        """The base seed every stream of this bundle derives from."""
        return self._base

    @property
    def spawn_key(self) -> tuple[int, ...]:
        """The `SeedSequence` spawn key that places this bundle in the base seed's tree."""
        return self._key

    def derive(self, name: str) -> SeedBundle:
        """Return an independent child bundle for the component called `name`."""
        return SeedBundle(self._base, self._key + _name_words(name))

    def sequence(self, name: str | None = None):
        """Return the `numpy.random.SeedSequence` of this bundle (or of its child `name`)."""
        import numpy as np

        key = self._key if name is None else self._key + _name_words(name)
        return np.random.SeedSequence(entropy=self._base, spawn_key=key)

    def numpy(self, name: str | None = None):
        """Return a fresh `numpy.random.Generator` (PCG64) for this bundle or its child `name`."""
        import numpy as np

        key = self._key if name is None else self._key + _name_words(name)
        return np.random.Generator(np.random.PCG64(StreamSeedSequence(self._base, key)))

    def _shared_sequence(self, name: str | None):
        """The `SeedSequence` of this bundle or its child `name`, built once per process."""
        key = self._key if name is None else self._key + _name_words(name)
        return _shared_sequence(self._base, key)

    def rng(self, name: str | None = None) -> _random.Random:
        """Return a fresh `random.Random` seeded with 256 bits of this bundle's stream."""
        import numpy as np

        words = self._shared_sequence(name).generate_state(8, np.uint32)
        return _random.Random(int.from_bytes(words.tobytes(), "little"))

    def seed(self, name: str | None = None, *, bits: int = 32) -> int:
        """Return a non-negative integer seed of `bits` bits (32, 64 or 128) for other libraries.

        32 bits suits libraries that reject larger seeds (scikit-learn, `np.random.seed`);
        ask for 64 or 128 where the library accepts them.
        """
        import numpy as np

        if bits not in (32, 64, 128):
            raise ValidationError(f"bits must be 32, 64 or 128, got {bits!r}")
        words = self._shared_sequence(name).generate_state(bits // 32, np.uint32)
        return int.from_bytes(words.tobytes(), "little")

    @cached_property
    def fingerprint(self) -> str:
        """A content hash of (scheme, base, spawn key): the seed part of a run id."""
        return sha256_hex(canonical_json({"scheme": _SCHEME, "base": self._base, "key": self._key}))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeedBundle) and (self._base, self._key) == (
            other._base,
            other._key,
        )

    def __hash__(self) -> int:
        return hash((self._base, self._key))

    def __repr__(self) -> str:
        return f"SeedBundle(base={self._base}, spawn_key={self._key})"

    def __getstate__(self):
        return (self._base, self._key)

    def __setstate__(self, state):
        self._base, self._key = state


_states: dict[tuple[Any, ...], Any] = {}
_registered: list[bool] = []


class StreamSeedSequence:
    """`SeedSequence(entropy=base, spawn_key=key)` as a bit generator sees it, made cheap.

    Bit generators only ask a seed sequence for its first state words: these are computed
    once per process for each stream and copied, which makes a fresh generator several times
    cheaper than hashing the sequence again for every run. Everything else (`spawn`,
    `entropy`, `spawn_key`, `state`, ...) is answered by a `numpy.random.SeedSequence`
    made on first use, fresh for each generator, so `Generator.spawn()` and pickling behave
    as with a plain `SeedSequence`: the same children, the same streams.
    """

    __slots__ = ("_base", "_key", "_sequence")

    def __new__(cls, base: int, key: tuple[int, ...], sequence: Any = None):
        if not _registered:
            from numpy.random.bit_generator import ISpawnableSeedSequence

            ISpawnableSeedSequence.register(cls)
            _registered.append(True)
        return super().__new__(cls)

    def __init__(self, base: int, key: tuple[int, ...], sequence: Any = None):
        self._base = base
        self._key = key
        self._sequence = sequence

    @property
    def sequence(self):
        """The `numpy.random.SeedSequence` this stands for (made on first use)."""
        if self._sequence is None:
            import numpy as np

            self._sequence = np.random.SeedSequence(entropy=self._base, spawn_key=self._key)
        return self._sequence

    def generate_state(self, n_words: int, dtype: Any = None):
        """What `SeedSequence.generate_state` returns (a new array each call)."""
        import numpy as np

        dtype = np.dtype(np.uint32 if dtype is None else dtype)
        cache_key = (self._base, self._key, n_words, dtype.char)
        words = _states.get(cache_key)
        if words is None:
            if self._sequence is None:  # a sequence only read here: share one per process
                seq = _shared_sequence(self._base, self._key)
            else:
                seq = self._sequence
            words = seq.generate_state(n_words, dtype)
            if len(_states) >= 4096:
                _states.clear()
            _states[cache_key] = words
        return words.copy()

    def spawn(self, n_children: int) -> list:
        """What `SeedSequence.spawn` returns: `n_children` child sequences."""
        return self.sequence.spawn(n_children)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.sequence, name)

    def __reduce__(self):
        return (StreamSeedSequence, (self._base, self._key, self._sequence))

    def __repr__(self) -> str:
        return repr(self.sequence)


def _shared_sequence(base: int, key: tuple[int, ...]):
    """The `SeedSequence` of a stream, built once per process, only read through
    `generate_state` (which never changes it)."""
    cache_key = (base, key)
    seq = _sequences.get(cache_key)
    if seq is None:
        import numpy as np

        if len(_sequences) >= 4096:
            _sequences.clear()
        seq = _sequences[cache_key] = np.random.SeedSequence(entropy=base, spawn_key=key)
    return seq


class SeedPlan:
    """How many replicates each parameter case gets, and the base seed they derive from."""

    __slots__ = ("_fingerprints", "base", "replicates")

    def __init__(self, base: int, replicates: int = 1):
        self.base = _check_base(base)
        if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
            raise ValidationError(f"replicates must be a positive integer, got {replicates!r}")
        self.replicates = replicates
        self._fingerprints: list[str] | None = None

    def __len__(self) -> int:
        return self.replicates

    def bundle(self, replicate: int) -> SeedBundle:
        """Return the seed bundle of replicate number `replicate` (0-based)."""
        if not 0 <= replicate < self.replicates:
            raise IndexError(f"replicate {replicate} out of range 0..{self.replicates - 1}")
        return SeedBundle._of_plan(self.base, int(replicate))

    def fingerprint(self, replicate: int) -> str:
        """Return the seed fingerprint of replicate `replicate` (cached per plan)."""
        if self._fingerprints is None:
            self._fingerprints = [self.bundle(r).fingerprint for r in range(self.replicates)]
        return self._fingerprints[replicate]

    def to_manifest(self) -> dict:
        """Describe this plan as JSON (what the experiment manifest records)."""
        return {"scheme": _SCHEME, "base": self.base, "replicates": self.replicates}

    @classmethod
    def from_manifest(cls, manifest: dict) -> SeedPlan:
        """Rebuild a plan from `to_manifest()` output."""
        return cls(manifest["base"], manifest["replicates"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SeedPlan) and (self.base, self.replicates) == (
            other.base,
            other.replicates,
        )

    def __hash__(self) -> int:
        return hash((self.base, self.replicates))

    def __repr__(self) -> str:
        return f"SeedPlan(base={self.base}, replicates={self.replicates})"

    def __getstate__(self):
        return (self.base, self.replicates)

    def __setstate__(self, state):
        self.base, self.replicates = state
        self._fingerprints = None


def seeds(base: int, replicates: int = 1) -> SeedPlan:
    """Plan `replicates` independent seed bundles per parameter case, all derived from `base`."""
    return SeedPlan(base, replicates)
