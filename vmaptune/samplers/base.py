"""What every sampler shares: the :class:`Sampler` base class.

A sampler proposes each round's configurations, from the space and every
finished trial, and learns from each round when it ends; a strategy (see
:mod:`vmaptune.strategies`) decides how they are trained. A run calls, in
order:

1. :meth:`Sampler.start` once, with the original space and the run's seed;
2. per round: :meth:`Sampler.round_space` (the ranges the round samples
   from, recorded with it), :meth:`Sampler.buckets` (which combinations of
   structural values it trains, and how many configurations each), then
   :meth:`Sampler.ask` whenever the strategy draws configurations in a
   bucket, and :meth:`Sampler.tell` with the round's trials (listed as
   :meth:`Sampler.order` says);
3. a resumed run tells the sampler each restored round again, so it learns
   what the uninterrupted run had learned.

A sampler's fields are its settings (``Narrow(keep=0.2)``, written
``"narrow(keep=0.2)"`` in configs); what it learns during a run is reset by
:meth:`Sampler.start`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from vmaptune.space.space import Space
from vmaptune.trials.scoring import CLASSIFICATION, Scoring
from vmaptune.trials.table import TrialTable
from vmaptune.validation import to_spec


class Told(NamedTuple):
  """What a sampler made of a finished round.

  Attributes:
    kept: rows of the round's trials it kept, best first (``[K]``; the
      round's best alone for a sampler that narrows nothing).
    next_space: the ranges the next round samples from.
  """
  kept: np.ndarray
  next_space: Space


class Sampler:
  """Proposes each round's configurations; see the module docstring for the
  order of calls. Subclasses implement :meth:`ask` and :meth:`tell`."""

  name: ClassVar[str] = "sampler"

  def check(self, space: Space, strategy: Any, scoring: Scoring = CLASSIFICATION) -> None:
    """Raises ``ValueError`` if it cannot sample ``space`` for ``strategy`` and
    the objective's ``scoring`` (called before anything compiles). Samplers
    that learn from trials rank them with :mod:`vmaptune.trials.ranking`, which
    follows the trials' own scoring; ``scoring`` is for samplers that must
    know the direction beforehand (an Optuna study's)."""

  def fewest_configurations(self, space: Space, population: int) -> int:
    """The fewest configurations a bucket can get (a strategy must run with that
    many): by default the equal share of :meth:`buckets` over every combination."""
    return math.ceil(population / len(space.combinations()))

  def lane_sizes(self, space: Space, population: int) -> tuple[int, ...] | None:
    """Population sizes a bucket's lane count is rounded up to (so buckets of
    varying sizes share compiled programs), or ``None`` (sizes are fixed)."""
    return None

  def start(self, space: Space, seed: int, scoring: Scoring = CLASSIFICATION) -> None:
    """Begins a run over ``space`` (forgetting an earlier run) whose trials are
    scored by ``scoring``."""
    self.space, self.seed = space, seed

  def round_space(self) -> Space:
    """The ranges the next round samples from."""
    return self.space

  def buckets(self, population: int, round_index: int) -> list[tuple[dict[str, Any], int]]:
    """The combinations of structural values the round trains and how many
    configurations each gets: by default, every combination still in
    :meth:`round_space`, ``ceil(population / combinations)`` each."""
    combinations = self.round_space().combinations()
    each = math.ceil(population / len(combinations))
    return [(values, each) for values in combinations]

  def ask(self, count: int, history: Sequence[Any], *, round_index: int, bucket: Any,
          stream: int = 0) -> dict[str, np.ndarray]:
    """``count`` configurations of ``bucket`` (a :class:`vmaptune.space.structural.Bucket`)
    for round ``round_index``: ``{name: float32 [count]}`` of the traced
    parameters. ``stream`` tells apart several draws of one round and bucket
    (e.g. Hyperband's brackets); ``history`` holds the completed rounds."""
    raise NotImplementedError

  def order(self, trials: TrialTable, *, round_index: int) -> np.ndarray | None:
    """The order the round's records list its trials in (a permutation of
    the rows of ``trials``, which come bucket by bucket), or ``None`` to keep
    bucket order. Called before :meth:`tell`, which then sees that order."""
    return None

  def tell(self, trials: TrialTable, history: Sequence[Any], *, round_index: int) -> Told:
    """Learns from a finished round's ``trials`` (every bucket's, merged)."""
    raise NotImplementedError

  def describe(self) -> str:
    """``name(key=value, ...)``, as configs write it."""
    return to_spec(self)
