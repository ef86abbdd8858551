"""vmaptune: tune many small JAX/Flax models at once, as one vmapped program.

>>> import vmaptune as vt
>>> space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0),
...                  weight_decay=vt.LogUniform(1e-8, 1e-1))
>>> sorted(space)
['learning_rate', 'weight_decay']
"""

from vmaptune import (
  compilation,
  data,
  devices,
  distributed,
  models,
  nnx,
  optimizers,
  progress,
  reporting,
  rundir,
  strategies,
  structural,
  train,
)
from vmaptune.config import ConfigError, Experiment, load_experiment, override
from vmaptune.data import DataError, Dataset
from vmaptune.population import OutOfMemoryError, Population
from vmaptune.reporting import report
from vmaptune.results import FinalFit, RoundResult, Trial, TuneResult, read_trials
from vmaptune.rundir import Run, load_best_params, load_run
from vmaptune.space import Choice, IntUniform, LogUniform, Space, SpaceError, Uniform
from vmaptune.strategies import rank_trials
from vmaptune.tuner import AllDivergedError, Settings, SettingsError, tune

__version__ = "0.1.0"


def __getattr__(name: str):
  # The Optuna bridge imports Optuna, an optional dependency: only on first use.
  if name == "optuna_bridge":
    import importlib
    return importlib.import_module("vmaptune.optuna_bridge")
  raise AttributeError(f"module 'vmaptune' has no attribute {name!r}")


# Importing the package starts no JAX backend, so this still takes effect: one
# CPU device per core, for the lanes to be sharded over (see devices.py).
devices.configure_cpu_devices()

__all__ = [
    "AllDivergedError", "Choice", "ConfigError", "DataError", "Dataset", "Experiment",
    "FinalFit", "IntUniform", "LogUniform", "OutOfMemoryError", "Population", "RoundResult",
    "Settings", "SettingsError", "Space", "SpaceError", "Trial", "TuneResult", "Uniform",
    "Run", "compilation", "data", "devices", "distributed", "load_best_params", "load_experiment",
    "load_run", "models", "nnx", "optimizers", "override", "progress", "rank_trials",
    "read_trials", "report", "reporting", "rundir", "strategies", "structural", "train", "tune",
]
