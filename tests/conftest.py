"""Shared fixtures: a reduced digits set, a tiny MLP, a learning-rate space, fast settings,
experiment configs, and run directories (one tuned, one written by hand) for the reports."""

import importlib.util
import json
import os
import textwrap

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.rundir import write_json

# One CPU device per core for the whole session, as `tune` asks for it, before any test
# (or doctest) starts JAX: results do not depend on which test ran first.
vt.lanes.devices.configure_cpu_devices()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the session: a program another test already
  compiled (the same model, shapes and settings) is loaded, not compiled again. Loading
  counts as obtaining a program, so compile-count assertions hold either way.

  The processes the tests start (commands, scripts, several processes of a run) inherit
  it through ``$VMAPTUNE_CACHE_DIR``: a small command spends about 40% of its time
  compiling (15 s cold, 9 s warm, measured 2026-12-07). One cache per xdist worker: its
  tests, and the processes they start, run one at a time."""
  path = str(tmp_path_factory.mktemp("jax-cache"))
  previous = os.environ.get("VMAPTUNE_CACHE_DIR")
  os.environ["VMAPTUNE_CACHE_DIR"] = path
  try:
    with vt.lanes.compilation.persistent_cache(path):
      yield
  finally:
    if previous is None:
      os.environ.pop("VMAPTUNE_CACHE_DIR", None)
    else:
      os.environ["VMAPTUNE_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def digits() -> vt.Dataset:
  return vt.data.digits()


@pytest.fixture(scope="session")
def small_arrays():
  """600 digits examples: enough to learn from, small enough to compile and run fast."""
  from sklearn.datasets import load_digits

  raw = load_digits()
  return (raw.images[:600, :, :, None] / 16.0).astype(np.float32), raw.target[:600]


@pytest.fixture
def small_data(small_arrays) -> vt.Dataset:
  """Fresh per test, so its test-read counter starts at zero: 360/120/120 examples."""
  x, y = small_arrays
  return vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)


@pytest.fixture(scope="session")
def tiny_mlp() -> vt.models.MLP:
  return vt.models.MLP(hidden=(16,))


@pytest.fixture(scope="session")
def lr_space() -> vt.Space:
  return vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                  weight_decay=vt.LogUniform(1e-6, 1e-2))


# Settings that make a run take about a second on a 2-core CPU.
# The confirmation stage is off: tests of it ask for it (test_confirmation.py).
FAST = dict(population=8, rounds=3, epochs=2, batch_size=32, seed=0, confirm="off")


@pytest.fixture
def fast_settings() -> dict:
  return dict(FAST)


@pytest.fixture
def refused_before_compiling():
  """``check(error, message, **tune_args)``: ``vt.tune(**tune_args)`` raises ``error``
  matching ``message`` and compiles nothing."""

  def check(error: type[Exception], message: str, **tune_args) -> None:
    with CompileCounter() as compiled, pytest.raises(error, match=message):
      vt.tune(**tune_args)
    assert compiled.compiles == 0

  return check


# An experiment config on 500 digits, for the tests that run it in subprocesses.
# Its digits are read without importing scikit-learn (with SciPy and pandas, 3 to 7 s of
# each process).
EXPERIMENT = textwrap.dedent("""
    import numpy as np
    import vmaptune as vt

    def data():
      images, target = vt.data.digits_arrays(500)
      x = (images[:, :, :, None] / 16.0).astype(np.float32)
      return vt.data.from_arrays(x, target, val_fraction=0.2, test_fraction=0.2,
                                 seed=0, num_classes=10)

    def get_config():
      return vt.Experiment(name="small_digits", model=vt.models.MLP(hidden=(16,)), data=data,
                           space=vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0),
                                          weight_decay=vt.LogUniform(1e-6, 1e-2)),
                           population=8, rounds=2, epochs=2, batch_size=32, seed=0)
""")


@pytest.fixture
def experiment_file(tmp_path) -> str:
  """The path of a small experiment config (8 lanes, 2 rounds of 2 epochs)."""
  path = tmp_path / "small_digits_exp.py"
  path.write_text(EXPERIMENT)
  return str(path)


# The test extra installs matplotlib; without it the figure tests skip, and the text
# report is still tested.
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="figures need matplotlib (the report extra)")
PNG = b"\x89PNG\r\n\x1a\n"

# A three-parameter space for the reports: every pair of parameters is a scatter panel.
REPORT_SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                        weight_decay=vt.LogUniform(1e-6, 1e-2), b1=vt.Uniform(0.8, 0.95))


@pytest.fixture(scope="session")
def written_run(small_arrays, tmp_path_factory):
  """Two rounds of ``REPORT_SPACE`` written to a run directory: ``(result, path)``;
  no confirmation, so the chosen trial is the search's best (the command line's tests
  show and report confirmed runs)."""
  out = tmp_path_factory.mktemp("run") / "run"
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  result = vt.tune(vt.models.MLP(hidden=(16,)), data, REPORT_SPACE, out=str(out),
                   population=8, rounds=2, epochs=2, batch_size=32,
                   sampler="narrow(keep=0.25)", seed=0, confirm="off")
  return result, out


@pytest.fixture(scope="session")
def written_report(written_run):
  """``vt.report`` of :func:`written_run`, figures included (when matplotlib is installed)."""
  return vt.report(written_run[1], quiet=True)


def write_run(path, space: dict, rows: list[dict], epochs: int = 1) -> None:
  """A run directory of one round written by hand: ``rows`` of hparams and accuracy
  (``None``: diverged), and the summary of a run stopped before its round's entry."""
  os.makedirs(path)
  write_json(os.path.join(path, "config.json"),
             {"settings": {"epochs": epochs, "rounds": 1}, "space": space})
  with open(os.path.join(path, "trials.jsonl"), "w") as f:
    for i, row in enumerate(rows):
      diverged = row["acc"] is None
      f.write(json.dumps({
          "round": 0, "trial": i, "lane": i, "bracket": -1, "hparams": row["hparams"],
          "start_epoch": 0, "epochs": epochs, "val_accuracy": row["acc"],
          "val_loss": None if diverged else 1 - row["acc"],
          "status": "diverged" if diverged else "finished", "parent": -1, "kept": False,
          "epoch_loss": [None if diverged else 1.0] * epochs}) + "\n")
  write_json(os.path.join(path, "summary.json"),
             {"space": space, "settings": {"epochs": epochs},
              "rounds": [{"round": 0, "trials": len(rows), "wall_s": 1.0}] if rows else []})


def regression_table(values: dict, mse: np.ndarray) -> vt.trials.TrialTable:
  """One round of regression trials written by hand: ``values`` (``{name: [T]}``)
  and their mse (NaN: diverged), mae half of it."""
  count = len(mse)
  return vt.trials.TrialTable(
      hparams={k: np.asarray(v, np.float32) for k, v in values.items()},
      round=np.zeros(count, np.int64), trial=np.arange(count), lane=np.arange(count),
      bracket=np.full(count, -1), start_epoch=np.zeros(count, np.int64),
      epochs=np.ones(count, np.int64), parent=np.full(count, -1),
      status=np.where(np.isnan(mse), "diverged", "finished").astype(object),
      metrics={"mse": mse, "mae": mse / 2}, epoch_loss=np.ones((count, 1), np.float32),
      scoring=vt.objectives.parse("regression").scoring)


@pytest.fixture
def handwritten_regression():
  """:func:`regression_table`, to make a table of regression trials by hand."""
  return regression_table


@pytest.fixture
def handwritten_run():
  """:func:`write_run`, to write a run directory by hand."""
  return write_run


@pytest.fixture
def synthetic_run(tmp_path) -> str:
  """A hand-written run of 40 trials: accuracy rises by 0.4 with the learning rate above
  1e-2, by 0.05 with relu, and does not depend on the weight decay; the last trial (tanh,
  highest rate) diverged."""
  rows = []
  for i in range(40):
    acc = 0.5 + 0.4 * (i >= 20) + 0.05 * (i % 2 == 0)
    rows.append({"hparams": {"learning_rate": 10 ** (-4 + 4 * i / 39),
                             "weight_decay": 10 ** (-6 + 4 * ((i * 17) % 40) / 39),
                             "activation": ["relu", "tanh"][i % 2], "depth": i % 3 + 1},
                 "acc": None if i == 39 else acc})
  space = {"learning_rate": {"type": "LogUniform", "low": 1e-4, "high": 1.0},
           "weight_decay": {"type": "LogUniform", "low": 1e-6, "high": 1e-2},
           "activation": {"type": "Choice", "values": ["relu", "tanh"]},
           "depth": {"type": "IntUniform", "low": 1, "high": 3, "log": False,
                     "structural": True}}
  path = str(tmp_path / "synthetic")
  write_run(path, space, rows)
  return path
