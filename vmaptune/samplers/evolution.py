"""Evolution: an evolution strategy (CMA-ES) whose generation is the round.

The first round is uniform over the space (as every model-based sampler's
is, see :mod:`vmaptune.samplers.history`); it is told to a CMA-ES started at
the centre of the unit cube of the traced parameters with step size
``sigma`` (0.3: about the spread of a uniform draw), so the first update
already moves the mean towards the best trials and shapes the covariance
after them. Each later round samples the updated Gaussian (points outside
the cube are mirrored back in) and is told back, ranked as
:mod:`vmaptune.trials.ranking` ranks: a generation of as many members as the round
has configurations. Diverged trials rank last.

The CMA-ES is `evosax <https://github.com/RobertTLange/evosax>`_'s (an
optional dependency: ``pip install 'vmaptune[evolution]'``), whose state does
not depend on the generation's size, so rounds of any size (buckets, brackets)
share one search distribution. Structural parameters are learned as
:mod:`vmaptune.samplers.history` says.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vmaptune.samplers.history import FromHistory
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket
from vmaptune.strategies.base import Strategy
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable
from vmaptune.validation import real_number

INSTALL = ("the evolution sampler needs evosax, an optional dependency: "
           "pip install 'vmaptune[evolution]' (or pip install 'evosax>=0.3')")


def import_evosax() -> Any:
  """The ``evosax.algorithms`` module, or an ImportError that says how to install it."""
  try:
    import evosax.algorithms
  except ImportError as e:
    raise ImportError(INSTALL) from e
  return evosax.algorithms


@functools.lru_cache(maxsize=32)
def cma_es(members: int, dims: int) -> Any:
  """evosax's CMA-ES for generations of ``members`` points of ``dims`` axes
  (one per size: its compiled ask and tell are reused across runs)."""
  return import_evosax().CMA_ES(population_size=members, solution=jnp.zeros(dims))


def mirrored(points: np.ndarray) -> np.ndarray:
  """``points`` folded back into ``[0, 1]`` at each face (a reflection, not a
  clip, so no value piles up on a bound).

  >>> mirrored(np.array([-0.25, 0.5, 1.25, 2.5])).tolist()
  [0.25, 0.5, 0.75, 0.5]
  """
  folded = np.abs(points) % 2.0
  return np.where(folded > 1.0, 2.0 - folded, folded)


@dataclasses.dataclass
class Evolution(FromHistory):
  """CMA-ES over the traced parameters, one generation per round (see the
  module docstring).

  Attributes:
    good: fraction of the ranked configurations counted as good when sizing
      buckets of structural values, in ``(0, 1)``.
    sigma: the initial step size, in units of each parameter's range, in ``(0, 1]``.
  """

  good: float = 0.15
  sigma: float = 0.3
  name = "evolution"

  def check(self, space: Space, strategy: Strategy, scoring: Scoring) -> None:
    super().check(space, strategy, scoring)
    real_number("sigma", self.sigma, 0.0, 1.0, low_open=True, error=ValueError)
    import_evosax()

  def start(self, space: Space, seed: int, scoring: Scoring) -> None:
    super().start(space, seed, scoring)
    self._state = None

  def _fresh(self, es: Any) -> Any:
    """The state with its eigendecomposition recomputed from its covariance:
    evosax computes it in ``ask``, which a resumed run's replayed rounds skip."""
    decomposition = import_evosax().distribution_based.cma_es.eigen_decomposition
    covariance, basis, scales = decomposition(self._state.C)
    return self._state.replace(C=covariance, B=basis, D=scales)

  def _params(self, es: Any) -> Any:
    return es.default_params.replace(std_init=jnp.float32(self.sigma))

  def learn(self, trials: TrialTable, unit: np.ndarray, ranked: np.ndarray) -> None:
    members, dims = unit.shape
    es = cma_es(members, dims)
    key = jax.random.key(self.seed)
    if self._state is None:
      self._state = es.init(key, jnp.full(dims, 0.5, jnp.float32), self._params(es))
    fitness = np.full(members, float(members), np.float32)  # Diverged: ranked last.
    fitness[ranked] = np.arange(len(ranked), dtype=np.float32)
    self._state, _ = es.tell(key, jnp.asarray(unit, jnp.float32), jnp.asarray(fitness),
                             self._fresh(es), self._params(es))

  def propose(self, count: int, rng: np.random.Generator, bucket: Bucket) -> np.ndarray:
    es = cma_es(count, len(self.space.traced()))
    key = jax.random.key(int(rng.integers(2 ** 31)))
    points, _ = es.ask(key, self._fresh(es), self._params(es))
    return mirrored(np.asarray(points, np.float64))
