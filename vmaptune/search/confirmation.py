"""The confirmation stage: the search's top configurations trained again with
fresh seeds, and the final choice made by their mean.

The best of hundreds of noisy validation scores is optimistic: it selects
luck as much as quality (and population-based training selects on the
validation split every few epochs). So after the last round the top ``K``
distinct configurations of the whole search (ranked as
:mod:`vmaptune.trials.ranking` ranks; a population-based-training trial with its
whole lineage) train again, ``S`` seeds each: ``K x S`` lanes in one
population per bucket, from keys no round uses. The chosen configuration is
the one with the best mean validation accuracy over its seeds (one for which
any seed diverged is never chosen), and its **optimism** is its search score
minus that mean: how much the search flattered it.

Where the seeds of some candidate disagree widely (near the edge of stability
a learning rate trains well with one seed and badly with the next), the mean
of a few seeds says little about what the next seed gives: the choice is then
the best lower confidence bound, the mean less one standard error of it
(:attr:`Confirmation.rule` says which rule chose). "Widely": a candidate's
spread over seeds is more than ``WIDE_SPREAD`` times the typical one
(:attr:`Confirmation.typical_spread`: the noise of one trial's score that the
search's estimate fitted on all its trials).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.rundir.records import (
    CandidateRecord,
    ConfirmationRecord,
    EstimateGroupRecord,
    EstimatesRecord,
)
from vmaptune.search.engine import Engine
from vmaptune.space.space import Space
from vmaptune.strategies.base import lane_scores
from vmaptune.trials.estimate import LCB_K, Estimates, estimate, order_by
from vmaptune.trials.ranking import order, rank
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import Trial, TrialTable, finite_or_none, json_value

if TYPE_CHECKING:  # Results hold a confirmation: only for types.
  from vmaptune.search.results import RoundResult

# The round index whose keys the confirmation trains with (folded per seed):
# no run has that many rounds, so its seeds are fresh.
CONFIRMATION_ROUND = 2 ** 32 - 1
# A candidate whose spread over seeds is this many times the typical spread makes
# the choice weigh the spread (the "lcb" rule). With normal seed noise of one
# level, a candidate's spread over 2 seeds passes 4 times its standard deviation
# by chance once in 16,000; over more seeds, far less often.
WIDE_SPREAD = 4.0


@dataclasses.dataclass(frozen=True)
class Confirmation:
  """The top configurations retrained with ``S`` seeds each, and the choice.

  Attributes:
    candidates: the search's top ``K`` distinct trials, best first.
    seed_metrics: ``{metric: float64 [K, S]}`` each candidate's seeds'
      validation metrics (NaN where a seed diverged).
    epochs: the epoch budget each seed trained.
    wall_s: wall time of the stage, compilation included.
    scoring: the objective's metrics and the ranking one.
    estimates: the search's trials' estimated expected scores that chose the
      candidates (``None`` where the search's ranking chose them).
  """

  candidates: tuple[Trial, ...]
  seed_metrics: dict[str, np.ndarray]
  epochs: int
  wall_s: float
  scoring: Scoring = dataclasses.field(kw_only=True)
  estimates: EstimatesRecord | None = dataclasses.field(default=None, kw_only=True)

  @property
  def seed_scores(self) -> np.ndarray:
    """float64 ``[K, S]``: the ranking metric of each candidate's seeds."""
    return self.seed_metrics[self.scoring.rank_by]

  @property
  def seeds(self) -> int:
    return int(self.seed_scores.shape[1])

  @property
  def diverged(self) -> np.ndarray:
    """bool ``[K]``: some seed of the candidate diverged."""
    return np.isnan(self.seed_scores).any(axis=1)

  @property
  def mean(self) -> np.ndarray:
    """float64 ``[K]`` the ranking metric's mean over seeds (NaN if one diverged)."""
    return self.seed_scores.mean(axis=1)

  @property
  def spread(self) -> np.ndarray:
    """float64 ``[K]`` standard deviation over seeds (0 with one seed)."""
    return self.seed_scores.std(axis=1, ddof=1 if self.seeds > 1 else 0)

  @property
  def typical_spread(self) -> float:
    """The spread over seeds one configuration's score is expected to have: the
    noise of one trial's score that the search's estimate fitted (the median over
    its groups), measured on hundreds of trials; without one, the median of the
    candidates' nonzero spreads (a spread of exactly 0 is the metric's
    resolution hiding the noise: two seeds got the same count right). NaN when
    neither is known."""
    noise = [g.noise_sd for g in self.estimates.groups if g.noise_sd] if self.estimates else []
    if noise:
      return float(np.median(noise))
    spread = self.spread[~self.diverged]
    spread = spread[spread > 0]
    return float(np.median(spread)) if len(spread) else math.nan

  @property
  def rule(self) -> str:
    """What chooses: ``"lcb"`` where some candidate's spread over seeds is more
    than ``WIDE_SPREAD`` times :attr:`typical_spread`, else ``"mean"``."""
    spread = self.spread[~self.diverged]
    typical = self.typical_spread
    if self.seeds < 2 or len(spread) < 2 or not typical > 0:
      return "mean"
    return "lcb" if float(spread.max()) > WIDE_SPREAD * typical else "mean"

  @property
  def bound(self) -> np.ndarray:
    """float64 ``[K]``: the pessimistic end of each mean's one-standard-error
    band (``mean - sd / sqrt(S)`` for a maximised metric, ``+`` for a minimised one)."""
    stderr = LCB_K * self.spread / np.sqrt(self.seeds)
    return self.mean - stderr if self.scoring.maximize else self.mean + stderr

  @property
  def chosen(self) -> int:
    """Index of the chosen candidate: the best by :attr:`rule` (the mean, or
    :attr:`bound`) in the ranking metric's direction (ties by the other
    metrics' means, then search rank); the search's best if every candidate
    diverged somewhere."""
    means = {name: values.mean(axis=1) for name, values in self.seed_metrics.items()}
    if self.rule == "lcb":
      means[self.scoring.rank_by] = self.bound
    ranked = order(self.scoring, means, self.diverged)
    return int(ranked[0]) if len(ranked) else 0

  @property
  def trial(self) -> Trial:
    """The chosen trial."""
    return self.candidates[self.chosen]

  @property
  def optimism(self) -> float:
    """How much better the chosen trial's search score is than its
    confirmation mean (in the ranking metric's direction: positive when the
    search was optimistic)."""
    search = self.trial.score
    if search is None:
      return float("nan")
    return float(self.scoring.oriented(search) - self.scoring.oriented(self.mean[self.chosen]))

  @property
  def lane_epochs(self) -> int:
    return self.seed_scores.size * self.epochs

  def summary(self) -> dict[str, Any]:
    """The summary's ``confirmation`` entry (see :class:`ConfirmationRecord`)."""
    return self.record().to_json()

  def record(self) -> ConfirmationRecord:
    """The summary's ``confirmation`` entry, as a record."""
    chosen, scoring = self.chosen, self.scoring
    found = lambda t: (None if self.estimates is None
                       else self.estimates.of(t.round, t.trial)) or (None, None)
    return ConfirmationRecord(
        configurations=len(self.candidates), seeds=self.seeds, chosen=chosen,
        search=self.trial.score, mean=finite_or_none(self.mean[chosen]),
        sd=finite_or_none(self.spread[chosen]), optimism=finite_or_none(self.optimism),
        lane_epochs=self.lane_epochs, wall_s=self.wall_s,
        candidates=tuple(CandidateRecord(
            round=t.round, trial=t.trial, hparams=t.hparams_json(), search=t.score,
            mean=finite_or_none(self.mean[i]), sd=finite_or_none(self.spread[i]),
            seeds={name: [finite_or_none(v) for v in values[i]]
                   for name, values in self.seed_metrics.items()},
            estimate=found(t)[0], estimate_se=found(t)[1], scoring=scoring)
            for i, t in enumerate(self.candidates)),
        rule=self.rule, estimates=self.estimates, scoring=scoring)

  def describe(self) -> str:
    """Two lines: the chosen configuration's confirmation and what was compared."""
    return describe(self.record())


def describe(record: ConfirmationRecord) -> str:
  """Two lines from a confirmation's record (as ``summary.json`` holds it)."""
  number = lambda value, form: "n/a" if value is None else format(value, form)
  optimism = record.optimism
  # Accuracies are fractions: their optimism reads best in percentage points.
  points = record.scoring.rank_by.endswith("accuracy")
  optimism = (f"{number(None if optimism is None else 100 * optimism, '+.1f')} points"
              if points else number(optimism, "+.4g"))
  by = ("the best lower confidence bound (mean less a standard error: seeds disagreed "
        "widely) of" if record.rule == "lcb" else "the best mean of")
  shortlist = " by their estimated score" if record.estimates is not None else ""
  return (f"  confirmed     {number(record.mean, '.4f')} +- {number(record.sd, '.4f')} "
          f"over {record.seeds} fresh seeds (optimism of the search score "
          f"{optimism})\n"
          f"  chosen as {by} the top {record.configurations} configurations{shortlist} "
          f"retrained ({record.lane_epochs} lane-epochs, {record.wall_s:.1f}s)")


def top_candidates(rounds: Sequence[RoundResult], count: int,
                   space: Space | None = None) -> list[Trial]:
  """The best ``count`` trials of ``rounds`` that trained the full budget,
  best first, one per distinct lineage (a copied configuration counts once).

  With the search's ``space``, "best" is the estimate of each configuration's
  expected score from its neighbours as well as itself
  (:func:`vmaptune.trials.estimate.estimate`), which one lucky seed moves far
  less than its own score; trials without an estimate (population-based
  training's children) follow in the search's ranking. Without it, the
  search's ranking alone."""
  return shortlist(rounds, count, space)[0]


def shortlist(rounds: Sequence[RoundResult], count: int,
              space: Space | None = None) -> tuple[list[Trial], EstimatesRecord | None]:
  """:func:`top_candidates`, and the estimates that chose them (``None``
  without ``space``)."""
  table = TrialTable.concat(list(rounds))
  ranked = rank(table)
  found = None
  if space is not None:
    found = estimate(table, space)
    first = order_by(found)
    ranked = np.concatenate([first, ranked[~np.isin(ranked, first)]])
  by_index = {r.index: r for r in rounds}
  chosen: list[Trial] = []
  seen: set[str] = set()
  for row in ranked:
    if len(chosen) == count:
      break
    if not table.completed[row]:
      continue
    result = by_index[int(table.round[row])]
    trial = result.record(int(table.trial[row]))
    key = repr((result.structural(trial.trial), result.schedule(trial.trial)))
    if key not in seen:
      seen.add(key)
      chosen.append(trial)
  return chosen, None if found is None else estimates_record(table, found)


def estimates_record(table: TrialTable, found: Estimates) -> EstimatesRecord:
  """The estimated trials of ``table`` (those with a finite estimate), as the
  summary records them."""
  rows = np.flatnonzero(np.isfinite(found.mean))
  return EstimatesRecord(
      round=tuple(int(v) for v in table.round[rows]),
      trial=tuple(int(v) for v in table.trial[rows]),
      mean=tuple(float(v) for v in found.mean[rows]),
      stderr=tuple(finite_or_none(v) for v in found.stderr[rows]),
      groups=tuple(EstimateGroupRecord(
          values={k: json_value(v) for k, v in g.values.items()}, reached=g.reached,
          trials=len(g.rows), fitted=g.fitted,
          noise_sd=finite_or_none(g.noise_sd)) for g in found.groups))


def confirm(engine: Engine, rounds: Sequence[RoundResult], count: int, seeds: int,
            schedule: Callable[[Trial], list],
            seeds_that_fit: Callable[[int], int] | None = None) -> Confirmation | None:
  """Retrains the top ``count`` configurations of ``rounds`` with ``seeds``
  fresh seeds each, in the programs a round compiled (``None`` if fewer than two
  trials trained the full budget: nothing to choose between; or if no seed fits).

  Every call trains one round's lanes (:meth:`Engine.round_lanes`; padding fills
  them), so the stage compiles nothing. Without ``seeds`` in the search, each
  fresh seed is a call of its own whose lanes share that seed's keys, as a
  round's lanes share the round's; with ``seeds``, a call holds every seed of
  its candidates. Either way every candidate sees the same seeds (common random
  numbers: differences between candidates are measured, not drawn).

  Args:
    engine: the run's :class:`vmaptune.search.engine.Engine`.
    rounds: the completed :class:`vmaptune.search.results.RoundResult` s.
    count, seeds: ``K`` and ``S``.
    schedule: a trial's ``[(first_epoch, end_epoch, hparams), ...]``.
    seeds_that_fit: how many of ``seeds`` still fit, asked once the candidates
      are chosen (a wall-time budget's say, the estimate's time spent).
  """
  start = time.perf_counter()
  candidates, estimates = shortlist(rounds, count, engine.space)
  if seeds_that_fit is not None:
    seeds = seeds_that_fit(seeds)
  if len(candidates) < 2 or seeds < 1:
    return None
  groups: dict[tuple, list[int]] = {}
  for i, trial in enumerate(candidates):
    groups.setdefault(tuple(engine.buckets.find(trial.hparams).values.items()), []).append(i)
  scoring = engine.objective.scoring
  seed_metrics = {name: np.full((len(candidates), seeds), np.nan) for name in scoring.names}
  per_lane_seeds = engine.settings.seeds > 1  # The rounds' programs take a seed per lane.
  for members in groups.values():
    pop = engine.population(engine.buckets.find(candidates[members[0]].hparams))
    lanes = engine.round_lanes(pop, len(members) * (seeds if per_lane_seeds else 1),
                               at_least=seeds if per_lane_seeds else 1)
    if per_lane_seeds:
      replicas, calls = seeds, [(None, round_keys(engine.settings.seed, CONFIRMATION_ROUND))]
      per_call = max(lanes // seeds, 1)
    else:  # A call per seed, from round keys no round uses.
      replicas, per_call = None, lanes
      calls = [(s, round_keys(engine.settings.seed, CONFIRMATION_ROUND - s))
               for s in range(seeds)]
    for seed, keys in calls:
      for first in range(0, len(members), per_call):
        part = members[first:first + per_call]
        metrics = _retrain(pop, [schedule(candidates[i]) for i in part], lanes, keys, replicas)
        for name, values in metrics.items():
          if seed is None:
            seed_metrics[name][part] = values.T
          else:
            seed_metrics[name][part, seed] = values[0]
  return Confirmation(tuple(candidates), seed_metrics, engine.settings.epochs,
                      time.perf_counter() - start, scoring=scoring, estimates=estimates)


def _retrain(pop: Population, schedules: list[list], lanes: int, keys: tuple,
             replicas: int | None) -> dict[str, np.ndarray]:
  """Trains each of ``schedules`` once per replica (once, sharing ``keys``, when
  ``replicas`` is ``None``) in a population of ``lanes`` (the rest pad it).

  Returns:
    Each metric, ``float64 [replicas, len(schedules)]`` (``[1, ...]`` without replicas).
  """
  copies = 1 if replicas is None else replicas
  trained = pop.train_schedules(schedules, lanes, *keys, replicas=replicas)
  metrics = lane_scores(pop, trained).metrics
  real = len(schedules) * copies
  return {name: values[:real].reshape(copies, len(schedules))
          for name, values in metrics.items()}


def restore(saved: Mapping[str, Any] | None, rounds: Sequence[RoundResult], count: int,
            seeds: int, epochs: int, scoring: Scoring, space: Space | None = None,
            fewer_seeds: bool = False) -> Confirmation | None:
  """The confirmation a run directory's summary holds, if it confirmed the
  same candidates with as many seeds (or, with ``fewer_seeds``, as many as a
  wall-time budget left it); else ``None`` (it runs again)."""
  if not saved:
    return None
  record = ConfirmationRecord.from_json(saved, scoring)
  if record.seeds > seeds if fewer_seeds else record.seeds != seeds:
    return None
  candidates, estimates = shortlist(rounds, count, space)
  if [(c.round, c.trial) for c in record.candidates] != [(t.round, t.trial) for t in candidates]:
    return None
  as_array = lambda name: np.array([[np.nan if v is None else v for v in c.seeds[name]]
                                    for c in record.candidates], np.float64)
  return Confirmation(tuple(candidates), {name: as_array(name) for name in scoring.names},
                      epochs, record.wall_s, scoring=scoring, estimates=estimates)
