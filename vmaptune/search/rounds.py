"""The round loop every sampler and strategy share: ask, train, evaluate, tell, record.

Each round the sampler gives the round's ranges and buckets; in every bucket
the strategy draws the sampler's configurations and trains them through the
bucket's population; all the round's trials are merged into one table, told
to the sampler, appended to the run directory and, with the summary,
committed. A resumed run first rebuilds its completed rounds from their
records and tells them to the sampler again, checking that it narrows as the
summary recorded; later rounds draw from round-indexed keys, so the resumed
run writes what an uninterrupted run writes. The test split is not touched
until the final fit.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import flax.serialization
import jax
import numpy as np

from vmaptune.errors import (
  AllDivergedError,
  DamagedRunError,
  OutOfMemoryError,
  RunDirectoryWriteError,
)
from vmaptune.lanes.chunks import is_out_of_memory
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.devices import lane_to_host
from vmaptune.lanes.events import Listener, Pieces
from vmaptune.lanes.keys import round_keys
from vmaptune.rundir import SUMMARY_FILE, TRIALS_FILE, Restored, RunDirectory
from vmaptune.rundir.damage import intact_advice
from vmaptune.rundir.files import as_json
from vmaptune.rundir.records import ParamsPointer
from vmaptune.rundir.writer import kept_params
from vmaptune.search import confirmation as confirmation_stage
from vmaptune.search.engine import Engine
from vmaptune.search.final_fit import FinalFit
from vmaptune.search.results import RoundResult, TuneResult, best_trial
from vmaptune.space.distributions import LogUniform
from vmaptune.strategies import RoundContext
from vmaptune.trials.log import TrialLog
from vmaptune.trials.ranking import best_row
from vmaptune.trials.table import TrialTable


def _params_pointer(source: str, trial: Any) -> dict[str, Any]:
  """The summary's ``best_params``: whose parameters the file holds (its
  ``sha256`` is added when it is written)."""
  return ParamsPointer.of(source, trial).to_json()


def _best_lane_params(log: TrialLog, table: TrialTable) -> Any:
  """The parameters of a bucket's best finished trial (``None`` if none finished)."""
  row = best_row(table)
  if row is None or row not in log.placed:
    return None
  lanes, position = log.placed[row]
  return lane_to_host(lanes.state.params, position)


def run_round(engine: Engine, index: int, history: Sequence[RoundResult],
              listener: Listener | None = None, pieces: Pieces | None = None,
              keep_params: bool = False) -> RoundResult:
  """Round ``index``: the strategy in every bucket the sampler gives it, all
  the trials merged (bucket order) and told to the sampler; with
  ``keep_params``, the best finished trial's parameters come along
  (``RoundResult.best_params``, to be saved)."""
  settings, sampler, strategy = engine.settings, engine.sampler, engine.strategy
  start = time.perf_counter()
  space = sampler.round_space()
  traced = space.traced()
  init_key, data_key = round_keys(settings.seed, index)
  plan = sampler.buckets(settings.population, index)
  if listener is not None:
    listener.round_start(index, space, len(plan))
  parts, candidates = [], []
  with CompileCounter() as compiled:
    # Buckets share the round's keys: a configuration's result does not depend
    # on which other buckets the round has.
    for position, (values, count) in enumerate(plan):
      bucket = engine.buckets.find(values)
      if listener is not None:
        listener.bucket_start(position, bucket.values)
      numbered = [] if bucket.index is None else [bucket.index]
      ask = (lambda size, stream, bucket=bucket: sampler.ask(
          size, history, round_index=index, bucket=bucket, stream=stream))
      ctx = RoundContext(pop=engine.population(bucket), space=traced, index=index,
                         configurations=count, init_key=init_key, data_key=data_key,
                         rng=np.random.default_rng([settings.seed, index, 1 << 20] + numbered),
                         ask=ask, seeds=settings.seeds, listener=listener, pieces=pieces)
      log = TrialLog(list(traced), settings.epochs, index, engine.objective.scoring)
      strategy.run(ctx, log)
      parts.append((bucket.values, log.table()))
      if keep_params:
        candidates.append((bucket, _best_lane_params(log, parts[-1][1])))
  table = TrialTable.merge_buckets(parts, space)
  rows = sampler.order(table, round_index=index)
  if rows is not None:
    table = table.reordered(rows)
  told = sampler.tell(table, history, round_index=index)
  result = RoundResult(**table.columns(), index=index, space=space, next_space=told.next_space,
                       kept=told.kept, strategy=strategy.describe(),
                       wall_s=time.perf_counter() - start, compile_s=compiled.compile_seconds,
                       trace_s=compiled.trace_seconds, compiles=compiled.compiles)
  row = best_row(result)
  if row is None or not keep_params:
    return result
  bucket = engine.buckets.find(result.structural(row))
  return dataclasses.replace(result, best_params=next(
      (params for found, params in candidates if found is bucket), None))


def run_round_in_memory(engine: Engine, index: int, history: Sequence[RoundResult],
                        listener: Listener | None = None, pieces: Pieces | None = None,
                        keep_params: bool = False) -> RoundResult:
  """:func:`run_round`; if a device runs out of memory, the round runs again
  with lane chunks half as large (same keys, so the same results) down to one lane.

  Raises:
    OutOfMemoryError: one lane per chunk does not fit either.
  """
  while True:
    try:
      return run_round(engine, index, history, listener, pieces, keep_params)
    except jax.errors.JaxRuntimeError as e:
      if not is_out_of_memory(e):
        raise
      pops = [engine.population(engine.buckets.find(values))
              for values, _ in engine.sampler.buckets(engine.settings.population, index)]
      if not [pop.shrink_chunks() for pop in pops].count(True):
        raise OutOfMemoryError(f"round {index + 1}/{engine.settings.rounds} ran out of device "
                               f"memory with one lane per chunk: {e}") from e
      lanes = max(pop.lanes_per_chunk or 1 for pop in pops)
      warnings.warn(f"round {index + 1} ran out of device memory; running it again with at "
                    f"most {lanes} lane{'s' if lanes > 1 else ''} per chunk", RuntimeWarning,
                    stacklevel=3)


def restore_rounds(engine: Engine, restored: Restored, run_dir: RunDirectory | None = None,
                   resume_from_intact: bool = False) -> list[RoundResult]:
  """The completed rounds of a resumed run, rebuilt from their records and
  told to the (started) sampler again.

  Args:
    run_dir: the run directory, cut back to the rounds that replay when
      ``resume_from_intact`` (its damaged files copied aside first).

  Raises:
    DamagedRunError: the records do not replay to what the summary recorded
      (without ``resume_from_intact``).
  """
  rounds: list[RoundResult] = []
  for index, summary in enumerate(restored.summary["rounds"]):
    space = engine.sampler.round_space()
    records = restored.round_records(index)
    try:
      if as_json(space.to_dict()) != summary["space"]:
        raise ValueError(f"round {index + 1}'s ranges in the summary are not the ones the "
                         "earlier rounds narrowed to")
      table = TrialTable.from_records(records, engine.space, engine.settings.epochs,
                                      engine.objective.scoring)
      told = engine.sampler.tell(table, rounds, round_index=index)
      result = RoundResult(**table.columns(), index=index, space=space,
                           next_space=told.next_space, kept=told.kept,
                           strategy=summary["strategy"], wall_s=summary["wall_s"],
                           compile_s=summary["compile_s"], trace_s=summary["trace_s"],
                           compiles=summary["compiles"])
      replayed = as_json(result.summary())
      differs = [key for key in summary if replayed.get(key, summary[key]) != summary[key]]
      if as_json([t.to_record() for t in result.trials()]) != records or differs:
        raise ValueError(f"round {index + 1} replayed from its records does not give the "
                         f"records and summary the run wrote ({', '.join(differs) or 'records'}"
                         " differ: damaged records, or a vmaptune that ranks or narrows "
                         "differently)")
    except (KeyError, ValueError, TypeError) as e:
      where = "the run directory" if run_dir is None else run_dir.path
      if not resume_from_intact or run_dir is None:
        trials = os.path.join(where, TRIALS_FILE)
        raise DamagedRunError(
            f"{trials} and {os.path.join(where, SUMMARY_FILE)} disagree: {e}. "
            f"{intact_advice(where, index, engine.settings.rounds)}", trials, index) from e
      aside = run_dir.keep_rounds(restored.summary, index)
      # Told the damaged round: again.
      engine.sampler.start(engine.space, engine.settings.seed, engine.objective.scoring)
      for done in rounds:
        engine.sampler.round_space()
        engine.sampler.tell(done, rounds[:done.index], round_index=done.index)
      if aside is not None:  # Process 0, which moved them.
        warnings.warn(f"{e}; resuming {where} from its {index} intact rounds; the damaged "
                      f"files were copied to {aside}", RuntimeWarning, stacklevel=3)
      break
    rounds.append(result)
  return rounds


def restore_final_fit(engine: Engine, restored: Restored, rounds: list[RoundResult],
                      best: Any) -> FinalFit | None:
  """The saved final fit of a resumed run, if the summary holds one for the
  chosen trial ``best`` of ``rounds`` and its parameters were saved; else
  ``None`` (the fit runs again when asked for)."""
  final, pointer = restored.summary.get("final_fit"), restored.summary.get("best_params")
  if not final or restored.params is None or best is None or \
      (final["round"], final["trial"]) != (best.round, best.trial) or \
      (pointer is not None and pointer.get("from") != "final_fit"):
    return None
  bucket = engine.buckets.find(best.hparams)
  val, test = FinalFit.metrics_from_summary(final, engine.objective.scoring)
  return FinalFit(trial=best, schedule=rounds[best.round].schedule(best.trial),
                  val=val, test=test,
                  params=flax.serialization.msgpack_restore(restored.params),
                  model=bucket.model, batch_size=bucket.batch_size)


def divergence_message(result: RoundResult, engine: Engine, done: list[RoundResult]) -> str:
  """Why a round in which every lane diverged stopped the run, and what to try."""
  ranges = ", ".join(f"{k} {d.describe()}" for k, d in result.space.items())
  message = (f"no trial trained round {result.index + 1}/{engine.settings.rounds}'s full "
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


def run_rounds(engine: Engine, *, run_dir: RunDirectory | None = None,
               restored: Restored | None = None, listener: Listener | None = None,
               pieces: Pieces | None = None,
               callbacks: Sequence[Callable[[RoundResult], None]] = (),
               on_restored: Callable[[list[RoundResult]], None] | None = None,
               on_confirmed: Callable[[Any], None] | None = None,
               first_round: int = 0, result_type: type[TuneResult] = TuneResult,
               resume_from_intact: bool = False) -> TuneResult:
  """Runs (or resumes) a search: every round, each recorded as it completes.

  Args:
    engine: the run's checked inputs and populations.
    run_dir: where records go (``None``: nowhere); its writer lock is released
      when the search ends, however it ends.
    restored: the completed state of a resumed run (from :func:`vmaptune.rundir.open_run`).
    listener: told about the run as it goes (see :mod:`vmaptune.lanes.events`).
    pieces: how training is cut into reported pieces (with a listener).
    callbacks: called with each round as it completes (not restored ones).
    on_restored: called with the restored rounds once they are checked.
    on_confirmed: called with the :class:`vmaptune.search.confirmation.Confirmation`
      once it ran (not with one restored).
    first_round: the index of the first round (its keys), for a search that
      continues an earlier one without a run directory.
    result_type: the :class:`TuneResult` (sub)class returned.
    resume_from_intact: restored rounds that do not replay cut the run back
      to the ones before them (see :func:`restore_rounds`).

  Raises:
    AllDivergedError: every lane of a round diverged (``partial`` holds the rounds before).
    OutOfMemoryError: a round does not fit, one lane per chunk (``partial`` likewise).
    RunDirectoryWriteError: a write failed (``partial`` holds the rounds on disk).
    DamagedRunError: restored records do not replay (without ``resume_from_intact``).
  """
  try:
    return _search(engine, run_dir, restored, listener, pieces, callbacks, on_restored,
                   on_confirmed, first_round, result_type, resume_from_intact)
  finally:
    if run_dir is not None:
      run_dir.release()


def _search(engine: Engine, run_dir: RunDirectory | None, restored: Restored | None,
            listener: Listener | None, pieces: Pieces | None,
            callbacks: Sequence[Callable[[RoundResult], None]],
            on_restored: Callable[[list[RoundResult]], None] | None,
            on_confirmed: Callable[[Any], None] | None, first_round: int,
            result_type: type[TuneResult], resume_from_intact: bool) -> TuneResult:
  """:func:`run_rounds`, its lock aside."""
  settings, sampler = engine.settings, engine.sampler
  sampler.start(engine.space, settings.seed, engine.objective.scoring)
  described = engine.described_settings()
  record = {**described, "data": repr(engine.data), "model": engine.model_name,
            "devices": [str(d) for d in jax.devices()], "processes": jax.process_count()}
  # Whose parameters best_params.msgpack holds (the summary's "best_params"; None: nobody's).
  saved: dict[str, Any] | None = None

  def summary_of(result: TuneResult) -> dict[str, Any]:
    return {**result.summary(), "best_params": saved}

  def on_final_fit(result: TuneResult) -> None:
    nonlocal saved
    if run_dir is not None:
      saved = _params_pointer("final_fit", result.final.trial)
      run_dir.write_final(result.final.params, summary_of(result))

  def tune_result(rounds: list[RoundResult], final: FinalFit | None = None,
                  confirmed: Any = None) -> TuneResult:
    return result_type(rounds, engine.space, record, time.perf_counter() - start,
                       None if run_dir is None else run_dir.path,
                       lambda result: engine.refit(result.best, result.schedule(result.best)),
                       final, on_final_fit=on_final_fit, confirmation=confirmed,
                       final_fit_guard=None if run_dir is None else run_dir.final_fit_guard)

  def schedule(trial: Any) -> list:
    return next(r for r in done if r.index == trial.round).schedule(trial.trial)

  def commit(result: RoundResult, summary: dict[str, Any], params: Any = None) -> None:
    if run_dir is None:
      return
    try:
      run_dir.commit_round(result, summary, params)
    except RunDirectoryWriteError as e:
      e.partial = tune_result([r for r in done if r is not result])
      raise

  size = settings.confirm_size()
  done: list[RoundResult] = []
  final = confirmed = None
  start = time.perf_counter()
  if restored is not None:  # Resuming: the rounds already completed, as they ran.
    done = restore_rounds(engine, restored, run_dir, resume_from_intact)
    run_dir.tidy()  # The records replayed: what a killed writer left can go.
    cut = len(done) < len(restored.summary["rounds"])
    if restored.params is not None and run_dir.writes:
      saved = restored.summary.get("best_params")
      if cut:
        saved = kept_params(run_dir.path, restored.summary, len(done))
    if size is not None and len(done) == settings.rounds and not cut:
      try:
        confirmed = confirmation_stage.restore(restored.summary.get("confirmation"), done,
                                               *size, settings.epochs,
                                               engine.objective.scoring)
      except (KeyError, TypeError, ValueError):  # Odd values in a summary: it runs again.
        confirmed = None
    if (size is None or confirmed is not None) and not cut:
      final = restore_final_fit(engine, restored, done,
                                best_trial(done) if confirmed is None else confirmed.trial)
    start -= sum(r.wall_s for r in done) if cut else restored.summary.get("wall_s", 0.0)
    run_dir.write_config(restored.config)  # Only now that the records were checked.
    if cut or restored.repaired:  # The cut summary lacks the choice: written again now.
      run_dir.write_summary(summary_of(tune_result(done, final, confirmed)))
    if on_restored is not None:
      on_restored(done)
  tuned = tune_result(done, final)
  if listener is not None:
    listener.run_start(rounds=settings.rounds, population=settings.population,
                       epochs=settings.epochs, seeds=settings.seeds,
                       strategy=described["strategy"], sampler=described["sampler"],
                       space=engine.space, restored=done)
  for index in range(first_round + len(done), first_round + settings.rounds):
    try:
      result = run_round_in_memory(engine, index, done, listener, pieces,
                                   keep_params=run_dir is not None)
    except OutOfMemoryError as e:
      e.partial = tune_result(list(done))
      if run_dir is not None:
        run_dir.write_summary({**summary_of(e.partial), "error": str(e)})
      raise
    if not result.completed.any():
      for callback in callbacks:
        callback(result)
      message = divergence_message(result, engine, done)
      partial = tune_result(list(done))
      commit(result, {**summary_of(partial), "error": message})
      raise AllDivergedError(message, partial)
    done.append(result)
    tuned = tune_result(list(done))
    best, params = best_trial(done), None
    if best is not None and best.round == result.index and result.best_params is not None:
      params = result.best_params  # The best so far: saved with the round.
      saved = _params_pointer("search", best)
    commit(result, summary_of(tuned), params)
    for callback in callbacks:
      callback(result)
  if size is not None and confirmed is None and done:
    confirmed = confirmation_stage.confirm(engine, done, *size, schedule)
    tuned = tune_result(list(done), confirmed=confirmed)
    if run_dir is not None:
      run_dir.write_summary(summary_of(tuned))
    if on_confirmed is not None and confirmed is not None:
      on_confirmed(confirmed)
  elif confirmed is not None:  # A finished run, resumed: its confirmation restored.
    tuned = tune_result(list(done), final, confirmed)
  if listener is not None:
    listener.run_end(tuned)
  return tuned
