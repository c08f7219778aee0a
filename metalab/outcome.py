"""What happened to one run index, as it travels from a worker to the driver."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .record import decode_record, encode_record


class Outcome:
    """What happened to one index: its final record, or why it did not run here.

    `state` is a record status, or `skipped` (already complete) or `busy` (claimed by a live
    owner). An outcome travels from a worker to the driver as its record's JSON encoding (the
    bytes the store wrote, when it says so), which costs a fraction of pickling the record's
    dicts; the driver decodes it when the record is first asked for.
    """

    __slots__ = ("_encoded", "_metrics", "_record", "duration", "index", "run_id", "state")

    def __init__(
        self,
        index: int,
        run_id: str,
        state: str,
        record: dict[str, Any] | None = None,
        *,
        encoded: bytes | None = None,
        duration: float | None = None,
        metrics: dict[str, Any] | None = None,
    ):
        self.index = index
        self.run_id = run_id
        self.state = state
        self._record = record
        self._encoded = encoded if record is None or isinstance(encoded, bytes) else None
        if duration is None and record is not None:
            duration = record.get("duration")
        self.duration = duration
        """Seconds the run took, when it ran (read without decoding the record)."""
        self._metrics = metrics

    @property
    def record(self) -> dict[str, Any] | None:
        """The run's final record, or None when it has none from here."""
        if self._record is None and self._encoded is not None:
            self._record = decode_record(self._encoded)
            self._encoded = None  # keep one copy: a driver holds every outcome of a sweep
        return self._record

    @property
    def encoded(self) -> bytes | None:
        """The record's JSON encoding (made now if the store did not give it)."""
        if self._encoded is None and self._record is not None:
            self._encoded = encode_record(self._record)
        return self._encoded

    def without_record(self, metrics: Sequence[str] = ()) -> Outcome:
        """This outcome without its record (index, run id, state, duration, and the values of
        `metrics` it has): what the driver needs of a completed run whose record it reads
        from the store."""
        kept = None
        if metrics:
            found = self.metrics
            kept = {name: found[name] for name in metrics if name in found}
        return Outcome(self.index, self.run_id, self.state, duration=self.duration, metrics=kept)

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's scalar metrics: from its record, or those its outcome carries without
        it (see `without_record`); empty when it has neither."""
        record = self.record
        if record is not None:
            return record.get("metrics") or {}
        return self._metrics or {}

    @property
    def has_record(self) -> bool:
        return self._record is not None or self._encoded is not None

    def __reduce__(self):
        return (
            _outcome,
            (self.index, self.run_id, self.state, self.encoded, self.duration, self._metrics),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return (self.index, self.run_id, self.state, self.record) == (
            other.index,
            other.run_id,
            other.state,
            other.record,
        )

    def __repr__(self) -> str:
        return f"Outcome(index={self.index}, run_id={self.run_id!r}, state={self.state!r})"


def _outcome(
    index: int, run_id: str, state: str, encoded: bytes | None, duration, metrics=None
) -> Outcome:
    return Outcome(index, run_id, state, encoded=encoded, duration=duration, metrics=metrics)


class Outcomes(list):
    """The outcomes of one task. A list of its own type, so that Dask sends it to the driver
    as one pickle rather than serializing each outcome separately (which costs ten times
    more for the thousands of outcomes of a task of quick runs); it pickles as columns, and
    is rebuilt in one loop."""

    __slots__ = ()

    def __reduce__(self):
        columns = (
            [o.index for o in self],
            [o.run_id for o in self],
            [o.state for o in self],
            [o.encoded for o in self],
            [o.duration for o in self],
            [o._metrics for o in self] if any(o._metrics for o in self) else None,
        )
        return (_outcomes, columns)


def _outcomes(indices, run_ids, states, encoded, durations, metrics=None) -> Outcomes:
    new = Outcome.__new__
    out = Outcomes()
    append = out.append
    shown = metrics if metrics is not None else itertools.repeat(None)
    for index, run_id, state, data, duration, values in zip(
        indices, run_ids, states, encoded, durations, shown
    ):
        outcome = new(Outcome)
        outcome.index, outcome.run_id, outcome.state = index, run_id, state
        outcome._record, outcome._encoded, outcome.duration = None, data, duration
        outcome._metrics = values
        append(outcome)
    return out
