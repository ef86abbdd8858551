"""``optimize``: the Optuna sampler under its earlier name, batches of an Optuna study.

A thin shim over :func:`vmaptune.tune` with
``sampler=vt.samplers.Optuna(study)`` (see :mod:`vmaptune.samplers.optuna`,
where everything it does is documented): each *batch* is a round of
``population`` configurations the study asks for, trained as one population
and told back. A study continued by a later call numbers its batches on, so
they train with new keys.

>>> import optuna, vmaptune as vt
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> study = optuna.create_study(direction="maximize",
...                             sampler=optuna.samplers.TPESampler(seed=0))
>>> result = optimize(study, vt.models.MLP(hidden=(16,)), vt.data.digits(),
...                   vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)),
...                   batches=2, population=4, epochs=1)
>>> len(study.trials), [t.state.name for t in study.trials][:2]
(8, ['COMPLETE', 'COMPLETE'])
"""

from __future__ import annotations

from typing import Any

from vmaptune.data import Dataset
from vmaptune.engine import Engine
from vmaptune.results import RoundResult, TuneResult
from vmaptune.rounds import run_rounds
from vmaptune.samplers.optuna import ROUND_ATTR, Optuna, distributions, import_optuna
from vmaptune.settings import Settings
from vmaptune.space import Space
from vmaptune.structural import ModelSpec
from vmaptune.trials import Trial
from vmaptune.validation import whole_number

import_optuna()  # The shim is only for Optuna users: say how to install it at once.

# Settings of vmaptune.tune that mean nothing here: the study chooses the configurations.
_NOT_APPLICABLE = ("population", "rounds", "sampler", "strategy")

__all__ = ["BridgeResult", "distributions", "optimize"]


class BridgeResult(TuneResult):
  """A :class:`vmaptune.TuneResult` whose rounds are the batches of an Optuna study.

  Attributes:
    study: the study, updated in place.
    numbers: ``[batches]`` int arrays ``[population]``: the Optuna trial number
      of each trial of each batch.
  """

  study: Any = None
  numbers: list | None = None

  def optuna_trial(self, trial: Trial) -> Any:
    """The study's record of a vmaptune trial (e.g. ``result.best``)."""
    position = [r.index for r in self.rounds].index(trial.round)
    return self.study.trials[int(self.numbers[position][trial.trial])]


def _first_round(study: Any) -> int:
  """One past the last round an earlier call told this study (0 for a new one;
  ``vmaptune_batch`` is what the previous version called the round)."""
  told = [t.user_attrs.get(ROUND_ATTR, t.user_attrs.get("vmaptune_batch"))
          for t in study.get_trials(deepcopy=False)]
  return max((r for r in told if r is not None), default=-1) + 1


def _describe(result: RoundResult, number: int, batches: int, study: Any) -> str:
  compiled = (f", {result.compile_s:.1f}s compiling {result.compiles} programs"
              if result.compiles else "")
  best = (f"batch best {result.best_score:.4f}" if result.completed.any()
          else "no trial finished")
  try:
    overall = f"study best {study.best_value:.4f} (trial {study.best_trial.number})"
  except ValueError:  # No trial of the study has completed.
    overall = "no completed trial in the study"
  return (f"batch {number + 1}/{batches}: {result.configurations} trials in "
          f"{result.wall_s:.1f}s ({result.trials_per_s:.1f} trials/s{compiled}); {best}, "
          f"diverged {result.num_diverged}/{result.num_trials}; {overall}")


def optimize(study: Any, model: ModelSpec, data: Dataset, space: Space, *, batches: int,
             population: int, diverged: str = "pruned", verbose: bool = False,
             **settings: Any) -> BridgeResult:
  """Runs ``batches`` batches of ``population`` Optuna trials, each batch one population.

  Every input is checked before anything is compiled or asked.

  Args:
    study: a single-objective study in the objective's direction
      (``direction="maximize"`` for classification, the default;
      ``"minimize"`` for ``objective="regression"``, whose mse it is told).
    model, data, space: as for :func:`vmaptune.tune`.
    batches: batches (rounds) to run.
    population: trials per batch, trained together.
    diverged: the state a diverged trial is told: ``"pruned"`` or ``"fail"``.
    verbose: print one line per batch.
    **settings: the settings of :func:`vmaptune.tune` that shape training
      (``epochs``, ``batch_size``, ``seed``, ``optimizer``, ``seeds``,
      ``objective``, ...).

  Returns:
    A :class:`BridgeResult`: the batches as rounds, the best trial, a final fit.
  """
  whole_number("batches", batches, 1)
  whole_number("population", population, 1)
  sampler = Optuna(study, diverged=diverged)
  engine = Engine(model, data, space, Settings.from_kwargs(
      settings, _NOT_APPLICABLE, population=population, rounds=batches, sampler=sampler))
  first = _first_round(study)
  callbacks = [lambda r: print(_describe(r, r.index - first, batches, study), flush=True)]
  result = run_rounds(engine, callbacks=callbacks if verbose else (), first_round=first,
                      result_type=BridgeResult)
  result.study, result.numbers = study, sampler.numbers
  return result
