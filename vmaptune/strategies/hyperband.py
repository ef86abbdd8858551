"""Hyperband: brackets of successive halving, from many briefly trained lanes
to few fully trained ones, so a setting that starts slowly still gets a chance."""

from __future__ import annotations

import dataclasses

from vmaptune.strategies.base import RoundContext
from vmaptune.strategies.halving import (
  SuccessiveHalving,
  halve,
  halving_budgets,
  ladder_size,
  rung_budgets,
)
from vmaptune.trials.log import Trained


@dataclasses.dataclass(frozen=True)
class Hyperband(SuccessiveHalving):
  """Brackets of successive halving, one after another.

  Bracket ``s`` (``s = s_max .. 0``) starts
  ``population * (s_max + 1) / (s + 1) / eta**(s_max - s)`` lanes (rounded to
  the nearest ``LADDER`` size, so brackets share compiled programs) at
  ``epochs / eta**s`` epochs and halves ``s`` times; ``s_max`` is the most
  halvings both the budget (rungs of at least ``min_epochs``) and the
  population (``eta**s_max <= population``) allow. Each bracket samples its
  own configurations (stream ``bracket + 1``).
  """

  name = "hyperband"

  def brackets(self, epochs: int, population: int) -> list[tuple[int, list[int]]]:
    """``[(configurations, rung budgets), ...]`` from the most exploratory bracket down."""
    s_max = len(halving_budgets(epochs, self.eta, population, self.min_epochs)) - 1
    plan = []
    for s in range(s_max, -1, -1):
      count = population if s == s_max else ladder_size(
          population * (s_max + 1) / (s + 1) / self.eta ** (s_max - s))
      plan.append((count, rung_budgets(epochs, self.eta, s, self.min_epochs)))
    return plan

  def run(self, ctx: RoundContext) -> Trained:
    log, offset = ctx.new_log(), 0
    for bracket, (count, budgets) in enumerate(self.brackets(ctx.budget, ctx.configurations)):
      halve(ctx, log, ctx.sample(count, stream=bracket + 1), budgets, self.eta,
            bracket=bracket, lane_offset=offset)
      offset += count
    return log.trained()
