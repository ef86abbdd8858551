"""What model-based samplers share: every finished configuration so far, ranked,
and buckets sized by how often each combination of structural values is good.

A :class:`FromHistory` sampler proposes each round as a whole from every
configuration trained so far (all rounds, all buckets), in the unit cube of
the traced parameters (each axis a parameter's range in its own scale, see
:meth:`vmaptune.space.space.Space.to_unit`). The first round, with nothing learned
yet, draws uniformly over the whole space: the same configurations as the
narrow sampler's first round. Subclasses say how a round is proposed
(:meth:`FromHistory.propose`) and what they learn from a finished round
(:meth:`FromHistory.learn`).

Structural parameters are learned too: each combination of structural
values (a bucket) gets at least half its equal share of the round, and the
rest in proportion to the estimated chance that its configurations are
among the ``good`` fraction of all ranked so far (``(good + 1) / (trained +
2)``). Bucket sizes then vary between rounds, so populations are padded up
to powers of two of lanes to reuse compiled programs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from vmaptune.samplers.base import RoundPlan, Sampler, Told
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable
from vmaptune.validation import fraction


def allocate(weights: np.ndarray, total: int, floor: int) -> np.ndarray:
  """``total`` split into whole counts ``[C]``, each at least ``floor``, the
  rest in proportion to ``weights [C]`` (largest remainders first; ties to
  the first).

  >>> allocate(np.array([1.0, 3.0]), 10, 2).tolist()
  [4, 6]
  """
  counts = np.full(len(weights), floor)
  spare = total - floor * len(weights)
  share = spare * weights / weights.sum()
  counts += np.floor(share).astype(int)
  remainder = share - np.floor(share)
  for index in np.argsort(-remainder, kind="stable")[:total - counts.sum()]:
    counts[index] += 1
  return counts


@dataclasses.dataclass
class FromHistory(Sampler):
  """A sampler that proposes each round from every finished configuration.

  Attributes:
    good: the fraction of the ranked configurations counted as good (for
      bucket sizes, and a density sampler's good density), in ``(0, 1)``.
  """

  good: float = 0.15
  bucket_share = 0.5  # Each bucket gets at least half its equal share.

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    # The rest of the ranked configurations are the bad ones, so neither end.
    fraction("good", self.good, low_open=True, high_open=True, error=ValueError)

  def start(self, space: Space, seed: int, scoring: Scoring) -> None:
    super().start(space, seed, scoring)
    self.history: TrialTable | None = None  # Every configuration trained so far.
    self.is_good: np.ndarray | None = None  # bool [N]: among the top `good` fraction.
    self.unit: np.ndarray | None = None  # [N, D]: the history's points in the unit cube.

  def plan(self, population: int, round_index: int) -> RoundPlan:
    combinations = self.space.combinations()
    if len(combinations) == 1 or self.history is None:
      return super().plan(population, round_index)
    keys = self._bucket_keys(self.history)
    good_keys = [key for key, good in zip(keys, self.is_good, strict=True) if good]
    trained = np.array([keys.count(tuple(c.values())) for c in combinations])
    good = np.array([good_keys.count(tuple(c.values())) for c in combinations])
    counts = allocate((good + 1) / (trained + 2), population,
                      self.fewest_configurations(self.space, population))
    return RoundPlan(self.ranges, [(values, int(count))
                                  for values, count in zip(combinations, counts, strict=True)])

  def _bucket_keys(self, table: TrialTable) -> list[tuple]:
    names = self.space.structural_names
    return [tuple(self.space[n].value(table.hparams[n][row]) for n in names)
            for row in range(len(table))]

  def rows_of(self, bucket: Bucket) -> np.ndarray:
    """bool ``[N]``: the history's configurations trained in ``bucket``."""
    if not bucket.values:
      return np.ones(len(self.history), bool)
    key = tuple(bucket.values[n] for n in self.space.structural_names)
    return np.array([k == key for k in self._bucket_keys(self.history)], bool)

  def ask(self, count: int, *, round_index: int, bucket: Bucket,
          stream: int = 0) -> dict[str, np.ndarray]:
    traced = self.space.traced()
    if self.history is None:  # Nothing learned yet: uniform, as the narrow sampler's first round.
      return traced.sample(self.seed, round_index, count, stream, bucket.index)
    rng = np.random.default_rng([self.seed, round_index, stream, (bucket.index or 0) + 1,
                                 sum(map(ord, self.name))])
    unit = self.propose(count, rng, bucket)
    assert unit.shape == (count, len(traced)), (unit.shape, count)
    return traced.from_unit(unit)

  def propose(self, count: int, rng: np.random.Generator, bucket: Bucket) -> np.ndarray:
    """``count`` points of the unit cube, float64 ``[count, D]``, for ``bucket``."""
    raise NotImplementedError

  def learn(self, trials: TrialTable, unit: np.ndarray, ranked: np.ndarray) -> None:
    """Learns from a finished round: its configurations ``trials`` (``[T]``),
    their unit-cube points ``unit [T, D]`` and rows ranked best first
    (``ranked [R]``, diverged ones left out). :attr:`history` already holds them."""

  def tell(self, trials: TrialTable, *, round_index: int) -> Told:
    configurations = trials.take(np.flatnonzero(trials.is_configuration))
    self.history = (configurations if self.history is None
                    else TrialTable.concat([self.history, configurations]))
    ranked = rank(self.history)
    self.is_good = np.zeros(len(self.history), bool)
    self.is_good[ranked[:max(1, math.ceil(self.good * len(self.history)))]] = True
    unit = self.space.to_unit(configurations.hparams)
    self.unit = unit if self.unit is None else np.concatenate([self.unit, unit])
    self.learn(configurations, unit, rank(configurations))
    # Kept: the round's trials among all the good ones so far (at least its best), best first.
    first = len(self.history) - len(configurations)
    rows = np.flatnonzero(trials.is_configuration)
    position = {int(row): first + i for i, row in enumerate(rows)}
    ordered = [int(row) for row in rank(trials)]
    kept = [row for row in ordered if row in position and self.is_good[position[row]]]
    return Told(np.array(kept or ordered[:1], int), self.space)
