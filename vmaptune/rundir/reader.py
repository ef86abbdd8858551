"""Reading a run directory back: :func:`load_run` and the :class:`Run` view
that ``vmaptune show`` and the reports read."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.serialization
import jax
import numpy as np

from vmaptune.ranking import rank
from vmaptune.rundir.files import (
  CONFIG_FILE,
  PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  read_json,
  read_records,
  upgrade,
)
from vmaptune.space import Space
from vmaptune.structural import BATCH_SIZE, ModelSpec, build_model
from vmaptune.trials import TrialTable


@dataclasses.dataclass(frozen=True)
class Run:
  """A run directory, read back (see :func:`load_run`).

  Attributes:
    path: the directory.
    config: ``config.json`` in the current format (``settings``, ``space``,
      ``model``, ``data``, ``environment``).
    summary: ``summary.json`` (``None`` before the first round completed).
    records: the trial records of the completed rounds (a round the run was
      killed in is left out).
  """

  path: str
  config: dict[str, Any]
  summary: dict[str, Any] | None
  records: list[dict[str, Any]]

  @property
  def settings(self) -> dict[str, Any]:
    return self.config["settings"]

  @property
  def space(self) -> Space:
    """The original search space."""
    return Space.from_dict(self.config["space"])

  @functools.cached_property
  def trials(self) -> TrialTable:
    """The completed rounds' trials as one table (rows in file order)."""
    return TrialTable.from_records(self.records, self.space, int(self.settings["epochs"]))

  @property
  def kept(self) -> np.ndarray:
    """bool ``[T]``: whether each trial was kept by the sampler."""
    return np.array([bool(r["kept"]) for r in self.records], bool)

  @property
  def rounds_completed(self) -> int:
    return len(self.summary["rounds"]) if self.summary else 0

  @property
  def complete(self) -> bool:
    """Every round ran (the final fit may still be missing)."""
    return self.rounds_completed == self.settings["rounds"]

  @property
  def chosen(self) -> dict[str, Any] | None:
    """The chosen trial's record (``None`` before a round completed)."""
    return self.summary.get("chosen") if self.summary else None

  @property
  def final_fit(self) -> dict[str, Any] | None:
    """The final fit's scores (``None`` until it ran)."""
    return self.summary.get("final_fit") if self.summary else None

  def round_entry(self, index: int) -> dict[str, Any] | None:
    """The summary's entry for round ``index`` (its ``space``, ``next_space``,
    ``wall_s``, ...), ``None`` if it has none."""
    entries = {entry["round"]: entry for entry in (self.summary or {}).get("rounds", [])}
    return entries.get(index)

  def top(self, count: int = 10) -> list[dict[str, Any]]:
    """The best ``count`` records, ranked as the tuner ranks (see
    :mod:`vmaptune.ranking`); diverged trials left out."""
    return [self.records[row] for row in rank(self.trials)[:count]]

  def best_model(self, model: ModelSpec) -> Any:
    """The module the best parameters belong to: ``model`` with the chosen
    trial's structural values (``model`` itself without structure)."""
    if self.chosen is None:
      raise ValueError(f"{self.path}: no round completed, so nothing was chosen")
    space = self.space
    values = {name: space[name].value(self.chosen["hparams"][name])
              for name in space.structural_names if name != BATCH_SIZE}
    return build_model(model, values)

  def best_params(self, model: ModelSpec | None = None) -> Any:
    """The final fit's parameters (``{"params"}`` contents, no lane axis).

    Args:
      model: the run's model (a module, or a function of the structural
        values); when given, the parameters are checked against the shapes
        it initialises with (see :meth:`best_model`).

    Raises:
      FileNotFoundError: no final fit was saved yet.
      ValueError: the parameters do not fit ``model``.
    """
    path = os.path.join(self.path, PARAMS_FILE)
    if not self.final_fit or not os.path.exists(path):
      raise FileNotFoundError(f"{self.path} holds no best parameters yet: the run's final fit "
                              "has not finished; run the same config into it again to resume "
                              "the run and fit")
    with open(path, "rb") as f:
      params = flax.serialization.msgpack_restore(f.read())
    if model is not None:
      _check_params(params, self.best_model(model), self.config["data"]["feature_shape"])
    return params


def _check_params(params: Any, model: Any, feature_shape: list[int]) -> None:
  """Raises ``ValueError`` naming the first parameter whose shape ``model`` does not share."""
  x = jax.ShapeDtypeStruct((1, *feature_shape), np.float32)
  try:
    expected = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  except Exception as e:  # The user's model: report what it raised.
    raise ValueError(f"model {type(model).__name__} failed to initialise on features of shape "
                     f"{x.shape}: {type(e).__name__}: {e}") from e
  want = {jax.tree_util.keystr(k): tuple(v.shape)
          for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  have = {jax.tree_util.keystr(k): tuple(np.shape(v))
          for k, v in jax.tree_util.tree_leaves_with_path(params)}
  for name in sorted(set(want) | set(have)):
    if want.get(name) != have.get(name):
      raise ValueError(f"the saved parameters do not fit model {type(model).__name__}: "
                       f"{name} has shape {have.get(name, 'none')} in the file, "
                       f"{want.get(name, 'none')} in the model; pass the run's model")


def load_run(path: str | os.PathLike) -> Run:
  """Reads a run directory back (read-only: a killed run is left as it is),
  e.g. ``load_run(out).chosen["hparams"]`` or ``load_run(out).top(5)``.

  Raises:
    FileNotFoundError: ``path`` holds no run (no ``config.json``).
  """
  path = os.fspath(path)
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{path} holds no vmaptune run (no {CONFIG_FILE}); expected the "
                            "directory given as out= / --out")
  config = upgrade(read_json(config_path))
  summary_path = os.path.join(path, SUMMARY_FILE)
  summary = read_json(summary_path) if os.path.exists(summary_path) else None
  completed = len(summary["rounds"]) if summary else 0
  records, _ = read_records(os.path.join(path, TRIALS_FILE), completed)
  return Run(path, config, summary, records)


def load_best_params(path: str | os.PathLike, model: ModelSpec | None = None) -> Any:
  """The final fit's parameters saved in a run directory.

  Args:
    path: the run directory.
    model: the run's model, to check the parameters against (optional).

  Returns:
    The parameter pytree: ``model.apply({"params": params}, x)`` gives logits
    (for a structural run, apply ``load_run(path).best_model(model)``).

  Raises:
    FileNotFoundError: no run, or no final fit saved yet.
    ValueError: the parameters do not fit ``model``.
  """
  return load_run(path).best_params(model)
