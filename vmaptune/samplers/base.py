"""What every sampler shares: the :class:`Sampler` base class.

A sampler proposes each round's configurations, from the space and every
finished trial, and learns from each round when it ends; a strategy (see
:mod:`vmaptune.strategies`) decides how they are trained. A sampler implements
at most four methods, called in this order:

1. :meth:`Sampler.start`, once, with the original space, the run's seed and
   the objective's scoring (the base class keeps them, and the ranges);
2. per round: :meth:`Sampler.plan` (the ranges the round samples from, recorded
   with it, and which combinations of structural values it trains with how many
   configurations each), :meth:`Sampler.ask` whenever the strategy draws
   configurations in a bucket, and :meth:`Sampler.tell` with the round's trials;
3. a resumed run tells the sampler each restored round again, so it learns
   what the uninterrupted run had learned.

Most samplers implement :meth:`ask` and :meth:`tell` alone. :meth:`Sampler.check`
refuses bad settings before anything compiles. A sampler's fields are its
settings (``Narrow(keep=0.2)``, written ``"narrow(keep=0.2)"`` in configs); what
it learns during a run is reset by :meth:`Sampler.start`. A new sampler is one
file and a line in :data:`vmaptune.samplers.SAMPLERS`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import numpy as np

from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable
from vmaptune.validation import to_spec


class RoundPlan(NamedTuple):
  """What a round trains.

  Attributes:
    space: the ranges the round samples from.
    buckets: ``[(structural values, configurations), ...]``: the combinations of
      structural values the round trains and how many configurations each gets.
  """
  space: Space
  buckets: list[tuple[dict[str, Any], int]]


class Told(NamedTuple):
  """What a sampler made of a finished round.

  Attributes:
    kept: rows of the round's trials it kept, best first (``[K]``; the round's
      best alone for a sampler that narrows nothing), counted in ``order``.
    next_space: the ranges the next round samples from.
    order: the order the round's records list its trials in (a permutation of
      the rows told, which come bucket by bucket), or ``None``: bucket order.
  """
  kept: np.ndarray
  next_space: Space
  order: np.ndarray | None = None


def power_of_two_sizes(population: int) -> tuple[int, ...]:
  """Lane counts that buckets of varying sizes are padded up to: the powers of
  two below ``population``, and ``population``.

  >>> power_of_two_sizes(24)
  (1, 2, 4, 8, 16, 24)
  """
  return tuple(sorted({2 ** k for k in range(population.bit_length()) if 2 ** k < population}
                      | {population}))


class Sampler:
  """Proposes each round's configurations; see the module docstring for the
  order of calls. Subclasses implement :meth:`ask` and :meth:`tell`, and may
  implement :meth:`start` and :meth:`plan`.

  Attributes:
    ranges: the ranges the next round samples from (:meth:`start` sets the whole
      space, :meth:`tell` may narrow them); a resumed run checks each restored
      round's recorded ranges against them.
    bucket_share: the fewest configurations a combination of structural values
      gets, as a fraction of its equal share of the population; below 1, bucket
      sizes vary between rounds and are padded up to powers of two of lanes (so
      buckets share compiled programs). A class setting, not a field.
  """

  name: ClassVar[str] = "sampler"
  bucket_share: ClassVar[float] = 1.0

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    """Raises ``ValueError`` if it cannot sample ``space`` for ``strategy`` and
    the objective's ``scoring`` (called before anything compiles)."""

  def start(self, space: Space, seed: int, scoring: Scoring) -> None:
    """Begins a run over ``space`` (forgetting an earlier run) whose trials are
    scored by ``scoring``; the ranges start as the whole space."""
    self.space, self.seed, self.scoring = space, seed, scoring
    self.ranges = space

  def plan(self, population: int, round_index: int) -> RoundPlan:
    """Round ``round_index``'s ranges (:attr:`ranges`) and buckets: by default
    every combination still in the ranges, ``ceil(population / combinations)``
    configurations each. Called once per round; a resumed run does not plan the
    rounds it restores."""
    combinations = self.ranges.combinations()
    each = math.ceil(population / len(combinations))
    return RoundPlan(self.ranges, [(values, each) for values in combinations])

  def ask(self, count: int, *, round_index: int, bucket: Bucket,
          stream: int = 0) -> dict[str, np.ndarray]:
    """``count`` configurations of ``bucket`` for round ``round_index``:
    ``{name: float32 [count]}`` of the traced parameters. ``stream`` tells apart
    several draws of one round and bucket (e.g. Hyperband's brackets)."""
    raise NotImplementedError

  def tell(self, trials: TrialTable, *, round_index: int) -> Told:
    """Learns from a finished round's ``trials`` (every bucket's, merged)."""
    raise NotImplementedError

  def fewest_configurations(self, space: Space, population: int) -> int:
    """The fewest configurations a bucket can get (a strategy must run with that
    many), from :attr:`bucket_share`."""
    combinations = len(space.combinations())
    if combinations == 1:
      return population
    return max(1, math.ceil(population / combinations * self.bucket_share))

  def lane_sizes(self, space: Space, population: int) -> tuple[int, ...] | None:
    """Population sizes a bucket's lane count is rounded up to, or ``None``
    (every bucket's size is fixed)."""
    if self.bucket_share == 1.0 or len(space.combinations()) == 1:
      return None
    return power_of_two_sizes(population)

  def describe(self) -> str:
    """``name(key=value, ...)``, as configs write it."""
    return to_spec(self)
