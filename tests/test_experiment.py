"""`Experiment`: validation, identity and the index space (run i = case i // R, replicate i % R)."""

from __future__ import annotations

import pytest

import metalab
from metalab.seeds import SeedBundle


@metalab.operation
def noop(params):
    return None


def _kwargs(**overrides):
    kwargs = dict(
        name="sweep",
        version="0.1",
        context={},
        operation=noop,
        params=metalab.grid(a=[1, 2, 3], b=["x", "y"]),
        seeds=metalab.seeds(42, 3),
    )
    kwargs.update(overrides)
    return kwargs


def _exp(**overrides):
    return metalab.Experiment(**_kwargs(**overrides))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", ["a/b", "", "../up", "with space", None, 3])
def test_bad_name_is_rejected_naming_the_field(bad):
    with pytest.raises(ValueError, match="name"):
        _exp(name=bad)


@pytest.mark.parametrize("field", ["name", "version"])
def test_a_name_longer_than_a_path_component_allows_is_refused_at_once(tmp_path, field):
    with pytest.raises(metalab.ValidationError, match=rf"{field} 'a{{10}}.*' has 300 characters"):
        _exp(**{field: "a" * 300})
    assert list(tmp_path.iterdir()) == []


def test_the_longest_name_and_version_fit_a_file_store(tmp_path):
    exp = _exp(name="n" * 100, version="v" * 100)
    results = metalab.run(exp, tmp_path / "store", executor="inline").result()
    assert len(results) == 18 and {r.status for r in results} == {"completed"}
    assert metalab.load_results(tmp_path / "store", exp.experiment_id)[0].status == "completed"


@pytest.mark.parametrize("bad", [1, 0.1, None, "", "1/2"])
def test_bad_version_is_rejected_naming_the_field(bad):
    with pytest.raises(ValueError, match="version"):
        _exp(version=bad)


@pytest.mark.parametrize("bad", [[{"a": 1}], {"a": [1, 2]}, None, "grid"])
def test_params_that_are_not_a_source_are_rejected(bad):
    with pytest.raises(ValueError, match="params"):
        _exp(params=bad)


@pytest.mark.parametrize("bad", [42, None, [1, 2], SeedBundle.for_replicate(1, 0)])
def test_seeds_that_are_not_a_plan_are_rejected(bad):
    with pytest.raises(ValueError, match="seeds"):
        _exp(seeds=bad)


@pytest.mark.parametrize(
    "bad", [{"x": object()}, {"nested": {"c": 1j}}, {"f": print}, "notes", [1]]
)
def test_metadata_that_is_not_json_able_is_rejected(bad):
    with pytest.raises(ValueError, match="metadata"):
        _exp(metadata=bad)


def test_nan_in_metadata_is_refused_for_what_metadata_is():
    # metadata never identifies a run: the reason given is the manifest's JSON
    with pytest.raises(metalab.ValidationError, match=r"metadata\['x'\] is nan") as e:
        _exp(metadata={"x": float("nan")})
    assert "identify a run" not in str(e.value)
    assert "JSON has no NaN or infinity" in str(e.value)
    with pytest.raises(metalab.ValidationError, match="NaN and infinite values cannot identify"):
        _exp(params=metalab.grid(a=[float("inf")])).run_id(0)


@pytest.mark.parametrize("bad", ["tag", [1, "a"], ["a", None], 5])
def test_tags_that_are_not_a_list_of_str_are_rejected(bad):
    with pytest.raises(ValueError, match="tags"):
        _exp(tags=bad)


def test_operation_that_is_not_callable_is_rejected():
    with pytest.raises(ValueError, match="operation"):
        _exp(operation="my_op")


def test_valid_optional_fields_are_kept():
    exp = _exp(metadata={"author": "me", "n": [1, 2]}, description="d", tags=["a", "b"])
    assert exp.metadata == {"author": "me", "n": [1, 2]}
    assert exp.description == "d"
    assert list(exp.tags) == ["a", "b"]


def test_plain_function_operation_is_wrapped():
    def op(params, capture):
        return None

    exp = _exp(operation=op)
    assert isinstance(exp.operation, metalab.OperationWrapper)
    assert exp.operation.name == "op"


# ---------------------------------------------------------------- identity and size


def test_experiment_id_is_name_colon_version():
    assert _exp(name="pi_mc", version="0.1").experiment_id == "pi_mc:0.1"


def test_total_runs_is_cases_times_replicates():
    exp = _exp(params=metalab.grid(a=[1, 2, 3], b=["x", "y"]), seeds=metalab.seeds(42, 3))
    assert exp.total_runs == 18
    assert len(exp) == 18
    assert _exp(params=metalab.manual([{"a": 1}]), seeds=metalab.seeds(0)).total_runs == 1
    random_exp = _exp(
        params=metalab.random(space={"u": metalab.uniform(0, 1)}, n_trials=7),
        seeds=metalab.seeds(0, 5),
    )
    assert random_exp.total_runs == 35


# ---------------------------------------------------------------- index mapping


def test_params_and_seeds_follow_case_major_replicate_minor_order():
    source = metalab.grid(a=[1, 2, 3], b=["x", "y"])
    plan = metalab.seeds(42, 3)
    exp = _exp(params=source, seeds=plan)
    for i in range(exp.total_runs):
        assert exp.params_at(i) == source[i // 3]
        assert exp.seeds_at(i) == plan.bundle(i % 3)
        assert exp.seeds_at(i) == SeedBundle.for_replicate(42, i % 3)


def test_run_spec_agrees_with_the_individual_accessors():
    exp = _exp()
    for i in range(exp.total_runs):
        spec = exp.run_spec(i)
        assert spec.index == i
        assert spec.case == i // 3
        assert spec.replicate == i % 3
        assert spec.run_id == exp.run_id(i)
        assert spec.params == exp.params_at(i)
        assert spec.seeds == exp.seeds_at(i)
        assert spec.seed_fingerprint == exp.seeds_at(i).fingerprint


def test_replicates_of_one_case_share_params_and_differ_in_seeds_and_run_id():
    exp = _exp()
    specs = [exp.run_spec(i) for i in (3, 4, 5)]  # case 1, replicates 0..2
    assert {s.case for s in specs} == {1}
    assert all(s.params == specs[0].params for s in specs)
    assert len({s.run_id for s in specs}) == 3
    assert len({tuple(s.seeds.numpy().integers(0, 2**62, 4)) for s in specs}) == 3


def test_run_ids_list_matches_run_id_per_index():
    exp = _exp()
    assert exp.run_ids() == [exp.run_id(i) for i in range(exp.total_runs)]
    assert exp.run_ids([5, 0]) == [exp.run_id(5), exp.run_id(0)]


def test_negative_indices_count_from_the_end():
    exp = _exp()
    assert exp.run_id(-1) == exp.run_id(exp.total_runs - 1)
    assert exp.params_at(-1) == {"a": 3, "b": "y"}
    assert exp.seeds_at(-1) == SeedBundle.for_replicate(42, 2)


@pytest.mark.parametrize("index", [18, 19, 1000, -19])
def test_out_of_range_index_raises_index_error(index):
    exp = _exp()
    with pytest.raises(IndexError):
        exp.run_id(index)
    with pytest.raises(IndexError):
        exp.params_at(index)
    with pytest.raises(IndexError):
        exp.seeds_at(index)
    with pytest.raises(IndexError):
        exp.run_spec(index)
    # the message names the index given, not one made of it
    with pytest.raises(IndexError, match=rf"^run index {index} out of range for 18 runs \(0\.\.17"):
        exp.run_id(index)


def test_params_at_returns_a_copy_the_caller_can_mutate():
    exp = _exp()
    params = exp.params_at(0)
    params["a"] = 999
    assert exp.params_at(0) == {"a": 1, "b": "x"}


# ---------------------------------------------------------------- large sweeps


def test_large_grid_is_addressed_by_index_without_materializing(monkeypatch):
    source = metalab.grid(gene=list(range(2000)), expr_val=list(range(50)))
    exp = _exp(name="large_sweep", params=source, seeds=metalab.seeds(42, 3))
    assert exp.total_runs == 300_000

    case_calls = []
    original_case = type(source).case

    def counting_case(self, k):
        case_calls.append(k)
        return original_case(self, k)

    def refuse_iteration(self):
        raise AssertionError("the parameter source was iterated")

    monkeypatch.setattr(type(source), "case", counting_case)
    monkeypatch.setattr(type(source), "__iter__", refuse_iteration)

    assert exp.params_at(299_999) == {"gene": 1999, "expr_val": 49}
    assert exp.seeds_at(299_999) == SeedBundle.for_replicate(42, 2)

    # run 123_456 is case 41_152 (gene 823, expr_val 2), replicate 0
    spec = exp.run_spec(123_456)
    assert (spec.case, spec.replicate) == (41_152, 0)
    assert spec.params == {"gene": 823, "expr_val": 2}
    assert len(case_calls) < 10

    same_run = _exp(
        name="large_sweep",
        params=metalab.manual([{"gene": 823, "expr_val": 2}]),
        seeds=metalab.seeds(42, 3),
    )
    assert exp.run_id(123_456) == same_run.run_id(0)
    assert exp.run_id(123_457) == same_run.run_id(1)
    assert exp.run_id(123_456) != exp.run_id(123_459)


def test_index_space_of_random_source_is_consistent():
    source = metalab.random(space={"u": metalab.uniform(0, 1)}, n_trials=4, seed=3)
    exp = _exp(params=source, seeds=metalab.seeds(1, 2))
    for i in range(exp.total_runs):
        assert exp.params_at(i) == source[i // 2]
        assert exp.seeds_at(i) == SeedBundle.for_replicate(1, i % 2)
