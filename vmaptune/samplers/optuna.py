"""Optuna: an Optuna study's sampler proposes the configurations, vmaptune
trains them as populations and tells the study how each did.

Any Optuna sampler (TPE, CMA-ES, QMC, random, GP), storage (an SQLite or
other RDB URL, journal files) and the Optuna dashboard then work as usual,
while training runs at vmaptune's speed. Each round asks the study for its
configurations (``study.ask`` with the space converted by
:func:`distributions`) and, when the round is over, tells it each one's
outcome: the objective's ranking metric (validation accuracy for
classification, mse for regression), with vmaptune's figures as user
attributes (``vmaptune_round``, ``vmaptune_lane``, the other metrics as
``val_<metric>``, e.g. ``val_loss``, ``train_loss`` per epoch and, with
``seeds=k``, ``seed_<metric>``, e.g. ``seed_accuracy``). The study's
direction is the metric's: ``"maximize"`` for accuracy, ``"minimize"`` for
mse or a loss; a study given with the other direction is refused.

* trained the full budget: ``COMPLETE`` with its ranking metric;
* stopped early by the strategy (halved, or exploited in population-based
  training): its metric reported at the epoch it reached, then ``PRUNED``;
* diverged: ``PRUNED`` (TPE counts it among the bad trials) or ``FAIL``
  (``diverged="fail"``; samplers ignore it).

Structural parameters are asked like the others; each bucket then trains the
configurations the study put in it, padded up to a power of two of lanes so a
bucket compiles a few programs over a whole study (with the random strategy
only: the study decides how many configurations a bucket gets). Optuna is an optional dependency:
``pip install 'vmaptune[optuna]'``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from vmaptune.errors import SpaceError
from vmaptune.samplers.base import RoundPlan, Sampler, Told
from vmaptune.space.discrete import Choice, IntUniform
from vmaptune.space.distributions import Continuous, LogUniform
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import DIVERGED, FINISHED, TrialTable, finite_or_none
from vmaptune.validation import one_of

ROUND_ATTR = "vmaptune_round"
LANE_ATTR = "vmaptune_lane"
INSTALL = ("the Optuna sampler needs Optuna, an optional dependency: "
           "pip install 'vmaptune[optuna]' (or pip install 'optuna>=3.0')")
# Optuna samplers by name, each built with the run's seed.
OPTUNA_SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
                   "qmc": "QMCSampler", "gp": "GPSampler"}
# Values Optuna's storages hold as categorical choices.
_CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def import_optuna() -> Any:
  """The ``optuna`` module, or an ImportError that says how to install it."""
  try:
    import optuna
  except ImportError as e:
    raise ImportError(INSTALL) from e
  return optuna


def check_direction(study: Any, scoring: Scoring) -> None:
  """Raises ``ValueError`` unless ``study`` has one direction, the objective's
  (``scoring.direction``): each trial is told the ranking metric, so a study
  that maximised a minimised metric would look for the worst configurations."""
  directions = [d.name.lower() for d in study.directions]
  if directions != [scoring.direction]:
    raise ValueError(f"study directions {directions}; expected one direction, "
                     f"{scoring.direction!r}: each trial is told its {scoring.label()} "
                     f"(optuna.create_study(direction={scoring.direction!r}))")


def distributions(space: Space) -> dict[str, Any]:
  """The Optuna distributions of a vmaptune space.

  ``LogUniform`` and ``Uniform`` become ``FloatDistribution`` (``log=True``
  for the first), ``IntUniform`` an ``IntDistribution`` (with its ``log``),
  ``Choice`` a ``CategoricalDistribution``.

  Raises:
    SpaceError: a ``Choice`` holds values Optuna cannot store (tuples).
  """
  dists = import_optuna().distributions
  converted = {}
  for name, dist in space.items():
    if isinstance(dist, Continuous):
      converted[name] = dists.FloatDistribution(float(dist.low), float(dist.high),
                                                log=isinstance(dist, LogUniform))
    elif isinstance(dist, IntUniform):
      converted[name] = dists.IntDistribution(int(dist.low), int(dist.high), log=dist.log)
    elif isinstance(dist, Choice):
      odd = [v for v in dist.values if not isinstance(v, _CATEGORICAL_TYPES)]
      if odd:
        raise SpaceError(f"parameter {name!r}: Choice value {odd[0]!r} cannot be an Optuna "
                         "categorical choice (None, bool, int, float or str); name it, e.g. "
                         "'64x64', and map the names in a model function")
      converted[name] = dists.CategoricalDistribution(dist.values)
    else:
      raise SpaceError(f"parameter {name!r}: {type(dist).__name__} has no Optuna counterpart")
  return converted


@dataclasses.dataclass(eq=False)
class Optuna(Sampler):
  """Configurations chosen by an Optuna study.

  Attributes:
    study: a single-objective study in the objective's direction
      (``direction="maximize"`` for classification's accuracy,
      ``"minimize"`` for regression's mse), updated in place and continued by
      every run given it; ``None`` (the default) creates a new in-memory
      study, in that direction, at the start of each run.
    sampler: the Optuna sampler of a study created here, by name
      (:data:`OPTUNA_SAMPLERS`; ``None``: ``"tpe"``), seeded with the run's seed.
    diverged: the state a diverged trial is told: ``"pruned"`` or ``"fail"``.

  During and after a run, :attr:`active_study` is the study in use and
  ``numbers[r][i]`` the Optuna trial number of the ``i``-th configuration of
  round ``r`` (in the order of its records).
  """

  study: Any = dataclasses.field(default=None, repr=False)
  sampler: str | None = None
  diverged: str = "pruned"
  name = "optuna"
  bucket_share = 0.0  # The study decides how many configurations each bucket gets.

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    """Raises ``ValueError`` if it cannot sample ``space`` for ``strategy``, or
    its study's direction is not ``scoring``'s (the objective's)."""
    optuna = import_optuna()
    one_of("diverged", self.diverged, ("pruned", "fail"), error=ValueError)
    study = self.study
    if study is not None and not isinstance(study, optuna.Study):
      raise ValueError(f"study={study!r}; expected an optuna.Study "
                       f"(optuna.create_study(direction={scoring.direction!r}))")
    if study is not None and self.sampler is not None:
      raise ValueError(f"sampler={self.sampler!r} with a study: the study brings its own "
                       "sampler; give one or the other")
    if self.sampler is not None:
      one_of("sampler", self.sampler, OPTUNA_SAMPLERS, error=ValueError)
    if study is not None:
      check_direction(study, scoring)
    distributions(space)
    if space.structural_names and strategy.name != "random":
      raise ValueError("the Optuna sampler chooses how many configurations each combination "
                       "of structural values gets, so a strategy that stops or copies lanes "
                       "could be left with one; use strategy 'random' with structural "
                       "parameters")
    if jax.process_count() > 1:
      raise ValueError("the Optuna sampler asks and tells its study from one process; run "
                       "it in a single process")

  def start(self, space: Space, seed: int, scoring: Scoring) -> None:
    """Begins a run: a new study in ``scoring``'s direction, or the one given
    (checked to have it)."""
    super().start(space, seed, scoring)
    optuna = import_optuna()
    if self.study is not None:
      check_direction(self.study, scoring)
    sampler = getattr(optuna.samplers, OPTUNA_SAMPLERS[self.sampler or "tpe"])
    self.active_study = self.study or optuna.create_study(direction=scoring.direction,
                                                          sampler=sampler(seed=seed))
    self._distributions = distributions(space)
    self._asked: dict[tuple, list] = {}  # (round, bucket values, stream) -> asked trials.
    self._grouped: dict[int, dict[tuple, list]] = {}  # Structural asks, by round.
    self.numbers: list[np.ndarray] = []

  def describe(self) -> str:
    if self.study is None:
      sampler = self.sampler or "tpe"
    else:  # A study's own sampler, by name where it has one.
      kind = type(self.study.sampler).__name__
      sampler = next((name for name, cls in OPTUNA_SAMPLERS.items() if cls == kind), kind)
    return f"optuna(sampler={sampler!r}, diverged={self.diverged!r})"

  def _key(self, values: dict[str, Any]) -> tuple:
    return tuple(values[name] for name in self.space.structural_names)

  def plan(self, population: int, round_index: int) -> RoundPlan:
    names = self.space.structural_names
    if not names:
      return RoundPlan(self.ranges, [({}, population)])
    if round_index not in self._grouped:  # Asked once, even if the round runs again.
      groups: dict[tuple, list] = {}
      for _ in range(population):
        trial = self.active_study.ask(self._distributions)
        groups.setdefault(tuple(trial.params[n] for n in names), []).append(trial)
      self._grouped[round_index] = groups
    return RoundPlan(self.ranges, [(dict(zip(names, key, strict=True)), len(trials))
                                  for key, trials in self._grouped[round_index].items()])

  def ask(self, count: int, *, round_index: int, bucket: Bucket,
          stream: int = 0) -> dict[str, np.ndarray]:
    key = (round_index, self._key(bucket.values), stream)
    if key not in self._asked:
      self._asked[key] = (self._grouped[round_index][key[1]] if self.space.structural_names
                          else [self.active_study.ask(self._distributions) for _ in range(count)])
    trials = self._asked[key]
    assert len(trials) == count, (len(trials), count)
    return {name: np.array([t.params[name] for t in trials], np.float32)
            for name in self.space.traced()}

  def _asked_in_order(self, round_index: int) -> list:
    """The round's asked trials, in the order their configurations were trained."""
    return [t for key, ts in self._asked.items() if key[0] == round_index for t in ts]

  def _record_order(self, trials: TrialTable, round_index: int) -> np.ndarray | None:
    """With structural parameters, the round's configurations in the order the
    study asked for them (trained bucket by bucket), other trials after; ``None``
    without them, or for a round restored from its records (already in order)."""
    if not self.space.structural_names or not self._asked_in_order(round_index):
      return None
    configurations = np.flatnonzero(trials.is_configuration)
    numbers = [t.number for t in self._asked_in_order(round_index)]
    by_number = configurations[np.argsort(numbers, kind="stable")]
    return np.concatenate([by_number, np.flatnonzero(~trials.is_configuration)])

  def tell(self, trials: TrialTable, *, round_index: int) -> Told:
    optuna = import_optuna()
    order = self._record_order(trials, round_index)
    if order is not None:  # Told, and recorded, in the order the study asked.
      trials = trials.reordered(order)
    scoring = trials.scoring
    if scoring.direction != self.scoring.direction:  # Started for another objective.
      check_direction(self.active_study, scoring)
    rows = np.flatnonzero(trials.is_configuration)
    asked = sorted(self._asked_in_order(round_index), key=lambda t: t.number)
    if not asked:  # A round restored from a run directory: its trials, told again.
      asked = self._restored(trials, rows, round_index)
    assert len(asked) == len(rows), (len(asked), len(rows))
    for trial, row in zip(asked, rows, strict=True):
      if isinstance(trial, optuna.trial.FrozenTrial):
        continue  # Already in the study's storage.
      trial.set_user_attr(ROUND_ATTR, round_index)
      trial.set_user_attr(LANE_ATTR, int(trials.lane[row]))
      for name in scoring.names:  # The others than the value told (classification: val_loss).
        if name != scoring.rank_by:
          trial.set_user_attr(scoring.field(name), finite_or_none(trials.metrics[name][row]))
      trial.set_user_attr("train_loss", [finite_or_none(v) for v in trials.epoch_loss[row]])
      if trials.seed_scores is not None:
        trial.set_user_attr(scoring.seed_field,
                            [finite_or_none(v) for v in trials.seed_scores[row]])
      status = trials.status[row]
      if status == DIVERGED:
        self.active_study.tell(trial, state=getattr(optuna.trial.TrialState, self.diverged.upper()))
      elif status == FINISHED:
        self.active_study.tell(trial, float(trials.score[row]))
      else:  # Stopped early by the strategy: a pruned trial, with the score it reached.
        trial.report(float(trials.score[row]), int(trials.reached[row]))
        self.active_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    self.numbers.append(np.array([t.number for t in asked]))
    for key in [key for key in self._asked if key[0] == round_index]:
      del self._asked[key]
    self._grouped.pop(round_index, None)
    # Nothing is narrowed (the study adapts itself); the round's best trial is marked kept.
    return Told(rank(trials)[:1], self.space, order)

  def _inside(self, params: dict[str, Any]) -> dict[str, Any]:
    """Recorded values inside their distributions: a float32 record of a bound
    (``float32(0.1)``) can lie an ulp past it."""
    floats = import_optuna().distributions.FloatDistribution
    inside = {}
    for name, value in params.items():
      dist = self._distributions[name]
      inside[name] = min(max(value, dist.low), dist.high) if isinstance(dist, floats) else value
    return inside

  def _restored(self, trials: TrialTable, rows: np.ndarray, round_index: int) -> list:
    """The study's trials of a restored round: those it holds, or added from the records."""
    optuna = import_optuna()
    held = [t for t in self.active_study.get_trials(deepcopy=False)
            if t.user_attrs.get(ROUND_ATTR) == round_index]
    if len(held) == len(rows):
      return held
    added = []
    for row in rows:
      status = trials.status[row]
      state = (optuna.trial.TrialState.COMPLETE if status == FINISHED else
               getattr(optuna.trial.TrialState, self.diverged.upper()) if status == DIVERGED
               else optuna.trial.TrialState.PRUNED)
      value = float(trials.score[row])
      frozen = optuna.trial.create_trial(
          params=self._inside(trials.values(int(row), self.space)),
          distributions=self._distributions,
          value=value if state == optuna.trial.TrialState.COMPLETE else None,
          intermediate_values=({int(trials.reached[row]): value}
                               if state == optuna.trial.TrialState.PRUNED
                               and math.isfinite(value) else None),
          state=state, user_attrs={ROUND_ATTR: round_index, LANE_ATTR: int(trials.lane[row])})
      self.active_study.add_trial(frozen)
      added.append(self.active_study.trials[-1])
    return added
