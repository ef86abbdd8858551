"""The round loop every sampler and strategy share, as a :class:`Search` with named steps.

:meth:`Search.run` reads top to bottom: :meth:`~Search.resume` (a resumed run's
completed rounds, rebuilt from their records and told to the sampler again),
then per round :meth:`~Search.round` (the sampler plans and asks, the strategy
trains every bucket and returns its trials with their lanes, the table is
ranked once, the sampler is told) and :meth:`~Search.commit` (the run directory
records it, the observers hear of it), then :meth:`~Search.confirm` and
:meth:`~Search.finish`. Later rounds draw from round-indexed keys, so a resumed
run writes what an uninterrupted run writes. The test split is not touched
until :meth:`Search.final_fit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings

import jax
import numpy as np

from vmaptune.errors import AllDivergedError, OutOfMemoryError, RunDirectoryWriteError
from vmaptune.lanes import distributed
from vmaptune.lanes.chunks import is_out_of_memory
from vmaptune.lanes.compilation import CompileCounter, cache_for_run
from vmaptune.lanes.devices import lane_to_host
from vmaptune.lanes.events import Listener, Pieces
from vmaptune.lanes.keys import round_keys
from vmaptune.rundir import Restored, RunDirectory
from vmaptune.rundir.records import BudgetRecord, ParamsPointer
from vmaptune.rundir.writer import kept_params
from vmaptune.samplers.base import RoundPlan
from vmaptune.search import confirmation as confirmation_stage
from vmaptune.search import restore
from vmaptune.search.budget import Budget, Costs, FirstPieceCheck, FirstRoundPieces
from vmaptune.search.confirmation import Confirmation
from vmaptune.search.engine import Engine
from vmaptune.search.final_fit import FinalFit
from vmaptune.search.observer import Observer, Observers
from vmaptune.search.results import RoundResult, TuneResult, best_trial, round_label
from vmaptune.space.distributions import LogUniform
from vmaptune.strategies import RoundContext
from vmaptune.trials import estimate
from vmaptune.trials.ranking import best_row
from vmaptune.trials.table import Trial, TrialTable


class Search:
  """One search: the engine's rounds, recorded in a run directory, told to observers.

  Args:
    engine: the run's checked inputs and populations.
    run_dir: where records go (``None``: nowhere); its writer lock is released
      when :meth:`run` ends, however it ends.
    restored: the completed state of a resumed run (from :func:`vmaptune.rundir.open_run`).
    observer: told about the run as it goes (see :mod:`vmaptune.search.observer`).
    pieces: how training is cut into reported pieces (with observers).
    resume_from_intact: restored rounds that do not replay cut the run back to
      the ones before them (see :func:`vmaptune.search.restore.restore_rounds`).
    cache: the persistent compilation cache the search and its final fit
      compile through (see :func:`vmaptune.lanes.compilation.cache_for_run`).
    started: ``time.perf_counter()`` when the call that runs the search began
      (default: now): a wall-time budget counts the setup before it too.
  """

  def __init__(self, engine: Engine, *, run_dir: RunDirectory | None = None,
               restored: Restored | None = None, observer: Observer | None = None,
               pieces: Pieces | None = None, resume_from_intact: bool = False,
               cache: bool | str = False, started: float | None = None):
    self.engine, self.run_dir, self.restored = engine, run_dir, restored
    self.cache = cache
    self.observer = observer if observer is not None else Observers()
    self.pieces = pieces
    self.resume_from_intact = resume_from_intact
    self.rounds: list[RoundResult] = []
    self.best: tuple[RoundResult, int] | None = None  # The best finished trial: (round, row).
    self.confirmation: Confirmation | None = None
    self.final: FinalFit | None = None
    self.saved: ParamsPointer | None = None  # Whose parameters best_params.msgpack holds.
    # The round's row that beats every earlier round's, and its parameters when saved.
    self._improved: tuple[int | None, object] = (None, None)
    seconds = engine.settings.budget_seconds()
    self.budget = None if seconds is None else Budget(seconds, engine.confirm_calls())
    # Seconds each round took in the loop (planning and recording included), by index.
    self.loop_s: dict[int, float] = {}
    # With a budget: what the final fit has still to compile and its training
    # and scoring, once measured; and what heard the first round's pieces.
    self.final_compile_s: float | None = None
    self.final_train_s: float | None = None
    # How the final fit trains (None: not decided; see compile_final_fit).
    self.final_in_lanes: bool | None = None
    self.first_check: FirstPieceCheck | None = None
    self.record = {**engine.described_settings(), "data": repr(engine.data),
                   "model": engine.model_name, "devices": [str(d) for d in jax.devices()],
                   "processes": jax.process_count()}
    self.started = time.perf_counter() if started is None else started

  def run(self) -> TuneResult:
    """Runs (or resumes) the search: every round, each recorded as it completes.

    Raises:
      AllDivergedError: every lane of a round diverged (``partial`` holds the rounds before).
      OutOfMemoryError: a round does not fit, one lane per chunk (``partial`` likewise).
      RunDirectoryWriteError: a write failed (``partial`` holds the rounds on disk).
      DamagedRunError: restored records do not replay (without ``resume_from_intact``).
    """
    settings = self.engine.settings
    try:
      stack = contextlib.ExitStack()
      stack.enter_context(cache_for_run(self.cache))
      if settings.confirm_size() is not None:
        # Imported while the first round compiles (where a budget's plan counts it),
        # not met at the confirmation: 1.5 to 3.6 s of a small run.
        estimate.prepare()
      self.engine.sampler.start(self.engine.space, settings.seed, self.engine.objective.scoring)
      self.resume()
      described = self.record
      self.observer.run_start(rounds=settings.rounds, population=settings.population,
                              epochs=settings.epochs, seeds=settings.seeds,
                              strategy=described["strategy"], sampler=described["sampler"],
                              space=self.engine.space, restored=list(self.rounds),
                              time_budget_s=None if self.budget is None else self.budget.seconds,
                              spent_s=self.elapsed())
      for index in range(len(self.rounds), settings.round_limit):
        self.compile_final_fit()
        if not self.budget_allows_a_round():
          break
        self.confirmation = self.final = None  # A finished run extended: they run again.
        began = time.perf_counter()
        self.commit(self.round(index))
        self.loop_s[index] = time.perf_counter() - began
      self.confirm()
      return self.finish()
    except BaseException as e:
      self.observer.stopped(e)
      raise
    finally:
      stack.close()
      if self.run_dir is not None:
        self.run_dir.release()

  def result(self, rounds: list[RoundResult] | None = None) -> TuneResult:
    """The search so far (or over ``rounds``), as a :class:`TuneResult`."""
    rounds = list(self.rounds if rounds is None else rounds)
    return TuneResult(rounds, self.engine.space, self.record,
                      time.perf_counter() - self.started,
                      None if self.run_dir is None else self.run_dir.path,
                      final=self.final, confirmation=self.confirmation, search=self,
                      budget=None if self.budget is None else self.budget_record())

  def summary(self, result: TuneResult, error: str | None = None) -> dict:
    """``summary.json``'s content for ``result``: its summary, the parameters'
    pointer, the budget's plan and, when a round failed, why."""
    return result.summary_record(self.saved, error).to_json()

  def elapsed(self) -> float:
    """Seconds the run has taken (a resumed run's earlier ones included)."""
    return time.perf_counter() - self.started

  def budget_allows_a_round(self) -> bool:
    """Whether one more round, the confirmation and the final fit fit in what is
    left of the budget (always, without one or before a round measured costs)."""
    if self.budget is None or not self.rounds:
      return True
    return distributed.agree(self.budget.rounds_left(self.costs(), self.elapsed())) > 0

  def budget_record(self) -> BudgetRecord:
    """The summary's ``budget`` entry now: what was spent, and the plan."""
    costs = self.costs() if self.rounds else None
    left = 0 if costs is None else self.budget.rounds_left(costs, self.elapsed())
    return self.budget.record(costs, self.elapsed(), len(self.rounds), len(self.rounds) + left)

  def costs(self) -> Costs:
    """What the completed rounds measured (there must be one)."""
    seconds = [self.loop_s.get(r.index, r.wall_s) for r in self.rounds]
    return Costs.measured(self.rounds, seconds, chunks=self.engine.round_chunks(),
                          final_compile_s=self.final_compile_s,
                          final_train_s=self.final_train_s,
                          first_round_s=None if self.first_check is None
                          else self.first_check.round_s,
                          final_in_lanes=self.final_in_lanes)

  def compile_final_fit(self) -> None:
    """With a budget, once a round has trained: decides how the final fit trains
    (:meth:`Costs.lanes_cheaper`: in a round's programs, compiling nothing, in
    one process), or compiles the final fit's one-lane programs for the best
    trial's bucket and times it, and times an epoch of its training and a
    scoring, so the plan holds the final fit as measured, not guessed. With one
    bucket, that is all it will compile; with several, the chosen
    configuration's may be another, costing about as much."""
    if self.budget is None or self.final_in_lanes is not None or self.best is None:
      return
    self.final_in_lanes = jax.process_count() == 1 and self.costs().lanes_cheaper()
    if self.final_in_lanes:
      return
    result, row = self.best
    trial = result.record(row)
    compiling, self.final_train_s = self.engine.prepare_refit(trial, result.schedule(trial.trial))
    # With one bucket, nothing is left to compile; with several, the chosen may be another's.
    self.final_compile_s = 0.0 if len(self.engine.buckets) == 1 else compiling

  def _listening(self, compiled: CompileCounter) -> tuple[Listener | None, Pieces | None]:
    """Who hears of a round's training pieces, and how training is cut: for a
    progress display; with a budget, the first round also after its first
    epoch, which checks that the budget holds the round (the rest is one piece)."""
    listener = None if self.pieces is None else self.observer
    if self.budget is None or self.rounds:
      return listener, self.pieces
    settings = self.engine.settings
    self.first_check = FirstPieceCheck(self.budget, self.started, compiled, settings.epochs,
                                       settings.population, forward=listener)
    return self.first_check, self.pieces or FirstRoundPieces()

  def resume(self) -> None:
    """A resumed run's completed rounds, confirmation and final fit, as they ran."""
    restored, run_dir = self.restored, self.run_dir
    if restored is None:
      return
    self.rounds = restore.restore_rounds(self.engine, restored, run_dir, self.resume_from_intact)
    for result in self.rounds:
      row = self._beats_best(result)
      if row is not None:
        self.best = (result, row)
    run_dir.tidy()  # The records replayed: what a killed writer left can go.
    cut = len(self.rounds) < len(restored.summary["rounds"])
    if restored.params is not None and run_dir.writes:
      saved = (kept_params(run_dir.path, restored.summary, len(self.rounds)) if cut
               else restored.summary.get("best_params"))
      self.saved = None if saved is None else ParamsPointer.from_json(saved)
    size = self.engine.settings.confirm_size()
    if not cut:
      self.confirmation = restore.restore_confirmation(self.engine, restored, self.rounds, size)
      # With a budget, a confirmation may have been skipped (no time left for it).
      if size is None or self.confirmation is not None or self.budget is not None:
        best = self.chosen()
        self.final = restore.restore_final_fit(self.engine, restored, self.rounds, best)
    self.started -= (sum(r.wall_s for r in self.rounds) if cut
                     else restored.summary.get("wall_s", 0.0))
    run_dir.write_config(restored.config)  # Only now that the records were checked.
    if cut or restored.repaired:  # The cut summary lacks the choice: written again now.
      run_dir.write_summary(self.summary(self.result()))
    self.observer.restored(list(self.rounds))

  def chosen(self) -> Trial | None:
    """The chosen trial: the confirmation's choice, or the best finished trial so far."""
    if self.confirmation is not None:
      return self.confirmation.trial
    return None if self.best is None else self.best[0].record(self.best[1])

  def round(self, index: int) -> RoundResult:
    """Round ``index``, planned once and trained (again, with lane chunks half as
    large, if a device runs out of memory: same keys, so the same results).

    Raises:
      OutOfMemoryError: one lane per chunk does not fit either (the summary says so).
    """
    engine = self.engine
    plan = engine.sampler.plan(engine.settings.population, index)
    while True:
      try:
        return self._train_round(index, plan)
      except jax.errors.JaxRuntimeError as e:
        if not is_out_of_memory(e):
          raise
        self._shrink_chunks(index, plan, e)

  def _shrink_chunks(self, index: int, plan: RoundPlan, error: Exception) -> None:
    """Halves the lane chunks of the plan's populations, or raises :class:`OutOfMemoryError`."""
    pops = [self.engine.population(self.engine.buckets.find(values))
            for values, _ in plan.buckets]
    if not [pop.shrink_chunks() for pop in pops].count(True):
      e = OutOfMemoryError(f"{round_label(index, self.engine.settings.rounds)} ran out of device "
                           f"memory with one lane per chunk: {error}")
      e.partial = self.result()
      if self.run_dir is not None:
        self.run_dir.write_summary(self.summary(e.partial, error=str(e)))
      raise e from error
    lanes = max(pop.lanes_per_chunk or 1 for pop in pops)
    warnings.warn(f"round {index + 1} ran out of device memory; running it again with at "
                  f"most {lanes} lane{'s' if lanes > 1 else ''} per chunk", RuntimeWarning,
                  stacklevel=4)

  def _train_round(self, index: int, plan: RoundPlan) -> RoundResult:
    """The strategy in every bucket of ``plan``, all the trials merged (bucket
    order, or the sampler's) and told to the sampler, ranked once."""
    engine = self.engine
    settings, sampler, strategy = engine.settings, engine.sampler, engine.strategy
    start = time.perf_counter()
    traced = plan.space.traced()
    init_key, data_key = round_keys(settings.seed, index)
    self.observer.round_start(index, plan.space, len(plan.buckets))
    parts, lanes = [], []
    compiled = CompileCounter()
    listener, pieces = self._listening(compiled)
    with compiled:
      # Buckets share the round's keys: a configuration's result does not depend
      # on which other buckets the round has.
      for position, (values, count) in enumerate(plan.buckets):
        bucket = engine.buckets.find(values)
        self.observer.bucket_start(position, bucket.values)
        numbered = [] if bucket.index is None else [bucket.index]
        ask = (lambda size, stream, bucket=bucket: sampler.ask(
            size, round_index=index, bucket=bucket, stream=stream))
        ctx = RoundContext(pop=engine.population(bucket), space=traced, index=index,
                           configurations=count, init_key=init_key, data_key=data_key,
                           rng=np.random.default_rng([settings.seed, index, 1 << 20] + numbered),
                           ask=ask, seeds=settings.seeds, listener=listener, pieces=pieces)
        trained = strategy.run(ctx)
        parts.append((bucket.values, trained.table))
        lanes += trained.lanes
      table = TrialTable.merge_buckets(parts, plan.space)
      told = sampler.tell(table, round_index=index)
      if told.order is not None:
        table, lanes = table.reordered(told.order), [lanes[row] for row in told.order]
      # The best parameters so far, copied to the host inside the round (its program is
      # the round's), when they will be saved.
      row = self._beats_best(table)
      params = (None if row is None or self.run_dir is None or lanes[row] is None
                else lane_to_host(lanes[row][0].state.params, lanes[row][1]))
      self._improved = (row, params)
    result = RoundResult(**table.columns(), index=index, space=plan.space,
                         next_space=told.next_space, kept=told.kept,
                         strategy=strategy.describe(), wall_s=time.perf_counter() - start,
                         compile_s=compiled.compile_seconds, trace_s=compiled.trace_seconds,
                         compiles=compiled.compiles)
    return result

  def _beats_best(self, table: TrialTable) -> int | None:
    """The row of ``table``'s best finished trial if it beats the best of every
    earlier round (ties: the earlier), else ``None``."""
    row = best_row(table)
    if row is None or self.best is None:
      return row
    rival, rival_row = self.best
    pair = TrialTable.concat([rival.take(np.array([rival_row])), table.take(np.array([row]))])
    return None if best_row(pair) == 0 else row

  def commit(self, result: RoundResult) -> None:
    """Records round ``result`` (with the best parameters when it improved on
    every earlier round) and tells the observers.

    Raises:
      AllDivergedError: every lane of the round diverged (its records are kept).
    """
    if not result.completed.any():
      self.observer.round_end(result)
      message = divergence_message(result, self.engine, self.rounds)
      partial = self.result()
      self._write_round(result, partial, error=message)
      raise AllDivergedError(message, partial)
    (row, params), self._improved = self._improved, (None, None)
    self.rounds.append(result)
    if row is not None:
      self.best = (result, row)
      if params is not None:  # Saved with the round.
        self.saved = ParamsPointer.of("search", result.record(row))
    self._write_round(result, params=params)
    self.observer.round_end(result)

  def _write_round(self, result: RoundResult, search: TuneResult | None = None, *,
                   params: object = None, error: str | None = None) -> None:
    """Commits ``result`` to the run directory with the summary of ``search``
    (default: the search so far), made only when there is a directory
    (``partial``: the rounds on disk if it fails)."""
    if self.run_dir is None:
      return
    summary = self.summary(self.result() if search is None else search, error=error)
    try:
      sha256 = self.run_dir.commit_round(result.trials(), summary, params)
    except RunDirectoryWriteError as e:
      e.partial = self.result([r for r in self.rounds if r is not result])
      raise
    if sha256 is not None:  # The summary written points to the parameters by their digest.
      self.saved = dataclasses.replace(self.saved, sha256=sha256)

  def confirm(self) -> None:
    """The confirmation stage, when turned on and not restored."""
    size = self.engine.settings.confirm_size()
    if size is None or self.confirmation is not None or not self.rounds:
      return
    if self.budget is not None and self.seeds_that_fit(size[1]) < 1:
      return  # No time left for one seed; asked again once the estimate is spent.
    self.final = None  # Whatever a resumed run restored fitted the choice before this one.
    self.confirmation = confirmation_stage.confirm(
        self.engine, self.rounds, *size,
        lambda trial: self.rounds[trial.round].schedule(trial.trial),
        None if self.budget is None else self.seeds_that_fit)
    if self.run_dir is not None:
      self.run_dir.write_summary(self.summary(self.result()))
    if self.confirmation is not None:
      self.observer.confirmed(self.confirmation)

  def seeds_that_fit(self, seeds: int) -> int:
    """How many of the confirmation's ``seeds`` the budget has calls left for now."""
    per_seed = max(self.engine.confirm_calls() // seeds, 1)
    calls = int(distributed.agree(self.budget.confirm_calls_left(self.costs(), self.elapsed())))
    return min(seeds, calls // per_seed)

  def finish(self) -> TuneResult:
    """The search's result, told to the observers."""
    result = self.result()
    self.observer.run_end(result)
    return result

  def final_fit(self, result: TuneResult) -> FinalFit:
    """Retrains ``result``'s chosen configuration alone and reads the test split,
    once; saves the fit's parameters and summary, then tells the observers."""
    guard = contextlib.nullcontext if self.run_dir is None else self.run_dir.final_fit_guard
    best = result.best
    with guard(), cache_for_run(self.cache):
      result.final = self.final = self.engine.refit(best, result.schedule(best),
                                                    in_lanes=bool(self.final_in_lanes))
      if self.budget is not None:  # The final fit spends the budget too.
        result.budget = self.budget_record()
      if self.run_dir is not None:
        self.saved = ParamsPointer.of("final_fit", best)
        sha256 = self.run_dir.write_final(result.final.params, self.summary(result))
        if sha256 is not None:
          self.saved = dataclasses.replace(self.saved, sha256=sha256)
    self.observer.final_fit(result)
    return result.final


def divergence_message(result: RoundResult, engine: Engine,
                       done: list[RoundResult]) -> str:
  """Why a round in which every lane diverged stopped the run, and what to try."""
  ranges = ", ".join(f"{k} {d.describe()}" for k, d in result.space.items())
  message = (f"no trial trained {round_label(result.index, engine.settings.rounds)}'s full "
             f"budget without diverging ({result.num_diverged} of {result.num_trials} trials' "
             f"training or validation loss became NaN/inf); the ranges sampled were: {ranges}.")
  lr = engine.space.get("learning_rate")
  if done:
    best = best_trial(done)
    message += (f" Earlier rounds trained (best so far: {best.hparams}), so the ranges sampled "
                "are unstable: try a lower upper bound"
                + (", or a larger keep or margin (sampler='narrow(keep=..., margin=...)')."
                   if engine.sampler.name == "narrow" else "."))
  elif isinstance(lr, LogUniform):
    message += (" The learning rate is the usual cause: try a lower range, e.g. "
                f"learning_rate=LogUniform({lr.low / 1e3:.3g}, {lr.high / 1e3:.3g}).")
  else:
    message += " Try lower step sizes or narrower ranges."
  return message
