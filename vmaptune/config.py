"""Experiment configs: a Python file whose ``get_config()`` returns an :class:`Experiment`.

As in the Flax examples, a config is code, so it can build models and data
loaders directly; the command line can then override its plain settings::

    vmaptune run experiments/digits_mlp.py --set population=512 rounds=5
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn

from vmaptune.data import Dataset
from vmaptune.errors import ConfigError
from vmaptune.lanes import distributed
from vmaptune.lanes.distributed import Processes
from vmaptune.search.settings import Settings
from vmaptune.space.space import Space
from vmaptune.tuner import tune
from vmaptune.validation import is_whole


@dataclasses.dataclass(frozen=True, kw_only=True)
class Experiment(Settings):
  """Everything one tuning run needs; the settings fields are inherited.

  Attributes:
    model: the Linen module to tune, or a function of the space's structural
      values returning one (see :func:`vmaptune.tune`).
    data: a :class:`Dataset`, or a function of no arguments returning one
      (called when the run starts).
    space: the search space.
    name: a label used for the default run directory.
    coordinator, num_processes, process_id: a run over several processes
      (see :mod:`vmaptune.lanes.distributed`): process 0's ``HOST:PORT``, the
      number of processes, this process's index. ``None`` (the default)
      leaves each to ``vmaptune run``'s flags, then the ``VMAPTUNE_*``
      environment variables, then JAX's cluster detection.

  >>> import vmaptune as vt
  >>> exp = Experiment(model=vt.models.MLP(), data=vt.data.digits,
  ...                  space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1.0)))
  >>> override(exp, ["population=8", "sampler=narrow(keep=0.5)"]).sampler
  'narrow(keep=0.5)'
  """

  model: nn.Module | Callable[..., nn.Module]
  data: Dataset | Callable[[], Dataset]
  space: Space
  name: str = "experiment"
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None

  def initialize_processes(self) -> Processes:
    """Joins the run's processes (:func:`vmaptune.lanes.distributed.initialize`); a
    no-op for a single process or when already joined."""
    return distributed.initialize(self.coordinator, self.num_processes, self.process_id)

  def load_data(self) -> Dataset:
    data = self.data() if callable(self.data) and not isinstance(self.data, Dataset) \
        else self.data
    if not isinstance(data, Dataset):
      raise ConfigError(f"experiment {self.name!r}: data gave {type(data).__name__}; "
                        "expected a vmaptune.data.Dataset or a function returning one")
    return data

  def tune(self, out: str | None = None, verbose: bool = False, **kwargs):
    """Runs :func:`vmaptune.tune` with this experiment's fields, over several
    processes if they are asked for (see :meth:`initialize_processes`)."""
    self.initialize_processes()
    settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)}
    return tune(self.model, self.load_data(), self.space, out=out, verbose=verbose,
                **settings, **kwargs)


# Fields that `--set` may change: plain values, not objects built in code.
SETTABLE = tuple(f.name for f in dataclasses.fields(Settings)) + ("name",)


def load_experiment(path: str | os.PathLike) -> Experiment:
  """Imports a config file and returns its ``get_config()``.

  The file is compiled afresh on every call: a cached bytecode file is matched
  to its source by size and whole seconds, so an edit made within the same
  second could otherwise load the old config.

  Raises:
    ConfigError: the file is missing or unreadable, fails to compile or run
      (the message names the file and the original error), has no
      ``get_config()``, or ``get_config()`` fails or does not return an
      :class:`Experiment`.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist")
  module_name = "vmaptune_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(module_name, path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"config file {path!r} is not a Python file")
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module  # Dataclasses defined in the file need it.
  # A config may import modules that sit beside it (its own models, loaders).
  config_dir = os.path.dirname(os.path.abspath(path))
  sys.path.insert(0, config_dir)
  try:
    code = spec.loader.source_to_code(spec.loader.get_data(path), path)
    exec(code, module.__dict__)
  except Exception as e:  # A config is code: any error compiling or running it is the file's.
    raise ConfigError(f"{path}: the config file failed to load: {type(e).__name__}: {e}; "
                      "expected a Python file defining get_config()") from e
  finally:
    sys.modules.pop(module_name, None)
    sys.path.remove(config_dir)
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"config file {path!r} defines no get_config(); expected a function "
                      "returning vmaptune.Experiment(...)")
  try:
    experiment = get_config()
  except Exception as e:  # E.g. an unknown setting (a TypeError), a typo.
    raise ConfigError(f"{path}: get_config() failed: {type(e).__name__}: {e}") from e
  if not isinstance(experiment, Experiment):
    raise ConfigError(f"{path}: get_config() returned {type(experiment).__name__}; "
                      "expected a vmaptune.Experiment")
  return experiment


def _parse_value(key: str, text: str, current: Any) -> Any:
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):  # Deep nesting exhausts
    value = text  # the parser. Or a bare word, e.g. optimizer=sgd.
  if isinstance(current, str):
    return value if isinstance(value, str) else text
  if is_whole(current) and not is_whole(value):
    raise ConfigError(f"--set {key}={text}: expected a whole number")
  return value


def override(experiment: Experiment, assignments: Iterable[str]) -> Experiment:
  """Applies ``key=value`` overrides (values parsed as Python literals).

  Raises:
    ConfigError: a malformed assignment, an unknown key, or a value of the
      wrong type; the message lists the keys that can be set.
  """
  if isinstance(assignments, str):
    raise ConfigError(f"assignments={assignments!r}; expected a list of key=value strings, "
                      "e.g. ['population=512']")
  changes: dict[str, Any] = {}
  for assignment in assignments:
    if not isinstance(assignment, str):
      raise ConfigError(f"--set {assignment!r}: expected a key=value string, e.g. "
                        "population=512")
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. population=512")
    if key not in SETTABLE:
      raise ConfigError(f"--set {key}: unknown key; settable keys are {', '.join(SETTABLE)}")
    changes[key] = _parse_value(key, text.strip(), getattr(experiment, key))
  return dataclasses.replace(experiment, **changes)
