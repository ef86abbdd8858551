"""Every shipped experiment config runs shrunk, and the benchmark scripts run small.

The configs name their sampler with its settings (``sampler="narrow(keep=0.2,
margin=0.1)"``): ``keep`` and ``margin`` are the narrow sampler's settings,
not the run's.
"""

import glob
import importlib.util
import json
import os
import sys

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
# The smallest run a config's strategy accepts, where one lane and one epoch are not.
SHRUNK = {"digits_mlp_halving.py": ["population=3", "epochs=3"]}
# The confirmation stage compiles one more program per run; test_confirmation.py tests it and
# these test the configs, so they run without it.
NO_CONFIRMATION = "confirm=off"


@pytest.mark.parametrize("path", CONFIGS,
                         ids=os.path.basename)
def test_every_experiment_config_runs_shrunk(path, tmp_path):
  experiment = vt.load_experiment(path)
  # At least one lane for each combination of structural values (one, without any).
  lanes = max(2, len(experiment.space.combinations()))
  shrunk = vt.override(experiment, [f"population={lanes}", "rounds=1", "epochs=1",
                                    NO_CONFIRMATION, *SHRUNK.get(os.path.basename(path), [])])
  result = shrunk.tune(out=str(tmp_path / "run"))
  assert result.best.status == "finished"
  assert len(vt.read_trials(tmp_path / "run")) == shrunk.population
  # The run directory names the config's sampler with its settings.
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["settings"]["sampler"] == vt.samplers.parse(shrunk.sampler).describe()


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


def _run_script(name: str, args: list[str], out) -> dict:
  """Runs ``experiments/<name>.py``'s ``main(args + ["--out", out])`` in this process and
  returns the results it wrote."""
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "experiments", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # Its dataclasses look themselves up there.
  spec.loader.exec_module(module)
  assert module.main([*args, "--out", str(out)]) == 0
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
  assert {"machine.txt", "throughput.log", "throughput.json", "search.log",
          "search.json"} <= {p.name for p in gpu_check_dry.iterdir()}
  throughput = json.loads((gpu_check_dry / "throughput.json").read_text())
  assert set(throughput["workloads"]["digits_mlp"]["sizes"]) == {"2"}
  assert "search" in (gpu_check_dry / "search.log").read_text()


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
  assert by_wall["wall_s"] == pytest.approx(budget["wall_s"], rel=0.5)
  assert set(task["targets"]) == {"vs_tpe_sequential", "optimism"}
