"""Population-based training: every ``interval`` epochs the worst lanes copy
the weights and optimizer state of good ones (exploit) and perturb or
resample their hyperparameters (explore)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vmaptune.strategies.base import RoundContext, Strategy, close, close_all, record_losses
from vmaptune.trials.log import Trained, TrialLog
from vmaptune.trials.table import EXPLOITED
from vmaptune.validation import greater_than, real_number, whole_number


@dataclasses.dataclass(frozen=True)
class PopulationBasedTraining(Strategy):
  """Train all lanes; every ``interval`` epochs the bottom ``fraction`` copies a
  random lane of the top ``fraction`` (weights and optimizer state) and
  explores: each hyperparameter is resampled from the round's space with
  probability ``resample``, else moved one step of ``perturb`` (see
  :meth:`vmaptune.space.distributions.Continuous.perturbed`). Diverged lanes are
  always replaced.

  Every lane shares the round's initial weights and minibatch order, so a
  lane's lineage (which configuration it followed over which epochs) replays
  as one training run that reproduces it exactly.
  """

  interval: int = 2
  fraction: float = 0.25
  perturb: float = 1.25
  resample: float = 0.25
  name = "pbt"

  def check(self, epochs: int, population: int) -> None:
    whole_number("interval", self.interval, 1, epochs, what="a whole number of epochs",
                 error=ValueError)
    real_number("fraction", self.fraction, 0.0, 0.5, low_open=True, expected="a fraction in",
                error=ValueError)
    greater_than("perturb", self.perturb, 1, what="a factor", error=ValueError)
    real_number("resample", self.resample, 0.0, 1.0, expected="a probability in",
                error=ValueError)
    if population < 2:
      raise ValueError(f"population={population}; population-based training needs >= 2 "
                       "configurations")
    if self.interval >= epochs:
      raise ValueError(f"interval={self.interval} with epochs={epochs}: no lane would ever be "
                       "exploited; use an interval shorter than the epoch budget")

  def explore(self, ctx: RoundContext, hparams: dict[str, float]) -> dict[str, float]:
    """``hparams`` explored: each value resampled or moved one step."""
    moved = {}
    for name, dist in ctx.space.items():
      if ctx.rng.random() < self.resample:
        moved[name] = float(dist.sample(ctx.rng, 1)[0])
      else:
        moved[name] = dist.perturbed(hparams[name], ctx.rng, self.perturb)
    return moved

  def run(self, ctx: RoundContext) -> Trained:
    log = ctx.new_log()
    self._train(ctx, log)
    return log.trained()

  def _train(self, ctx: RoundContext, log: TrialLog) -> None:
    """Trains the bucket's population, exploiting and exploring every ``interval`` epochs."""
    count = ctx.configurations
    hparams = ctx.sample(count)
    current = [log.open(i, {k: v[i] for k, v in hparams.items()}, 0) for i in range(count)]
    lanes = ctx.pop.init(hparams, ctx.init_key)
    quota = max(1, math.floor(self.fraction * count))
    for start in range(0, ctx.budget, self.interval):
      end = min(start + self.interval, ctx.budget)
      lanes, losses = ctx.advance(lanes, start, end - start)
      record_losses(log, current, losses)
      scores = ctx.evaluate(lanes)
      diverged = scores.diverged
      if end == ctx.budget:
        close_all(log, current, end, scores, lanes=lanes)
        return
      ranked = ctx.order(scores)
      top = ranked[:quota][~diverged[ranked[:quota]]]
      replaced = sorted(set(ranked[-quota:].tolist()) | set(np.flatnonzero(diverged).tolist()))
      replaced = [lane for lane in replaced if lane not in set(top.tolist())]
      if len(top) == 0:  # Every lane diverged: nothing to copy from.
        close_all(log, current, end, scores)
        return
      index = np.arange(count)
      new = {k: lanes.hparams[k][:count].copy() for k in lanes.hparams}
      for lane in replaced:
        source = int(ctx.rng.choice(top))
        close(log, current[lane], end, scores, lane, EXPLOITED)
        explored = self.explore(ctx, {k: float(new[k][source]) for k in new})
        for k, value in explored.items():
          new[k][lane] = value
        index[lane] = source
        current[lane] = log.open(lane, explored, end, parent=current[source])
      lanes = ctx.pop.select(lanes, index, new)
