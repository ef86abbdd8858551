"""Narrow: the classic recipe. Sample at random in the current ranges, keep
the best trials, shrink every range to their span, repeat."""

from __future__ import annotations

import dataclasses

import numpy as np

from vmaptune.samplers.base import Sampler, Told
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.ranking import keep_top
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable
from vmaptune.validation import fraction


@dataclasses.dataclass
class Narrow(Sampler):
  """Random search whose ranges narrow around the best trials, round by round.

  Each round samples uniformly (in each parameter's own scale) from the
  current ranges; then the top ``keep`` fraction of the round's
  configurations is kept (ranked as :mod:`vmaptune.trials.ranking` ranks), and every
  range narrows to the span of the kept values widened by ``margin`` times
  its width on each side, clipped to the original range; categories narrow
  to those kept (a category dropped never comes back). A parameter that
  hardly matters keeps a wide range, because good trials are found all over it.

  Attributes:
    keep: fraction of the round's configurations the next ranges span, in ``(0, 1]``.
    margin: fraction of each range's width added to each side, in ``[0, 1]``.
  """

  keep: float = 0.2
  margin: float = 0.1
  name = "narrow"

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    fraction("keep", self.keep, low_open=True, error=ValueError)
    fraction("margin", self.margin, error=ValueError)

  def ask(self, count: int, *, round_index: int, bucket: Bucket,
          stream: int = 0) -> dict[str, np.ndarray]:
    # Each bucket draws from its own stream (numbered in the original space), so a
    # configuration depends neither on the other buckets nor on dropped categories.
    return self.ranges.traced().sample(self.seed, round_index, count, stream, bucket.index)

  def tell(self, trials: TrialTable, *, round_index: int) -> Told:
    kept = keep_top(trials, self.keep)
    if len(kept):
      self.ranges = self.ranges.narrow({k: v[kept] for k, v in trials.hparams.items()},
                                       self.margin, self.space)
    return Told(kept, self.ranges)
