"""Seeds as an axis: every configuration trains with k initialisation and data-order
seeds in one population; configurations are ranked by their mean over seeds."""

import json

import jax
import numpy as np
import pytest

import vmaptune as vt
from vmaptune.compilation import CompileCounter
from vmaptune.keys import REPLICA, replica_keys, round_keys
from vmaptune.optimizers import BUILTIN
from vmaptune.population import Population

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


def test_tune_with_seeds_ranks_configurations_by_their_mean_and_records_the_spread(
    small_data, tiny_mlp, lr_space, tmp_path):
  with CompileCounter() as compiled:
    result = vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=2, epochs=2,
                     batch_size=32, seeds=SEEDS, out=str(tmp_path / "run"))
  first, second = result.rounds
  assert second.compiles == 0 and compiled.compiles == first.compiles
  assert first.seed_accuracy.shape == (4, SEEDS) and first.seeds == SEEDS
  assert first.lane_epochs == 4 * 2 * SEEDS
  alive = ~first.diverged
  np.testing.assert_allclose(first.val_accuracy[alive], first.seed_accuracy[alive].mean(axis=1))
  # Seeds differ: not every configuration scores the same under every seed.
  assert (first.seed_accuracy[alive].std(axis=1) > 0).any()
  best = first.kept[0]
  assert first.val_accuracy[best] == np.nanmax(first.val_accuracy)
  records = [r for r in vt.read_trials(tmp_path / "run") if r["round"] == 0]
  assert len(records) == 4
  for record, row in zip(records, first.seed_accuracy, strict=True):
    assert record["seed_accuracy"] == pytest.approx(row.tolist())
    assert record["val_accuracy_std"] == pytest.approx(float(np.std(row)))
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["settings"]["seeds"] == SEEDS
  # The final fit retrains the chosen configuration with the first seed.
  final = result.final_fit()
  chosen = result.rounds[result.best.round]
  first_seed = chosen.seed_accuracy[result.best.trial, 0]
  assert abs(final.val_accuracy - first_seed) <= 1 / len(small_data.val)
  assert small_data.test_reads == 1


@pytest.mark.parametrize("settings, message", [
    ({"seeds": 0}, "seeds=0; expected a whole number >= 1"),
    ({"seeds": 2, "strategy": "halving"}, "seeds=2 needs strategy='random'"),
])
def test_bad_seeds_are_refused_before_anything_compiles(small_data, tiny_mlp, lr_space,
                                                        settings, message):
  with CompileCounter() as compiled, pytest.raises(vt.SettingsError, match=message):
    vt.tune(tiny_mlp, small_data, lr_space, population=4, rounds=1, epochs=3, batch_size=32,
            **settings)
  assert compiled.compiles == 0
