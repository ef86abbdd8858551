"""What the figures and the notebook summaries draw from: a :class:`vmaptune.rundir.Run`.

A run read back from its directory is one already; :func:`as_run` gives the same
view of a :class:`vmaptune.TuneResult` (a run held in memory, ``out=None`` or
not) and of one :class:`vmaptune.RoundResult`, from the records they would write,
so a notebook draws from a result exactly what ``vmaptune report`` draws from
its directory.
"""

from __future__ import annotations

import dataclasses
import os

from vmaptune.errors import VmaptuneError
from vmaptune.objectives import parse as parse_objective
from vmaptune.rundir import Run, load_run
from vmaptune.rundir.records import RoundEntry
from vmaptune.search.results import RoundResult, TuneResult
from vmaptune.trials.scoring import Scoring

Source = Run | TuneResult | RoundResult | str | os.PathLike


def as_run(source: Source) -> Run:
  """``source`` as a :class:`Run`.

  Args:
    source: a :class:`Run`, a :class:`TuneResult`, a :class:`RoundResult` (a run
      of that one round, its settings unknown but its epoch budget), or the path
      of a run directory (read with :func:`vmaptune.load_run`).

  Raises:
    TypeError: ``source`` is none of these.
  """
  if isinstance(source, Run):
    return source
  if isinstance(source, TuneResult):
    return _of_result(source)
  if isinstance(source, RoundResult):
    return _of_round(source)
  if isinstance(source, str | os.PathLike):
    return load_run(source)
  raise TypeError(f"expected a vmaptune TuneResult, RoundResult, Run or the path of a run "
                  f"directory, got {type(source).__name__}")


def scoring_of(result: TuneResult) -> Scoring:
  """The metrics that rank ``result``'s trials (its objective's, before any round ran)."""
  if result.rounds:
    return result.rounds[0].scoring
  try:
    return parse_objective(result.settings.get("objective", "classification")).scoring
  except (VmaptuneError, ValueError, TypeError):  # A custom objective, described by name.
    return Scoring.from_dict(None)


# What a result's settings hold besides the run's settings (as config.json holds them apart).
DESCRIBED = ("data", "model", "devices", "processes")


def _of_result(result: TuneResult) -> Run:
  scoring = scoring_of(result)
  settings = {k: v for k, v in result.settings.items() if k not in DESCRIBED}
  described = result.settings
  config = {"settings": settings, "space": result.space.to_dict(),
            "scoring": scoring.to_dict(),
            "data": {"description": described.get("data", "n/a")},
            "model": {"description": described.get("model", "n/a")},
            "environment": {k: described[k] for k in ("devices", "processes") if k in described}}
  summary = result.summary() if result.rounds else None
  records = [trial.to_json() for trial in result.trials()]
  return Run(result.out_dir or "", config, summary, records)


@dataclasses.dataclass(frozen=True, repr=False)  # Run's one-line repr, not every record.
class RoundRun(Run):
  """The run view of one :class:`RoundResult`: its records, and its summary entry
  (a summary lists every round from the first, so this view has none).

  Attributes:
    entry: the round's entry, as ``summary.json`` would hold it.
  """

  entry: RoundEntry | None = None

  def round_record(self, index: int) -> RoundEntry | None:
    return self.entry if self.entry is not None and index == self.entry.round else None


def _of_round(result: RoundResult) -> Run:
  settings = {"epochs": result.budget, "rounds": None, "strategy": result.strategy}
  config = {"settings": settings, "space": result.space.to_dict(),
            "scoring": result.scoring.to_dict()}
  return RoundRun("", config, None, [trial.to_json() for trial in result.trials()],
                  entry=result.entry())
