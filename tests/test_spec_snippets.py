"""The README's and the quickstart's examples, run as written.

Each test keeps the spec's calls and names; only placeholders the spec leaves undefined
(`losses`, `train_epoch`, `load_data`, ...) are filled in, and sweeps that do not need Dask
run with `executor="inline"`. The SLURM snippets run on a real cluster in
tests/test_slurm_executor.py; the PostgreSQL ones against a real server in the postgres tests.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import metalab

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pi_experiment():
    @metalab.operation
    def estimate_pi(params, seeds, capture):
        n = params["n_samples"]
        rng = seeds.numpy()
        x, y = rng.random(n), rng.random(n)
        pi_est = 4.0 * (x**2 + y**2 <= 1).mean()
        capture.metric("pi_estimate", pi_est)

    exp = metalab.Experiment(
        name="pi_mc",
        version="0.1",
        context={},
        operation=estimate_pi,
        params=metalab.grid(n_samples=[1000, 10000, 100000]),
        seeds=metalab.seeds(base=42, replicates=3),
    )
    return exp


def table_rows(table: str) -> list[str]:
    """The body rows of `results.table()` (everything after the header and its rule)."""
    lines = [line for line in table.splitlines() if line.strip()]
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    return lines[rule + 1 :]


# ================================================================ README: minimal example
@pytest.mark.slow
def test_readme_minimal_working_example(chdir_tmp, capsys):
    exp = pi_experiment()

    handle = metalab.run(exp)  # Returns a RunHandle, stores results in ./runs/pi_mc
    results = handle.result()  # Block until complete
    print(results.table())

    assert len(results) == 9
    assert all(run.status == "completed" for run in results)
    for run in results:
        assert 2.5 < run.metrics["pi_estimate"] < 3.8
    assert len(table_rows(capsys.readouterr().out)) == 9
    assert len(list((chdir_tmp / "runs" / "pi_mc" / "runs").glob("*/*.done"))) == 9


# ================================================================ README: parameter sources
def test_readme_parameter_sources():
    # Grid search (Cartesian product)
    params = metalab.grid(
        learning_rate=[0.001, 0.01, 0.1],
        batch_size=[32, 64],
    )  # 6 combinations
    assert len(params) == 6
    cases = [params[k] for k in range(len(params))]
    assert {(c["learning_rate"], c["batch_size"]) for c in cases} == {
        (lr, bs) for lr in [0.001, 0.01, 0.1] for bs in [32, 64]
    }

    # Random sampling with distributions
    params = metalab.random(
        space={
            "learning_rate": metalab.loguniform(1e-4, 1e-1),
            "dropout": metalab.uniform(0.1, 0.5),
            "hidden_dim": metalab.choice([64, 128, 256]),
        },
        n_trials=20,
        seed=123,
    )
    assert len(params) == 20
    trials = [params[k] for k in range(20)]
    for trial in trials:
        assert 1e-4 <= trial["learning_rate"] <= 1e-1
        assert 0.1 <= trial["dropout"] <= 0.5
        assert trial["hidden_dim"] in (64, 128, 256)
    assert len({t["learning_rate"] for t in trials}) == 20
    assert params[7] == trials[7]  # index access is reproducible

    # Explicit parameter list
    params = metalab.manual(
        [
            {"lr": 0.01, "epochs": 10},
            {"lr": 0.001, "epochs": 50},
        ]
    )
    assert len(params) == 2
    assert params[0] == {"lr": 0.01, "epochs": 10}
    assert params[1] == {"lr": 0.001, "epochs": 50}


def test_readme_parameter_sources_drive_a_sweep(store_path):
    @metalab.operation
    def record(params, capture):
        capture.metric("dropout", params["dropout"])

    params = metalab.random(
        space={
            "learning_rate": metalab.loguniform(1e-4, 1e-1),
            "dropout": metalab.uniform(0.1, 0.5),
            "hidden_dim": metalab.choice([64, 128, 256]),
        },
        n_trials=20,
        seed=123,
    )
    exp = metalab.Experiment(
        name="random_sweep",
        version="0.1",
        context={},
        operation=record,
        params=params,
        seeds=metalab.seeds(base=42),
    )
    results = metalab.run(exp, store=store_path, executor="inline").result()
    assert len(results) == 20
    for k, run in enumerate(results):
        assert run.params == params[k]
        assert run.metrics["dropout"] == params[k]["dropout"]


# ================================================================ README: seeds
def test_readme_reproducible_seeds(tmp_path):
    @metalab.operation
    def my_operation(seeds, capture):
        # Get a NumPy random generator
        rng = seeds.numpy()

        # Or a standard library random.Random
        rng = seeds.rng()

        # Derive sub-seeds for different components
        model_seed = seeds.derive("model")
        data_seed = seeds.derive("data_split")

        capture.metric("result", rng.random())
        capture.metric("model", model_seed.numpy().random())
        capture.metric("data", data_seed.numpy().random())

    seeds = metalab.seeds(base=42, replicates=5)  # 5 independent runs per param config

    def sweep(store):
        exp = metalab.Experiment(
            name="seeded",
            version="0.1",
            context={},
            operation=my_operation,
            params=metalab.grid(x=[1]),
            seeds=seeds,
        )
        return metalab.run(exp, store=store, executor="inline").result()

    first, second = sweep(tmp_path / "a"), sweep(tmp_path / "b")
    assert len(first) == 5
    values = [run.metrics["result"] for run in first]
    assert all(0.0 <= v < 1.0 for v in values)
    assert len(set(values)) == 5  # independent replicates
    for run in first:
        assert run.metrics["model"] != run.metrics["data"]
    assert [r.metrics for r in first] == [r.metrics for r in second]  # reproducible
    assert [r.run_id for r in first] == [r.run_id for r in second]


def test_quickstart_seed_bundle_generators(store_path):
    @metalab.operation
    def op(seeds, capture):
        rng = seeds.numpy()  # NumPy Generator
        capture.metric("numpy", rng.random())
        rng = seeds.rng()  # Python random.Random instance
        capture.metric("stdlib", rng.random())
        seed_int = seeds.seed()  # Raw integer seed
        capture.metric("seed_int", seed_int)

    exp = metalab.Experiment(
        name="generators",
        version="0.1",
        context={},
        operation=op,
        params=metalab.grid(n_samples=[1000, 10000, 100000]),
        seeds=metalab.seeds(base=42, replicates=3),
    )
    results = metalab.run(exp, store=store_path, executor="inline").result()
    assert len(results) == 9  # 3 x 3
    by_replicate = {}
    for run in results:
        seed_int = run.metrics["seed_int"]
        assert isinstance(seed_int, int) and seed_int >= 0
        by_replicate.setdefault(run.record["replicate"], set()).add(seed_int)
    # the seed bundle depends on the replicate only, and replicates differ
    assert all(len(s) == 1 for s in by_replicate.values())
    assert len({next(iter(s)) for s in by_replicate.values()}) == 3


# ================================================================ README: capture system
def test_readme_capture_system(store_path):
    from matplotlib.figure import Figure

    losses = [0.9, 0.5, 0.25]
    predictions_array = np.linspace(0.0, 1.0, 7)
    fig = Figure()
    fig.subplots().plot(losses)

    @metalab.operation
    def train(params, seeds, capture):
        capture.log("Starting training")

        # Scalar metrics
        capture.metric("accuracy", 0.95)
        capture.metric("loss", 0.05)

        # Multiple metrics at once
        capture.log_metrics({"precision": 0.92, "recall": 0.89})

        # Time-series metrics
        for epoch, loss in enumerate(losses):
            capture.metric("train_loss", loss, step=epoch)
            capture.log(f"Epoch {epoch}: loss={loss:.4f}")

        # Artifacts (auto-serialized)
        capture.artifact("predictions", predictions_array)  # NumPy array
        capture.artifact("config", {"model": "resnet", "layers": 50})  # JSON

        # Matplotlib figures
        capture.figure("learning_curve", fig)

        capture.log("Training completed")
        # No return needed - success is implicit

    exp = metalab.Experiment(
        name="capture_demo",
        version="0.1",
        context={},
        operation=train,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=42),
    )
    handle = metalab.run(exp, store=store_path, executor="inline")
    for run in (handle.result()[0], metalab.load_results(store_path)[0]):
        assert run.status == "completed", run.error
        assert run.metrics == {"accuracy": 0.95, "loss": 0.05, "precision": 0.92, "recall": 0.89}
        assert run.metric_series("train_loss") == ([0, 1, 2], losses)
        np.testing.assert_array_equal(run.artifact("predictions"), predictions_array)
        assert run.artifact("config") == {"model": "resnet", "layers": 50}
        assert run.artifact("learning_curve").startswith(PNG_SIGNATURE)
        log = run.log
        for message in ("Starting training", "Epoch 2: loss=0.2500", "Training completed"):
            assert message in log


# ================================================================ README: logging
def test_readme_logging(store_path):
    losses = iter([0.8, 0.6, 0.4])
    threshold = 0.1

    def train_epoch(*_):
        return next(losses)

    @metalab.operation
    def train(params, seeds, capture):
        capture.log("Starting training")
        capture.log(f"Parameters: lr={params['lr']}", level="debug")

        for epoch in range(params["epochs"]):
            loss = train_epoch(...)
            capture.log(f"Epoch {epoch}: loss={loss:.4f}")
            capture.metric("loss", loss, step=epoch)

        capture.log("Training complete")
        if loss > threshold:
            capture.log("Loss above threshold", level="warning")

    exp = metalab.Experiment(
        name="logging_demo",
        version="0.1",
        context={},
        operation=train,
        params=metalab.grid(lr=[0.01], epochs=[3]),
        seeds=metalab.seeds(base=42),
    )
    (run,) = metalab.run(exp, store=store_path, executor="inline").result()
    assert run.status == "completed", run.error
    lines = run.log.splitlines()
    assert len(lines) == 7
    debug = next(line for line in lines if "Parameters: lr=0.01" in line)
    assert "DEBUG" in debug.upper()
    warning = next(line for line in lines if "Loss above threshold" in line)
    assert "WARNING" in warning.upper()
    assert "Epoch 2: loss=0.4000" in run.log
    assert run.provenance["worker"] in lines[0]
    assert (store_path / "logs" / run.run_id[:2] / f"{run.run_id}.log").read_text() == run.log


def test_readme_standard_logging_is_separate(store_path, caplog):
    logger = logging.getLogger(__name__)

    @metalab.operation
    def my_operation(params, seeds, capture):
        # Standard Python logging (goes to console/configured handlers)
        logger.info("This uses standard Python logging")

        # capture.log() is stored with the run
        capture.log("This is saved to the run's log file")

    exp = metalab.Experiment(
        name="stdlogging",
        version="0.1",
        context={},
        operation=my_operation,
        params=metalab.grid(x=[1]),
        seeds=metalab.seeds(base=42),
    )
    with caplog.at_level(logging.INFO, logger=__name__):
        (run,) = metalab.run(exp, store=store_path, executor="inline").result()
    assert "This uses standard Python logging" in caplog.text
    assert "This is saved to the run's log file" in run.log
    assert "standard Python logging" not in run.log


# ================================================================ README: results API
def results_experiment():
    @metalab.operation
    def fit(params, seeds, capture):
        rng = seeds.numpy()
        capture.metric("score", params["learning_rate"] * 10 + rng.random())
        capture.artifact("predictions", rng.random(4))

    return metalab.Experiment(
        name="my_exp",
        version="0.1",
        context={},
        operation=fit,
        params=metalab.grid(learning_rate=[0.001, 0.01, 0.1]),
        seeds=metalab.seeds(base=42, replicates=3),
    )


def test_readme_results_api(chdir_tmp, capsys):
    exp = results_experiment()
    handle = metalab.run(exp, executor="inline")

    # Check status without blocking
    print(handle.status)  # RunStatus(total=9, completed=3, running=6, ...)
    print(handle.is_complete)  # False
    assert isinstance(handle.status, metalab.RunStatus)
    assert repr(handle.status).startswith("RunStatus(total=9, completed=")
    assert isinstance(handle.is_complete, bool)

    # Block until complete and get results
    results = handle.result()
    assert handle.is_complete is True
    assert handle.status.total == 9
    assert handle.status.completed == 9

    # Access individual runs
    run = results[0]
    print(run.params)  # Resolved parameters
    print(run.metrics)  # Captured metrics
    artifact = run.artifact("predictions")
    assert run.params == {"learning_rate": 0.001}
    assert set(run.metrics) == {"score"}
    assert isinstance(artifact, np.ndarray) and artifact.shape == (4,)

    # Tabular view
    df = results.table(as_dataframe=True)
    assert len(df) == 9
    assert "score" in df.columns
    assert "status" in df.columns

    # Filter runs
    successful = results.successful
    filtered = results.filter(learning_rate=0.01)
    assert len(successful) == 9
    assert len(filtered) == 3
    assert all(r.params["learning_rate"] == 0.01 for r in filtered)

    # Export
    results.to_csv("results.csv")
    with open("results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    assert {row["run_id"] for row in rows} == {r.run_id for r in results}

    # Summary and display
    results.display(group_by=["learning_rate"])
    shown = capsys.readouterr().out
    assert "learning_rate" in shown and "score" in shown and "mean" in shown

    # Load previous results
    old_results = metalab.load_results("./runs/my_exp")
    assert [r.run_id for r in old_results] == [r.run_id for r in results]
    assert [r.metrics for r in old_results] == [r.metrics for r in results]


# ================================================================ README: derived metrics
def derived_experiment():
    @metalab.operation
    def train(params, seeds, capture):
        rng = seeds.numpy()
        losses = np.sort(rng.random(5))[::-1] * params["learning_rate"]
        capture.artifact("loss_history", losses)
        capture.metric("score", float(1 - losses[-1]))

    return metalab.Experiment(
        name="my_exp",
        version="1",
        context={},
        operation=train,
        params=metalab.grid(learning_rate=[0.1, 0.01]),
        seeds=metalab.seeds(base=3, replicates=2),
    )


def test_readme_derived_metrics(chdir_tmp):
    from metalab.types import Metric

    # Define derived metric functions
    def final_loss(run) -> dict[str, Metric]:
        """Compute final loss from the loss_history artifact."""
        loss_history = run.artifact("loss_history")
        return {
            "final_loss": float(loss_history[-1]),
            "best_loss": float(loss_history.min()),
        }

    def normalized_score(run) -> dict[str, Metric]:
        """Compute normalized score using params and metrics."""
        lr = run.params["learning_rate"]
        score = run.metrics["score"]
        return {"normalized_score": score / lr}

    exp = derived_experiment()

    # Option 1: compute at run time (worker-side)
    handle = metalab.run(
        exp,
        derived_metrics=[final_loss, normalized_score],
    )
    results = handle.result()

    # Access stored derived metrics
    print(results[0].derived)  # {"final_loss": 0.001, "best_loss": 0.0005, ...}
    assert set(results[0].derived) == {"final_loss", "best_loss", "normalized_score"}

    # Option 2: compute post-hoc (client-side)
    results = metalab.load_results("./runs/my_exp")
    results.compute_derived([final_loss, normalized_score])

    # Recompute with overwrite
    results.compute_derived([final_loss], overwrite=True)

    # Include persisted derived metrics (from /derived/)
    df = results.to_dataframe(include_derived=True)
    # Columns: derived_final_loss, derived_best_loss, derived_normalized_score
    assert {"derived_final_loss", "derived_best_loss", "derived_normalized_score"} <= set(
        df.columns
    )

    # Or compute on-the-fly without persisting
    df = results.to_dataframe(derived_metrics=[final_loss])
    assert df["derived_final_loss"].notna().all()

    # Full export with all options
    df = results.to_dataframe(
        include_params=True,  # Columns prefixed with 'param_'
        include_metrics=True,  # Captured metrics
        include_record=True,  # run_id, status, duration, etc.
        include_derived=True,  # Persisted derived metrics (prefixed 'derived_')
    )

    # Analyze with pandas
    summary = df.groupby("param_learning_rate").agg(
        {
            "derived_final_loss": ["mean", "std"],
            "derived_normalized_score": "mean",
        }
    )
    assert list(summary.index) == [0.01, 0.1]
    expected = np.mean([r.derived["final_loss"] for r in results.filter(learning_rate=0.1)])
    assert summary.loc[0.1, ("derived_final_loss", "mean")] == pytest.approx(expected)


# ================================================================ README: progress tracking
def test_readme_progress_tracking(chdir_tmp, capsys):
    exp = derived_experiment()

    # Simple progress bar (auto-detects rich, falls back to text)
    handle = metalab.run(exp, progress=True)
    results = handle.result()  # Shows live progress
    assert len(results) == 4
    err = capsys.readouterr().err
    assert "4/4" in err

    # Customized progress display
    handle = metalab.run(
        exp,
        progress=metalab.Progress(
            title="Training Models",
            display_metrics=["loss:.4f", "accuracy:.2%"],
        ),
    )
    results = handle.result()
    err = capsys.readouterr().err
    assert "Training Models" in err and "4/4" in err  # all four found complete and skipped

    # For manual status checking without a progress display
    handle = metalab.run(exp)
    print(handle.status)  # RunStatus(total=9, completed=3, running=6, ...)
    print(handle.is_complete)  # False
    results = handle.result()  # Block until complete
    assert handle.is_complete and len(results) == 4


# ================================================================ README: fallback, transfer
def test_readme_fallback_storage_with_two_directories(chdir_tmp):
    from metalab.store import FallbackStore, create_store

    primary = create_store("./runs/primary")
    fallback = create_store("./runs/backup")

    # Writes go to primary, falls back to file store if the primary is unavailable
    store = FallbackStore(primary, fallback, write_to_both=True)
    handle = metalab.run(derived_experiment(), store=store, executor="inline")
    assert len(handle.result()) == 4
    assert len(metalab.load_results("./runs/primary")) == 4
    assert len(metalab.load_results("./runs/backup")) == 4


def test_readme_store_transfer_between_directories(chdir_tmp):
    from metalab.store import export_store, import_from_filestore

    metalab.run(derived_experiment(), "./runs/my_exp", executor="inline").result()
    export_store("./runs/my_exp", "./runs/export", experiment_id="my_exp:1")
    import_from_filestore("./runs/export", "./runs/again")
    assert [r.run_id for r in metalab.load_results("./runs/again")] == [
        r.run_id for r in metalab.load_results("./runs/my_exp")
    ]


# ================================================================ README: resume
def counting_experiment(counter: Path, fail_flag: Path | None = None):
    @metalab.operation
    def op(params, capture):
        with open(counter, "a") as fh:
            fh.write(f"{params['i']}\n")
        if fail_flag is not None and fail_flag.exists() and params["i"] % 10 == 0:
            raise RuntimeError("transient failure")
        capture.metric("i", params["i"])

    return metalab.Experiment(
        name="resumable",
        version="0.1",
        context={},
        operation=op,
        params=metalab.grid(i=list(range(100))),
        seeds=metalab.seeds(base=42),
    )


def executed(counter: Path) -> list[int]:
    return [int(line) for line in counter.read_text().split()] if counter.exists() else []


def test_readme_resume(chdir_tmp):
    counter = chdir_tmp / "calls.txt"
    exp = counting_experiment(counter)

    # First run: executes all 100 configurations
    results = metalab.run(exp, resume=True, executor="inline").results()
    assert len(results) == 100
    assert sorted(executed(counter)) == list(range(100))
    counter.unlink()

    # Second run: skips completed, only runs new/failed
    handle = metalab.run(exp, resume=True, executor="inline")
    results = handle.results()
    assert executed(counter) == []
    assert len(results) == 100
    assert all(r.status == "completed" for r in results)
    assert handle.status.skipped == 100
    assert handle.status.completed == 0


def test_readme_resume_reruns_only_failed_runs(chdir_tmp):
    counter, flag = chdir_tmp / "calls.txt", chdir_tmp / "fail.flag"
    flag.touch()
    exp = counting_experiment(counter, flag)

    with pytest.warns(metalab.RunsFailedWarning, match="10 of 100 runs did not complete"):
        results = metalab.run(exp, resume=True, executor="inline").results()
    assert sum(r.status == "failed" for r in results) == 10
    counter.unlink()
    flag.unlink()

    results = metalab.run(exp, resume=True, executor="inline").results()
    assert sorted(executed(counter)) == list(range(0, 100, 10))
    assert all(r.status == "completed" for r in results)


def test_run_ids_are_deterministic(tmp_path):
    first = metalab.run(pi_experiment(), store=tmp_path / "a", executor="inline").result()
    second = metalab.run(pi_experiment(), store=tmp_path / "b", executor="inline").result()
    assert [r.run_id for r in first] == [r.run_id for r in second]
    assert len({r.run_id for r in first}) == 9
    assert [r.metrics for r in first] == [r.metrics for r in second]


# ================================================================ README: context specs
def test_readme_context_specs(chdir_tmp):
    Path("data").mkdir()
    Path("data/train.csv").write_text("text\nhello world\n")

    def load_data(path):
        return Path(path).read_text()

    @metalab.context_spec
    class DataContext:
        dataset: metalab.FilePath  # Hash computed lazily at run() time
        vocab_size: int = 10000

    @metalab.operation
    def nlp_operation(context, params, capture):
        # Operations receive the context spec directly
        # Load data yourself using paths from the context
        data = load_data(str(context.dataset))
        capture.metric("vocab_size", context.vocab_size)
        capture.metric("n_chars", len(data))

    exp = metalab.Experiment(
        name="nlp_exp",
        version="0.1",
        context=DataContext(
            dataset=metalab.FilePath("data/train.csv"),
            vocab_size=10000,
        ),
        operation=nlp_operation,
        params=metalab.grid(hidden=[64, 128]),
        seeds=metalab.seeds(base=42),
    )

    results = metalab.run(exp, executor="inline").result()
    assert [r.status for r in results] == ["completed", "completed"]
    assert [r.params["hidden"] for r in results] == [64, 128]
    for run in results:
        assert run.metrics == {"vocab_size": 10000, "n_chars": len("text\nhello world\n")}

    # the file's metadata is part of the run identity: a changed file gives new runs
    Path("data/train.csv").write_text("text\nhello world, and more\n")
    changed = metalab.Experiment(
        name="nlp_exp",
        version="0.1",
        context=DataContext(dataset=metalab.FilePath("data/train.csv")),
        operation=nlp_operation,
        params=metalab.grid(hidden=[64, 128]),
        seeds=metalab.seeds(base=42),
    )
    rerun = metalab.run(changed, executor="inline").result()
    assert {r.run_id for r in rerun}.isdisjoint(r.run_id for r in results)


def test_readme_context_spec_missing_file_is_reported_at_run(chdir_tmp):
    @metalab.context_spec
    class DataContext:
        dataset: metalab.FilePath
        vocab_size: int = 10000

    @metalab.operation
    def nlp_operation(context, params, capture):
        capture.metric("vocab_size", context.vocab_size)

    spec = DataContext(dataset=metalab.FilePath("data/train.csv"))  # no file yet: fine
    exp = metalab.Experiment(
        name="nlp_exp",
        version="0.1",
        context=spec,
        operation=nlp_operation,
        params=metalab.grid(hidden=[64, 128]),
        seeds=metalab.seeds(base=42),
    )
    with pytest.raises(metalab.ContextFileError, match=r"train\.csv"):
        metalab.run(exp, executor="inline")


# ================================================================ README: seeded preprocessing
def test_readme_seeded_preprocessing(chdir_tmp):
    from metalab.seeds import SeedBundle

    BASE_SEED = 42

    Path("data").mkdir()
    Path("data/raw.csv").write_text("\n".join(str(i) for i in range(20)))

    def load_data(path):
        return np.array([float(v) for v in Path(path).read_text().split()])

    def train_test_split(data, rng):
        order = rng.permutation(len(data))
        cut = int(len(data) * 0.75)
        return data[order[:cut]], data[order[cut:]]

    def augment(train, rng):
        return train + rng.normal(0.0, 0.01, size=train.shape)

    def save(path, arrays):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    @metalab.context_spec
    class MyContext:
        raw_data: metalab.FilePath
        processed_data: metalab.FilePath

    def preprocess(raw_path: str, output_path: str, base_seed: int):
        """Preprocessing with reproducible randomness."""
        # Create a SeedBundle using the same API as inside operations
        seeds = SeedBundle.for_preprocessing(base_seed)

        data = load_data(raw_path)

        # Use derived RNGs for different preprocessing steps
        rng_split = seeds.numpy("train_test_split")
        train, test = train_test_split(data, rng=rng_split)

        rng_aug = seeds.numpy("augmentation")
        train_aug = augment(train, rng=rng_aug)

        save(output_path, {"train": train_aug, "test": test})

    @metalab.operation
    def train_model(context, params, seeds, capture):
        with np.load(str(context.processed_data)) as arrays:
            train = arrays["train"]
        capture.metric("train_mean", float(train.mean()) * params["lr"])
        capture.metric("seed", seeds.seed())

    # Include seed in the filename - changing BASE_SEED points to a different file
    spec = MyContext(
        raw_data=metalab.FilePath("./data/raw.csv"),
        processed_data=metalab.FilePath(f"./cache/processed_seed{BASE_SEED}.h5ad"),
    )

    # Preprocess with seeded RNG (only runs if file doesn't exist)
    if not Path(str(spec.processed_data)).exists():
        preprocess(str(spec.raw_data), str(spec.processed_data), BASE_SEED)

    # Experiment uses same base seed
    exp = metalab.Experiment(
        name="my_exp",
        version="0.1",
        context=spec,
        operation=train_model,
        params=metalab.grid(lr=[0.01, 0.001]),
        seeds=metalab.seeds(base=BASE_SEED, replicates=5),
    )

    assert Path("cache/processed_seed42.h5ad").is_file()
    results = metalab.run(exp, executor="inline").result()
    assert len(results) == 10
    assert all(r.status == "completed" for r in results)

    # preprocessing is reproducible
    preprocess(str(spec.raw_data), "cache/again.h5ad", BASE_SEED)
    with np.load("cache/processed_seed42.h5ad") as a, np.load("cache/again.h5ad") as b:
        np.testing.assert_array_equal(a["train"], b["train"])
        np.testing.assert_array_equal(a["test"], b["test"])

    # the preprocessing bundle never equals a replicate's, and has the operation interface
    prep = SeedBundle.for_preprocessing(BASE_SEED)
    assert prep.seed() not in {r.metrics["seed"] for r in results}
    assert 0.0 <= prep.rng().random() < 1.0
    assert prep.derive("x").seed() != prep.seed()
    assert prep.numpy().random() == SeedBundle.for_preprocessing(BASE_SEED).numpy().random()


# ================================================================ README: parallel execution
@pytest.mark.slow
def test_readme_parallel_execution(chdir_tmp):
    from metalab import ProcessExecutor

    exp = pi_experiment()

    handle = metalab.run(exp, executor=ProcessExecutor(max_workers=2))
    results = handle.result()

    assert len(results) == 9
    assert all(r.status == "completed" for r in results), [r.error for r in results]
    pids = {r.provenance["pid"] for r in results}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


# ================================================================ README: storage
def test_readme_custom_storage(chdir_tmp):
    exp = pi_experiment()

    handle = metalab.run(exp, store="./my_experiments/run_001", executor="inline")
    results = handle.result()

    # Load previous results
    loaded = metalab.load_results("./my_experiments/run_001")
    assert len(loaded) == 9
    assert [r.run_id for r in loaded] == [r.run_id for r in results]
    assert [r.metrics for r in loaded] == [r.metrics for r in results]
    assert not Path("runs").exists()


def test_readme_storage_backends_file_store(chdir_tmp):
    exp = pi_experiment()
    absolute = chdir_tmp / "absolute" / "path" / "to" / "store"

    # FileStore (default) - stores runs as JSON files
    handle = metalab.run(exp, store="./runs/my_exp", executor="inline")
    assert len(handle.result()) == 9
    handle = metalab.run(exp, store=absolute.as_uri(), executor="inline")
    assert len(handle.result()) == 9

    assert len(metalab.load_results("./runs/my_exp")) == 9
    assert len(metalab.load_results(absolute)) == 9


def test_readme_store_factory(chdir_tmp):
    from metalab.store import create_store, to_locator

    # Create from locator
    store = create_store("./runs/exp")

    # Convert store to locator (for serialization)
    locator = to_locator(store)  # "file:///absolute/path/to/runs/exp"

    assert locator == (Path.cwd() / "runs" / "exp").as_uri()
    assert locator.startswith("file:///")
    assert to_locator(create_store(locator)) == locator

    results = metalab.run(pi_experiment(), store=locator, executor="inline").result()
    assert len(metalab.load_results("./runs/exp")) == len(results) == 9


# ================================================================ README: metadata
def test_readme_experiment_metadata(store_path):
    my_context = {"dataset": "cells"}

    @metalab.operation
    def run_analysis(params, runtime, capture):
        capture.data("metadata", dict(runtime.metadata))
        capture.metric("gpu", runtime.metadata["resource_hints"]["gpu"])

    def experiment(metadata):
        return metalab.Experiment(
            name="perturbation_exp",
            version="1.0",
            context=my_context,
            operation=run_analysis,
            params=metalab.grid(threshold=[0.1, 0.5]),
            seeds=metalab.seeds(base=42),
            metadata=metadata,
        )

    metadata = {
        # Documentation
        "author": "your_name",
        "notes": "Testing new threshold values",
        # Data summaries (derived from context data)
        "n_cells": 50000,
        "groups": ["control", "treatment_A", "treatment_B"],
        # Resource hints for operations
        "resource_hints": {"gpu": True, "memory_gb": 32},
    }
    exp = experiment(metadata)
    results = metalab.run(exp, store=store_path, executor="inline").result()
    assert [r.status for r in results] == ["completed", "completed"]
    for run in results:
        assert run.artifact("metadata") == metadata  # available via runtime.metadata
        assert run.metrics["gpu"] is True

    manifests = sorted((store_path / "experiments").glob("*.json"))
    import json

    assert json.loads(manifests[-1].read_text())["metadata"] == metadata

    # Not fingerprinted - changing metadata does not create new runs
    records_before = sorted(p.name for p in (store_path / "runs").glob("*/*"))
    changed = experiment({**metadata, "notes": "different notes", "n_cells": 1})
    assert changed.run_ids() == exp.run_ids()
    handle = metalab.run(changed, store=store_path, executor="inline")
    rerun = handle.result()
    assert handle.status.skipped == 2
    assert handle.status.completed == 0
    assert [r.run_id for r in rerun] == [r.run_id for r in results]
    assert sorted(p.name for p in (store_path / "runs").glob("*/*")) == records_before


# ================================================================ quickstart
def test_quickstart_first_experiment_and_views(chdir_tmp, capsys):
    exp = pi_experiment()

    # Run and get results
    handle = metalab.run(exp, executor="inline")
    results = handle.result()
    print(results.table())
    assert len(table_rows(capsys.readouterr().out)) == 9

    print(handle.status)  # Check current status
    assert "total=9" in capsys.readouterr().out

    for run in results:
        print(f"Run {run.run_id}: π ≈ {run.metrics['pi_estimate']:.4f}")
        print(f"  Params: {run.params}")
        print(f"  Status: {run.status}")
    out = capsys.readouterr().out
    assert out.count("Status: completed") == 9
    assert out.count("Params: {'n_samples': 1000}") == 3


def test_quickstart_dataframe_export(store_path):
    exp = pi_experiment()
    results = metalab.run(exp, store=store_path, executor="inline").result()

    df = results.to_dataframe()
    print(df)

    # Filter and analyze
    successful = df[df["status"] == "completed"]
    print(successful.groupby("n_samples")["pi_estimate"].mean())


def test_readme_dataframe_columns(store_path):
    results = metalab.run(pi_experiment(), store=store_path, executor="inline").result()
    df = results.to_dataframe()
    assert len(df) == 9
    assert "param_n_samples" in df.columns
    assert "pi_estimate" in df.columns
    for column in ("run_id", "status", "duration"):
        assert column in df.columns
    means = df[df["status"] == "completed"].groupby("param_n_samples")["pi_estimate"].mean()
    assert list(means.index) == [1000, 10000, 100000]


def test_quickstart_parameter_grids():
    params = metalab.grid(n_samples=[1000, 10000, 100000])
    assert list(params) == [{"n_samples": 1000}, {"n_samples": 10000}, {"n_samples": 100000}]

    params = metalab.grid(n_samples=[1000, 10000], method=["basic", "stratified"])
    # Produces 4 combinations (2 x 2)
    assert len(params) == 4
    assert sorted((p["n_samples"], p["method"]) for p in params) == [
        (1000, "basic"),
        (1000, "stratified"),
        (10000, "basic"),
        (10000, "stratified"),
    ]


def test_quickstart_capturing_results(store_path):
    @metalab.operation
    def op(params, seeds, capture):
        capture.metric("pi_estimate", 3.14)
        capture.data("summary", {"n": params["n_samples"]})
        capture.data("samples", np.arange(3))
        capture.artifact("model", b"\x00weights", "bytes")
        capture.artifact("notes", "binary-ish", format="text")
        capture.log("debugging message")

    exp = metalab.Experiment(
        name="capturing",
        version="0.1",
        context={},
        operation=op,
        params=metalab.grid(n_samples=[1000]),
        seeds=metalab.seeds(base=42),
    )
    (run,) = metalab.run(exp, store=store_path, executor="inline").result()
    assert run.status == "completed", run.error
    assert run.metrics == {"pi_estimate": 3.14}
    assert run.artifact("summary") == {"n": 1000}
    np.testing.assert_array_equal(run.artifact("samples"), np.arange(3))
    assert run.artifact("model") == b"\x00weights"
    assert run.artifact("notes") == "binary-ish"
    assert "debugging message" in run.log


def test_quickstart_specifying_a_store_location(chdir_tmp):
    exp = pi_experiment()
    handle = metalab.run(exp, store="./runs/pi_experiment", executor="inline")
    first = handle.result()

    results = metalab.load_results("./runs/pi_experiment")
    assert [r.run_id for r in results] == [r.run_id for r in first]
    assert not Path("runs/pi_mc").exists()


def test_default_store_is_runs_slash_name(chdir_tmp):
    metalab.run(pi_experiment(), executor="inline").result()
    assert len(metalab.load_results("./runs/pi_mc")) == 9


# ================================================================ docs landing page
def test_docs_quick_example(chdir_tmp):
    class Model:
        def __init__(self, rng):
            self.weights = rng.normal(size=4)

    def init_model(rng):
        return Model(rng)

    def train_epoch(model, lr):
        model.weights = model.weights * (1 - lr)
        return float(np.abs(model.weights).sum())

    @metalab.operation
    def train_model(params, seeds, capture):
        # Initialize model with reproducible random weights
        rng = seeds.numpy()
        model = init_model(rng)

        # Train with swept hyperparameters
        for epoch in range(params["epochs"]):
            loss = train_epoch(model, lr=params["learning_rate"])
            capture.metric("loss", loss, step=epoch)

        # Capture final results
        capture.metric("final_loss", loss)
        capture.artifact("weights", model.weights, kind="numpy")

    exp = metalab.Experiment(
        name="hyperparameter_sweep",
        version="1.0",
        context={},
        operation=train_model,
        params=metalab.grid(
            learning_rate=[1e-4, 1e-3, 1e-2],
            epochs=[50, 100],
        ),
        seeds=metalab.seeds(base=42, replicates=3),
    )

    results = metalab.run(exp, store="./experiments", executor="inline").result()
    print(results.to_dataframe())

    assert len(results) == 18
    assert all(r.status == "completed" for r in results)
    for run in results:
        steps, _ = run.metric_series("loss")
        assert steps == list(range(run.params["epochs"]))
        assert run.artifact("weights").shape == (4,)
