"""Every shipped experiment config runs shrunk, and the benchmark scripts run small.

Each config runs shrunk once per session (:func:`shrunk_run`); the tests of one experiment
(regression, language model, VAE) read that run instead of training again.

The configs name their sampler with its settings (``sampler="narrow(keep=0.2,
margin=0.1)"``).
"""

import glob
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import pytest

import vmaptune as vt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _is_config(path: str) -> bool:
  with open(path) as f:
    return "def get_config(" in f.read()


# Experiment configs; the benchmark and profiling scripts beside them are not configs.
# The structural one (a compiled population per bucket) is smoke-tested through the command
# line in test_cli.py, with more checks; running it here again would double the cost. The IDX
# one is smoke-tested below on IDX files the test writes.
IDX_CONFIG = os.path.join(ROOT, "experiments", "idx_mlp.py")
CONFIGS = sorted(path for path in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
                 if _is_config(path) and not path.endswith("digits_mlp_structural.py")
                 and path != IDX_CONFIG)
# The smallest run a config's strategy accepts, where one lane and one epoch are not; and
# runs long enough for the tests below to see them learn (the regression has 8 steps an epoch).
SHRUNK = {"digits_mlp_halving.py": ["population=3", "epochs=3"],
          "diabetes_mlp.py": ["epochs=20"], "char_lm.py": ["epochs=2"]}
# The confirmation stage compiles one more program per run; test_confirmation.py tests it and
# these test the configs, so they run without it.
NO_CONFIRMATION = "confirm=off"


class ShrunkRun(NamedTuple):
  experiment: vt.Experiment  # The shrunk experiment that ran.
  result: vt.TuneResult
  out: pathlib.Path  # Its run directory.


@pytest.fixture(scope="session")
def shrunk_run(tmp_path_factory) -> Callable[[str], ShrunkRun]:
  """``shrunk_run(config_path)``: the config run shrunk (at least one lane for each
  combination of structural values, one round of one epoch, no confirmation), once per
  session whichever test asks first."""
  runs: dict[str, ShrunkRun] = {}

  def run(path: str) -> ShrunkRun:
    if path not in runs:
      experiment = vt.load_experiment(path)
      lanes = max(2, len(experiment.space.combinations()))
      shrunk = vt.override(experiment, [f"population={lanes}", "rounds=1", "epochs=1",
                                        NO_CONFIRMATION,
                                        *SHRUNK.get(os.path.basename(path), [])])
      out = tmp_path_factory.mktemp(os.path.basename(path)[:-3]) / "run"
      runs[path] = ShrunkRun(shrunk, shrunk.tune(out=str(out)), out)
    return runs[path]

  return run


def _config(name: str) -> str:
  return os.path.join(ROOT, "experiments", name)


@pytest.mark.slow  # An experiment config's smoke run.
@pytest.mark.parametrize("path", CONFIGS,
                         ids=os.path.basename)
def test_every_experiment_config_runs_shrunk(path, shrunk_run):
  shrunk, result, out = shrunk_run(path)
  assert result.best.status == "finished"
  assert len(vt.read_trials(out)) == shrunk.population
  # The run directory names the config's sampler with its settings.
  config = json.loads((out / "config.json").read_text())
  assert config["settings"]["sampler"] == vt.samplers.parse(shrunk.sampler).describe()


# The regression, language-model and VAE experiments: what their shrunk runs must show.


def test_the_diabetes_data_is_standardised_with_the_training_split_only():
  data = vt.data.diabetes()
  assert data.sizes == {"train": 266, "val": 88, "test": 88} and data.feature_shape == (10,)
  assert data.train.y.dtype == np.float32 and data.train.y.shape == (266,)
  np.testing.assert_allclose(data.train.x.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(data.train.x.std(0), 1, atol=1e-5)
  assert abs(data.train.y.mean()) < 1e-5 and abs(data.train.y.std() - 1) < 1e-5
  # The validation split was scaled by the training statistics, not its own.
  assert abs(data.val.y.mean()) > 1e-3 and abs(data.val.y.std() - 1) > 1e-3
  from sklearn.datasets import load_diabetes

  raw = load_diabetes().target
  restored = np.sort(np.concatenate([data.train.y, data.val.y, data.read_test().y])
                     * data.target_std + data.target_mean)
  np.testing.assert_allclose(restored, np.sort(raw), rtol=1e-5)


@pytest.mark.slow  # An experiment config's smoke run.
def test_the_diabetes_regression_beats_predicting_the_mean(shrunk_run):
  shrunk, result, out = shrunk_run(_config("diabetes_mlp.py"))
  records = vt.read_trials(out)
  assert all({"val_mse", "val_mae"} <= set(r) for r in records)
  assert result.settings["objective"] == "regression"
  # The standardised target's variance is about 1 on validation: predicting the mean.
  assert result.best.metrics["mse"] < 0.8 * float(shrunk.load_data().val.y.var())


def test_the_grammar_text_is_deterministic_and_cut_into_token_sequences():
  text = vt.data.grammar_text(300, seed=3)
  assert text == vt.data.grammar_text(300, seed=3) != vt.data.grammar_text(300, seed=4)
  vocab = vt.data.vocabulary(text)
  assert set(vocab) <= set(" .abcdefghijklmnopqrstuvwxyz") and vocab[0] == " "
  data = vt.data.characters(text, 20, val_fraction=0.1, test_fraction=0.1, seed=0)
  splits = [data.train, data.val, data.read_test()]
  assert all(s.dtype == np.int32 and s.shape[1] == 20 for s in splits)
  assert sum(len(s) for s in splits) == len(text) // 20
  # The windows are the text, in order, cut every 20 characters.
  windows = {vt.data.decode(row, vocab) for s in splits for row in s}
  assert windows == {text[i:i + 20] for i in range(0, len(text) // 20 * 20, 20)}
  with pytest.raises(vt.DataError, match="not in the vocabulary"):
    vt.data.characters(text, 20, vocab="abc")
  with pytest.raises(vt.DataError, match="expected at least 2"):
    vt.data.characters("the cat.", 20)


@pytest.mark.slow  # An experiment config's smoke run.
def test_the_char_lm_beats_uniform_prediction_and_records_its_metrics(shrunk_run):
  shrunk, result, out = shrunk_run(_config("char_lm.py"))
  data = shrunk.load_data()
  vocab_size = shrunk.model.vocab_size
  assert int(data.train.max()) < vocab_size == len(vt.data.vocabulary(
      vt.data.grammar_text(2000, seed=0)))
  records = vt.read_trials(out)
  for record in records:
    assert {"val_loss", "val_perplexity", "val_token_accuracy"} <= set(record)
    assert record["val_perplexity"] == pytest.approx(math.exp(record["val_loss"]), rel=1e-4)
    assert {"learning_rate", "weight_decay", "warmup_epochs",
            "dropout_rate"} == set(record["hparams"])
  # Predicting every character uniformly scores log(V) nats; by its frequency in the training
  # text, the cross-entropy below (a model that ignores the context).
  frequency = np.bincount(data.train[:, 1:].ravel(), minlength=vocab_size) / data.train[:, 1:].size
  unigram = float(-np.log(frequency[data.val[:, 1:]]).mean())
  assert unigram < math.log(vocab_size)
  best = result.best.metrics
  assert best["loss"] < unigram - 0.3, (best, unigram)
  assert best["token_accuracy"] > frequency.max()


@pytest.mark.slow  # The VAE config's model run eagerly: dozens of small programs.
def test_the_vae_samples_in_training_and_evaluates_deterministically():
  experiment = vt.load_experiment(_config("digits_vae.py"))
  model, objective = experiment.model, experiment.objective
  x = experiment.load_data().val.x[:16]
  params = model.init(jax.random.key(0), x)["params"]
  batch, hparams = (x, None), {"kl_weight": np.float32(1.0)}
  losses = [float(objective.train_loss(model, params, batch, jax.random.key(k), hparams))
            for k in (1, 1, 2)]
  assert losses[0] == losses[1] != losses[2]  # z is drawn from the key.
  first, again = (model.apply({"params": params}, x) for _ in range(2))
  for a, b in zip(first, again, strict=True):
    np.testing.assert_array_equal(a, b)
  mean = first[1]
  np.testing.assert_allclose(model.apply({"params": params}, x, jax.random.key(3))[1], mean)


@pytest.mark.slow  # An experiment config's smoke run.
def test_the_vae_searches_the_kl_weight_and_ranks_by_the_negative_elbo(shrunk_run):
  shrunk, result, out = shrunk_run(_config("digits_vae.py"))
  records = vt.read_trials(out)
  weights = [r["hparams"]["kl_weight"] for r in records]
  assert len(set(weights)) == len(records) and all(1e-2 <= w <= 1e1 for w in weights)
  for r in records:
    assert r["val_neg_elbo"] == pytest.approx(r["val_reconstruction"] + r["val_kl"], rel=1e-4)
    assert 0 < r["val_pixel_mse"] < 1 and r["val_kl"] >= 0
  assert json.loads((out / "config.json").read_text())["settings"]["objective"] == "vae"
  assert result.best.metrics["neg_elbo"] == min(r["val_neg_elbo"] for r in records)
  # Trained, it explains the validation images better than untrained.
  data = shrunk.load_data()
  params = shrunk.model.init(jax.random.key(0), data.val.x[:1])["params"]
  untrained = shrunk.objective.metrics()["neg_elbo"].per_example(
      shrunk.model.apply({"params": params}, data.val.x), data.val)
  assert result.best.metrics["neg_elbo"] < 0.9 * float(untrained.mean())


@pytest.mark.slow  # A subprocess.
def test_the_regression_experiment_runs_from_the_command_line(tmp_path):
  out = tmp_path / "run"
  done = subprocess.run(
      [sys.executable, "-m", "vmaptune.cli", "run", _config("diabetes_mlp.py"),
       "--set", "population=2", "--set", "rounds=1", "--set", "epochs=2",
       "--set", NO_CONFIRMATION, "--out", str(out)],
      capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert done.returncode == 0, done.stdout + done.stderr
  for expected in ("diabetes_mlp: population 2, 1 rounds of 2 epochs", "validation mse: best",
                   "chosen config", "val mse", "test mse"):
    assert expected in done.stdout, expected
  records = vt.read_trials(out)
  assert len(records) == 2 and all(math.isfinite(r["val_mse"]) for r in records)


@pytest.mark.slow  # An experiment config's smoke run.
def test_the_idx_config_tunes_on_the_idx_files_its_variable_names(tmp_path, monkeypatch):
  rng = np.random.default_rng(0)
  files = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (60, 6, 6), dtype=np.uint8),
           "train-labels-idx1-ubyte.gz": (np.arange(60) % 10).astype(np.uint8),
           "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
           "t10k-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8)}
  for name, array in files.items():
    vt.data.write_idx(tmp_path / name, array)
  monkeypatch.setenv("VMAPTUNE_IDX_DIR", str(tmp_path))
  experiment = vt.load_experiment(IDX_CONFIG)
  data = experiment.load_data()
  assert data.sizes == {"train": 48, "val": 12, "test": 20} and data.feature_shape == (6, 6, 1)
  np.testing.assert_array_equal(data.read_test().y, files["t10k-labels-idx1-ubyte"])
  shrunk = vt.override(experiment, ["population=2", "rounds=1", "epochs=1", "batch_size=16",
                                    NO_CONFIRMATION])
  result = shrunk.tune(out=str(tmp_path / "run"))
  assert result.best.status == "finished" and len(vt.read_trials(tmp_path / "run")) == 2
  monkeypatch.setenv("VMAPTUNE_IDX_DIR", str(tmp_path / "run"))  # No IDX files there.
  with pytest.raises(vt.DataError, match="run: no train-images-idx3-ubyte or "
                                         "train-labels-idx1-ubyte"):
    experiment.load_data()


def test_the_idx_config_without_its_variable_reads_the_digits_written_as_idx(monkeypatch,
                                                                            capsys):
  from sklearn.datasets import load_digits

  monkeypatch.delenv("VMAPTUNE_IDX_DIR", raising=False)
  data = vt.load_experiment(IDX_CONFIG).load_data()
  assert "VMAPTUNE_IDX_DIR is not set" in capsys.readouterr().err
  assert data.name == "digits-idx" and data.sizes == {"train": 1150, "val": 288, "test": 359}
  labels = np.concatenate([data.train.y, data.val.y, data.read_test().y])
  np.testing.assert_array_equal(np.bincount(labels), np.bincount(load_digits().target))


def _script(name: str):
  """``experiments/<name>.py`` loaded as a module."""
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Its dataclasses look themselves up there.
  spec.loader.exec_module(module)
  return module


def _run_script(name: str, args: list[str], out) -> dict:
  """Runs ``experiments/<name>.py``'s ``main(args + ["--out", out])`` in this process and
  returns the results it wrote."""
  assert _script(name).main([*args, "--out", str(out)]) == 0
  return json.loads(out.read_text())


@pytest.fixture(scope="module")
def gpu_check_dry(tmp_path_factory):
  """``experiments/gpu_check.sh --dry`` run once: the GPU machine's steps, tiny, on CPU. Its
  search step is the search benchmark's smoke run (one task and seed, a tiny population, the
  default and Optuna TPE driving the sequential trainer). Returns the folder it wrote."""
  import subprocess

  out = tmp_path_factory.mktemp("gpu-check") / "out"
  done = subprocess.run(["bash", os.path.join(ROOT, "experiments", "gpu_check.sh"), "--dry"],
                        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable},
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  return out


@pytest.mark.slow
def test_the_throughput_benchmark_runs_and_writes_its_results(gpu_check_dry):
  """A smoke run (tiny sizes, no Optuna): the script must not rot between full runs. Its run
  is the dry GPU check's throughput step (population size 2), made once for both tests."""
  report = json.loads((gpu_check_dry / "throughput.json").read_text())
  sizes = report["workloads"]["digits_mlp"]["sizes"]
  assert set(sizes) == {"2"}
  ratios = sizes["2"]["ratios"]
  assert ratios["vs_sequential"] > 0 and 0 < ratios["fraction_of_matmul_peak"]
  assert report["matmul_peak_gflops"] > 0 and report["machine"]["devices"] >= 1


@pytest.mark.slow
def test_the_strategies_benchmark_runs_and_writes_its_results(tmp_path):
  """A smoke run (one seed, a tiny population, no confirmation stage: the script leaves it to
  the library, which tests it): the script must not rot."""
  report = _run_script("bench_strategies", ["--problems", "digits_mlp", "--seeds", "1", "--set",
                                             "population=6", "rounds=1", "epochs=3",
                                             "confirm='off'"], tmp_path / "strategies.json")
  summary = report["problems"]["digits_mlp"]["summary"]
  assert set(summary) == {"random", "halving", "hyperband", "pbt"}
  assert summary["halving"]["lane_epochs"]["mean"] < summary["random"]["lane_epochs"]["mean"]
  assert set(report["problems"]["digits_mlp"]["targets"]) == {"halving", "pbt"}


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_tiny_on_cpu(gpu_check_dry):
  written = {p.name for p in gpu_check_dry.iterdir()}
  assert {"machine.txt", "throughput.log", "throughput.json", "search.log", "search.json",
          "race.log", "race.json", "race.md", "race.png"} <= written
  throughput = json.loads((gpu_check_dry / "throughput.json").read_text())
  assert set(throughput["workloads"]["digits_mlp"]["sizes"]) == {"2"}
  assert "search" in (gpu_check_dry / "search.log").read_text()
  assert "| digits_sgd | tpe | 10 |" in (gpu_check_dry / "race.log").read_text()


@pytest.mark.slow
def test_the_search_benchmark_gives_the_baseline_the_defaults_budget(gpu_check_dry):
  """Every figure is there, and the baseline spent what the default did: its trials and
  the retrains that measure its optimism within the default's lane-epochs, and about its
  wall time."""
  report = json.loads((gpu_check_dry / "search.json").read_text())
  default, epochs = report["default"], 2
  task = report["tasks"]["digits_mlp"]
  assert task["settings"]["epochs"] == epochs
  [budget] = task["budgets"]
  for table in ("equal_wall", "equal_lane_epochs"):
    assert set(task[table]["summary"]) == {default, "tpe-sequential"}
    [ours] = task[table]["runs"][default]
    [tpe] = task[table]["runs"]["tpe-sequential"]
    for run in (ours, tpe):
      assert 0 < run["test_accuracy"] <= 1 and -1 <= run["optimism"] <= 1
      assert run["configurations"] >= 1 and run["lane_epochs"] >= epochs
    assert (ours["wall_s"], ours["lane_epochs"]) == (budget["wall_s"], budget["lane_epochs"])
    assert task[table]["summary"]["tpe-sequential"]["test_accuracy"]["mean"] == \
        tpe["test_accuracy"]
  by_wall, by_epochs = (task[t]["runs"]["tpe-sequential"][0] for t in ("equal_wall",
                                                                      "equal_lane_epochs"))
  assert by_epochs["lane_epochs"] == epochs * (by_epochs["configurations"]
                                               + report["retrain_seeds"])
  assert by_epochs["lane_epochs"] <= budget["lane_epochs"] < by_epochs["lane_epochs"] + epochs
  # About the default's wall time, unless that was too short for TPE's least: its compile,
  # one trial and the retrains (then it runs one configuration and overshoots).
  assert by_wall["configurations"] == 1 or \
      by_wall["wall_s"] == pytest.approx(budget["wall_s"], rel=0.5)
  assert set(task["targets"]) == {"vs_tpe_sequential", "optimism"}


@pytest.mark.slow  # The anytime race's smoke run: two 10 s budgets and their compiles.
def test_the_budget_race_measures_the_expected_test_and_resumes(gpu_check_dry):
  """One seed of the default and TPE at 10 s on the quick task (the dry GPU check's race
  step): each cell's expected test is the mean of its fresh-seed retrains, its regret the
  ceiling's distance to it on the same seeds (the ceiling's configuration retrained on
  them: here its own 2 seeds, so the same mean); the table and the figure are written;
  a second run with
  --resume runs nothing again, and one without it refuses to overwrite the results."""
  args = ["--quick", "--budgets", "10", "--seeds", "1",
          "--ceilings", str(gpu_check_dry / "ceilings.json")]
  out = gpu_check_dry / "race.json"
  report = json.loads(out.read_text())
  ceiling = report["tasks"]["digits_sgd"]["ceiling"]
  assert 0.1 < ceiling["expected_test"] <= ceiling["best_test_mean"] <= 1
  assert report["complete"] and report["eval_seeds"] == 2
  paired = ceiling["on_eval_seeds"]["2"]
  assert paired["expected_test"] == pytest.approx(np.mean(paired["test_seeds"]))
  assert paired["expected_test"] == pytest.approx(ceiling["expected_test"], abs=1e-6)
  cells = {c["method"]: c for c in report["cells"]}
  assert set(cells) == {"default", "tpe"}
  tpe = cells["tpe"]
  assert "expected_test" in tpe and tpe["configurations"] >= 1
  for cell in cells.values():
    if "refused" in cell:  # A loaded machine may compile too slowly for 10 s.
      assert "cannot hold one round" in cell["refused"]
      continue
    assert len(cell["test_seeds"]) == 2 and 0 <= cell["expected_test"] <= 1
    assert cell["expected_test"] == pytest.approx(np.mean(cell["test_seeds"]))
    assert cell["regret"] == pytest.approx(paired["expected_test"] - cell["expected_test"])
    assert cell["optimism"] == pytest.approx(cell["reported"] - cell["expected_test"])
    assert 0 < cell["wall_s"] < 30
  rows = {r["method"]: r for r in report["summary"]["rows"]}
  assert rows["tpe"]["expected_test"] == pytest.approx(tpe["expected_test"])
  assert {t["target"] for t in report["targets"]} >= {"time to quality"}
  assert "| digits_sgd | tpe | 10 |" in (gpu_check_dry / "race.md").read_text()
  assert (gpu_check_dry / "race.png").read_bytes()[:4] == b"\x89PNG"

  again = _run_script("bench_budget", [*args, "--resume"], out)
  assert again["cells"] == report["cells"]
  with pytest.raises(SystemExit, match="--resume"):
    _script("bench_budget").main([*args, "--out", str(out)])


def test_the_budget_race_refuses_bad_settings_and_a_resume_of_another_task(tmp_path, capsys):
  """Refused before anything trains: a seed count too small for a standard error, and
  --resume of results measured with another definition of a task."""
  race = _script("bench_budget")
  with pytest.raises(SystemExit):
    race.main(["--quick", "--eval-seeds", "1", "--out", str(tmp_path / "race.json")])
  assert "--eval-seeds=1; expected a whole number of at least 2" in capsys.readouterr().err
  earlier = tmp_path / "earlier.json"
  earlier.write_text(json.dumps({"tasks": {"digits_sgd": {"definition": {"epochs": 99}}},
                                 "cells": [{"task": "digits_sgd"}]}))
  with pytest.raises(SystemExit, match="task digits_sgd .* another definition"):
    race.main(["--quick", "--resume", "--out", str(earlier)])


def _choice_run(**overrides) -> dict:
  """A search's data as bench_choice records it: candidate 0 scored well on its two
  confirmation seeds by luck (its neighbourhood is noisy, its estimate lower); candidate 1
  is the better one, steady; candidate 2 diverged on a seed."""
  candidates = [
      dict(search=0.93, estimate=0.90, estimate_se=0.005, local_sd=0.08, seeds=[0.95, 0.95],
           truth_val=0.85, truth_test=0.86, truth_test_sd=0.07),
      dict(search=0.92, estimate=0.91, estimate_se=0.005, local_sd=0.01, seeds=[0.92, 0.92],
           truth_val=0.91, truth_test=0.92, truth_test_sd=0.01),
      dict(search=0.99, estimate=0.95, estimate_se=0.005, local_sd=0.01, seeds=[0.99, None],
           truth_val=0.50, truth_test=0.50, truth_test_sd=0.3)]
  return {"task": "toy", "seed": 0, "typical_spread": 0.01,
          "candidates": candidates, **overrides}


def test_the_choice_rules_replay_a_confirmation_and_score_the_chosen_candidate():
  """The mean of two lucky seeds chooses the noisy candidate; combining them with the
  neighbours' estimate by their precisions (the local noise weighs the seeds) chooses the
  steady one; a candidate with a diverged seed is never chosen; the
  analysis scores each rule by the chosen candidate's retrains."""
  choice = _script("bench_choice")
  run = _choice_run()
  # Every rule passes over a candidate a seed of which diverged, as the library does.
  assert choice.choose(run, "search", 2) == 0
  assert choice.choose(run, "estimate", 2) == 1
  assert choice.choose(run, "mean", 2) == 0
  assert choice.choose(run, "library", 2) == 0  # Equal seeds: no spread, the mean's rule.
  assert choice.choose(run, "posterior", 2) == 1
  assert choice.choose(run, "lcb-local", 2) == 1
  assert choice.choose(run, "mean", 1) == 2  # Its first seed did not diverge.
  summary = choice.analyse([run, _choice_run(seed=1)], [2])
  assert summary["toy S=2 mean"]["expected_test"] == pytest.approx(0.86)
  assert summary["toy S=2 mean"]["regret"] == pytest.approx(0.06)
  assert summary["toy S=2 mean"]["unstable"] == 2
  assert summary["toy S=2 posterior"]["regret"] == pytest.approx(0.0)
  assert "| toy | 2 | posterior | 92.00 ± 0.00 | 0.00 | 0 of 2 |" in choice.markdown(summary)


@pytest.mark.slow  # A search, its confirmation and the candidates' retrains.
def test_the_choice_benchmark_measures_every_candidate_and_replays_the_rules(tmp_path, capsys):
  """One small search of the narrow-optimum task: every candidate of its confirmation has
  its confirmation seeds, an estimate, a local noise and its retrains' expected test; the
  rules' table is printed from the results without training."""
  out = tmp_path / "choice.json"
  args = ["--tasks", "digits_sgd", "--seeds", "1", "--rounds", "digits_sgd=1",
          "--confirm-seeds", "2", "--use-seeds", "1", "2", "--eval-seeds", "2"]
  report = _run_script("bench_choice", args, out)
  (run,) = report["runs"]
  assert run["task"] == "digits_sgd" and run["trials"] == 64
  assert 2 <= len(run["candidates"]) <= 64  # Those that trained the full budget.
  for candidate in run["candidates"]:
    assert len(candidate["seeds"]) == 2
    assert 0 <= candidate["truth_test"] <= 1 and candidate["local_sd"] >= 0
  assert {row["rule"] for row in report["summary"].values()} == set(_script("bench_choice").RULES)
  capsys.readouterr()
  assert _script("bench_choice").main(["--analyse", str(out), "--use-seeds", "2"]) == 0
  assert "| digits_sgd | 2 | library |" in capsys.readouterr().out
