"""A wall-time budget: as many rounds as fit, planned from what the rounds measured.

``tune(..., budget="5m")`` runs rounds while one more, the confirmation and
the final fit still fit in what is left of the call; then the confirmation
trains as many of its seeds as fit once its candidates are chosen (none: it is
skipped), and the final fit. The plan is remade after every round from the
rounds' measured costs: a round's time in the loop (training, evaluation,
planning, recording) where it compiled nothing, and the rest as fixed cost
(compiling, tracing, the first round's one-off work). After the first round the
search compiles the final fit's programs and times it (see
:meth:`vmaptune.search.rounds.Search.compile_final_fit`). The first round trains
its first two epochs as pieces of their own; once the second has measured an
epoch, a budget that cannot hold the round is refused with what would fit
(:class:`vmaptune.errors.BudgetError`).

>>> parse_budget("90s"), parse_budget("10m"), parse_budget("1.5h"), parse_budget(20)
(90.0, 600.0, 5400.0, 20.0)
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from vmaptune.errors import BudgetError, SettingsError
from vmaptune.lanes import distributed
from vmaptune.lanes.events import Pieces
from vmaptune.rundir.records import BudgetRecord

UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_FORM = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", re.IGNORECASE)
# The band a run's wall time keeps to: a plan may overrun by at most this share.
OVERRUN = 0.05
# Compiling the final fit's one-lane programs, as a share of what the rounds'
# programs took to compile and trace, until a run has measured it (after its first
# round): 0.48 to 0.80 on the project's 2-core CPU
# (experiments/bench_budget_adherence.py, 2026-12-07).
FINAL_FIT_COMPILE_SHARE = 0.6
# The confirmation first estimates every trial's expected score (a Gaussian process):
# 0.78 s for 500 trials, 1.71 s for 2,000 on the project's 2-core CPU (2026-12-07).
ESTIMATE_S = 0.5
ESTIMATE_S_PER_TRIAL = 0.0006
# A round's time per epoch of its training, evaluation and recording included, as
# the plan takes it until a round has run without compiling (an over-estimate
# there only delays the next round's plan, which measures it).
ROUND_PER_EPOCH = 1.5
# The share of the budget a plan aims to end at (estimates err both ways), and the
# most a planned round may take it to when that lands nearer the aim than stopping.
AIM = 0.98
REACH = 1.03


def parse_budget(value: Any) -> float | None:
  """Seconds from ``value``: a number of seconds, or text such as ``"90s"``,
  ``"10m"``, ``"2h"`` (``None``: no budget).

  Raises:
    SettingsError: anything else, or not more than zero.
  """
  if value is None:
    return None
  seconds = None
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    seconds = float(value)
  elif isinstance(value, str) and (match := _FORM.fullmatch(value)):
    seconds = float(match[1]) * UNITS[match[2].lower()]
  if seconds is None or not math.isfinite(seconds) or seconds <= 0:
    raise SettingsError(f"budget={value!r}; expected a wall time above zero: seconds (e.g. 300) "
                        "or text such as '90s', '10m' or '2h'")
  return seconds


@dataclasses.dataclass(frozen=True)
class Costs:
  """What training costs, in seconds, from the rounds so far.

  Attributes:
    fixed_s: what the rounds spent but their steady time: compiling and tracing
      the programs (the first round's, mostly), the first round's one-off work.
    round_s: one round's training and evaluation once compiled (the mean over rounds).
    alone_s: one lane trained alone (the final fit), once compiled.
    trials: the trials so far (the confirmation estimates each one's score).
    final_compile_s: what the final fit has still to compile: measured once its
      programs were compiled in advance (0 where the chosen configuration's are
      those), ``None`` before (``FINAL_FIT_COMPILE_SHARE`` of ``compile_s``).
    final_train_s: the final fit's training and scoring, measured with them
      (``None`` before: ``alone_s``).
    compile_s: the rounds' compiling and tracing alone (default: ``fixed_s``).
    final_in_lanes: whether the final fit trains in a round's programs (a
      round's training, nothing to compile; see :meth:`lanes_cheaper`), alone
      (compiling, then one lane), or ``None``: not decided (the cheaper).
  """

  fixed_s: float
  round_s: float
  alone_s: float
  trials: int = 0
  final_compile_s: float | None = None
  final_train_s: float | None = None
  compile_s: float | None = None
  final_in_lanes: bool | None = None

  @property
  def final_compile_guess_s(self) -> float:
    """Compiling the final fit's one-lane programs, before it was measured."""
    return FINAL_FIT_COMPILE_SHARE * (self.fixed_s if self.compile_s is None else self.compile_s)

  def lanes_cheaper(self) -> bool:
    """Whether training a round's lanes costs less than compiling the one-lane
    programs (a small population of a large model: a CNN's 12 lanes train in
    half the time their programs compile); then the final fit trains in a round's."""
    return self.round_s < self.final_compile_guess_s

  @property
  def final_fit_s(self) -> float:
    """The final fit: in a round's programs, a round's training; alone, compiling
    what it has still to compile and training one lane."""
    compiling = self.final_compile_guess_s if self.final_compile_s is None \
        else self.final_compile_s
    alone = compiling + (self.alone_s if self.final_train_s is None else self.final_train_s)
    if self.final_in_lanes is None:
      return min(alone, self.round_s)
    return self.round_s if self.final_in_lanes else alone

  @classmethod
  def measured(cls, rounds: Sequence[Any], seconds: Sequence[float] | None = None,
               chunks: int = 1, final_compile_s: float | None = None,
               final_train_s: float | None = None,
               first_round_s: float | None = None,
               final_in_lanes: bool | None = None) -> Costs:
    """From :class:`vmaptune.search.results.RoundResult` s and the seconds each
    took in the loop, recording and planning included (default: their
    ``wall_s``, training alone).

    A round's cost is the mean of the rounds that compiled nothing; the rest of
    the rounds' time is fixed cost (compiling, tracing, and the first round's
    one-off work: building populations, placing data, first calls). Before such
    a round, the first round's time less its compiling and tracing, or, when
    less, ``first_round_s`` (:attr:`FirstPieceCheck.round_s`). A round runs
    ``chunks`` lane chunks one after another on a device; one lane alone costs
    about one chunk's time."""
    seconds = [r.wall_s for r in rounds] if seconds is None else list(seconds)
    compiling = sum(r.compile_s + r.trace_s for r in rounds)
    steady = [spent for r, spent in zip(rounds, seconds, strict=True) if r.compiles == 0]
    if steady:
      round_s = sum(steady) / len(steady)
    else:
      round_s = max(sum(seconds) - compiling, 1e-6) / len(rounds)
      if first_round_s is not None:
        round_s = min(round_s, first_round_s)
    fixed = max(sum(seconds) - len(rounds) * round_s, 0.0)
    trials = sum(r.num_trials for r in rounds)
    return cls(fixed, round_s, round_s / max(chunks, 1), trials, final_compile_s,
               final_train_s, compiling, final_in_lanes)


@dataclasses.dataclass(frozen=True)
class Budget:
  """A run's wall-time budget and what it keeps back for after the rounds.

  Args:
    seconds: the whole call's wall time: rounds, confirmation and final fit.
    confirm_calls: rounds' worth of lanes the confirmation trains (0: off).
  """

  seconds: float
  confirm_calls: int

  def reserve(self, costs: Costs, confirm_calls: int | None = None) -> float:
    """Seconds kept for the confirmation (``confirm_calls`` rounds' worth, default
    the run's, and the estimate that chooses its candidates) and the final fit
    (:attr:`Costs.final_fit_s`): the confirmation runs a round's programs."""
    calls = self.confirm_calls if confirm_calls is None else confirm_calls
    estimating = ESTIMATE_S + ESTIMATE_S_PER_TRIAL * costs.trials if calls else 0.0
    return calls * costs.round_s + estimating + costs.final_fit_s

  def confirm_calls_left(self, costs: Costs, elapsed: float) -> int:
    """Rounds' worth of confirmation that still fit after ``elapsed`` seconds,
    the final fit kept back (at most the run's)."""
    left = AIM * self.seconds - elapsed - self.reserve(costs, confirm_calls=0)
    return max(0, min(self.confirm_calls, int(left // costs.round_s)))

  def rounds_left(self, costs: Costs, elapsed: float) -> int:
    """Rounds that still fit after ``elapsed`` seconds, the reserve kept: as many
    as end before ``AIM`` of the budget, and one more when it ends nearer to that
    than stopping does, within ``REACH`` of the budget (rounds are whole)."""
    end = elapsed + self.reserve(costs)  # Where the run ends with no more rounds.
    aim = AIM * self.seconds
    count = max(0, int((aim - end) // costs.round_s))
    after = end + (count + 1) * costs.round_s
    if after <= REACH * self.seconds and after - aim < aim - (end + count * costs.round_s):
      count += 1
    return count

  def record(self, costs: Costs | None, elapsed: float, rounds: int,
             planned: int) -> BudgetRecord:
    """The summary's ``budget`` entry."""
    return BudgetRecord(seconds=self.seconds, spent_s=round(elapsed, 3),
                        rounds=rounds, planned=planned,
                        round_s=None if costs is None else round(costs.round_s, 4),
                        fixed_s=None if costs is None else round(costs.fixed_s, 4),
                        reserve_s=None if costs is None else round(self.reserve(costs), 4))


class FirstRoundPieces(Pieces):
  """How the first round of a budgeted run is cut when nothing displays
  progress: two pieces of an epoch (the first compiles, the second measures an
  epoch once compiled), then the rest of each training call in one piece."""

  def __init__(self):
    super().__init__("auto")
    self.cut = 0

  def next(self, lanes: int, left: int) -> int:
    self.cut += 1
    return 1 if self.cut <= 2 else left


class FirstPieceCheck:
  """Listens to the first round's training pieces; once an epoch was measured
  after compiling (the second piece; the first if it was the round's only one),
  refuses a budget that cannot hold the round and the final fit.

  Args:
    budget: the run's budget.
    started: ``time.perf_counter()`` when the run started (less any time a
      resumed run spent before).
    compiled: the round's :class:`~vmaptune.lanes.compilation.CompileCounter`:
      compiling inside the first piece is not training.
    epochs, population: the round's size.
    forward: told every piece too (a progress display), or ``None``.
  """

  def __init__(self, budget: Budget, started: float, compiled: Any, epochs: int,
               population: int, forward: Any = None):
    self.budget, self.started, self.compiled = budget, started, compiled
    self.round_started = time.perf_counter()
    self.epochs, self.population = epochs, population
    self.forward = forward
    # The first piece's end, its epochs, and the compiling done by then.
    self.first: tuple[float, int, float] | None = None
    # A round's time once compiled, from the round's later pieces (None before one).
    self.round_s: float | None = None

  def trained(self, *, first_epoch: int, epoch: int, lanes: int, alive: int,
              seconds: float) -> None:
    if self.first is None:
      self.first = (time.perf_counter(), epoch - first_epoch, self._compiling())
      if epoch >= self.epochs:  # The round's one piece: its time less compiling.
        training = self.first[0] - self.round_started - self.first[2]
        self._check(training / epoch, self.first[0] - self.started - training)
    elif self.round_s is None:  # An epoch as the round repeats it, less any new compiling
      end, count, compiled = self.first  # (a strategy's next call may have other lanes).
      epoch_s = max(seconds - (self._compiling() - compiled), 1e-6) / (epoch - first_epoch)
      self.round_s = ROUND_PER_EPOCH * self.epochs * epoch_s
      self._check(epoch_s, end - self.started - count * epoch_s)
    if self.forward is not None:
      self.forward.trained(first_epoch=first_epoch, epoch=epoch, lanes=lanes, alive=alive,
                           seconds=seconds)

  def evaluated(self, scores: Any, diverged: Any) -> None:
    if self.forward is not None:
      self.forward.evaluated(scores, diverged)

  def _compiling(self) -> float:
    return self.compiled.compile_seconds + self.compiled.trace_seconds

  def _check(self, epoch_s: float, fixed_s: float) -> None:
    """Refuses the budget if ``fixed_s`` (what the run spent but training), a
    round of epochs of ``epoch_s`` and the final fit surely overrun it: the
    final fit is taken at its least (compiling a share of what the round
    compiled, training one lane at a round's pace per lane)."""
    round_s = epoch_s * self.epochs
    costs = Costs(fixed_s, round_s, round_s / self.population, compile_s=self._compiling())
    # The confirmation shrinks, or is skipped, to fit: only the final fit is needed.
    # Process 0's figure on every process: all refuse, or none.
    needed = distributed.agree(fixed_s + costs.round_s + self.budget.reserve(costs, 0))
    if needed > self.budget.seconds * (1 + OVERRUN):
      raise BudgetError(
          f"budget={self.budget.seconds:g}s cannot hold one round: compiling, tracing and "
          f"setting up took {fixed_s:.1f}s and a round of {self.population} configurations x "
          f"{self.epochs} epochs takes about {costs.round_s:.1f}s (an epoch once compiled: "
          f"{epoch_s:.2f}s): with the final fit, at least {needed:.0f}s in all; give budget="
          f"'{math.ceil(needed)}s' or more, or fewer configurations or epochs", needed)
