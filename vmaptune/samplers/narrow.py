"""Narrow: the classic recipe. Sample at random in the current ranges, keep
the best trials, shrink every range to their span, repeat."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from vmaptune.samplers.base import Sampler, Told
from vmaptune.trials.ranking import keep_top
from vmaptune.trials.scoring import CLASSIFICATION, Scoring
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

  def check(self, space: Any, strategy: Any, scoring: Scoring = CLASSIFICATION) -> None:
    fraction("keep", self.keep, low_open=True, error=ValueError)
    fraction("margin", self.margin, error=ValueError)

  def start(self, space: Any, seed: int, scoring: Scoring = CLASSIFICATION) -> None:
    super().start(space, seed, scoring)
    self._current = space

  def round_space(self) -> Any:
    return self._current

  def ask(self, count: int, history: Sequence[Any], *, round_index: int, bucket: Any,
          stream: int = 0) -> dict[str, np.ndarray]:
    # Each bucket draws from its own stream (numbered in the original space), so a
    # configuration depends neither on the other buckets nor on dropped categories.
    return self._current.traced().sample(self.seed, round_index, count, stream, bucket.index)

  def tell(self, trials: TrialTable, history: Sequence[Any], *, round_index: int) -> Told:
    kept = keep_top(trials, self.keep)
    if len(kept):
      self._current = self._current.narrow({k: v[kept] for k, v in trials.hparams.items()},
                                           self.margin, self.space)
    return Told(kept, self._current)
