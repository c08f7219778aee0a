"""`Results`: the runs of one or more experiments as a sequence, selections and tables."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from .. import registry
from .._frame import results_frame
from ..derived import check_functions, compute, read_document, stale, values_of
from ..errors import CodeChangedWarning, ValidationError, require
from ..record import Status, paused_gc
from ..runs_table import KIND, MISSING, NAME
from ..stored_run import Run
from . import tables
from .selection import (
    check_names,
    column_mask,
    split_key,
    split_metric_conditions,
    split_param_conditions,
    value_test,
)
from .sources import InMemory, RecordSource

_KINDS = {"params": "parameter", "metrics": "metric", "series": "stepped metric"}


class Results(Sequence[Run]):
    """The runs of one or more experiments, in index order."""

    def __init__(
        self,
        records: Sequence[Any] | RecordSource,
        store: Any = None,
        *,
        origin: Results | None = None,
    ):
        # records: a source (see `metalab.results.sources`), or the records themselves,
        # where entries that are no dict yet (a sweep's outcomes as the workers sent them, a
        # record's JSON bytes) are decoded when the records are first read
        if isinstance(records, RecordSource):
            self._source: RecordSource = records
        else:
            self._source = InMemory(records if isinstance(records, list) else list(records))
        self._store = store
        self._run_cache: list[Run | None] | None = None
        # the results this selection was made from: the names its runs have are what a
        # filter may use (a selection of failed runs may lack the metrics of the others)
        self._origin: Results = origin._origin if origin is not None else self
        self._names: dict[str, list[str]] = {}

    def _select(self, source: RecordSource) -> Results:
        """A selection of these runs: a `Results` that knows where it came from."""
        return Results(source, self._store, origin=self)

    def _known(self, kind: str) -> list[str]:
        """The names of `kind` (`params`, `metrics` or `series`) that the runs this selection
        was made from have, in order of first appearance."""
        origin = self._origin
        if kind not in origin._names:
            origin._names[kind] = origin._source.names(kind)
        return origin._names[kind]

    def _check(self, keys: Any, kind: str, call: str) -> None:
        """Raise `UnknownNameError` for a condition on a name none of the runs has."""
        if not keys:
            return
        names = [split_key(key)[0] for key in keys]
        if kind not in self._origin._names and self._origin._source.has_names(kind, names):
            return  # every name is some run's (a database answers without listing them all)
        known = self._known(kind)
        # runs without any such name cannot tell a typo (failed runs without metrics, say);
        # but stepped metrics are asked for only by name, so none at all is an error too
        if known or (kind == "series" and len(self)):
            check_names(keys, known, _KINDS[kind], call)

    @property
    def _records(self) -> list[dict[str, Any]]:
        return self._source.records()

    @property
    def _runs(self) -> list[Run | None]:
        if self._run_cache is None:
            self._run_cache = [None] * len(self)
        return self._run_cache

    @property
    def store(self) -> Any:
        """The store the runs were read from."""
        return self._store

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return self._select(self._source.take(item))
        if isinstance(item, bool) or not hasattr(item, "__index__"):
            raise TypeError(
                f"runs are indexed by position or slice, got {item!r}; select runs by their "
                "parameters with filter(...) and by their metrics with where(...)"
            )
        count = len(self)
        item = item.__index__()
        if not -count <= item < count:
            which = f"0..{count - 1} or -{count}..-1" if count else "none: there are no runs"
            raise IndexError(
                f"run position {item} is out of range: these results hold {count} "
                f"run{'s' if count != 1 else ''} (positions {which})"
            )
        if item < 0:  # the sources and the cache of runs count from the start
            item += count
        run = self._runs[item]
        if run is None:
            run = self._runs[item] = Run(self._source.record_at(item), self._store)
        return run

    def __iter__(self) -> Iterator[Run]:
        for i in range(len(self)):
            yield self[i]

    @property
    def records(self) -> list[dict[str, Any]]:
        """The raw records."""
        return list(self._records)

    # ---------------------------------------------------------------- selection
    def _masked(self, masks: list[list[bool]]) -> Results:
        """The runs every mask (one bool per run) keeps."""
        if not masks:
            return self._select(self._source.take(slice(None)))
        keep = masks[0] if len(masks) == 1 else [all(flags) for flags in zip(*masks)]
        return self._select(self._source.take([i for i, flag in enumerate(keep) if flag]))

    def _mask(self, kind: str, key: str, value: Any, what: str) -> list[bool]:
        """Which runs' value of the parameter or metric `key` names passes `key=value`."""
        name, test = value_test(key, value, what)
        return column_mask(self._source.values(kind, name), test)

    @property
    def successful(self) -> Results:
        """Completed runs."""
        return self._masked([[s == "completed" for s in self._source.field("status")]])

    @property
    def failed(self) -> Results:
        """Runs that did not complete (failed, interrupted or cancelled)."""
        return self._masked([[s != "completed" for s in self._source.field("status")]])

    def filter(self, **params: Any) -> Results:
        """Runs whose parameters match every condition.

        `filter(lr=0.01)` matches equal values (floats within a relative 1e-9, so a value
        from `numpy.logspace` matches the literal you type); a list or tuple matches any of
        its values (`filter(optimizer=["adam", "sgd"])`); a suffix compares:
        `filter(lr__lt=0.1)` (`__lt`, `__le`, `__gt`, `__ge`, `__ne`, `__in`).
        """
        self._check(params, "params", "filter()")
        query = self._source.query()
        if query is not None:
            pushed, near, rest = split_param_conditions(params, {**query.params, **query.near})
            if pushed or near:
                narrowed = query.narrowed(params=pushed, near=near)
                selected = self._select(self._source.by_query(narrowed))
                return selected.filter(**rest) if rest else selected
        return self._masked(
            [self._mask("params", key, value, "parameter") for key, value in params.items()]
        )

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
        self._check(metrics, "metrics", "where()")
        query = self._source.query()
        if query is not None and predicate is None:
            pushed, rest = split_metric_conditions(metrics)
            one_status = next(iter(statuses)) if statuses and len(statuses) == 1 else None
            push_status = one_status is not None and query.status is None
            if pushed or push_status:
                narrowed = query.narrowed(
                    metric_filters=pushed, status=one_status if push_status else None
                )
                selected = self._select(self._source.by_query(narrowed))
                leftover_status = None if push_status else status
                if rest or leftover_status is not None:
                    return selected.where(status=leftover_status, **rest)
                return selected
        masks = [self._mask("metrics", key, value, "metric") for key, value in metrics.items()]
        if statuses is not None:
            masks.append([s in statuses for s in self._source.field("status")])
        selected = self._masked(masks)
        if predicate is None:
            return selected
        source = selected._source
        return self._select(source.take([i for i, run in enumerate(selected) if predicate(run)]))

    # ---------------------------------------------------------------- tables
    def _tabled(self) -> Sequence[dict[str, Any]]:
        """What the text table reads: a row per run (a journal's rows while the records are
        not decoded, else the records, which their user may have changed)."""
        return self._source.rows()

    def _columns(self) -> tuple[list[str], list[str]]:
        """Parameter and metric names, in order of first appearance."""
        return self._source.names("params"), self._source.names("metrics")

    def _errors(self) -> list[str]:
        """`"Type: message"` of each run that did not complete, `""` for the others (the
        record of a run is read only when it did not complete)."""
        return [
            "" if status == "completed" else self._error_at(i)
            for i, status in enumerate(self._source.field("status"))
        ]

    def _error_at(self, position: int) -> str:
        return tables.error_text(self._source.record_at(position).get("error"))

    def table(self, as_dataframe: bool = False):
        """The runs table: index, replicate, params, metrics, status, and each failed run's
        error type and message; a string, or a DataFrame with `as_dataframe`."""
        errors = self._errors()
        if as_dataframe:
            frame = self.to_dataframe(include_record=False)
            if "replicate" not in frame.columns:
                frame.insert(0, "replicate", self._source.field("replicate"))
            frame = frame.assign(status=self._source.field("status"))
            if not any(errors):
                return frame
            return frame.assign(**{tables.error_column(*self._columns()): errors})
        params, metrics = self._columns()
        header, rows = tables.rows_of(self._tabled(), errors, params, metrics)
        return tables.text_table(header, rows)

    def _repr_html_(self) -> str:
        count = len(self)
        shown = list(range(count))
        if len(shown) > tables.HTML_ROWS:
            half = tables.HTML_ROWS // 2
            shown = shown[:half] + shown[-half:]
        params, metrics = self._columns()
        shown_rows = [self._source.row_at(i) for i in shown]
        errors = [
            "" if row["status"] == "completed" else self._error_at(i)
            for i, row in zip(shown, shown_rows)
        ]
        header, rows = tables.rows_of(shown_rows, errors, params, metrics)
        if count > len(shown):
            half = tables.HTML_ROWS // 2
            rows = [*rows[:half], *([["…"] * len(header)]), *rows[half:]]
        counts = ", ".join(f"{n} {s}" for s, n in self.summary()["by_status"].items())
        caption = f"{count} runs ({counts or 'none'})"
        return tables.html_table(header, rows, caption)

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
        parts = []
        if include_record or include_params or include_metrics:
            parts.append(
                self._source.frame(
                    include_record=include_record,
                    include_params=include_params,
                    include_metrics=include_metrics,
                )
            )
        data: dict[str, list[Any]] = {}
        if include_derived:
            derived_rows = [self[i].derived for i in range(len(self))]
            for name in dict.fromkeys(k for row in derived_rows for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in derived_rows]
        if derived_metrics:
            fns = check_functions(derived_metrics)
            computed = [values_of(compute(fns, self[i])[0]) for i in range(len(self))]
            for name in dict.fromkeys(k for row in computed for k in row):
                data[f"derived_{name}"] = [row.get(name) for row in computed]
        if include_record:
            data[self._cause_column()] = self._causes(parts[0]["status"].to_numpy())
        if include_provenance:
            rows = [tables.provenance_columns(r) for r in self._records]
            for column in tables.PROVENANCE_COLUMNS:
                data[column] = [row[column] for row in rows]
        if data:
            parts.append(pd.DataFrame(data))
        if not parts:
            return results_frame(index=range(len(self)))
        frame = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
        return results_frame(frame)

    def _cause_column(self) -> str:
        """`cause`, or `run_cause` when a metric is called `cause`."""
        return "run_cause" if "cause" in self._source.names("metrics") else "cause"

    def _causes(self, statuses: Any) -> list[str | None]:
        """Why each run was lost to its scheduler, or None, from each run's status (an
        array): a record is read only when its run did not complete."""
        import numpy as np

        causes: list[str | None] = [None] * len(statuses)
        for i in np.flatnonzero(np.asarray(statuses, dtype=object) != "completed"):
            causes[i] = tables.cause_of(self._source.record_at(int(i)))
        return causes

    def to_arrow(self):
        """The runs table as a `pyarrow.Table`: the columns of `to_dataframe()` (record
        columns, `param_<name>`, metrics, `cause`), each field's metadata naming what it
        holds (see `metalab.runs_table`); values of mixed or nested types are JSON text."""
        pa = require("pyarrow", "pandas", "Results.to_arrow()")
        table = self._source.to_arrow()
        name = self._cause_column()
        field = pa.field(name, pa.string(), metadata={KIND: b"record", NAME: name.encode()})
        statuses = table.column("status").to_numpy(zero_copy_only=False)
        return table.append_column(field, pa.array(self._causes(statuses), type=pa.string()))

    # ---------------------------------------------------------------- derived metrics
    def compute_derived(self, derived_metrics: Sequence[Any], overwrite: bool | str = False):
        """Compute derived metrics of the completed runs and store them beside the runs.

        Values a function already stored are kept unless `overwrite=True`;
        `overwrite="changed"` recomputes only values stored by an earlier definition of the
        function (another code hash). A function that raises records its error for that run
        (see `Run.derived_info`) and the others still run. Returns these results.
        """
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
        pd = require("pandas", "pandas", "Results.metric_series()")

        if name is not None:
            self._check([name], "series", "metric_series()")
        params, _ = self._columns()
        source = self._source
        run_ids, indices = source.field("run_id"), source.field("index")
        param_values = [source.values("params", p) for p in params]
        columns: dict[str, list[Any]] = {"run_id": [], "index": [], "metric": []}
        columns.update({f"param_{p}": [] for p in params})
        steps: list[Any] = []
        values: list[Any] = []
        for position, series_of_run in enumerate(source.series_of()):
            for metric, series in (series_of_run or {}).items():
                if name is not None and metric != name:
                    continue
                got = list(zip(series["steps"], series["values"]))
                count = len(got)
                columns["run_id"] += [run_ids[position]] * count
                columns["index"] += [indices[position]] * count
                columns["metric"] += [metric] * count
                for p, found in zip(params, param_values):
                    value = found[position]
                    columns[f"param_{p}"] += [None if value is MISSING else value] * count
                steps += [step for step, _ in got]
                values += [value for _, value in got]
        order = ["run_id", "index", *(f"param_{p}" for p in params), "metric"]
        data = {key: columns[key] for key in order}
        frame = pd.DataFrame({**data, "step": steps, "value": values}) if steps else None
        if frame is None:
            return pd.DataFrame([], columns=[*order, "step", "value"])
        return frame

    # ---------------------------------------------------------------- display
    def display(self, group_by: Sequence[str] | str | None = None, *, file: Any = None) -> None:
        """Print the mean and std of each metric of the completed runs per group of parameter
        values, with the runs of each group by status; without `group_by`, the runs table.

        A rich table when rich is installed (and in Jupyter), plain text otherwise. Prints
        only (so a notebook shows the table once): `grouped()` returns it as a DataFrame.
        """
        if not group_by:
            print(self.table(), file=file)
            return
        table = self.grouped(group_by)
        statuses = self.summary()["by_status"]
        completed = statuses.get("completed", 0)
        others = ", ".join(f"{n} {s}" for s, n in statuses.items() if s != "completed")
        title = (
            f"{len(self)} runs by {', '.join(table.index.names)}: means of the "
            f"{completed} completed" + (f" ({others} not counted)" if others else "")
        )
        tables.print_table(table, title=title, file=file)

    def grouped(self, group_by: Sequence[str] | str):
        """Mean and std of each numeric metric of the completed runs per group of parameter
        values, and the runs of each group by status: `("runs", "completed")`, then one
        column per other status present (`("runs", "failed")`, ...)."""
        require("pandas", "pandas", "Results.display(group_by=...)")
        keys = [group_by] if isinstance(group_by, str) else list(group_by)
        params, metrics = self._columns()
        frame = self.to_dataframe(include_record=False)
        return tables.grouped(frame, self._source.field("status"), keys, params, metrics)

    def to_csv(self, path: str, **kwargs: Any) -> None:
        """Write `to_dataframe()` to a CSV file."""
        self.to_dataframe().to_csv(path, index=False, **kwargs)

    def summary(self) -> dict[str, Any]:
        """Counts by status and experiment."""
        statuses = self._source.field("status")
        return {
            "runs": len(statuses),
            "by_status": dict(Counter(statuses)),
            "experiments": sorted(set(self._source.field("experiment_id"))),
        }

    def report(self, path: Any = "report.html", *, title: str | None = None):
        """Write a standalone HTML report of these runs to `path` (bokeh); return its path.

        The runs table, every metric against every swept parameter (mean and spread over
        replicates), stepped metrics as curves, failures with their errors, and provenance.
        """
        return registry.report_writer()(self, path, title=title)

    def __repr__(self) -> str:
        s = self.summary()
        return f"<Results {s['runs']} runs {s['by_status']}>"
