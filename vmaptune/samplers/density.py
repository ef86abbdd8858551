"""Density: a sampler of the TPE family that proposes a whole round at once.

From every configuration trained so far (all rounds, all buckets), ranked as
:mod:`vmaptune.trials.ranking` ranks, the top ``good`` fraction gives a *good*
density and the rest (diverged ones included) a *bad* one: kernel density
estimates in the unit cube of the traced parameters (each axis a parameter's
range in its own scale), with one truncated Gaussian kernel per trial, a
bandwidth per axis by Scott's rule, and the uniform prior as one more
kernel. A round is then chosen at once:

1. ``candidates`` times the round's count of points are drawn from the good
   density;
2. they are taken greedily by the density ratio ``good / bad`` (the
   expected-improvement criterion of TPE), skipping any closer than a radius
   to one already taken: the radius starts at half the good kernels' mean
   width and halves whenever no candidate is left, so a round spreads over
   the good region instead of piling onto its peak;
3. an ``explore`` share of the round is drawn uniformly over the whole
   space, so no region is given up for good.

The good and bad densities of a bucket come from its own configurations
once it has trained enough of them, so the best learning rate may differ
between, say, widths; before that, from every bucket's.
Structural parameters are learned as :mod:`vmaptune.samplers.history` says.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtr, ndtri

from vmaptune.samplers.history import FromHistory
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.scoring import Scoring
from vmaptune.validation import fraction, whole_number

# Kernel widths never fall below this fraction of a range, so a good density
# made of near-identical trials still proposes new values.
MIN_BANDWIDTH = 0.01
# The smallest radius the greedy choice keeps proposals apart by; proposals
# closer than this (in the unit cube) are near-duplicates.
MIN_RADIUS = 0.005
# Candidates scored at once (bounds the memory of a [block, kernels, D] array).
BLOCK = 256


@dataclasses.dataclass(frozen=True)
class Kernels:
  """A kernel density estimate in the unit cube: truncated Gaussians at
  ``centres [K, D]`` with widths ``bandwidth [D]``, mixed with the uniform
  density as one more kernel."""

  centres: np.ndarray
  bandwidth: np.ndarray

  @classmethod
  def fit(cls, points: np.ndarray) -> Kernels:
    """Kernels at ``points [K, D]`` (K may be 0: the uniform density alone)."""
    count, dims = points.shape
    if count < 2:
      return cls(points, np.full(dims, 0.5))
    spread = points.std(axis=0) * count ** (-1.0 / (dims + 4))  # Scott's rule.
    return cls(points, np.clip(spread, MIN_BANDWIDTH, 1.0))

  def log_density(self, x: np.ndarray) -> np.ndarray:
    """``log p(x)`` at ``x [M, D]``: float64 ``[M]``."""
    count = len(self.centres)
    uniform = np.full(len(x), -np.log(count + 1.0))  # The prior's weight, 1 / (K + 1).
    if not count:
      return uniform
    low = log_ndtr((0.0 - self.centres) / self.bandwidth)
    high = ndtr((1.0 - self.centres) / self.bandwidth)
    # log of each kernel's mass inside [0, 1] per axis: [K, D].
    mass = np.log(np.maximum(high - np.exp(low), 1e-300))
    out = np.empty(len(x))
    for start in range(0, len(x), BLOCK):
      z = (x[start:start + BLOCK, None, :] - self.centres[None]) / self.bandwidth
      per_kernel = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi) - np.log(self.bandwidth)
                    - mass[None]).sum(axis=-1)
      out[start:start + BLOCK] = logsumexp(per_kernel, axis=1)
    kernels = out + np.log(count / (count + 1.0))
    return np.logaddexp(kernels, uniform)

  def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` points ``[count, D]`` drawn from the mixture (inverse CDF of
    each truncated Gaussian)."""
    dims = self.bandwidth.shape[0]
    which = rng.integers(len(self.centres) + 1, size=count)  # len(centres): the prior.
    points = rng.uniform(size=(count, dims))
    from_kernel = which < len(self.centres)
    if from_kernel.any():
      centres = self.centres[which[from_kernel]]
      low = ndtr((0.0 - centres) / self.bandwidth)
      high = ndtr((1.0 - centres) / self.bandwidth)
      u = low + rng.uniform(size=centres.shape) * (high - low)
      points[from_kernel] = centres + self.bandwidth * ndtri(np.clip(u, 1e-12, 1 - 1e-12))
    return np.clip(points, 0.0, 1.0)


def spread_out(candidates: np.ndarray, scores: np.ndarray, count: int,
               radius: float) -> np.ndarray:
  """Rows of ``count`` of ``candidates [M, D]``, best ``scores [M]`` first,
  each at least ``radius`` from those taken before (halved while too few
  remain, down to :data:`MIN_RADIUS`; then the best of the rest)."""
  nearest = np.full(len(candidates), np.inf)  # Distance to the closest row taken.
  taken: list[int] = []
  order = np.argsort(-scores, kind="stable")
  while len(taken) < count:
    free = order[nearest[order] >= radius]
    if not len(free):
      if radius > MIN_RADIUS:
        radius = max(radius / 2, MIN_RADIUS)
        continue
      free = order[nearest[order] > 0] if (nearest[order] > 0).any() else order
    row = int(free[0])
    taken.append(row)
    nearest = np.minimum(nearest, np.linalg.norm(candidates - candidates[row], axis=1))
    nearest[row] = -1.0  # Never taken twice.
  return np.array(taken)


@dataclasses.dataclass
class Density(FromHistory):
  """Proposes each round from good and bad densities of every trial so far
  (see the module docstring).

  Attributes:
    good: fraction of the ranked configurations that make the good density, in ``(0, 1)``.
    explore: fraction of each round drawn uniformly over the whole space, in ``[0, 1]``.
    candidates: points drawn from the good density per proposal, at least 1.
  """

  good: float = 0.15
  explore: float = 0.1
  candidates: int = 16
  name = "density"

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    super().check(space, strategy, scoring)
    fraction("explore", self.explore, error=ValueError)
    whole_number("candidates", self.candidates, 1, error=ValueError)

  def propose(self, count: int, rng: np.random.Generator, bucket: Bucket) -> np.ndarray:
    unit, is_good = self.unit, self.is_good
    own = self.rows_of(bucket)
    # A bucket's own trials once it has a few good ones; before, every bucket's.
    if own.all() or (is_good & own).sum() >= 2 * unit.shape[1] + 2:
      unit, is_good = unit[own], is_good[own]
    good, bad = Kernels.fit(unit[is_good]), Kernels.fit(unit[~is_good])
    explored = int(round(self.explore * count))
    modelled = count - explored
    candidates = good.sample(self.candidates * modelled, rng)
    scores = good.log_density(candidates) - bad.log_density(candidates)
    radius = 0.5 * float(np.linalg.norm(good.bandwidth))
    chosen = candidates[spread_out(candidates, scores, modelled, radius)] if modelled else \
        np.empty((0, unit.shape[1]))
    return np.concatenate([chosen, rng.uniform(size=(explored, unit.shape[1]))])
