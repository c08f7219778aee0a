"""Run identity: run ids are content hashes of experiment id, context, params and seeds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import metalab

REPO_ROOT = Path(__file__).resolve().parents[1]


def _op(params):
    return None


def _other_op(params, seeds, capture):
    capture.metric("y", params["x"] * 2)


def _exp(params, *, name="ident", version="1", context=None, seeds=None, operation=_op, **kw):
    return metalab.Experiment(
        name=name,
        version=version,
        context=context if context is not None else {},
        operation=operation,
        params=params,
        seeds=seeds if seeds is not None else metalab.seeds(42, 1),
        **kw,
    )


def _rid(value, key="x"):
    return _exp(metalab.manual([{key: value}])).run_id(0)


# ---------------------------------------------------------------- value types


@pytest.mark.parametrize(
    "params",
    [
        metalab.grid(
            lr=[0.1, 1, "1", True, None, np.int64(3), -7],
            opt=["adam", 'sgd \u00e9"q'],
            shape=[[1, 2], (3,), {"b": 1, "a": [2.5]}],
        ),
        metalab.grid(x=range(50)),
        metalab.random({"x": metalab.uniform(0, 1), "k": metalab.choice([1, "1"])}, 20, 3),
        metalab.manual([{"x": 1}, {"y": "z", "x": [1.5]}]),
    ],
)
@pytest.mark.parametrize("replicates", [1, 3])
def test_all_run_ids_at_once_equal_each_run_id(params, replicates):
    # run_ids() hashes a sweep in bulk; every id must be the one run_id(i) gives
    exp = _exp(params, seeds=metalab.seeds(7, replicates))
    assert exp.run_ids() == [exp.run_id(i) for i in range(len(exp))]
    assert exp.run_ids(range(len(exp) - 1, -1, -1)) == exp.run_ids()[::-1]
    assert len(set(exp.run_ids())) == len(exp)


def test_int_float_and_string_values_identify_different_runs():
    ids = {_rid(1), _rid(1.0), _rid("1.0")}
    assert len(ids) == 3


def test_bool_and_int_identify_different_runs():
    assert _rid(True) != _rid(1)
    assert _rid(False) != _rid(0)


def test_none_and_string_none_differ():
    assert _rid(None) != _rid("None")
    assert _rid(None) != _rid("null")


@pytest.mark.parametrize(
    ("numpy_value", "python_value"),
    [
        (np.int64(3), 3),
        (np.int32(3), 3),
        (np.float64(0.5), 0.5),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.bool_(False), False),
        (np.str_("adam"), "adam"),
    ],
)
def test_numpy_scalars_identify_like_the_equal_python_value(numpy_value, python_value):
    assert _rid(numpy_value) == _rid(python_value)


def test_numpy_scalars_in_a_grid_identify_like_python_values():
    a = _exp(metalab.grid(n=[np.int64(3)], p=[np.float64(0.5)], b=[np.bool_(True)]))
    b = _exp(metalab.grid(n=[3], p=[0.5], b=[True]))
    assert a.run_id(0) == b.run_id(0)


def test_numpy_scalars_are_given_to_the_operation_as_python_values():
    exp = _exp(metalab.grid(n=[np.int64(3)], p=[np.float64(0.5)], b=[np.bool_(True)]))
    params = exp.params_at(0)
    assert params == {"n": 3, "p": 0.5, "b": True}
    assert type(params["n"]) is int
    assert type(params["p"]) is float
    assert type(params["b"]) is bool


def test_tuple_and_list_values_identify_alike():
    assert _rid((1, 2)) == _rid([1, 2])


def test_nested_values_identify_by_content():
    assert _rid({"a": [1, 2], "b": {"c": 3}}) == _rid({"b": {"c": 3}, "a": [1, 2]})
    assert _rid({"a": [1, 2]}) != _rid({"a": [2, 1]})


# ---------------------------------------------------------------- key order and source type


def test_param_key_order_does_not_matter():
    a = _exp(metalab.manual([{"a": 1, "b": 2}]))
    b = _exp(metalab.manual([{"b": 2, "a": 1}]))
    assert a.run_id(0) == b.run_id(0)
    c = _exp(metalab.grid(a=[1], b=[2]))
    d = _exp(metalab.grid(b=[2], a=[1]))
    assert c.run_id(0) == d.run_id(0)


def test_same_case_from_grid_manual_and_random_has_the_same_run_id():
    grid_exp = _exp(metalab.grid(lr=[0.1, 0.01], batch=[32, 64]))
    manual_exp = _exp(metalab.manual(list(metalab.grid(lr=[0.1, 0.01], batch=[32, 64]))))
    assert grid_exp.run_ids() == manual_exp.run_ids()

    random_exp = _exp(metalab.random(space={"u": metalab.uniform(0, 1)}, n_trials=3, seed=1))
    as_manual = _exp(metalab.manual(list(random_exp.params)))
    assert random_exp.run_ids() == as_manual.run_ids()


# ---------------------------------------------------------------- rejected values


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_nan_and_inf_params_are_rejected_at_prepare_naming_the_key(bad):
    exp = _exp(metalab.grid(threshold=[0.5, bad]))
    with pytest.raises(metalab.FingerprintError, match="threshold"):
        exp.prepare()


def test_non_json_value_is_rejected_at_prepare_naming_the_key():
    exp = _exp(metalab.grid(model=[object()]))
    with pytest.raises(metalab.FingerprintError, match="model"):
        exp.prepare()


def test_bad_value_in_manual_case_is_rejected_naming_the_key():
    exp = _exp(metalab.manual([{"ok": 1}, {"ok": 2, "weight": math.nan}]))
    with pytest.raises(metalab.FingerprintError, match="weight"):
        exp.prepare()


def test_bad_value_nested_in_a_param_is_rejected_naming_the_key():
    exp = _exp(metalab.manual([{"schedule": {"warmup": [1.0, math.inf]}}]))
    with pytest.raises(metalab.FingerprintError, match="schedule"):
        exp.prepare()


def test_bad_choice_option_in_random_is_rejected_naming_the_key():
    exp = _exp(
        metalab.random(space={"opt": metalab.choice(["adam", object()])}, n_trials=2, seed=0)
    )
    with pytest.raises(metalab.FingerprintError, match="opt"):
        exp.prepare()


def test_fingerprint_error_is_a_value_error():
    assert issubclass(metalab.FingerprintError, ValueError)


def test_metalab_run_rejects_nan_params_before_running(tmp_path):
    calls = []

    def op(params):
        calls.append(params)

    exp = _exp(metalab.grid(threshold=[math.nan]), operation=op)
    with pytest.raises(metalab.FingerprintError, match="threshold"):
        metalab.run(exp, store=str(tmp_path / "store"), executor=metalab.InlineExecutor())
    assert calls == []


# ---------------------------------------------------------------- what enters the id


def test_run_id_does_not_depend_on_the_operation():
    params = metalab.grid(x=[1, 2, 3])
    a = _exp(params, operation=_op)
    b = _exp(params, operation=_other_op)
    assert a.operation.code_hash != b.operation.code_hash
    assert a.run_ids() == b.run_ids()


def test_run_id_does_not_depend_on_metadata_description_or_tags():
    params = metalab.grid(x=[1, 2])
    plain = _exp(params)
    decorated = _exp(
        params, metadata={"author": "me", "n": 3}, description="a sweep", tags=["a", "b"]
    )
    assert plain.run_ids() == decorated.run_ids()


def test_run_id_differs_across_versions_and_names():
    params = metalab.grid(x=[1])
    v1 = _exp(params, version="1")
    v2 = _exp(params, version="2")
    other = _exp(params, name="other")
    assert len({v1.run_id(0), v2.run_id(0), other.run_id(0)}) == 3


def test_run_id_differs_across_seed_base_and_replicate():
    params = metalab.grid(x=[1])
    a = _exp(params, seeds=metalab.seeds(1, 2))
    b = _exp(params, seeds=metalab.seeds(2, 2))
    assert a.run_id(0) != a.run_id(1)
    assert a.run_id(0) != b.run_id(0)


def test_run_ids_are_unique_within_an_experiment():
    exp = _exp(metalab.grid(a=[1, 2, 3], b=["x", "y"]), seeds=metalab.seeds(0, 4))
    ids = exp.run_ids()
    assert len(ids) == 24
    assert len(set(ids)) == 24


def test_run_id_is_a_stable_hex_string():
    exp = _exp(metalab.grid(x=[1, 2]))
    run_id = exp.run_id(1)
    assert run_id == _exp(metalab.grid(x=[1, 2])).run_id(1)
    assert isinstance(run_id, str)
    assert len(run_id) >= 16
    int(run_id, 16)


# ---------------------------------------------------------------- across processes

_SUBPROCESS_CODE = """
import json
import metalab
exp = metalab.Experiment(
    name="ident",
    version="1",
    context={"dataset": "mnist", "sizes": [1, 2]},
    operation=lambda params: None,
    params=metalab.grid(lr=[0.1, 1e-3], act=["relu", "tanh"], n=[1, 2.5]),
    seeds=metalab.seeds(42, 2),
)
print(json.dumps(exp.run_ids()))
"""


def test_run_ids_are_stable_across_processes():
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_CODE],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    local = _exp(
        metalab.grid(lr=[0.1, 1e-3], act=["relu", "tanh"], n=[1, 2.5]),
        context={"dataset": "mnist", "sizes": [1, 2]},
        seeds=metalab.seeds(42, 2),
        operation=_other_op,
    )
    assert json.loads(out.stdout) == local.run_ids()


def test_golden_run_id_does_not_drift():
    # Computed once; a change here means every stored run would be re-run after an upgrade.
    exp = _exp(metalab.grid(x=[1]), name="g", seeds=metalab.seeds(1, 1))
    assert exp.run_id(0) == "3fc781602bb48a95e83d607c893fc5bf"
