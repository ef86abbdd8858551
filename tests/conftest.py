"""Small shared fixtures: a reduced digits set, a tiny MLP, a learning-rate space."""

import textwrap

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.compilation import CompileCounter

# One CPU device per core for the whole session, as `tune` asks for it, before any test
# (or doctest) starts JAX: results do not depend on which test ran first.
vt.devices.configure_cpu_devices()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the session: a program another test already
  compiled (the same model, shapes and settings) is loaded, not compiled again. Loading
  counts as obtaining a program, so compile-count assertions hold either way."""
  with vt.compilation.persistent_cache(str(tmp_path_factory.mktemp("jax-cache"))):
    yield


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
FAST = dict(population=8, rounds=3, epochs=2, batch_size=32, seed=0)


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
EXPERIMENT = textwrap.dedent("""
    import numpy as np
    import vmaptune as vt

    def data():
      from sklearn.datasets import load_digits
      raw = load_digits()
      x = (raw.images[:500, :, :, None] / 16.0).astype(np.float32)
      return vt.data.from_arrays(x, raw.target[:500], val_fraction=0.2, test_fraction=0.2,
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
