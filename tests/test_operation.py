"""`@metalab.operation`, `OperationWrapper` and `import_operation` (spec 000)."""

from __future__ import annotations

import re
import textwrap

import pytest

import metalab
from metalab import OperationWrapper

ALLOWED = ("context", "params", "seeds", "runtime", "capture")

_OP_MODULE = """
import metalab


@metalab.operation
def estimate(params, capture):
    return {"doubled": params["x"] * 2}


@metalab.operation(name="renamed")
def renamed_op(params):
    return params["x"]


def plain_function(params):
    return params["x"] + 1


NOT_AN_OPERATION = 3
"""


@pytest.fixture
def op_module(tmp_path, monkeypatch):
    """Write a module with operations under a unique name and put it on sys.path."""

    def make(name: str, source: str = _OP_MODULE):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    return make


# ---------------------------------------------------------------- decorator forms


def test_bare_decorator_returns_a_wrapper_named_after_the_function():
    @metalab.operation
    def my_op(params, capture):
        return None

    assert isinstance(my_op, OperationWrapper)
    assert my_op.name == "my_op"


def test_decorator_with_empty_parentheses():
    @metalab.operation()
    def my_op(params, capture):
        return None

    assert isinstance(my_op, OperationWrapper)
    assert my_op.name == "my_op"


def test_decorator_with_custom_name():
    @metalab.operation(name="custom")
    def my_op(params, capture):
        return None

    assert isinstance(my_op, OperationWrapper)
    assert my_op.name == "custom"


def test_all_three_forms_call_the_same_function_body():
    def body(params):
        return params["x"] * 10

    forms = [metalab.operation(body), metalab.operation()(body), metalab.operation(name="n")(body)]
    assert [op(params={"x": 2}) for op in forms] == [20, 20, 20]


# ---------------------------------------------------------------- injection


def test_only_requested_arguments_are_injected():
    received = {}

    @metalab.operation
    def op(params, capture):
        received["params"] = params
        received["capture"] = capture
        return "done"

    result = op.run(context="CTX", params={"x": 1}, seeds="SEEDS", runtime="RT", capture="CAPTURE")
    assert result == "done"
    assert received == {"params": {"x": 1}, "capture": "CAPTURE"}


def test_argument_order_in_the_signature_does_not_matter():
    @metalab.operation
    def op(capture, seeds, context):
        return (capture, seeds, context)

    assert op.run("C", {"x": 1}, "S", "R", "CAP") == ("CAP", "S", "C")


def test_full_signature_gets_all_five_by_name():
    @metalab.operation
    def op(context, params, seeds, runtime, capture):
        return (context, params, seeds, runtime, capture)

    assert op.run("C", "P", "S", "R", "K") == ("C", "P", "S", "R", "K")


def test_operation_without_arguments_is_called_with_none():
    calls = []

    @metalab.operation
    def op():
        calls.append(1)

    op.run("C", "P", "S", "R", "K")
    assert calls == [1]


def test_call_is_the_same_as_run():
    @metalab.operation
    def op(params, seeds):
        return (params, seeds)

    assert op(context="C", params="P", seeds="S", runtime="R", capture="K") == ("P", "S")
    assert op("C", "P", "S", "R", "K") == ("P", "S")
    assert op(params={"a": 1}) == ({"a": 1}, None)


def test_operation_gets_real_objects_when_run_by_metalab(tmp_path):
    @metalab.operation
    def op(context, params, seeds, runtime, capture):
        assert isinstance(context, metalab.FrozenContext)
        assert isinstance(seeds, metalab.SeedBundle)
        assert isinstance(runtime, metalab.Runtime)
        assert isinstance(capture, metalab.Capture)
        capture.metric("y", params["x"] * 2)

    exp = metalab.Experiment(
        name="opreal",
        version="1",
        context={},
        operation=op,
        params=metalab.grid(x=[1, 2]),
        seeds=metalab.seeds(0),
    )
    runs = list(
        metalab.run(exp, store=str(tmp_path / "s"), executor=metalab.InlineExecutor()).result()
    )
    assert sorted(run.metrics["y"] for run in runs) == [2, 4]
    assert all(run.status == "completed" for run in runs)


@pytest.mark.parametrize("bad", ["data", "config", "rng"])
def test_unknown_argument_raises_type_error_at_decoration(bad):
    namespace: dict = {}
    exec(f"def op(params, {bad}):\n    return None\n", namespace)
    with pytest.raises(TypeError) as info:
        metalab.operation(namespace["op"])
    message = str(info.value)
    assert re.search(rf"\b{bad}\b", message)
    for name in ALLOWED:
        assert name in message


def test_unknown_argument_raises_with_every_decorator_form():
    def op(params, data):
        return None

    with pytest.raises(TypeError, match="data"):
        metalab.operation()(op)
    with pytest.raises(TypeError, match="data"):
        metalab.operation(name="x")(op)


def test_var_keyword_operation_receives_everything():
    @metalab.operation
    def op(**kwargs):
        return kwargs

    assert op.run("C", "P", "S", "R", "K") == {
        "context": "C",
        "params": "P",
        "seeds": "S",
        "runtime": "R",
        "capture": "K",
    }


# ---------------------------------------------------------------- name, ref, code hash


def test_ref_is_module_colon_qualname():
    @metalab.operation
    def op(params):
        return None

    assert op.ref == f"{op.__module__}:{op.__qualname__}"
    assert op.ref == f"{__name__}:test_ref_is_module_colon_qualname.<locals>.op"


def test_ref_uses_the_function_name_even_with_a_custom_name(op_module):
    import importlib

    module = importlib.import_module(op_module("mod_ref"))
    assert module.estimate.ref == "mod_ref:estimate"
    assert module.renamed_op.name == "renamed"
    assert module.renamed_op.ref == "mod_ref:renamed_op"


def test_code_hash_is_sha256_hex_and_stable():
    @metalab.operation
    def op(params):
        return params["x"]

    assert re.fullmatch(r"[0-9a-f]{64}", op.code_hash)
    assert op.code_hash == op.code_hash


def test_code_hash_changes_when_the_source_changes(op_module):
    import importlib

    v1 = 'import metalab\n\n@metalab.operation\ndef op(params):\n    return params["x"] + 1\n'
    v2 = 'import metalab\n\n@metalab.operation\ndef op(params):\n    return params["x"] + 2\n'
    mod_a = importlib.import_module(op_module("mod_hash_a", v1))
    mod_b = importlib.import_module(op_module("mod_hash_b", v2))
    mod_c = importlib.import_module(op_module("mod_hash_c", v1))
    assert re.fullmatch(r"[0-9a-f]{64}", mod_a.op.code_hash)
    assert mod_a.op.code_hash != mod_b.op.code_hash
    assert mod_a.op.code_hash == mod_c.op.code_hash


def test_code_hash_differs_between_functions_with_different_bodies():
    @metalab.operation
    def op(params):
        return params["x"] * 2

    first = op.code_hash

    @metalab.operation
    def op(params):
        return params["x"] * 3

    assert op.code_hash != first


def test_code_hash_is_empty_when_the_source_cannot_be_read():
    namespace: dict = {}
    exec("def built(params):\n    return params\n", namespace)
    op = metalab.operation(namespace["built"])
    assert op.code_hash == ""
    assert op.name == "built"
    assert op(params=5) == 5


# ---------------------------------------------------------------- import_operation


def test_import_operation_returns_the_wrapper(op_module):
    import importlib

    name = op_module("mod_import")
    module = importlib.import_module(name)
    op = metalab.import_operation(f"{name}:estimate")
    assert op is module.estimate
    assert isinstance(op, OperationWrapper)
    assert op(params={"x": 4}) == {"doubled": 8}


def test_import_operation_round_trips_ref(op_module):
    import importlib

    module = importlib.import_module(op_module("mod_roundtrip"))
    for op in (module.estimate, module.renamed_op):
        assert metalab.import_operation(op.ref) is op


def test_import_operation_wraps_a_plain_function(op_module):
    name = op_module("mod_plain")
    op = metalab.import_operation(f"{name}:plain_function")
    assert isinstance(op, OperationWrapper)
    assert op(params={"x": 1}) == 2


@pytest.mark.parametrize("ref", [":estimate", "module:", "module:a..b", "module"])
def test_import_operation_names_a_reference_without_both_parts(ref):
    with pytest.raises(ValueError, match=r"must look like 'module:name'"):
        metalab.import_operation(ref)


def test_import_operation_missing_module_raises_import_error():
    with pytest.raises(ImportError):
        metalab.import_operation("metalab_no_such_module_xyz:op")


def test_import_operation_missing_attribute_raises_attribute_error(op_module):
    name = op_module("mod_missing_attr")
    with pytest.raises(AttributeError, match="nope"):
        metalab.import_operation(f"{name}:nope")


def test_operation_pickles_by_reference_when_importable(op_module):
    import importlib
    import pickle

    module = importlib.import_module(op_module("mod_pickle"))
    clone = pickle.loads(pickle.dumps(module.estimate))
    assert clone is module.estimate


def test_local_operation_survives_cloudpickle():
    import cloudpickle

    @metalab.operation(name="local")
    def op(params):
        return params["x"] + 100

    clone = cloudpickle.loads(cloudpickle.dumps(op))
    assert clone(params={"x": 1}) == 101
    assert clone.name == "local"
    assert clone.code_hash == op.code_hash
