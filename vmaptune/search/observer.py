"""The one observer protocol: everything that watches a run implements :class:`Observer`.

Progress displays (:class:`vmaptune.reporting.progress.Reporter`), printing
(``verbose``), live trackers (:class:`vmaptune.reporting.tracking.live.LiveLogging`)
and ``tune(on_round=...)`` (:class:`OnRound`) are observers; :class:`Observers`
tells several at once. Training itself reports pieces and evaluations through
the two methods of :class:`vmaptune.lanes.events.Listener`, which an observer
extends. Observers only listen: they change no result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vmaptune.lanes.events import Listener
from vmaptune.space.space import Space

if TYPE_CHECKING:  # The results hold a search, which tells observers: no import cycle.
  from vmaptune.search.confirmation import Confirmation
  from vmaptune.search.results import RoundResult, TuneResult


class Observer(Listener):
  """Hears what a run does; every method does nothing unless overridden.

  The search calls, in order: :meth:`restored` (a resumed run's rounds),
  :meth:`run_start`; per round :meth:`round_start`, :meth:`bucket_start` per
  bucket (training calls :meth:`trained` and :meth:`evaluated` meanwhile) and
  :meth:`round_end`; then :meth:`confirmed`, :meth:`run_end`; :meth:`final_fit`
  once the chosen configuration was refitted and saved. :meth:`stopped` replaces
  the rest when the run raises.
  """

  def restored(self, rounds: Sequence[RoundResult]) -> None:
    """The rounds a resumed run restored from its records, checked."""

  def run_start(self, *, rounds: int | None, population: int, epochs: int, seeds: int,
                strategy: str, sampler: str, space: Space,
                restored: Sequence[RoundResult], time_budget_s: float | None = None,
                spent_s: float = 0.0) -> None:
    """Before the first round; ``restored`` are the rounds a resumed run restored;
    ``rounds`` is ``None`` when a wall-time budget of ``time_budget_s`` plans
    them, of which a resumed run already spent ``spent_s``."""

  def round_start(self, index: int, space: Space, buckets: int) -> None:
    """Before a round's training (again if the round is rerun after running out of memory)."""

  def bucket_start(self, position: int, values: dict[str, Any]) -> None:
    """Before a bucket (combination of structural values) of the round trains."""

  def round_end(self, result: RoundResult) -> None:
    """After a round, recorded (also a round in which every lane diverged, before the error)."""

  def confirmed(self, confirmation: Confirmation) -> None:
    """After the confirmation stage ran (not when a resumed run restored it)."""

  def run_end(self, result: TuneResult) -> None:
    """After the search."""

  def final_fit(self, result: TuneResult) -> None:
    """After the final fit ran and was saved (``result.final``)."""

  def stopped(self, error: BaseException) -> None:
    """The search raised ``error`` (Ctrl-C included); nothing else is told."""


class Observers(Observer):
  """Tells every observer of ``observers``, in order."""

  def __init__(self, observers: Sequence[Observer] = ()):
    self.observers = list(observers)

  def __bool__(self) -> bool:
    return bool(self.observers)

  def _tell(self, method: str, *args: Any, **kwargs: Any) -> None:
    for observer in self.observers:
      getattr(observer, method)(*args, **kwargs)

  def restored(self, rounds: Sequence[RoundResult]) -> None:
    self._tell("restored", rounds)

  def run_start(self, **kwargs: Any) -> None:
    self._tell("run_start", **kwargs)

  def round_start(self, index: int, space: Space, buckets: int) -> None:
    self._tell("round_start", index, space, buckets)

  def bucket_start(self, position: int, values: dict[str, Any]) -> None:
    self._tell("bucket_start", position, values)

  def trained(self, **kwargs: Any) -> None:
    self._tell("trained", **kwargs)

  def evaluated(self, scores: np.ndarray, diverged: np.ndarray) -> None:
    self._tell("evaluated", scores, diverged)

  def round_end(self, result: RoundResult) -> None:
    self._tell("round_end", result)

  def confirmed(self, confirmation: Confirmation) -> None:
    self._tell("confirmed", confirmation)

  def run_end(self, result: TuneResult) -> None:
    self._tell("run_end", result)

  def final_fit(self, result: TuneResult) -> None:
    self._tell("final_fit", result)

  def stopped(self, error: BaseException) -> None:
    self._tell("stopped", error)


class OnRound(Observer):
  """Calls ``fn(result)`` with each round as it completes (``tune(on_round=fn)``)."""

  def __init__(self, fn: Callable[[RoundResult], object]):
    self.fn = fn

  def round_end(self, result: RoundResult) -> None:
    self.fn(result)


class Printer(Observer):
  """``tune(verbose=True)``: a few lines per round, and what a resumed run restored."""

  def __init__(self, rounds: int, out: str | None):
    self.rounds, self.out = rounds, out

  def restored(self, rounds: Sequence[RoundResult]) -> None:
    print(f"resuming {self.out}: {len(rounds)} of {self.rounds} rounds restored from its "
          "records", flush=True)

  def round_end(self, result: RoundResult) -> None:
    print(result.describe(self.rounds), flush=True)
