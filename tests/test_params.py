"""Parameter sources: grid, random and manual (order, indexing, determinism, manifests, errors)."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

import metalab
from metalab._identity import canonical_json, normalize
from metalab.params import params_from_manifest

# ---------------------------------------------------------------- grid


def test_grid_order_is_itertools_product_with_last_axis_fastest():
    axes = {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.5, 1.5]}
    source = metalab.grid(**axes)
    expected = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    assert list(source) == expected
    # last axis varies fastest
    assert source[0] == {"a": 1, "b": "x", "c": 0.5}
    assert source[1] == {"a": 1, "b": "x", "c": 1.5}
    assert source[2] == {"a": 1, "b": "y", "c": 0.5}


def test_grid_len_is_product_of_axis_sizes():
    assert len(metalab.grid(a=[1, 2, 3], b=[1, 2], c=[1, 2, 3, 4, 5])) == 30
    assert len(metalab.grid(a=[7])) == 1


def test_grid_index_matches_iteration_including_negative_indices():
    source = metalab.grid(a=list(range(4)), b=list(range(3)))
    cases = list(source)
    for k in range(len(source)):
        assert source[k] == cases[k]
        assert source[-(k + 1)] == cases[-(k + 1)]
    assert source[-1] == {"a": 3, "b": 2}


def test_grid_index_accepts_numpy_integers():
    source = metalab.grid(a=[10, 20, 30])
    assert source[np.int64(2)] == {"a": 30}


@pytest.mark.parametrize("k", [6, 7, 100, -7, -100])
def test_grid_index_out_of_range_raises_index_error(k):
    source = metalab.grid(a=[1, 2, 3], b=[1, 2])
    with pytest.raises(IndexError):
        source[k]


def test_grid_slicing_returns_the_same_cases_as_list_slicing():
    source = metalab.grid(a=list(range(5)), b=["x", "y"])
    cases = list(source)
    assert source[2:5] == cases[2:5]
    assert source[::3] == cases[::3]
    assert source[-3:] == cases[-3:]
    assert source[::-1] == cases[::-1]
    assert source[20:30] == []


def test_grid_large_index_is_computed_without_materializing():
    source = metalab.grid(a=list(range(1000)), b=list(range(1000)), c=list(range(1000)))
    assert len(source) == 10**9
    assert source[10**9 - 1] == {"a": 999, "b": 999, "c": 999}
    assert source[123_456_789] == {"a": 123, "b": 456, "c": 789}


def test_grid_accepts_tuple_range_and_numpy_axes():
    source = metalab.grid(a=(1, 2), b=range(3), c=np.array([0.25, 0.5]))
    assert len(source) == 12
    assert source[-1] == {"a": 2, "b": 2, "c": 0.5}


def test_grid_canonical_at_equals_canonical_json_of_normalized_case():
    source = metalab.grid(
        zeta=[1, 2.5, "s"],
        alpha=[None, True, [1, 2], {"k": (3, 4)}],
        mid=[np.int64(3), np.float64(0.25), np.bool_(False)],
    )
    for k in range(len(source)):
        assert source.canonical_at(k) == canonical_json(normalize(source[k], "params"))


# ---------------------------------------------------------------- random


def _space():
    return {
        "lr": metalab.loguniform(1e-4, 1e-1),
        "dropout": metalab.uniform(0.1, 0.5),
        "layers": metalab.randint(1, 5),
        "hidden": metalab.loguniform_int(16, 512),
        "act": metalab.choice(["relu", "tanh", "gelu"]),
    }


def test_random_len_and_iteration():
    source = metalab.random(space=_space(), n_trials=25, seed=7)
    cases = list(source)
    assert len(source) == 25
    assert len(cases) == 25
    assert all(set(case) == {"lr", "dropout", "layers", "hidden", "act"} for case in cases)
    # trials are not all the same draw
    assert len({case["lr"] for case in cases}) > 1


def test_random_trial_k_does_not_depend_on_earlier_trials_being_drawn():
    fresh = metalab.random(space=_space(), n_trials=50, seed=3)
    walked = metalab.random(space=_space(), n_trials=50, seed=3)
    all_cases = list(walked)
    # direct access to trial 37 with nothing drawn before it
    assert fresh[37] == all_cases[37]
    # and out of order
    assert fresh[5] == all_cases[5]
    assert fresh[-1] == all_cases[49]


def test_random_is_identical_across_separately_constructed_sources():
    a = metalab.random(space=_space(), n_trials=30, seed=11)
    b = metalab.random(space=_space(), n_trials=30, seed=11)
    assert list(a) == list(b)


def test_random_different_seed_gives_different_trials():
    a = metalab.random(space=_space(), n_trials=10, seed=1)
    b = metalab.random(space=_space(), n_trials=10, seed=2)
    assert list(a) != list(b)


def test_random_trial_prefix_is_stable_when_n_trials_grows():
    short = metalab.random(space=_space(), n_trials=5, seed=9)
    long = metalab.random(space=_space(), n_trials=50, seed=9)
    assert list(short) == long[:5]


def test_random_values_stay_within_bounds():
    source = metalab.random(
        space={
            "u": metalab.uniform(-2.0, 3.0),
            "lu": metalab.loguniform(1e-3, 1e2),
            "ri": metalab.randint(3, 7),
            "li": metalab.loguniform_int(2, 9),
            "ch": metalab.choice([10, 20, 30]),
        },
        n_trials=500,
        seed=5,
    )
    seen_ri, seen_ch = set(), set()
    for case in source:
        assert -2.0 <= case["u"] < 3.0
        assert 1e-3 <= case["lu"] < 1e2
        assert isinstance(case["ri"], int) and 3 <= case["ri"] < 7
        assert isinstance(case["li"], int) and 2 <= case["li"] < 9
        assert case["ch"] in (10, 20, 30)
        seen_ri.add(case["ri"])
        seen_ch.add(case["ch"])
    # high is exclusive but every other value shows up in 500 draws
    assert seen_ri == {3, 4, 5, 6}
    assert seen_ch == {10, 20, 30}


def test_randint_and_loguniform_int_high_is_exclusive():
    source = metalab.random(
        space={"r": metalab.randint(4, 5), "l": metalab.loguniform_int(8, 9)},
        n_trials=200,
        seed=0,
    )
    assert {case["r"] for case in source} == {4}
    assert {case["l"] for case in source} == {8}


def test_random_index_out_of_range_and_slicing():
    source = metalab.random(space=_space(), n_trials=6, seed=4)
    with pytest.raises(IndexError):
        source[6]
    with pytest.raises(IndexError, match=r"^parameter index -7 out of range .* -6\.\.-1"):
        source[-7]
    assert source[1:4] == [source[1], source[2], source[3]]


# ---------------------------------------------------------------- manual


def test_manual_preserves_order_len_and_indexing():
    cases = [{"lr": 0.01, "epochs": 10}, {"lr": 0.001, "epochs": 50}, {"lr": 0.1}]
    source = metalab.manual(cases)
    assert len(source) == 3
    assert list(source) == cases
    assert source[0] == cases[0]
    assert source[-1] == cases[2]
    assert source[0:2] == cases[0:2]
    with pytest.raises(IndexError):
        source[3]
    with pytest.raises(IndexError):
        source[-4]


def test_manual_is_not_affected_by_later_mutation_of_the_input():
    cases = [{"a": 1}]
    source = metalab.manual(cases)
    cases[0]["a"] = 99
    cases.append({"a": 2})
    assert list(source) == [{"a": 1}]


# ---------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    "source",
    [
        metalab.grid(a=[1, 2, 3], b=["x", "y"], c=[0.5, None, True]),
        metalab.random(space=_space(), n_trials=17, seed=123),
        metalab.manual([{"lr": 0.01, "epochs": 10}, {"lr": 0.001, "tags": ["a", "b"]}]),
    ],
    ids=["grid", "random", "manual"],
)
def test_manifest_round_trip_rebuilds_an_equal_source(source):
    manifest = source.to_manifest()
    rebuilt = params_from_manifest(manifest)
    assert rebuilt == source
    assert type(rebuilt) is type(source)
    assert len(rebuilt) == len(source)
    assert list(rebuilt) == list(source)
    assert rebuilt.to_manifest() == manifest


def test_manifest_is_json_serializable():
    import json

    for source in (
        metalab.grid(a=[1, 2], b=["x"]),
        metalab.random(space=_space(), n_trials=3, seed=1),
        metalab.manual([{"a": 1}]),
    ):
        text = json.dumps(source.to_manifest())
        assert params_from_manifest(json.loads(text)) == source


# ---------------------------------------------------------------- bad specs


def test_grid_empty_axis_names_the_parameter():
    with pytest.raises(ValueError, match="learning_rate"):
        metalab.grid(learning_rate=[], batch=[32])


@pytest.mark.parametrize("bad", [3, 0.5, "abc", None, {"a": 1}])
def test_grid_non_list_axis_names_the_parameter(bad):
    with pytest.raises(ValueError, match="batch_size"):
        metalab.grid(lr=[0.1], batch_size=bad)


def test_uniform_low_not_below_high_names_the_parameter():
    with pytest.raises(ValueError, match="dropout"):
        metalab.random(space={"dropout": metalab.uniform(0.5, 0.5)}, n_trials=3)
    with pytest.raises(ValueError, match="dropout"):
        metalab.random(space={"dropout": metalab.uniform(0.9, 0.1)}, n_trials=3)


def test_randint_low_not_below_high_names_the_parameter():
    with pytest.raises(ValueError, match="n_layers"):
        metalab.random(space={"n_layers": metalab.randint(5, 5)}, n_trials=3)


@pytest.mark.parametrize("low", [0, -1e-3])
def test_loguniform_nonpositive_bound_names_the_parameter(low):
    with pytest.raises(ValueError, match="learning_rate"):
        metalab.random(space={"learning_rate": metalab.loguniform(low, 1.0)}, n_trials=3)


def test_loguniform_int_nonpositive_bound_names_the_parameter():
    with pytest.raises(ValueError, match="hidden_dim"):
        metalab.random(space={"hidden_dim": metalab.loguniform_int(0, 512)}, n_trials=3)


@pytest.mark.parametrize("n_trials", [0, -5])
def test_random_nonpositive_n_trials_is_rejected(n_trials):
    with pytest.raises(ValueError, match="n_trials"):
        metalab.random(space={"x": metalab.uniform(0, 1)}, n_trials=n_trials, seed=0)


def test_random_space_value_that_is_not_a_distribution_names_the_parameter():
    with pytest.raises(ValueError, match="momentum"):
        metalab.random(space={"momentum": [0.9, 0.99]}, n_trials=3)


def test_manual_non_dict_entry_names_the_entry_index():
    with pytest.raises(ValueError, match=r"\b2\b"):
        metalab.manual([{"a": 1}, {"a": 2}, ["a", 3]])
    with pytest.raises(ValueError, match=r"entry 1"):
        metalab.manual([{"a": 1}, 5])


def test_bad_spec_errors_are_metalab_validation_errors():
    with pytest.raises(metalab.ValidationError):
        metalab.grid(a=[])
    assert issubclass(metalab.ValidationError, ValueError)


def test_loguniform_samples_are_spread_in_log_space():
    source = metalab.random(space={"lr": metalab.loguniform(1e-6, 1.0)}, n_trials=400, seed=2)
    logs = [math.log10(case["lr"]) for case in source]
    # a uniform (not log-uniform) draw on [1e-6, 1) would put almost all mass above 1e-1
    below = sum(1 for x in logs if x < -3)
    assert 120 < below < 280


@pytest.mark.parametrize(
    ("values", "advice"),
    [
        (5, r"got 5 \(int\); wrap a single value in a list: a=\[5\]"),
        ({2, 1}, r"a set has no order: give a list, for example a=sorted\(\{1, 2\}\)"),
        (np.zeros((2, 2)), r"got a 2-D array of shape \(2, 2\); a grid axis is one-dimensional"),
        ({"x": 1}, r"\(dict\); give a list of the values the axis takes"),
        ((x for x in [1, 2]), r"\(generator\); make a list of it: a=list\(\.\.\.\)"),
        (iter([1, 2]), r"make a list of it: a=list\(\.\.\.\)"),
    ],
)
def test_a_grid_axis_that_is_not_a_list_gets_advice_that_fits_it(values, advice):
    with pytest.raises(metalab.ValidationError, match=r"grid parameter 'a' must be a list") as e:
        metalab.grid(a=values)
    assert re.search(advice, str(e.value)), str(e.value)


def test_integer_bounds_given_as_floats_are_the_same_distribution():
    given, plain = metalab.randint(2.0, 4.0), metalab.randint(2, 4)
    assert repr(given) == repr(plain) and given.to_manifest() == plain.to_manifest()
    assert (
        metalab.loguniform_int(1.0, 8).to_manifest() == metalab.loguniform_int(1, 8).to_manifest()
    )
