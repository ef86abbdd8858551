"""A round's keys: shared by its lanes, folded per seed replica; a seed lane equals its
configuration trained alone with that seed's keys."""

import jax
import numpy as np

import vmaptune as vt
from vmaptune.lanes.keys import REPLICA, replica_keys, round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN

SEEDS = 3


def test_each_seed_lane_equals_its_config_trained_alone_with_that_seeds_keys(small_data):
  pop = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], small_data, epochs=2,
                      batch_size=32, eval_batch_size=60)
  configs = np.array([1e-2, 3e-2], np.float32)
  hparams = {"learning_rate": np.tile(configs, SEEDS),
             REPLICA: np.repeat(np.arange(SEEDS), len(configs)).astype(np.float32)}
  keys = round_keys(0, 0)
  out = pop.train(hparams, *keys)
  losses = np.asarray(out.epoch_loss)
  for lane in range(len(configs) * SEEDS):
    alone = pop.alone.fit({"learning_rate": hparams["learning_rate"][lane]},
                        *replica_keys(*keys, int(hparams[REPLICA][lane])))
    np.testing.assert_allclose(losses[lane], alone.epoch_loss, rtol=2e-5)
    for a, b in zip(jax.tree.leaves(alone.params),
                    jax.tree.leaves(jax.tree.map(lambda p, i=lane: p[i], out.params)),
                    strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
  # The same configuration under another seed starts elsewhere and sees other batches.
  assert not np.allclose(losses[0], losses[len(configs)])
  # A replica's keys are not the shared keys: seeds=1 runs are unchanged.
  shared = pop.alone.fit({"learning_rate": configs[0]}, *keys)
  assert not np.allclose(shared.epoch_loss, losses[0])
