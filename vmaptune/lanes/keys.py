"""The random keys of a round: shared by its lanes, folded per seed replica.

Every lane of a round shares the round's initialisation and data-order keys
(common random numbers): within a round, lanes start from the same weights
and see the same minibatches, so they differ only by their hyperparameters.
With ``seeds=k`` each configuration also trains on ``k`` replicas whose keys
are the round's folded with the replica's number.

>>> init_key, data_key = round_keys(seed=0, round_index=1)
>>> init_key.shape, bool((init_key == round_keys(0, 1)[0]).all())
((), True)
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

# A per-lane entry of ``hparams`` (never a search-space name, which must be an
# identifier) that gives each lane its own initialisation and data-order seed:
# lane keys become ``fold_in(round key, replica)``. Without it every lane shares
# the round's keys (and its minibatches).
REPLICA = "#replica"


@jax.jit
def _keys(seed: jax.Array, round_index: jax.Array) -> tuple[jax.Array, jax.Array]:
  # One small program for all rounds, rather than one per eager random op.
  init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), round_index))
  return init_key, data_key


def round_keys(seed: int, round_index: int) -> tuple[jax.Array, jax.Array]:
  """The ``(init_key, data_key)`` every lane of round ``round_index`` shares."""
  return _keys(np.uint32(seed), np.uint32(round_index))


@jax.jit
def replica_keys(init_key: jax.Array, data_key: jax.Array,
                 replica: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The keys of seed replica ``replica`` of a round (see ``REPLICA``)."""
  replica = jax.numpy.asarray(replica).astype(jax.numpy.uint32)
  return jax.random.fold_in(init_key, replica), jax.random.fold_in(data_key, replica)


def split_replica(hparams: Mapping[str, jax.Array], init_key: jax.Array,
                  data_key: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
  """One lane's ``hparams`` without ``REPLICA``, and the lane's keys."""
  if REPLICA not in hparams:
    return dict(hparams), init_key, data_key
  rest = {k: v for k, v in hparams.items() if k != REPLICA}
  return rest, *replica_keys(init_key, data_key, hparams[REPLICA])
