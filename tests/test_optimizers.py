"""Optimizer factories: the trainer's own names, schedules and warmup, custom factories,
and every per-lane hyperparameter searched by every strategy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.lanes.train import make_init, make_step
from vmaptune.models.optimizers import BUILTIN, TRAINER_HPARAMS, scheduled

BATCH = 32
# The runs here test optimizers, not the confirmation stage (test_confirmation.py does): off.
CONFIRM = "off"


def _assert_close(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)

def test_trainer_names_are_listed_once():
  assert tuple(TRAINER_HPARAMS) == ("dropout_rate", "warmup_epochs")
  assert not set(TRAINER_HPARAMS) & set(BUILTIN["adamw"].accepted)
  # Label smoothing is the classification objective's, not the trainer's.
  assert tuple(vt.objectives.Classification.hparam_ranges) == ("label_smoothing",)


def test_warmup_scales_the_first_steps_linearly(small_data):
  model = vt.models.MLP(hidden=(16,))
  factory = scheduled(BUILTIN["adamw"], "constant", 100, steps_per_epoch=4, warmup=True)
  init = jax.jit(make_init(model, factory))
  step = jax.jit(make_step(model, factory, vt.objectives.Classification()))
  x, y = small_data.train.x[:BATCH], small_data.train.y[:BATCH]
  moves = {}
  for warmup in (0.0, 1.0):  # 0 or 4 steps of warmup
    hparams = {"learning_rate": np.float32(1e-2), "weight_decay": np.float32(1e-4),
               "warmup_epochs": np.float32(warmup)}
    state = init(hparams, jax.random.key(0), x[:1])
    moves[warmup] = []
    for _ in range(5):
      before = state.params
      state, _ = step(hparams, state, vt.data.Split(x, y))
      moves[warmup].append(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b),
                                        state.params, before))
  # The first step moves 1/4 as far (same gradient, same Adam state), the fourth fully.
  _assert_close(jax.tree.map(lambda m: m / 4, moves[0.0][0]), moves[1.0][0], atol=1e-7)
  ratios = [np.abs(jax.tree.leaves(m)[1]).sum() / np.abs(jax.tree.leaves(n)[1]).sum()
            for m, n in zip(moves[1.0], moves[0.0], strict=True)]
  assert ratios[0] == pytest.approx(0.25, rel=1e-4)
  assert ratios[1] < ratios[2] < ratios[3] and ratios[3] > 0.5
  assert vt.models.optimizers.warmup_multiplier(jnp.int32(0), jnp.float32(0.0)) == 1.0


FULL_SPACE = vt.Space(learning_rate=vt.LogUniform(3e-3, 1e-1), b1=vt.Uniform(0.7, 0.95),
                      b2=vt.Uniform(0.9, 0.999), dropout_rate=vt.Uniform(0.0, 0.3),
                      label_smoothing=vt.Uniform(0.0, 0.2), warmup_epochs=vt.Uniform(0.0, 1.0))


@pytest.mark.parametrize("strategy", ["random", "pbt(interval=1, fraction=0.25)"])
def test_tune_searches_every_new_hyperparameter(strategy, small_data, tiny_mlp):
  result = vt.tune(tiny_mlp, small_data, FULL_SPACE, population=8, rounds=2, epochs=2,
                   batch_size=BATCH, sampler="narrow(keep=0.25)", seed=0, strategy=strategy,
                   confirm=CONFIRM)
  assert [r.compiles for r in result.rounds[1:]] == [0]
  assert set(result.best.hparams) == set(FULL_SPACE)
  assert result.best.val_accuracy > 0.5
  # The final fit replays the chosen trial (for PBT its whole lineage) with its dropout masks.
  final = result.final_fit()
  assert abs(final.val_accuracy - result.best.val_accuracy) <= 1 / len(small_data.val)
  if strategy.startswith("pbt"):
    first = result.rounds[0]
    assert (first.parent >= 0).any()
    moved = [t for t in np.flatnonzero(first.parent >= 0)
             if first.hparams["dropout_rate"][t] != first.hparams["dropout_rate"][first.parent[t]]]
    assert moved  # Exploration changed dropout rates mid-run.


def test_a_custom_factory_gets_warmup_and_the_trainer_names(small_data, tiny_mlp):
  seen = []

  def lamb(hparams):
    seen.append(sorted(hparams))
    return optax.inject_hyperparams(optax.lamb)(learning_rate=hparams["learning_rate"])

  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), warmup_epochs=vt.Uniform(0.0, 1.0),
                   label_smoothing=vt.Uniform(0.0, 0.1))
  result = vt.tune(tiny_mlp, small_data, space, optimizer=lamb, population=4, rounds=1,
                   epochs=2, batch_size=BATCH, confirm=CONFIRM)
  assert result.best.val_accuracy > 0.3
  assert seen[0] == ["label_smoothing", "learning_rate", "warmup_epochs"]


def test_sgd_and_custom_optimizer_factories_train(small_data, tiny_mlp):
  def lamb(hparams):
    return optax.inject_hyperparams(optax.lamb)(learning_rate=hparams["learning_rate"])

  space = vt.Space(learning_rate=vt.LogUniform(1e-1, 1.0), momentum=vt.Uniform(0.5, 0.95))
  sgd = vt.tune(tiny_mlp, small_data, space, optimizer="sgd", population=4, rounds=1,
                epochs=2, batch_size=32, confirm=CONFIRM)
  custom = vt.tune(tiny_mlp, small_data, vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)),
                   optimizer=lamb, schedule="constant", population=4, rounds=1, epochs=2,
                   batch_size=32, confirm=CONFIRM)
  assert sgd.best.val_accuracy > 0.5 and custom.best.val_accuracy > 0.5
  assert set(sgd.best.hparams) == {"learning_rate", "momentum"}
