"""Random search: every configuration trains the full epoch budget (the default)."""

from __future__ import annotations

import dataclasses

import numpy as np

from vmaptune.lanes.devices import to_host
from vmaptune.lanes.keys import REPLICA
from vmaptune.strategies.base import RoundContext, Strategy, close_all, record_losses
from vmaptune.trials.log import Trained, TrialLog
from vmaptune.trials.table import DIVERGED, FINISHED


@dataclasses.dataclass(frozen=True)
class RandomSearch(Strategy):
  """Every configuration trains the full budget; with ``seeds=k``, on ``k``
  lanes at once, one per seed."""

  name = "random"

  def run(self, ctx: RoundContext) -> Trained:
    log = ctx.new_log()
    hparams = ctx.sample(ctx.configurations)
    trials = [log.open(i, {k: v[i] for k, v in hparams.items()}, 0)
              for i in range(ctx.configurations)]
    if ctx.seeds > 1:
      self._run_seeds(ctx, log, hparams, trials)
    else:
      lanes, losses = ctx.advance(ctx.pop.init(hparams, ctx.init_key), 0, ctx.budget)
      record_losses(log, trials, losses)
      close_all(log, trials, ctx.budget, ctx.evaluate(lanes), lanes=lanes)
    return log.trained()

  @staticmethod
  def _run_seeds(ctx: RoundContext, log: TrialLog, hparams: dict[str, np.ndarray],
                 trials: list[int]) -> None:
    """Every configuration on ``ctx.seeds`` lanes, one per seed (lane
    ``s * P + i`` is configuration ``i`` with seed ``s``), in one population.
    A configuration scores its mean over seeds, and counts as diverged if
    any seed diverged (a setting that blows up for some seeds is unsafe)."""
    configs, seeds = ctx.configurations, ctx.seeds
    tiled = {k: np.tile(v, seeds) for k, v in hparams.items()}
    tiled[REPLICA] = np.repeat(np.arange(seeds), configs).astype(np.float32)
    lanes, losses = ctx.advance(ctx.pop.init(tiled, ctx.init_key), 0, ctx.budget)
    curves = to_host(losses)[:configs * seeds].reshape(seeds, configs, -1)
    scores = ctx.evaluate(lanes).reshaped(seeds, configs)
    bad = scores.diverged.any(axis=0)
    ranking = scores.metrics[ctx.scoring.rank_by]
    with np.errstate(invalid="ignore"):
      mean_curve = curves.mean(axis=0)
    log.finished_in(trials, lanes)  # Seed 0's lanes come first.
    for i, trial in enumerate(trials):
      log.record_losses(trial, mean_curve[i])
      metrics = {name: np.nan if bad[i] else float(values[:, i].mean())
                 for name, values in scores.metrics.items()}
      log.close(trial, ctx.budget, metrics, DIVERGED if bad[i] else FINISHED,
                seed_scores=ranking[:, i])
