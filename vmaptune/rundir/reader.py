"""Reading a run directory back: :func:`load_run` and the :class:`Run` view
that ``vmaptune show`` and the reports read."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import flax.serialization
import jax
import numpy as np

from vmaptune.errors import DamagedRunError
from vmaptune.rundir import display
from vmaptune.rundir.damage import damage_error, inspect_run, read_config, read_params
from vmaptune.rundir.files import (
  CONFIG_FILE,
  PARAMS_FILE,
  SUMMARY_FILE,
  example_inputs,
  upgrade,
)
from vmaptune.rundir.records import (
  FINAL_FIT,
  ConfirmationRecord,
  FinalFitRecord,
  ParamsPointer,
  RoundEntry,
  Summary,
  TrialRecord,
  read_summary,
)
from vmaptune.space.space import Space
from vmaptune.space.structural import BATCH_SIZE, ModelSpec, build_model
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable


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

  def __repr__(self) -> str:
    """One line: where, how far, the chosen trial's score (the records stay out)."""
    done, rounds = self.rounds_completed, self.settings.get("rounds")
    where = self.path or "held in memory"  # A result's view (vmaptune.reporting.source).
    line = (f"<Run {where}: {done} round{'s' if done != 1 else ''}"
            + ("" if rounds is None else f" of {rounds}")
            + f", {len(self.records)} trials")
    chosen, final = self.chosen_record, self.final_fit_record
    metric = self.scoring.rank_by.replace("_", " ")
    if chosen is not None and chosen.score is not None:
      line += (f"; chosen round {chosen.round + 1} trial {chosen.trial}, "
               f"val {metric} {chosen.score:.4f}")
    if final is not None and final.test_score is not None:
      line += f", test {metric} {final.test_score:.4f}"
    return line + ">"

  def _repr_html_(self) -> str | None:
    """The notebook's summary (see :mod:`vmaptune.reporting.notebook`)."""
    return display.html(self)

  @property
  def settings(self) -> dict[str, Any]:
    return self.config["settings"]

  @property
  def space(self) -> Space:
    """The original search space."""
    return Space.from_dict(self.config["space"])

  @property
  def scoring(self) -> Scoring:
    """The objective's metrics and the ranking one (classification for a config
    without a scoring, as format 1 has)."""
    return Scoring.from_dict(self.config.get("scoring"))

  @functools.cached_property
  def trials(self) -> TrialTable:
    """The completed rounds' trials as one table (rows in file order)."""
    return TrialTable.from_records(self.records, self.space, int(self.settings["epochs"]),
                                   self.scoring)

  @property
  def kept(self) -> np.ndarray:
    """bool ``[T]``: whether each trial was kept by the sampler."""
    return np.array([bool(r["kept"]) for r in self.records], bool)

  @property
  def rounds_completed(self) -> int:
    return len(self.summary["rounds"]) if self.summary else 0

  @property
  def complete(self) -> bool:
    """Every round ran (the final fit may still be missing): as many as
    ``rounds`` says, or with a wall-time budget as many as its plan held."""
    if self.rounds_completed == self.settings["rounds"]:
      return True
    budget = self.summary_record.budget if self.summary_record else None
    return budget is not None and budget.planned <= budget.rounds

  @functools.cached_property
  def summary_record(self) -> Summary | None:
    """``summary.json`` as a record (``None`` before the first round completed)."""
    return read_summary(self.summary, self.scoring)

  @functools.cached_property
  def trial_records(self) -> list[TrialRecord]:
    """:attr:`records` as typed records (:class:`vmaptune.trials.table.Trial`)."""
    return [TrialRecord.from_json(record, self.scoring) for record in self.records]

  @property
  def chosen(self) -> dict[str, Any] | None:
    """The chosen trial's record as JSON holds it (``None`` before a round
    completed); :attr:`chosen_record` is the typed one."""
    return self.summary.get("chosen") if self.summary else None

  @property
  def chosen_record(self) -> TrialRecord | None:
    """The chosen trial (``None`` before a round completed)."""
    return self.summary_record.chosen if self.summary_record else None

  @property
  def final_fit(self) -> dict[str, Any] | None:
    """The final fit's scores as JSON holds them (``None`` until it ran);
    :attr:`final_fit_record` is the typed one."""
    return self.summary.get("final_fit") if self.summary else None

  @property
  def final_fit_record(self) -> FinalFitRecord | None:
    """The final fit (``None`` until it ran)."""
    return self.summary_record.final_fit if self.summary_record else None

  @property
  def confirmation_record(self) -> ConfirmationRecord | None:
    """The confirmation (``None`` when it did not run)."""
    return self.summary_record.confirmation if self.summary_record else None

  def round_entry(self, index: int) -> dict[str, Any] | None:
    """The summary's entry for round ``index`` (its ``space``, ``next_space``,
    ``wall_s``, ...), ``None`` if it has none; :meth:`round_record` is the typed one."""
    entries = {entry["round"]: entry for entry in (self.summary or {}).get("rounds", [])}
    return entries.get(index)

  def round_record(self, index: int) -> RoundEntry | None:
    """The summary's entry for round ``index``, ``None`` if it has none."""
    entries = self.summary_record.rounds if self.summary_record else ()
    return next((entry for entry in entries if entry.round == index), None)

  def top(self, count: int = 10) -> list[dict[str, Any]]:
    """The best ``count`` records, ranked as the tuner ranks (see
    :mod:`vmaptune.trials.ranking`); diverged trials left out."""
    return [self.records[row] for row in self.top_rows(count)]

  def top_rows(self, count: int = 10) -> list[int]:
    """The rows of :attr:`records` of the best ``count`` trials, best first."""
    return [int(row) for row in rank(self.trials)[:count]]

  @property
  def params_pointer(self) -> ParamsPointer | None:
    """Whose parameters ``best_params.msgpack`` holds (``None`` before any were saved)."""
    summary = self.summary_record
    if summary is None:
      return None
    if summary.best_params is None and summary.final_fit and summary.chosen:
      return ParamsPointer.of(FINAL_FIT, summary.chosen)  # Format 1: no pointer.
    return summary.best_params

  @property
  def params_trial(self) -> dict[str, Any] | None:
    """Which trial ``best_params.msgpack`` holds: ``{"from": "search" | "final_fit",
    "round", "trial", "hparams"}`` (``None`` before any was saved); see :attr:`params_pointer`."""
    pointer = self.params_pointer
    return None if pointer is None else pointer.to_json()

  def best_model(self, model: ModelSpec) -> Any:
    """The module the best parameters belong to: ``model`` with the structural
    values of the trial they hold (``model`` itself without structure)."""
    trial = self.params_pointer or self.chosen_record
    if trial is None:
      raise ValueError(f"{self.path}: no round completed, so nothing was chosen")
    space = self.space
    values = {name: space[name].value(trial.hparams[name])
              for name in space.structural_names if name != BATCH_SIZE}
    return build_model(model, values)

  def best_params(self, model: ModelSpec | None = None) -> Any:
    """The best parameters saved (``{"params"}`` contents, no lane axis): the
    final fit's once it ran, before that the best trial's so far as it
    trained in the search, saved at the end of every round (see
    :attr:`params_trial`).

    Args:
      model: the run's model (a module, or a function of the structural
        values); when given, the parameters are checked against the shapes
        it initialises with (see :meth:`best_model`).

    Raises:
      FileNotFoundError: no round completed yet.
      DamagedRunError: the file is not the one the summary points to, or unreadable.
      ValueError: the parameters do not fit ``model``.
    """
    path = os.path.join(self.path, PARAMS_FILE)
    run = self
    for attempt in range(3):
      data, problem = read_params(run.path, run.summary or {})
      if data is not None or run.params_trial is None or attempt == 2:
        break
      time.sleep(0.05 * (attempt + 1))  # A round may have committed since: read it again.
      run = load_run(self.path)
    if data is None and run.params_trial is None:
      raise FileNotFoundError(
          f"{run.path} holds no best parameters yet: "
          + ("no round has completed; they are saved at the end of every round that improves "
             "on the best" if not run.rounds_completed else
             "none are saved for its rounds (they were moved aside as damaged, or an earlier "
             "vmaptune wrote the run); the final fit saves them: run the same config again"))
    if data is None:
      raise DamagedRunError(f"{problem}. Running the same config with --resume-from-intact "
                            "moves them aside, and the final fit writes them again", path,
                            run.rounds_completed)
    try:
      params = flax.serialization.msgpack_restore(data)
    except Exception as e:  # A damaged file with no digest to check (format 1).
      raise DamagedRunError(f"{path} is not readable msgpack ({type(e).__name__}: {e}); "
                            "move it aside and run the same config again: the final fit "
                            "writes it again", path, run.rounds_completed) from None
    if model is not None:
      _check_params(params, run.best_model(model), example_inputs(run.config["data"]))
    return params


def _check_params(params: Any, model: Any, x: Any) -> None:
  """Raises ``ValueError`` naming the first parameter whose shape ``model`` does
  not share (``x``: the shapes of one example's inputs)."""
  try:
    expected = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  except Exception as e:  # The user's model: report what it raised.
    shapes = jax.tree.map(lambda a: tuple(a.shape), x)
    raise ValueError(f"model {type(model).__name__} failed to initialise on inputs of shape "
                     f"{shapes}: {type(e).__name__}: {e}") from e
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
  """Reads a run directory back (read-only: a killed run is left as it is, and
  a run that is writing may be read: only its completed rounds are seen),
  e.g. ``load_run(out).chosen["hparams"]`` or ``load_run(out).top(5)``.

  Raises:
    FileNotFoundError: ``path`` holds no run (no ``config.json``).
    DamagedRunError: a file is unreadable or disagrees with the others; the
      message names it and says how to resume from the intact rounds.
  """
  path = os.fspath(path)
  if not os.path.exists(os.path.join(path, CONFIG_FILE)):
    raise FileNotFoundError(f"{path} holds no vmaptune run (no {CONFIG_FILE}); expected the "
                            "directory given as out= / --out")
  config = read_config(path)
  for attempt in range(3):
    inspection = inspect_run(path, config)
    if inspection.damage is None:
      break
    time.sleep(0.05 * (attempt + 1))  # A writer may be cutting the records back right now.
  else:
    raise damage_error(inspection, reading=True)
  summary = inspection.summary if os.path.exists(os.path.join(path, SUMMARY_FILE)) else None
  return Run(path, upgrade(config), summary, inspection.records)


def load_best_params(path: str | os.PathLike, model: ModelSpec | None = None) -> Any:
  """The final fit's parameters saved in a run directory.

  Args:
    path: the run directory.
    model: the run's model, to check the parameters against (optional).

  Returns:
    The parameter pytree (the final fit's, or before it the best trial's so
    far; see :meth:`Run.best_params`): ``model.apply({"params": params}, x)``
    gives logits (for a structural run, apply ``load_run(path).best_model(model)``).

  Raises:
    FileNotFoundError: no run, or no round completed yet.
    DamagedRunError: a damaged file.
    ValueError: the parameters do not fit ``model``.
  """
  return load_run(path).best_params(model)
