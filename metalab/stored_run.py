"""`Run`: one stored run's record, with lazy access to its artifacts, log and derived metrics.

What a user's derived metric function receives, on a worker right after the run as in a
notebook; so it lives in the core, beside the run function, not in `metalab.results`.
"""

from __future__ import annotations

import html
from typing import Any

from .derived import read_document, values_of
from .errors import UnknownNameError
from .names import closest
from .serializers import decode_artifact


class Run:
    """One run's record, with lazy access to its artifacts, log and derived metrics."""

    __slots__ = ("_derived", "_record", "_store")

    def __init__(self, record: dict[str, Any], store: Any):
        self._record = record
        self._store = store
        self._derived: dict[str, Any] | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The stored record as a dict."""
        return self._record

    @property
    def run_id(self) -> str:
        """The run's content hash."""
        return self._record["run_id"]

    @property
    def experiment_id(self) -> str:
        """`name:version` of the experiment the run belongs to."""
        return self._record["experiment_id"]

    @property
    def index(self) -> int:
        """The run's index in its experiment."""
        return self._record["index"]

    @property
    def params(self) -> dict[str, Any]:
        """The resolved parameters."""
        return self._record["params"]

    @property
    def metrics(self) -> dict[str, Any]:
        """Scalar metrics captured without a step."""
        return self._record.get("metrics", {})

    @property
    def status(self) -> str:
        """`completed`, `failed`, `interrupted` or `cancelled`."""
        return self._record["status"]

    @property
    def error(self) -> dict[str, Any] | None:
        """`{"type", "message", "traceback"}` of a failed run, else None."""
        return self._record.get("error")

    @property
    def duration(self) -> float:
        """Seconds the operation ran."""
        return self._record.get("duration", 0.0)

    @property
    def provenance(self) -> dict[str, Any]:
        """Code hash, git state, versions, host, worker."""
        return self._record.get("provenance", {})

    @property
    def artifacts(self) -> list[str]:
        """Names of the run's artifacts (data, figures and files included)."""
        return [a["name"] for a in self._record.get("artifacts", [])]

    def artifact(self, name: str, *, trust: bool = False) -> Any:
        """Load artifact `name`, decoded by the codec it was stored with.

        A pickle artifact is unpickled only from a file nobody but you could have written;
        `trust=True` loads one from a store you trust whoever wrote (`UntrustedDataError`
        otherwise)."""
        for descriptor in self._record.get("artifacts", []):
            if descriptor["name"] == name:
                return decode_artifact(self._store, descriptor, trust=trust)
        raise UnknownNameError(
            f"run {self.run_id} has no artifact {name!r}{closest(name, self.artifacts)}; "
            f"its artifacts: {self.artifacts}"
        )

    data = artifact

    def metric_series(self, name: str) -> tuple[list[int], list[Any]]:
        """Return (steps, values) of a metric captured with `step=`."""
        stepped = self._record.get("series") or {}
        series = stepped.get(name)
        if series is None:
            raise UnknownNameError(
                f"run {self.run_id} has no stepped metric {name!r}{closest(name, stepped)}; "
                f"its stepped metrics: {sorted(stepped)}"
            )
        return list(series["steps"]), list(series["values"])

    @property
    def log(self) -> str:
        """The run's `capture.log` lines."""
        return self._store.read_log(self.run_id)

    @property
    def derived(self) -> dict[str, Any]:
        """Persisted derived metrics (name -> value)."""
        return values_of(self._derived_document())

    @property
    def derived_info(self) -> dict[str, Any]:
        """Persisted derived metrics with their provenance: name -> {value, function,
        code_hash, computed_at}; and failures under `errors`: function -> error."""
        document = self._derived_document()
        return {"values": dict(document["values"]), "errors": dict(document["errors"])}

    def _derived_document(self) -> dict[str, Any]:
        if self._derived is None:
            self._derived = read_document(self._store.get_derived(self.run_id))
        return self._derived

    def __repr__(self) -> str:
        return (
            f"Run({self.run_id[:12]}, {self.status}, params={self.params}, metrics={self.metrics})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("run", f"{self.index} ({self.run_id[:12]}) of {self.experiment_id}"),
            ("status", self.status),
            *((f"param {k}", v) for k, v in self.params.items()),
            *((f"metric {k}", v) for k, v in self.metrics.items()),
        ]
        if self.error:
            rows.append(("error", f"{self.error.get('type')}: {self.error.get('message')}"))
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table>{cells}</table>"
