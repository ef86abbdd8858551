"""Successive halving: train everyone briefly, keep the best ``1/eta``, train
them longer, and so on up to the full budget.

Survivors' weights and optimizer state are gathered into a smaller
population on device between rungs. Rung sizes are rounded to the
:data:`LADDER` of population sizes, so rounds and brackets share a few
compiled programs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vmaptune.strategies.base import RoundContext, Strategy, close, close_all, record_losses
from vmaptune.trials.log import Trained, TrialLog
from vmaptune.trials.table import HALVED
from vmaptune.validation import whole_number

# Population sizes a rung may have: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... Rounding
# survivors to these keeps the number of compiled programs small and shared by
# every round and bracket.
LADDER = tuple(sorted({m * 2**k for k in range(20) for m in (2, 3)} | {1}))


def ladder_size(n: float) -> int:
  """The ladder size nearest to ``n`` (ties go up), at least 1."""
  return min(LADDER, key=lambda size: (abs(size - n), -size))


def ladder_floor(n: int) -> int:
  """The largest ladder size ``<= n`` (0 for ``n < 1``)."""
  return max((size for size in LADDER if size <= n), default=0)


def halving_budgets(epochs: int, eta: int, lanes: int, min_epochs: int) -> list[int]:
  """Rung budgets (epochs reached at each rung) for successive halving.

  As many halvings as both the population (``lanes / eta**s >= 1``) and the
  budget (``epochs / eta**s >= min_epochs``) allow; budget ``i`` is
  ``epochs / eta**(s - i)``, rounded, strictly increasing, the last = ``epochs``.
  """
  halvings = 0
  while lanes / eta ** (halvings + 1) >= 1 and epochs / eta ** (halvings + 1) >= min_epochs:
    halvings += 1
  return rung_budgets(epochs, eta, halvings, min_epochs)


def rung_budgets(epochs: int, eta: int, halvings: int, min_epochs: int) -> list[int]:
  """Budget ``i`` of ``halvings + 1`` rungs: ``epochs / eta**(halvings - i)``,
  rounded, at least ``min_epochs``, strictly increasing, the last ``epochs``."""
  budgets = sorted({max(min_epochs, round(epochs / eta ** (halvings - i)))
                    for i in range(halvings + 1)} | {epochs})
  return [b for b in budgets if b <= epochs]


def halve(ctx: RoundContext, log: TrialLog, hparams: dict[str, np.ndarray],
          budgets: list[int], eta: int, bracket: int = -1, lane_offset: int = 0) -> None:
  """Successive halving of ``hparams`` (``{name: [n]}``) over rung ``budgets``."""
  count = len(next(iter(hparams.values())))
  trials = [log.open(lane_offset + i, {k: v[i] for k, v in hparams.items()}, 0,
                     bracket=bracket) for i in range(count)]
  lanes = ctx.pop.init(hparams, ctx.init_key)
  reached = 0
  for rung, budget in enumerate(budgets):
    lanes, losses = ctx.advance(lanes, reached, budget - reached)
    reached = budget
    record_losses(log, trials, losses)
    scores = ctx.evaluate(lanes)
    if rung == len(budgets) - 1:
      close_all(log, trials, budget, scores, lanes=lanes)
      return
    ranked = ctx.order(scores)
    alive = int((~scores.diverged).sum())
    # A ladder size, even when divergence leaves fewer lanes than planned, so
    # the survivors reuse a compiled program.
    keep = ladder_floor(min(alive, ladder_size(lanes.count / eta)))
    survivors = ranked[:keep]
    for position in ranked[keep:]:
      close(log, trials[position], budget, scores, position, HALVED)
    if keep == 0:
      return
    lanes = ctx.pop.select(lanes, survivors)
    trials = [trials[position] for position in survivors]


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving(Strategy):
  """Train everyone briefly, keep the best ``1/eta``, train them longer, repeat.

  Attributes:
    eta: the halving factor (survivors are rounded to the nearest size of
      ``LADDER``, so compiled programs are shared across rounds).
    min_epochs: epochs of the first rung, at least.
  """

  eta: int = 3
  min_epochs: int = 1
  name = "halving"

  def check(self, epochs: int, population: int) -> None:
    whole_number("eta", self.eta, 2, error=ValueError)
    whole_number("min_epochs", self.min_epochs, 1, epochs, why=" (the epoch budget)",
                 error=ValueError)
    if len(halving_budgets(epochs, self.eta, population, self.min_epochs)) < 2:
      raise ValueError(
          f"{self.name} with eta={self.eta} and min_epochs={self.min_epochs} cannot halve "
          f"{population} lanes over {epochs} epochs (it needs population >= eta and epochs "
          f">= eta * min_epochs = {self.eta * self.min_epochs}); it would be random search")

  def run(self, ctx: RoundContext) -> Trained:
    log = ctx.new_log()
    budgets = halving_budgets(ctx.budget, self.eta, ctx.configurations, self.min_epochs)
    halve(ctx, log, ctx.sample(ctx.configurations), budgets, self.eta)
    return log.trained()
