"""vmaptune: tune many small JAX/Flax models at once, as one vmapped program.

The top level holds what a script uses: :func:`tune`, the search space, the
dataset, experiment configs, the results and run directories read back,
:func:`report`, the figures as matplotlib figures (``plots``), the errors, and
one package per concept: ``space``, ``data``, ``trials``, ``objectives``,
``models``, ``lanes``, ``samplers``, ``strategies``, ``rundir``, ``search`` and
``reporting`` (see docs/design.md).

Importing vmaptune changes no JAX setting. :func:`tune` and ``vmaptune run``
ask JAX for one CPU device per usable core before anything runs on JAX
(unless ``XLA_FLAGS`` or ``jax_num_cpu_devices`` already set a count;
``VMAPTUNE_CPU_DEVICES=1`` turns it off), see :mod:`vmaptune.lanes.devices`.

>>> import vmaptune as vt
>>> space = vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0),
...                  weight_decay=vt.LogUniform(1e-8, 1e-1))
>>> sorted(space)
['learning_rate', 'weight_decay']
"""

from vmaptune import (
  data,
  lanes,
  models,
  objectives,
  reporting,
  rundir,
  samplers,
  search,
  space,
  strategies,
  trials,
)
from vmaptune.config import Experiment, load_experiment, override
from vmaptune.data import Dataset
from vmaptune.errors import (
  AllDivergedError,
  ConfigError,
  DamagedRunError,
  DataError,
  DistributedError,
  OutOfMemoryError,
  RunDirectoryBusyError,
  RunDirectoryError,
  RunDirectoryWriteError,
  SettingsError,
  SpaceError,
  VmaptuneError,
)
from vmaptune.reporting import plots
from vmaptune.reporting.notebook import install as install_notebook_display
from vmaptune.reporting.report import report
from vmaptune.rundir import Run, load_best_params, load_run, read_trials
from vmaptune.search.final_fit import FinalFit
from vmaptune.search.results import RoundResult, TuneResult
from vmaptune.space.discrete import Choice, IntUniform
from vmaptune.space.distributions import LogUniform, Uniform
from vmaptune.space.space import Space
from vmaptune.trials.table import Trial
from vmaptune.tuner import tune

__version__ = "0.1.0"

# Results and runs show in a notebook as the HTML summary reporting draws (a layer above them).
install_notebook_display()
del install_notebook_display


__all__ = [
    "AllDivergedError", "Choice", "ConfigError", "DamagedRunError", "DataError", "Dataset",
    "DistributedError", "Experiment", "FinalFit", "IntUniform", "LogUniform",
    "OutOfMemoryError", "RoundResult", "Run", "RunDirectoryBusyError", "RunDirectoryError",
    "RunDirectoryWriteError", "SettingsError", "Space", "SpaceError", "Trial", "TuneResult",
    "Uniform",
    "VmaptuneError", "data", "lanes", "load_best_params", "load_experiment", "load_run", "models",
    "objectives", "override", "plots", "read_trials", "report", "reporting", "rundir", "samplers",
    "search", "space", "strategies", "trials", "tune",
]
