"""What a run produces: each round's trials and figures, the chosen trial, the final fit.

A :class:`RoundResult` is a round's :class:`~vmaptune.trials.table.TrialTable`
plus what the round was (its ranges, the sampler's kept trials and next
ranges, timings); a :class:`TuneResult` holds the rounds, the chosen trial
(:mod:`vmaptune.trials.ranking`) and, once asked for, the :class:`FinalFit`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from vmaptune.rundir import SUMMARY_FILE, TRIALS_FILE, display
from vmaptune.rundir.records import BucketEntry, BudgetRecord, ParamsPointer, RoundEntry, Summary
from vmaptune.search.final_fit import FinalFit
from vmaptune.space.distributions import describe_values, json_value
from vmaptune.space.space import Space
from vmaptune.trials.ranking import best_row, rank
from vmaptune.trials.table import FINISHED, Trial, TrialTable, finite_or_none

if TYPE_CHECKING:  # Only for types: the search builds results, and confirms with them.
  from vmaptune.search.confirmation import Confirmation
  from vmaptune.search.rounds import Search



def round_label(index: int, rounds: int | None) -> str:
  """``"round 3/4"`` for round index 2 of 4; ``"round 3"`` when the number of
  rounds is not fixed (a budget plans it).

  >>> round_label(2, 4), round_label(2, None)
  ('round 3/4', 'round 3')
  """
  return f"round {index + 1}" + ("" if rounds is None else f"/{rounds}")

@dataclasses.dataclass(frozen=True, kw_only=True)
class RoundResult(TrialTable):
  """Every trial one round trained (the table's columns, ``[T]`` each), and the round.

  Table operations (``take``, ``concat``, ``reordered``) give plain
  :class:`~vmaptune.trials.table.TrialTable` s; :meth:`record` is trial ``i`` as a record.

  Attributes:
    index: 0-based round index.
    space: the ranges this round sampled from.
    next_space: the ranges the sampler gives the next round.
    kept: trial indices ``[K]``, best first, the sampler kept (the next ranges span them).
    strategy: the strategy that ran the round, e.g. ``"halving(eta=3, min_epochs=1)"``.
    wall_s: wall time of the round, compilation included.
    compile_s: time XLA spent compiling (or loading cached programs) in the round.
    trace_s: time JAX spent tracing and lowering new programs in the round.
    compiles: XLA programs the round needed: compiled, or loaded from the
      persistent compilation cache.
  """

  index: int
  space: Space
  next_space: Space
  kept: np.ndarray
  strategy: str
  wall_s: float
  compile_s: float
  trace_s: float
  compiles: int

  def __repr__(self) -> str:
    """One line: the round, its counts, its best score and time (no columns)."""
    best = (f"best val {self.scoring.rank_by.replace('_', ' ')} {self.best_score:.4f} "
            f"(trial {self.best_trial})" if self.completed.any() else "no trial finished")
    return (f"<RoundResult round {self.index + 1} (index {self.index}): "
            f"{self.configurations} configurations, {self.num_trials} trials, "
            f"{self.num_diverged} diverged, {best}, {self.wall_s:.2f}s>")

  def _repr_html_(self) -> str | None:
    """The notebook's summary (see :mod:`vmaptune.reporting.notebook`)."""
    return display.html(self)

  @property
  def configurations(self) -> int:
    """Configurations the round sampled (trials started from initialisation)."""
    return int(self.is_configuration.sum())

  @property
  def num_diverged(self) -> int:
    return int(self.diverged.sum())

  @property
  def trials_per_s(self) -> float:
    """Configurations per second of wall time (compilation included)."""
    return self.configurations / self.wall_s if self.wall_s > 0 else math.inf

  @property
  def best_trial(self) -> int:
    """The best trial that trained the full budget (raises if there is none)."""
    row = best_row(self)
    if row is None:
      raise ValueError(f"no trial of round {self.index} trained the full budget")
    return row

  @property
  def best_score(self) -> float:
    """The best finished trial's ranking metric."""
    return float(self.score[self.best_trial])

  @property
  def median_score(self) -> float:
    """The ranking metric's median over the trials that completed the budget
    (NaN if none did)."""
    done = self.score[self.completed]
    return float(np.median(done)) if len(done) else math.nan

  @property
  def best_key(self) -> str:
    """The summary's key of the best ranking metric: ``best_val_<metric>``."""
    return self.scoring.best_field

  def structural(self, trial: int) -> dict[str, Any]:
    """The structural values of a trial: which bucket it trained in."""
    return {name: self.space[name].value(self.hparams[name][trial])
            for name in self.space.structural_names}

  def buckets(self) -> list[tuple[dict[str, Any], np.ndarray]]:
    """``[(structural values, trial indices [T_b]), ...]`` per bucket, in order
    of first appearance; one bucket ``({}, all trials)`` without structure."""
    groups: dict[tuple, list[int]] = {}
    for index in range(self.num_trials):
      groups.setdefault(tuple(self.structural(index).items()), []).append(index)
    return [(dict(key), np.array(trials)) for key, trials in groups.items()]

  def bucket_summaries(self) -> list[dict[str, Any]]:
    """Per bucket: its structural values (JSON-ready), configurations started,
    trials, kept trials, diverged trials, and its best trial that trained the
    full budget (``None`` if none did, e.g. when all its lanes diverged)."""
    return [bucket.to_json() for bucket in self.bucket_entries()]

  def bucket_entries(self) -> list[BucketEntry]:
    """:meth:`bucket_summaries` as records."""
    kept = set(self.kept.tolist())
    entries = []
    for values, trials in self.buckets():
      done = trials[self.completed[trials]]
      best = int(done[rank(self.take(done))[0]]) if len(done) else None
      entries.append(BucketEntry(
          values={k: json_value(v) for k, v in values.items()},
          configurations=int(self.is_configuration[trials].sum()),
          trials=len(trials), kept=len(kept.intersection(trials.tolist())),
          diverged=int(self.diverged[trials].sum()), best_trial=best,
          best=None if best is None else float(self.score[best]), scoring=self.scoring))
    return entries

  def schedule(self, trial: int) -> list[tuple[int, int, dict[str, float]]]:
    """The configurations ``trial`` and its ancestors trained with, oldest
    first: ``[(first_epoch, end_epoch, hparams), ...]`` covering ``[0, end)``,
    with the traced hyperparameters only (a lineage never changes bucket).
    Replaying it from the round's initialisation, in the trial's bucket,
    reproduces the trial."""
    chain = self.lineage(trial)
    starts = [int(self.start_epoch[t]) for t in chain]
    ends = starts[1:] + [int(self.reached[trial])]
    return [(start, end, self.traced_values(t, self.space))
            for start, end, t in zip(starts, ends, chain, strict=True)]

  def record(self, index: int) -> Trial:
    """Trial ``index`` as a record."""
    return self.trial_at(index, self.space, kept=index in set(self.kept.tolist()))

  def trials(self) -> list[Trial]:
    """Every trial as a record, in order."""
    kept = set(self.kept.tolist())
    return [self.trial_at(index, self.space, kept=index in kept)
            for index in range(self.num_trials)]

  def describe(self, rounds: int | None) -> str:
    """A few lines: the ranges sampled, throughput, and scores of this round."""
    compile_note = (f", {self.compile_s:.1f}s compiling + {self.trace_s:.1f}s tracing"
                    if self.compiles else "")
    if self.completed.any():
      scores = (f"best {self.best_score:.4f} (trial {self.best_trial})  "
                f"median {self.median_score:.4f}")
    else:
      scores = "no trial finished"
    counts = ", ".join(f"{status} {int((self.status == status).sum())}"
                       for status in (FINISHED, "halved", "exploited")
                       if (self.status == status).any())
    lines = [
        f"{round_label(self.index, rounds)}: {self.configurations} configurations, "
        f"{self.lane_epochs} lane-epochs in {self.wall_s:.1f}s ({self.trials_per_s:.1f} "
        f"trials/s{compile_note})",
        "  sampled ranges:", self.space.describe(),
        f"  {self.scoring.label()}: {scores}  diverged {self.num_diverged}/{self.num_trials}"
        + (f"  ({counts})" if self.strategy.split("(")[0] != "random" else ""),
    ]
    if self.space.structural_names:
      lines.append("  by bucket:")
      for (values, _), bucket in zip(self.buckets(), self.bucket_entries(), strict=True):
        count = bucket.configurations
        lines.append(f"    {describe_values(values)}: {count} configuration"
                     f"{'s' if count != 1 else ''}, best "
                     + ("-" if bucket.best is None else f"{bucket.best:.4f}")
                     + f", kept {bucket.kept}, diverged {bucket.diverged}/{bucket.trials}")
    return "\n".join(lines)

  def summary(self) -> dict[str, Any]:
    """The round's entry in ``summary.json`` (see :class:`vmaptune.rundir.records.RoundEntry`)."""
    return self.entry().to_json()

  def entry(self) -> RoundEntry:
    """The round's entry in ``summary.json``, as a record (made once: a round
    does not change, and every round's summary holds every earlier round's)."""
    return self._entry

  @functools.cached_property
  def _entry(self) -> RoundEntry:
    best = self.best_trial if self.completed.any() else None
    return RoundEntry(
        round=self.index, strategy=self.strategy, space=self.space.to_dict(),
        next_space=self.next_space.to_dict(), configurations=self.configurations,
        trials=self.num_trials, lane_epochs=self.lane_epochs,
        kept=len(self.kept), diverged=self.num_diverged,
        statuses={str(k): int(v) for k, v in zip(*np.unique(self.status, return_counts=True),
                                                 strict=True)},
        best=None if best is None else self.best_score,
        median=finite_or_none(self.median_score), best_trial=best,
        wall_s=self.wall_s, compile_s=self.compile_s, trace_s=self.trace_s,
        compiles=self.compiles, trials_per_s=self.trials_per_s,
        buckets=tuple(self.bucket_entries()) if self.space.structural_names else None,
        scoring=self.scoring)


def best_trial(rounds: list[RoundResult]) -> Trial | None:
  """The best trial of all ``rounds`` that trained the full budget (ranked as
  :mod:`vmaptune.trials.ranking` ranks, earlier rounds first on ties); ``None``
  before any round completed one."""
  if not rounds:
    return None
  table = TrialTable.concat(rounds)
  row = best_row(table)
  if row is None:
    return None
  result = next(r for r in rounds if r.index == table.round[row])
  return result.record(int(table.trial[row]))


class TuneResult:
  """The outcome of :func:`vmaptune.tune`.

  Attributes:
    rounds: one :class:`RoundResult` per completed round, in order (a round in
      which every lane diverged is not among them).
    space: the original search space.
    settings: the run's settings (population, epochs, ...), JSON-ready.
    wall_s: wall time of the search.
    out_dir: the run directory, or ``None`` when records were not written.
    confirmation: the :class:`vmaptune.search.confirmation.Confirmation` that chose
      the configuration, or ``None`` (turned off, or before it ran).
    final: the :class:`FinalFit`, once :meth:`final_fit` ran (or a resumed run restored it).
    budget: with a wall-time budget, its plan and what was spent
      (:class:`vmaptune.rundir.records.BudgetRecord`); else ``None``.
  """

  def __init__(self, rounds: list[RoundResult], space: Space, settings: dict[str, Any],
               wall_s: float, out_dir: str | None, *, final: FinalFit | None = None,
               confirmation: Confirmation | None = None, search: Search | None = None,
               budget: BudgetRecord | None = None):
    self.rounds = rounds
    self.budget = budget
    self.confirmation = confirmation
    self.space = space
    self.settings = settings
    self.wall_s = wall_s
    self.out_dir = out_dir
    self._final = final  # Restored from the run directory when a finished run is resumed.
    self._search = search  # What refits the chosen configuration (None: nothing can).

  def __repr__(self) -> str:
    """One line: rounds, trials, time, the chosen configuration and its scores."""
    trials = sum(r.num_trials for r in self.rounds)
    line = (f"<TuneResult: {len(self.rounds)} round{'s' if len(self.rounds) != 1 else ''}, "
            f"{trials} trials, {self.wall_s:.1f}s")
    best = self.best
    if best is None:
      return line + "; no round completed>"
    metric = best.scoring.rank_by.replace("_", " ")
    line += (f"; chosen {describe_values(best.hparams, sep=' ')} (round {best.round + 1}, "
             f"trial {best.trial}), val {metric} "
             + ("n/a" if best.score is None else f"{best.score:.4f}"))
    if self._final is not None and not math.isnan(self._final.test_score):
      line += f", test {metric} {self._final.test_score:.4f}"
    return line + (f"; records in {self.out_dir}>" if self.out_dir else ">")

  def _repr_html_(self) -> str | None:
    """The notebook's summary (see :mod:`vmaptune.reporting.notebook`)."""
    return display.html(self)

  @property
  def best(self) -> Trial | None:
    """The chosen trial: the confirmation's choice, or without one the best of
    all rounds (see :func:`best_trial`)."""
    if self.confirmation is not None:
      return self.confirmation.trial
    return best_trial(self.rounds)

  @property
  def compile_s(self) -> float:
    """XLA compile (or cache-load) seconds over all rounds."""
    return sum(r.compile_s for r in self.rounds)

  @property
  def trace_s(self) -> float:
    """JAX tracing and lowering seconds over all rounds."""
    return sum(r.trace_s for r in self.rounds)

  def trials(self) -> list[Trial]:
    return [t for r in self.rounds for t in r.trials()]

  def schedule(self, trial: Trial) -> list[tuple[int, int, dict[str, float]]]:
    """The lineage ``trial`` trained with (see :meth:`RoundResult.schedule`)."""
    return next(r for r in self.rounds if r.index == trial.round).schedule(trial.trial)

  def final_fit(self) -> FinalFit:
    """Retrains the chosen configuration and reads the test split, once.

    The result is cached: calling again returns it without touching the test
    split a second time. With a run directory, its parameters are saved there
    (``best_params.msgpack``, see :func:`vmaptune.load_best_params`) and the
    summary records its scores; resuming the finished run restores it from
    there, without retraining or reading the test split again.
    """
    if self._final is None:
      if self.best is None:
        raise RuntimeError("no round completed, so there is no configuration to refit")
      if self._search is None:
        raise RuntimeError("this result has no data or model attached to refit with")
      self._search.final_fit(self)
    return self._final

  @property
  def final(self) -> FinalFit | None:
    """The final fit, if it ran (or was restored); ``None`` before."""
    return self._final

  @final.setter
  def final(self, fit: FinalFit) -> None:
    self._final = fit

  def summary(self) -> dict[str, Any]:
    """``summary.json`` as far as the result knows it (``best_params`` is
    ``None``: the run directory's writer sets it)."""
    return self.summary_record().to_json()

  def summary_record(self, best_params: ParamsPointer | None = None,
                     error: str | None = None) -> Summary:
    """``summary.json`` as a record."""
    best = self.best
    return Summary(
        chosen=best, final_fit=None if self._final is None else self._final.record(),
        settings=self.settings, space=self.space.to_dict(),
        rounds=tuple(r.entry() for r in self.rounds),
        confirmation=None if self.confirmation is None else self.confirmation.record(),
        wall_s=self.wall_s, compile_s=self.compile_s, trace_s=self.trace_s,
        # XLA programs compiled (or loaded from the cache) over the whole search:
        # one set per population size a strategy used, reused by later rounds.
        programs_compiled=sum(r.compiles for r in self.rounds),
        lane_epochs=self.lane_epochs,  # The rounds' and the confirmation's.
        best_params=best_params, error=error, budget=self.budget)

  @property
  def lane_epochs(self) -> int:
    """Epochs trained, summed over every lane of the rounds and the confirmation."""
    return sum(r.lane_epochs for r in self.rounds) + (
        0 if self.confirmation is None else self.confirmation.lane_epochs)

  def describe(self) -> str:
    """The chosen configuration, its validation and (after the final fit) test
    accuracy, timings, and where the records are."""
    best = self.best
    if best is None:
      return "no round completed"
    config = lambda hparams: describe_values(hparams, sep="  ")
    lines = [f"chosen config (round {best.round + 1}/{len(self.rounds)}, trial {best.trial}): "
             f"{config(best.hparams)}"]
    schedule = self.schedule(best)
    if len(schedule) > 1:
      lines += [f"  lineage: epochs {a}-{b}: {config(h)}" for a, b, h in schedule]
    metric = best.scoring.rank_by.replace("_", " ")
    lines.append(f"  val {metric}  {best.score:.4f} (search)")
    if self._final is not None:
      lines[-1] += f"  {self._final.val_score:.4f} ({self._final.record().refit})"
    if self.confirmation is not None:
      lines.append(self.confirmation.describe())
    if self._final is not None:
      test = self._final.test_score
      lines.append(f"  test {metric} " + ("n/a (empty test split)" if math.isnan(test)
                                          else f"{test:.4f} (test split read once)"))
    confirmed = ("" if self.confirmation is None
                 else f" (the confirmation's {self.confirmation.wall_s:.1f}s included)")
    lines.append(f"  search wall time {self.wall_s:.1f}s{confirmed}, of which the rounds' "
                 f"compiling {self.compile_s:.1f}s and tracing {self.trace_s:.1f}s")
    if self.budget is not None:
      lines.append(describe_budget(self.budget))
    if self.out_dir is not None:
      lines.append(f"records: {os.path.join(self.out_dir, TRIALS_FILE)}, "
                   f"{os.path.join(self.out_dir, SUMMARY_FILE)}")
    return "\n".join(lines)


def describe_budget(record: BudgetRecord) -> str:
  """One line: a wall-time budget, what was spent and the rounds it held."""
  return (f"  budget {record.seconds:g}s: {record.spent_s:.1f}s spent "
          f"({100 * record.spent_s / record.seconds:.0f}%), {record.rounds} round"
          f"{'s' if record.rounds != 1 else ''} of the {record.planned} planned")
