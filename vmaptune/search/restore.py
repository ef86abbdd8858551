"""Resuming a search: its completed rounds rebuilt from their records and told to the
sampler again (checked against what the summary recorded), its confirmation and its
final fit restored from the summary. The files themselves are read and checked by
:mod:`vmaptune.rundir`; this module replays them through the sampler.
"""

from __future__ import annotations

import math
import os
import warnings

import flax.serialization

from vmaptune.errors import DamagedRunError
from vmaptune.rundir import SUMMARY_FILE, TRIALS_FILE, Restored, RunDirectory
from vmaptune.rundir.damage import intact_advice
from vmaptune.rundir.files import as_json
from vmaptune.rundir.records import FinalFitRecord
from vmaptune.search import confirmation as confirmation_stage
from vmaptune.search.confirmation import Confirmation
from vmaptune.search.engine import Engine
from vmaptune.search.final_fit import FinalFit
from vmaptune.search.results import RoundResult
from vmaptune.trials.table import Trial, TrialTable


def same(replayed: object, recorded: object) -> bool:
  """Whether a replayed summary value is the recorded one, floats within a few
  ulps: narrowing computes ranges with NumPy's log and exp, whose last bit may
  differ between NumPy versions, and a run must resume after an upgrade.

  >>> same({"high": 0.16251185675178936}, {"high": 0.16251185675178934})
  True
  >>> same({"high": 0.1625}, {"high": 0.1626}), same([1, 2], [1, 2, 3])
  (False, False)
  """
  if isinstance(replayed, float) and isinstance(recorded, float):
    return math.isclose(replayed, recorded, rel_tol=1e-12, abs_tol=0.0)
  if isinstance(replayed, dict) and isinstance(recorded, dict):
    return replayed.keys() == recorded.keys() and all(
        same(replayed[key], recorded[key]) for key in replayed)
  if isinstance(replayed, list) and isinstance(recorded, list):
    return len(replayed) == len(recorded) and all(
        same(a, b) for a, b in zip(replayed, recorded, strict=True))
  return replayed == recorded


def restore_rounds(engine: Engine, restored: Restored, run_dir: RunDirectory | None,
                   resume_from_intact: bool) -> list[RoundResult]:
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
    space = engine.sampler.ranges  # What the round sampled from: asking anew would draw.
    records = restored.round_records(index)
    try:
      if not same(as_json(space.to_dict()), summary["space"]):
        raise ValueError(f"round {index + 1}'s ranges in the summary are not the ones the "
                         "earlier rounds narrowed to")
      table = TrialTable.from_records(records, engine.space, engine.settings.epochs,
                                      engine.objective.scoring)
      told = engine.sampler.tell(table, round_index=index)
      result = RoundResult(**table.columns(), index=index, space=space,
                           next_space=told.next_space, kept=told.kept,
                           strategy=summary["strategy"], wall_s=summary["wall_s"],
                           compile_s=summary["compile_s"], trace_s=summary["trace_s"],
                           compiles=summary["compiles"])
      replayed = as_json(result.summary())
      differs = [key for key in summary if not same(replayed.get(key, summary[key]), summary[key])]
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
        engine.sampler.tell(done, round_index=done.index)
      if aside is not None:  # Process 0, which moved them.
        warnings.warn(f"{e}; resuming {where} from its {index} intact rounds; the damaged "
                      f"files were copied to {aside}", RuntimeWarning, stacklevel=3)
      break
    rounds.append(result)
  return rounds


def restore_final_fit(engine: Engine, restored: Restored, rounds: list[RoundResult],
                      best: Trial | None) -> FinalFit | None:
  """The saved final fit of a resumed run, if the summary holds one for the
  chosen trial ``best`` of ``rounds`` and its parameters were saved; else
  ``None`` (the fit runs again when asked for)."""
  final, pointer = restored.summary.get("final_fit"), restored.summary.get("best_params")
  if not final or restored.params is None or best is None or \
      (final["round"], final["trial"]) != (best.round, best.trial) or \
      (pointer is not None and pointer.get("from") != "final_fit"):
    return None
  bucket = engine.buckets.find(best.hparams)
  record = FinalFitRecord.from_json(final, engine.objective.scoring)
  return FinalFit(trial=best, schedule=rounds[best.round].schedule(best.trial),
                  val=record.val, test=record.test,
                  params=flax.serialization.msgpack_restore(restored.params),
                  model=bucket.model, batch_size=bucket.batch_size,
                  in_lanes=record.trained_in == "lanes")


def restore_confirmation(engine: Engine, restored: Restored, rounds: list[RoundResult],
                         size: tuple[int, int] | None) -> Confirmation | None:
  """The saved confirmation of a finished run, or ``None`` (turned off, the run
  unfinished, or odd values in the summary: it runs again)."""
  planned = engine.settings.budget is None  # A budget's run ends when the budget says.
  if size is None or (planned and len(rounds) != engine.settings.rounds):
    return None
  try:
    return confirmation_stage.restore(restored.summary.get("confirmation"), rounds, *size,
                                      engine.settings.epochs, engine.objective.scoring,
                                      engine.space, fewer_seeds=not planned)
  except (KeyError, TypeError, ValueError):
    return None
