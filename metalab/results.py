"""`Results` and `Run`: the runs of a sweep as objects, tables and DataFrames."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import ValidationError
from .record import RECORD_COLUMNS, Status, decode_record, paused_gc


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
        from .serializers import decode_artifact

        for descriptor in self._record.get("artifacts", []):
            if descriptor["name"] == name:
                return decode_artifact(self._store, descriptor, trust=trust)
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
        from .derived import values_of

        return values_of(self._derived_document())

    @property
    def derived_info(self) -> dict[str, Any]:
        """Persisted derived metrics with their provenance: name -> {value, function,
        code_hash, computed_at}; and failures under `errors`: function -> error."""
        document = self._derived_document()
        return {"values": dict(document["values"]), "errors": dict(document["errors"])}

    def _derived_document(self) -> dict[str, Any]:
        if self._derived is None:
            from .derived import read_document

            self._derived = read_document(self._store.get_derived(self.run_id))
        return self._derived

    def __repr__(self) -> str:
        return (
            f"Run({self.run_id[:12]}, {self.status}, params={self.params}, metrics={self.metrics})"
        )


def _decoded(entry: Any) -> dict[str, Any]:
    """A record from what `Results` holds: a dict, a record's JSON bytes or an outcome."""
    if isinstance(entry, dict):
        return entry
    if isinstance(entry, bytes):
        return decode_record(entry)
    return entry.record


class Results(Sequence):
    """The runs of one or more experiments, in index order."""

    def __init__(
        self,
        records: list[dict[str, Any]] | None,
        store: Any,
        *,
        query: dict[str, Any] | None = None,
        rows: list[dict[str, Any]] | None = None,
    ):
        # records None: a selection a database store answers (`store.query_records(**query)`)
        # when the records are first needed, so filters before that run in the database.
        # Entries that are not dicts are still encoded: a sweep's outcomes as the workers sent
        # them (`Outcome.record` decodes one) or a record's JSON bytes (from a file store's
        # journal); they are decoded when the records are first read.
        self._loaded = records
        self._encoded = records is not None and not all(isinstance(r, dict) for r in records)
        self._store = store
        self._query = query
        # `rows`, one per record when given, hold what tables and selections by params,
        # metrics and status read (`metalab.stores._journal.ROW_KEYS`): those need no record
        # decoded
        self._rows = rows
        self._run_cache: list[Run | None] | None = None

    @property
    def _records(self) -> list[dict[str, Any]]:
        if self._loaded is None or self._encoded:
            with paused_gc():
                if self._loaded is None:
                    self._loaded = list(self._store.query_records(**(self._query or {})))
                else:
                    self._loaded = [_decoded(r) for r in self._loaded]
                    self._encoded = False
        return self._loaded

    @property
    def _runs(self) -> list[Run | None]:
        if self._run_cache is None:
            self._run_cache = [None] * len(self._records)
        return self._run_cache

    def _pushable(self) -> bool:
        """Whether selections can still go to the store as a query."""
        return self._loaded is None and self._query is not None

    @property
    def store(self) -> Any:
        """The store the runs were read from."""
        return self._store

    def __len__(self) -> int:
        if self._loaded is not None:
            return len(self._loaded)
        return len(self._records)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            if self._by_rows():
                return Results(self._loaded[item], self._store, rows=self._rows[item])
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
        """The runs whose record (or row, which has the fields `keep` reads) passes `keep`."""
        rows, loaded = self._rows, self._loaded
        if self._by_rows() and rows is not None and loaded is not None:
            kept = [i for i, row in enumerate(rows) if keep(row)]
            return Results([loaded[i] for i in kept], self._store, rows=[rows[i] for i in kept])
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
        """Runs whose parameters match every condition.

        `filter(lr=0.01)` matches equal values (floats within a relative 1e-9, so a value
        from `numpy.logspace` matches the literal you type); a list or tuple matches any of
        its values (`filter(optimizer=["adam", "sgd"])`); a suffix compares:
        `filter(lr__lt=0.1)` (`__lt`, `__le`, `__gt`, `__ge`, `__ne`, `__in`).
        """
        if self._pushable():
            pushed, rest = _split_param_conditions(params, (self._query or {}).get("params", {}))
            if pushed:
                query = dict(self._query or {})
                query["params"] = {**query.get("params", {}), **pushed}
                selected = Results(None, self._store, query=query)
                return selected.filter(**rest) if rest else selected
        tests = [_condition(name, value, "parameter") for name, value in params.items()]
        return self._where(lambda r: all(t(r["params"]) for t in tests))

    def where(self, predicate: Any = None, /, *, status: Any = None, **metrics: Any) -> Results:
        """Runs selected by their metrics, status, or any predicate of the run.

        `where(loss__lt=0.1)` and `where(accuracy__ge=0.9, status="completed")` compare
        metrics as `filter` compares params (a run without the metric never matches);
        `status` is one status or a list; `where(lambda run: ...)` takes any test of a `Run`.
        """
        if predicate is not None and not callable(predicate):
            raise ValidationError(
                f"where() takes a function of a run as its positional argument, got {predicate!r}"
            )
        statuses = None
        if status is not None:
            statuses = {status} if isinstance(status, str) else set(status)
            known = {s.value for s in Status}
            unknown = statuses - known
            if unknown:
                raise ValidationError(
                    f"unknown status {sorted(unknown)!r}; statuses are {sorted(known)}"
                )
        if self._pushable() and predicate is None:
            pushed, rest = _split_metric_conditions(metrics)
            query = dict(self._query or {})
            push_status = statuses is not None and len(statuses) == 1 and "status" not in query
            if pushed or push_status:
                query["metric_filters"] = [*query.get("metric_filters", []), *pushed]
                if push_status:
                    query["status"] = next(iter(statuses))  # type: ignore[arg-type]
                selected = Results(None, self._store, query=query)
                leftover_status = None if push_status else status
                if rest or leftover_status is not None:
                    return selected.where(status=leftover_status, **rest)
                return selected
        tests = [_condition(name, value, "metric") for name, value in metrics.items()]

        def keep(record: dict[str, Any]) -> bool:
            if statuses is not None and record["status"] not in statuses:
                return False
            return all(t(record.get("metrics") or {}) for t in tests)

        if predicate is None:
            return self._where(keep)
        return Results(
            [r for r in self._records if keep(r) and predicate(Run(r, self._store))], self._store
        )

    # ---------------------------------------------------------------- tables
    def _tabled(self) -> list[dict[str, Any]]:
        """What tables read: the rows while the records are not decoded, else the records
        (which their user may have changed)."""
        return self._rows if self._by_rows() else self._records  # type: ignore[return-value]

    def _by_rows(self) -> bool:
        return self._rows is not None and self._loaded is not None and self._encoded

    def _columns(self) -> tuple[list[str], list[str]]:
        """Parameter and metric names, in order of first appearance."""
        records = self._tabled()
        # runs of a sweep share their key sets: collect each distinct set once
        param_sets = dict.fromkeys(tuple(r["params"]) for r in records)
        metric_sets = dict.fromkeys(tuple(r.get("metrics") or ()) for r in records)
        param_names = dict.fromkeys(name for names in param_sets for name in names)
        metric_names = dict.fromkeys(name for names in metric_sets for name in names)
        return list(param_names), list(metric_names)

    def table(self, as_dataframe: bool = False):
        """A table of params, metrics and status: a string, or a DataFrame with `as_dataframe`."""
        if as_dataframe:
            return self.to_dataframe(include_record=False).assign(
                status=[r["status"] for r in self._tabled()]
            )
        params, metrics = self._columns()
        header = ["#", *params, *metrics, "status"]
        rows = [
            [
                str(r.get("index", "")),
                *(_cell(r["params"].get(p)) for p in params),
                *(_cell((r.get("metrics") or {}).get(m)) for m in metrics),
                r["status"],
            ]
            for r in self._tabled()
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
        include_provenance: bool = False,
    ):
        """One row per run: `param_<name>`, metrics unprefixed, `derived_<name>`, record fields.

        `derived_metrics` are computed on the fly (not stored); `include_provenance` adds
        `code_hash`, `git_commit`, `git_dirty`, `host`, `worker`, `slurm_job_id` and
        `slurm_array_task_id`.
        """
        from .errors import require

        pd = require("pandas", "pandas", "Results.to_dataframe()")
        with paused_gc():
            return self._to_dataframe(
                pd,
                include_params,
                include_metrics,
                include_record,
                include_derived,
                derived_metrics,
                include_provenance,
            )

    def _to_dataframe(
        self,
        pd,
        include_params,
        include_metrics,
        include_record,
        include_derived,
        derived_metrics,
        include_provenance,
    ):
        params, metrics = self._columns()
        records = self._tabled()
        # pandas pulls the fields out of the dicts itself (much faster than a loop per column)
        parts = []
        taken: set[str] = set()
        if include_record:
            parts.append(pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS)))
            taken.update(RECORD_COLUMNS)
        if include_params and params:
            frame = pd.DataFrame.from_records([r["params"] for r in records], columns=params)
            parts.append(frame.add_prefix("param_"))
            taken.update(f"param_{p}" for p in params)
        if include_metrics and metrics:
            frame = pd.DataFrame.from_records(
                [r.get("metrics") or {} for r in records], columns=metrics
            )
            # never hide a record column: a metric called like one becomes metric_<name>
            frame.columns = [f"metric_{m}" if m in taken else m for m in metrics]
            parts.append(frame)
        data: dict[str, list[Any]] = {}
        if include_derived:
            derived_rows = [self[i].derived for i in range(len(self))]
            for name in dict.fromkeys(k for row in derived_rows for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in derived_rows]
        if derived_metrics:
            from .derived import check_functions, compute, values_of

            fns = check_functions(derived_metrics)
            computed = [values_of(compute(fns, self[i])[0]) for i in range(len(self))]
            for name in dict.fromkeys(k for row in computed for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in computed]
        if include_provenance:
            rows = [_provenance_columns(r) for r in self._records]
            for column in PROVENANCE_COLUMNS:
                data[column] = [row[column] for row in rows]
        from ._frame import ResultsFrame

        if data:
            parts.append(pd.DataFrame(data))
        if not parts:
            return ResultsFrame(index=range(len(records)))
        frame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
        return ResultsFrame(frame)

    # ---------------------------------------------------------------- derived metrics
    def compute_derived(self, derived_metrics: Sequence[Any], overwrite: bool | str = False):
        """Compute derived metrics of the completed runs and store them beside the runs.

        Values a function already stored are kept unless `overwrite=True`;
        `overwrite="changed"` recomputes only values stored by an earlier definition of the
        function (another code hash). A function that raises records its error for that run
        (see `Run.derived_info`) and the others still run. Returns these results.
        """
        from .derived import check_functions, compute, read_document, stale

        fns = check_functions(derived_metrics)
        if overwrite not in (True, False, "changed"):
            raise ValidationError(f"overwrite must be True, False or 'changed', got {overwrite!r}")
        outdated = 0
        for run in self:
            if run.status != Status.COMPLETED:
                continue
            document = read_document(self._store.get_derived(run.run_id))
            if overwrite is False:
                outdated += bool(stale(document, fns))
            document, changed = compute(fns, run, document, overwrite=overwrite)
            if changed:
                self._store.put_derived(run.run_id, document)
            run._derived = document
        if outdated:
            import warnings

            from .errors import CodeChangedWarning

            warnings.warn(
                CodeChangedWarning(
                    f"{outdated} run(s) keep derived metrics made by an earlier definition of "
                    "these functions; compute_derived(..., overwrite='changed') recomputes them"
                ),
                stacklevel=2,
            )
        return self

    # ---------------------------------------------------------------- series
    def metric_series(self, name: str | None = None):
        """Stepped metrics as a long DataFrame: run_id, index, param_*, metric, step, value."""
        from .errors import require

        require("pandas", "pandas", "Results.metric_series()")
        import pandas as pd

        params, _ = self._columns()
        rows = []
        for r in self._records:
            for metric, series in (r.get("series") or {}).items():
                if name is not None and metric != name:
                    continue
                base = {"run_id": r["run_id"], "index": r.get("index")}
                base.update({f"param_{p}": r["params"].get(p) for p in params})
                for step, value in zip(series["steps"], series["values"]):
                    rows.append({**base, "metric": metric, "step": step, "value": value})
        columns = ["run_id", "index", *(f"param_{p}" for p in params), "metric", "step", "value"]
        return pd.DataFrame(rows, columns=columns)

    # ---------------------------------------------------------------- display
    def display(self, group_by: Sequence[str] | str | None = None, *, file: Any = None):
        """Print the mean and std of each metric per group of parameter values.

        A rich table when rich is installed (and in Jupyter), plain text otherwise; without
        `group_by`, the runs table. Returns the table as a DataFrame (pandas) or text.
        """
        table = self.grouped(group_by) if group_by else None
        if table is None:
            text = self.table()
            print(text, file=file)
            return text
        _print_table(table, title=f"{len(self)} runs by {', '.join(table.index.names)}", file=file)
        return table

    def grouped(self, group_by: Sequence[str] | str):
        """Mean, std and count of each numeric metric per group of parameter values."""
        from .errors import require

        require("pandas", "pandas", "Results.display(group_by=...)")
        keys = [group_by] if isinstance(group_by, str) else list(group_by)
        params, metrics = self._columns()
        unknown = [k for k in keys if k.removeprefix("param_") not in params]
        if unknown:
            raise ValidationError(
                f"group_by names {unknown!r} that are not parameters; parameters: {params}"
            )
        frame = self.to_dataframe(include_record=False)
        columns = [f"param_{k.removeprefix('param_')}" for k in keys]
        numeric = [m for m in metrics if m in frame.columns and frame[m].dtype.kind in "biuf"]
        grouped = frame.groupby(columns, dropna=False)
        table = grouped[numeric].agg(["mean", "std"]) if numeric else grouped.size().to_frame()
        if numeric:
            table[("runs", "count")] = grouped.size()
        table.index.names = [c.removeprefix("param_") for c in columns]
        return table

    def to_csv(self, path: str, **kwargs: Any) -> None:
        """Write `to_dataframe()` to a CSV file."""
        self.to_dataframe().to_csv(path, index=False, **kwargs)

    def summary(self) -> dict[str, Any]:
        """Counts by status and experiment."""
        by_status: dict[str, int] = {}
        records = self._tabled()
        for r in records:
            by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        return {
            "runs": len(records),
            "by_status": by_status,
            "experiments": sorted({r["experiment_id"] for r in records}),
        }

    def report(self, path: Any = "report.html", *, title: str | None = None):
        """Write a standalone HTML report of these runs to `path` (bokeh); return its path.

        The runs table, every metric against every swept parameter (mean and spread over
        replicates), stepped metrics as curves, failures with their errors, and provenance.
        """
        from .report import write_report

        return write_report(self, path, title=title)

    def __repr__(self) -> str:
        s = self.summary()
        return f"<Results {s['runs']} runs {s['by_status']}>"


PROVENANCE_COLUMNS = (
    "code_hash",
    "git_commit",
    "git_dirty",
    "host",
    "worker",
    "slurm_job_id",
    "slurm_array_task_id",
)


def _provenance_columns(record: dict[str, Any]) -> dict[str, Any]:
    prov = record.get("provenance") or {}
    git = prov.get("git") or {}
    slurm = prov.get("slurm") or {}
    return {
        "code_hash": prov.get("code_hash"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "host": prov.get("host"),
        "worker": prov.get("worker"),
        "slurm_job_id": slurm.get("job_id"),
        "slurm_array_task_id": slurm.get("array_task_id"),
    }


_OPERATORS = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def _same(a: Any, b: Any) -> bool:
    """Equality for filters: numbers compare by value, and when one side is a float within
    a relative 1e-9 (integers compare exactly); anything else by type and value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return a == b or math.isclose(a, b, rel_tol=1e-9)
        return a == b
    return type(a) is type(b) and a == b


def _condition(key: str, value: Any, kind: str):
    """A test of a params or metrics mapping for `filter`/`where` keyword `key=value`."""
    from ._identity import normalize

    name, _, op = key.rpartition("__")
    if not name or op not in (*_OPERATORS, "ne", "in", "eq"):
        name, op = key, "eq"
    if op in _OPERATORS:
        if isinstance(value, (list, tuple, set, dict)) or value is None:
            raise ValidationError(
                f"{key}={value!r}: a comparison needs a single value to compare the {kind} to"
            )
        compare = _OPERATORS[op]

        def test(mapping):
            if name not in mapping or mapping[name] is None:
                return False
            try:
                return bool(compare(mapping[name], value))
            except TypeError:
                return False

        return test
    if op == "in" or (op == "eq" and isinstance(value, (list, tuple, set))):
        if not isinstance(value, (list, tuple, set)):
            raise ValidationError(f"{key}={value!r}: __in needs a list of values")
        options = [normalize(v, f"{kind} {name!r}") for v in value]
        return lambda m: name in m and any(_same(m[name], v) for v in options)
    wanted = normalize(value, f"{kind} {name!r}")
    if op == "ne":
        return lambda m: name in m and not _same(m[name], wanted)
    return lambda m: name in m and _same(m[name], wanted)


_SQL_OPERATORS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _split_param_conditions(
    params: dict[str, Any], already: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(equalities a database answers exactly as `filter` does, the other conditions).

    Only strings and booleans go to the database: numbers compare with a tolerance in
    memory (and a stored 3.0 equals 3), which JSON equality would not reproduce; a second
    condition on a parameter the query already constrains stays in memory too."""
    pushed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in params.items():
        name, _, op = key.rpartition("__")
        if not name or op not in (*_OPERATORS, "ne", "in", "eq"):
            name, op = key, "eq"
        if op == "eq" and isinstance(value, (str, bool)) and name not in already:
            if name in pushed:
                rest[key] = value
            else:
                pushed[name] = value
        else:
            rest[key] = value
    return pushed, rest


def _split_metric_conditions(
    metrics: dict[str, Any],
) -> tuple[list[tuple[str, str, float]], dict[str, Any]]:
    """(comparisons with a number a database answers as `where` does, the other conditions)."""
    pushed: list[tuple[str, str, float]] = []
    rest: dict[str, Any] = {}
    for key, value in metrics.items():
        name, _, op = key.rpartition("__")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name and op in _SQL_OPERATORS and number and math.isfinite(value):
            pushed.append((name, _SQL_OPERATORS[op], value))
        else:
            rest[key] = value
    return pushed, rest


def _print_table(table: Any, *, title: str, file: Any = None) -> None:
    """Print a grouped DataFrame: a rich table when rich is installed, plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title, file=file)
        print(table.to_string(float_format=lambda v: f"{v:.6g}"), file=file)
        return
    rich_table = Table(title=title)
    for name in table.index.names:
        rich_table.add_column(str(name), style="bold")
    for column in table.columns:
        label = " ".join(str(c) for c in column) if isinstance(column, tuple) else str(column)
        rich_table.add_column(label, justify="right")
    for key, row in table.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        rich_table.add_row(*(_cell(k) for k in keys), *(_cell(v) for v in row.tolist()))
    Console(file=file).print(rich_table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
