"""Context: read-only dict contexts, @context_spec classes, FilePath/DirPath fingerprints."""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import time

import pytest

import metalab
from metalab import FilePath
from metalab.context import context_fingerprint


@metalab.context_spec
class DataContext:
    dataset: metalab.FilePath
    vocab_size: int = 10000


@metalab.context_spec
class DirContext:
    data_dir: metalab.DirPath
    label: str = "x"


@metalab.context_spec
class BareNameContext:
    # the annotation as written with `from metalab import FilePath`
    dataset: FilePath


def _noop():
    return None


def _experiment(context, *, name="ctx", version="1", params=None, seeds=None, operation=_noop):
    return metalab.Experiment(
        name=name,
        version=version,
        context=context,
        operation=operation,
        params=params if params is not None else metalab.grid(x=[1, 2]),
        seeds=seeds if seeds is not None else metalab.seeds(0, 2),
    )


def _bump_mtime(path, seconds=10):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


# ---------------------------------------------------------------- dict contexts


def test_dict_context_is_kept_as_a_read_only_mapping():
    exp = _experiment({"a": 1, "items": [1, 2]})
    ctx = exp.context
    assert isinstance(ctx, metalab.FrozenContext)
    assert ctx["a"] == 1
    assert dict(ctx) == {"a": 1, "items": [1, 2]}
    with pytest.raises(TypeError):
        ctx["a"] = 2
    with pytest.raises(TypeError):
        ctx.a = 2
    assert ctx["a"] == 1


def test_dict_context_is_copied_at_construction():
    original = {"a": 1}
    exp = _experiment(original)
    original["a"] = 2
    original["b"] = 3
    assert dict(exp.context) == {"a": 1}


def test_operation_receives_dict_context_as_frozen_mapping_and_a_private_copy(tmp_path):
    @metalab.operation
    def op(context, capture):
        capture.metric("is_frozen", float(isinstance(context, metalab.FrozenContext)))
        try:
            context["a"] = 2
            rejected = 0.0
        except TypeError:
            rejected = 1.0
        capture.metric("assignment_rejected", rejected)
        # mutating nested data must not leak into other runs
        context["items"].append("x")
        capture.metric("n_items", len(context["items"]))

    exp = _experiment({"a": 1, "items": []}, operation=op, params=metalab.grid(x=[1, 2, 3]))
    handle = metalab.run(exp, store=str(tmp_path / "store"), executor=metalab.InlineExecutor())
    runs = list(handle.result())
    assert len(runs) == 6
    for run in runs:
        assert run.status == "completed"
        assert run.metrics["is_frozen"] == 1.0
        assert run.metrics["assignment_rejected"] == 1.0
        assert run.metrics["n_items"] == 1
    assert list(exp.context["items"]) == []


# ---------------------------------------------------------------- context specs


def test_context_spec_is_a_frozen_dataclass_with_defaults(tmp_path):
    spec = DataContext(dataset=metalab.FilePath(str(tmp_path / "d.csv")))
    assert dataclasses.is_dataclass(spec)
    assert spec.vocab_size == 10000
    assert DataContext(dataset=metalab.FilePath("x"), vocab_size=5).vocab_size == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.vocab_size = 3


def test_context_spec_instance_is_kept_by_the_experiment(tmp_path):
    spec = DataContext(dataset=metalab.FilePath(str(tmp_path / "d.csv")))
    exp = _experiment(spec)
    assert exp.context == spec


def test_context_spec_works_with_parentheses():
    @metalab.context_spec()
    class Spec:
        n: int = 3

    assert Spec().n == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        Spec().n = 4


def test_invalid_context_is_rejected():
    with pytest.raises(ValueError, match="context"):
        _experiment(42)
    with pytest.raises(ValueError, match="context"):
        _experiment([("a", 1)])


# ---------------------------------------------------------------- paths


def test_filepath_and_dirpath_support_str_and_fspath(tmp_path):
    f = metalab.FilePath("data/train.csv")
    d = metalab.DirPath(tmp_path)
    assert str(f) == "data/train.csv"
    assert os.fspath(f) == "data/train.csv"
    assert str(d) == str(tmp_path)
    assert os.fspath(d) == str(tmp_path)
    assert os.path.join(d, "x") == os.path.join(str(tmp_path), "x")


def test_filepath_can_be_opened_like_a_path(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("hello")
    with open(metalab.FilePath(str(target))) as fh:
        assert fh.read() == "hello"


def test_spec_field_annotated_filepath_accepts_a_plain_str(tmp_path):
    target = tmp_path / "d.csv"
    spec = DataContext(dataset=str(target))
    assert isinstance(spec.dataset, metalab.FilePath)
    assert str(spec.dataset) == str(target)
    assert os.fspath(spec.dataset) == str(target)


def test_spec_field_annotated_with_bare_filepath_name_accepts_a_plain_str(tmp_path):
    spec = BareNameContext(dataset=str(tmp_path / "d.csv"))
    assert isinstance(spec.dataset, metalab.FilePath)


def test_spec_field_with_evaluated_filepath_annotation_accepts_a_plain_str(tmp_path):
    # the annotation is the class itself (a module without `from __future__ import annotations`)
    klass = type("EvaluatedAnnotation", (), {"__annotations__": {"dataset": metalab.FilePath}})
    spec_class = metalab.context_spec(klass)
    spec = spec_class(dataset=str(tmp_path / "d.csv"))
    assert isinstance(spec.dataset, metalab.FilePath)


def test_spec_field_annotated_dirpath_accepts_a_plain_str(tmp_path):
    spec = DirContext(data_dir=str(tmp_path))
    assert isinstance(spec.data_dir, metalab.DirPath)
    assert os.fspath(spec.data_dir) == str(tmp_path)


def test_spec_field_given_as_str_is_fingerprinted_as_a_file(tmp_path):
    target = tmp_path / "d.csv"
    target.write_text("a,b\n")
    spec = DataContext(dataset=str(target))
    before = context_fingerprint(spec)
    target.write_text("a,b\n1,2\n")
    assert context_fingerprint(spec) != before


def test_file_need_not_exist_when_the_spec_and_experiment_are_created(tmp_path):
    spec = DataContext(dataset=metalab.FilePath(str(tmp_path / "later.csv")))
    exp = _experiment(spec)  # no error: the file is looked at when the sweep starts
    (tmp_path / "later.csv").write_text("x")
    exp.prepare()
    assert len(exp.context_fingerprint) > 0


# ---------------------------------------------------------------- fingerprints


def test_context_fingerprint_is_deterministic_for_unchanged_inputs(tmp_path):
    target = tmp_path / "d.csv"
    target.write_text("abc")
    spec = DataContext(dataset=metalab.FilePath(str(target)))
    assert context_fingerprint(spec) == context_fingerprint(spec)
    assert context_fingerprint({"a": 1, "b": [1, 2]}) == context_fingerprint({"b": [1, 2], "a": 1})


def test_context_fingerprint_changes_with_plain_values():
    assert context_fingerprint({"a": 1}) != context_fingerprint({"a": 2})
    assert context_fingerprint({"a": 1}) != context_fingerprint({"b": 1})


def test_context_fingerprint_changes_when_file_size_changes(tmp_path):
    target = tmp_path / "d.csv"
    target.write_bytes(b"x" * 10)
    spec = DataContext(dataset=metalab.FilePath(str(target)))
    before = context_fingerprint(spec)
    st = os.stat(target)
    with open(target, "ab") as fh:
        fh.write(b"y")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, only the size differs
    assert context_fingerprint(spec) != before


def test_context_fingerprint_changes_when_file_mtime_changes(tmp_path):
    target = tmp_path / "d.csv"
    target.write_bytes(b"same content")
    spec = DataContext(dataset=metalab.FilePath(str(target)))
    before = context_fingerprint(spec)
    _bump_mtime(target)
    assert context_fingerprint(spec) != before


def test_experiment_context_fingerprint_is_refreshed_by_prepare(tmp_path):
    target = tmp_path / "d.csv"
    target.write_bytes(b"v1")
    exp = _experiment(DataContext(dataset=metalab.FilePath(str(target))))
    exp.prepare()
    fp_before, run_id_before = exp.context_fingerprint, exp.run_id(0)
    target.write_bytes(b"version 2")
    exp.prepare()  # what metalab.run() does when the sweep starts again
    assert exp.context_fingerprint != fp_before
    assert exp.run_id(0) != run_id_before


def test_dirpath_fingerprint_changes_when_a_file_is_added_or_changed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    spec = DirContext(data_dir=metalab.DirPath(str(data)))
    first = context_fingerprint(spec)
    (data / "sub").mkdir()
    (data / "sub" / "b.txt").write_text("b")
    second = context_fingerprint(spec)
    assert second != first
    (data / "sub" / "b.txt").write_text("bb")
    assert context_fingerprint(spec) != second


def test_fingerprint_does_not_read_file_content(tmp_path, monkeypatch):
    target = tmp_path / "big.bin"
    target.write_bytes(b"0123456789")
    spec = DataContext(dataset=metalab.FilePath(str(target)))
    data_dir = tmp_path / "dir"
    data_dir.mkdir()
    (data_dir / "f.bin").write_bytes(b"abc")
    dir_spec = DirContext(data_dir=metalab.DirPath(str(data_dir)))

    def refuse(*args, **kwargs):
        raise AssertionError(f"context fingerprint opened a file: {args!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    assert context_fingerprint(spec)
    assert context_fingerprint(dir_spec)
    exp = _experiment(spec)
    exp.prepare()
    assert exp.run_id(0)


def test_fingerprint_of_a_huge_sparse_file_is_fast(tmp_path):
    target = tmp_path / "huge.bin"
    with open(target, "wb") as fh:
        fh.truncate(20 * 1024**3)  # 20 GiB, sparse: reading it would take many seconds
    spec = DataContext(dataset=metalab.FilePath(str(target)))
    start = time.perf_counter()
    context_fingerprint(spec)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------- missing files


def test_missing_file_at_prepare_raises_context_file_error_naming_field_and_path(tmp_path):
    missing = tmp_path / "nope" / "train.csv"
    exp = _experiment(DataContext(dataset=metalab.FilePath(str(missing))))
    with pytest.raises(metalab.ContextFileError) as info:
        exp.prepare()
    message = str(info.value)
    assert "dataset" in message
    assert str(missing) in message


def test_missing_file_in_dict_context_names_the_key(tmp_path):
    missing = tmp_path / "gone.csv"
    exp = _experiment({"weights": metalab.FilePath(str(missing))})
    with pytest.raises(metalab.ContextFileError) as info:
        exp.prepare()
    assert "weights" in str(info.value)
    assert str(missing) in str(info.value)


def test_missing_directory_raises_context_file_error(tmp_path):
    missing = tmp_path / "no_dir"
    exp = _experiment(DirContext(data_dir=metalab.DirPath(str(missing))))
    with pytest.raises(metalab.ContextFileError, match="data_dir") as info:
        exp.prepare()
    assert str(missing) in str(info.value)


def test_missing_file_at_metalab_run_raises_context_file_error(tmp_path):
    missing = tmp_path / "absent.csv"
    exp = _experiment(DataContext(dataset=metalab.FilePath(str(missing))))
    with pytest.raises(metalab.ContextFileError) as info:
        metalab.run(exp, store=str(tmp_path / "store"), executor=metalab.InlineExecutor())
    assert "dataset" in str(info.value)
    assert str(missing) in str(info.value)


def test_context_file_error_is_a_file_not_found_error():
    assert issubclass(metalab.ContextFileError, FileNotFoundError)


# ---------------------------------------------------------------- run identity


def test_context_enters_the_run_id():
    a = _experiment({"dataset": "mnist"})
    b = _experiment({"dataset": "cifar"})
    assert a.context_fingerprint != b.context_fingerprint
    assert a.run_id(0) != b.run_id(0)
    assert set(a.run_ids()).isdisjoint(b.run_ids())


def test_file_metadata_enters_the_run_id(tmp_path):
    f1, f2 = tmp_path / "one.csv", tmp_path / "two.csv"
    f1.write_text("1")
    f2.write_text("22")
    a = _experiment(DataContext(dataset=metalab.FilePath(str(f1))))
    b = _experiment(DataContext(dataset=metalab.FilePath(str(f2))))
    assert a.run_id(0) != b.run_id(0)


def test_equal_contexts_give_equal_run_ids(tmp_path):
    target = tmp_path / "d.csv"
    target.write_text("x")
    a = _experiment(DataContext(dataset=metalab.FilePath(str(target))))
    b = _experiment(DataContext(dataset=str(target)))
    assert a.run_ids() == b.run_ids()


# ---------------------------------------------------------------- plain frozen dataclasses


@dataclasses.dataclass(frozen=True)
class PlainContext:
    dataset: metalab.FilePath
    scale: float = 2.0


@dataclasses.dataclass
class MutableContext:
    scale: float = 2.0


def _read_plain(context, capture):
    with open(context.dataset) as fh:
        capture.metric("rows", len(fh.read().splitlines()))
    capture.metric("scale", context.scale)
    capture.metric("is_plain", float(type(context).__name__ == "PlainContext"))


def test_a_plain_frozen_dataclass_is_a_context_like_a_spec(tmp_path):
    target = tmp_path / "d.csv"
    target.write_text("a\nb\nc\n")
    plain = PlainContext(dataset=str(target))  # a plain str, as a spec would take it
    exp = _experiment(plain, operation=_read_plain)
    assert isinstance(exp.context.dataset, metalab.FilePath)
    assert plain.dataset == str(target)  # the user's instance is left alone
    results = metalab.run(exp, tmp_path / "store", executor="inline").result()
    assert results[0].metrics == {"rows": 3, "scale": 2.0, "is_plain": 1.0}

    @metalab.context_spec
    class PlainContextSpec:
        dataset: metalab.FilePath
        scale: float = 2.0

    # the same fields and files: the same fingerprint as a spec (the class does not enter it)
    spec = PlainContextSpec(dataset=str(target))
    assert exp.context_fingerprint == _experiment(spec).context_fingerprint
    assert exp.manifest()["context"]["type"] == "spec"
    target.write_text("a\n")  # its file is fingerprinted, not its path string
    assert _experiment(PlainContext(dataset=str(target))).context_fingerprint != (
        exp.context_fingerprint
    )


def test_a_dataclass_that_is_not_frozen_is_refused_naming_it():
    with pytest.raises(metalab.ValidationError, match=r"MutableContext.*frozen=True"):
        _experiment(MutableContext())
    with pytest.raises(metalab.ValidationError, match="frozen dataclass"):
        _experiment(PlainContext)  # the class, not an instance


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda path: {"log": open(path)}, r"context\['log'\]"),  # noqa: SIM115 - closed below
        (lambda path: {"sync": {"lock": __import__("threading").Lock()}}, r"\['lock'\]"),
        (lambda path: {"rows": (line for line in [1, 2])}, r"context\['rows'\]"),
    ],
    ids=["open-file", "lock", "generator"],
)
def test_a_context_value_that_cannot_be_copied_is_named(tmp_path, make, field):
    """An open file (a lock, a generator) in a context failed with Python's own "cannot
    pickle" TypeError, naming no field."""
    (tmp_path / "data.txt").write_text("x")
    context = make(tmp_path / "data.txt")
    exp = metalab.Experiment(
        name="uncopyable",
        version="1",
        context=context,
        operation=lambda params, capture: None,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=0),
    )
    store = tmp_path / "store"
    with pytest.raises(metalab.FingerprintError, match=rf"{field} is .* expected a JSON value"):
        metalab.run(exp, store, executor="inline")
    assert not store.exists()
    for value in context.values():
        getattr(value, "close", lambda: None)()
