"""`Results` and `Run`: the runs of a sweep as objects, tables and DataFrames."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

RECORD_COLUMNS = (
    "run_id",
    "experiment_id",
    "index",
    "replicate",
    "status",
    "duration",
    "started_at",
    "finished_at",
)


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

    def artifact(self, name: str) -> Any:
        """Load artifact `name`, decoded by the codec it was stored with."""
        from .serializers import get_codec

        for descriptor in self._record.get("artifacts", []):
            if descriptor["name"] == name:
                data = self._store.read_artifact(descriptor["ref"])
                if descriptor["kind"] == "file":
                    return data
                return get_codec(descriptor["kind"]).decode(data)
        raise KeyError(f"run {self.run_id} has no artifact {name!r}; it has {self.artifacts}")

    data = artifact

    def metric_series(self, name: str) -> tuple[list[int], list[Any]]:
        """Return (steps, values) of a metric captured with `step=`."""
        series = self._record.get("series", {}).get(name)
        if series is None:
            raise KeyError(f"run {self.run_id} has no stepped metric {name!r}")
        return list(series["steps"]), list(series["values"])

    @property
    def log(self) -> str:
        """The run's `capture.log` lines."""
        return self._store.read_log(self.run_id)

    @property
    def derived(self) -> dict[str, Any]:
        """Persisted derived metrics (name -> value)."""
        if self._derived is None:
            document = self._store.get_derived(self.run_id)
            self._derived = {
                k: v["value"] if isinstance(v, dict) else v for k, v in document.items()
            }
        return self._derived

    def __repr__(self) -> str:
        return (
            f"Run({self.run_id[:12]}, {self.status}, params={self.params}, metrics={self.metrics})"
        )


class Results(Sequence):
    """The runs of one or more experiments, in index order."""

    def __init__(self, records: list[dict[str, Any]], store: Any):
        self._records = records
        self._store = store
        self._runs: list[Run | None] = [None] * len(records)

    @property
    def store(self) -> Any:
        """The store the runs were read from."""
        return self._store

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return Results(self._records[item], self._store)
        run = self._runs[item]
        if run is None:
            run = self._runs[item] = Run(self._records[item], self._store)
        return run

    def __iter__(self) -> Iterator[Run]:
        for i in range(len(self._records)):
            yield self[i]

    @property
    def records(self) -> list[dict[str, Any]]:
        """The raw records."""
        return list(self._records)

    # ---------------------------------------------------------------- selection
    def _where(self, keep) -> Results:
        return Results([r for r in self._records if keep(r)], self._store)

    @property
    def successful(self) -> Results:
        """Completed runs."""
        return self._where(lambda r: r["status"] == "completed")

    @property
    def failed(self) -> Results:
        """Runs that did not complete (failed, interrupted or cancelled)."""
        return self._where(lambda r: r["status"] != "completed")

    def filter(self, **params: Any) -> Results:
        """Runs whose parameters equal every given value (`filter(lr=0.01)`)."""
        from ._identity import normalize

        wanted = {k: normalize(v, f"filter {k!r}") for k, v in params.items()}
        return self._where(
            lambda r: all(k in r["params"] and r["params"][k] == v for k, v in wanted.items())
        )

    def where(self, predicate) -> Results:
        """Runs for which `predicate(run)` is true (for filters on metrics or status)."""
        return Results([r for r in self._records if predicate(Run(r, self._store))], self._store)

    # ---------------------------------------------------------------- tables
    def _columns(self) -> tuple[list[str], list[str]]:
        param_names: dict[str, None] = {}
        metric_names: dict[str, None] = {}
        for record in self._records:
            param_names.update(dict.fromkeys(record["params"]))
            metric_names.update(dict.fromkeys(record.get("metrics", {})))
        return list(param_names), list(metric_names)

    def table(self, as_dataframe: bool = False):
        """A table of params, metrics and status: a string, or a DataFrame with `as_dataframe`."""
        if as_dataframe:
            return self.to_dataframe(include_record=False).assign(
                status=[r["status"] for r in self._records]
            )
        params, metrics = self._columns()
        header = ["#", *params, *metrics, "status"]
        rows = [
            [
                str(r.get("index", "")),
                *(_cell(r["params"].get(p)) for p in params),
                *(_cell(r.get("metrics", {}).get(m)) for m in metrics),
                r["status"],
            ]
            for r in self._records
        ]
        widths = [
            max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
            for i, h in enumerate(header)
        ]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)
        return "\n".join(lines)

    def to_dataframe(
        self,
        include_params: bool = True,
        include_metrics: bool = True,
        include_record: bool = True,
        include_derived: bool = False,
        derived_metrics: Sequence[Any] | None = None,
    ):
        """One row per run: `param_<name>`, metrics unprefixed, `derived_<name>`, record fields."""
        from .errors import require

        require("pandas", "pandas", "Results.to_dataframe()")
        params, metrics = self._columns()
        data: dict[str, list[Any]] = {}
        if include_record:
            for column in RECORD_COLUMNS:
                data[column] = [r.get(column) for r in self._records]
        if include_params:
            for p in params:
                data[f"param_{p}"] = [r["params"].get(p) for r in self._records]
        if include_metrics:
            for m in metrics:
                column = f"metric_{m}" if m in data else m  # never hide a record column
                data[column] = [r.get("metrics", {}).get(m) for r in self._records]
        if include_derived:
            derived_rows = [self[i].derived for i in range(len(self))]
            for name in dict.fromkeys(k for row in derived_rows for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in derived_rows]
        if derived_metrics:
            computed = [self._compute(fns=derived_metrics, run=self[i]) for i in range(len(self))]
            for name in dict.fromkeys(k for row in computed for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in computed]
        from ._frame import ResultsFrame

        return ResultsFrame(data)

    @staticmethod
    def _compute(fns: Sequence[Any], run: Run) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for fn in fns:
            try:
                out.update(fn(run))
            except Exception:  # noqa: BLE001 - a failing derived function leaves its cells empty
                continue
        return out

    def to_csv(self, path: str, **kwargs: Any) -> None:
        """Write `to_dataframe()` to a CSV file."""
        self.to_dataframe().to_csv(path, index=False, **kwargs)

    def summary(self) -> dict[str, Any]:
        """Counts by status and experiment."""
        by_status: dict[str, int] = {}
        for r in self._records:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        return {
            "runs": len(self._records),
            "by_status": by_status,
            "experiments": sorted({r["experiment_id"] for r in self._records}),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return f"<Results {s['runs']} runs {s['by_status']}>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
