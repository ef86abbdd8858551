"""Per-lane hyperparameters beyond learning rate and weight decay: Adam's betas, dropout rate,
label smoothing and warmup. Each is a traced value: lanes differ in one program, new values
never recompile, defaults reproduce the baseline, and bad input is refused before compiling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.lanes.train import step_key
from vmaptune.models.optimizers import BUILTIN, scheduled
from vmaptune.objectives import cross_entropy, smoothed_cross_entropy

PARAM_ATOL = 1e-4  # As in test_population: lanes agree with a lone run to float32 rounding.
EPOCHS, BATCH = 2, 32
STEPS_PER_EPOCH = 360 // BATCH  # small_data has 360 training examples.
NEW = ("b1", "b2", "dropout_rate", "label_smoothing", "warmup_epochs")
DEFAULTS = {"b1": 0.9, "b2": 0.999, "dropout_rate": 0.0, "label_smoothing": 0.0,
            "warmup_epochs": 0.0}


def _population(data, names, epochs=EPOCHS, model=None):
  """A population whose factory warms up when ``names`` has warmup_epochs, as tune builds it."""
  factory = scheduled(BUILTIN["adamw"], "cosine", epochs * STEPS_PER_EPOCH,
                      steps_per_epoch=STEPS_PER_EPOCH, warmup="warmup_epochs" in names)
  return Population(model or vt.models.MLP(hidden=(16,)), factory, data, epochs=epochs,
                       batch_size=BATCH, eval_batch_size=60)


def _lanes(rows):
  """``{name: float32 [P]}`` from one dict per lane (learning rate and weight decay added)."""
  base = {"learning_rate": 3e-2, "weight_decay": 1e-4, **DEFAULTS}
  return {k: np.array([{**base, **row}[k] for row in rows], np.float32) for k in base}


def _lane(tree, index):
  return jax.tree.map(lambda a: np.asarray(a)[index], tree)


def _assert_close(a, b, atol=PARAM_ATOL):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def _assert_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# One lane per new hyperparameter moved off its default, a baseline lane and one moving all.
ROWS = [{}, {"b1": 0.5, "b2": 0.95}, {"dropout_rate": 0.3}, {"label_smoothing": 0.2},
        {"warmup_epochs": 1.5},
        {"b1": 0.8, "b2": 0.99, "dropout_rate": 0.1, "label_smoothing": 0.1,
         "warmup_epochs": 0.5}]


@pytest.fixture(scope="module")
def data(small_arrays):
  x, y = small_arrays
  return vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)


@pytest.fixture(scope="module")
def population(data):
  return _population(data, NEW)


@pytest.fixture(scope="module")
def trained(population):
  """The lanes trained and evaluated once: the programs later tests must reuse."""
  keys = round_keys(0, 0)
  out = population.train(_lanes(ROWS), *keys)
  population.evaluate(out.params)
  return out, keys


def test_each_lane_equals_its_config_trained_alone(population, trained):
  out, keys = trained
  hparams = _lanes(ROWS)
  scores = population.evaluate(out.params)
  for lane in range(len(ROWS)):
    alone = population.alone.fit({k: v[lane] for k, v in hparams.items()}, *keys)
    _assert_close(_lane(out.params, lane), alone.params)
    np.testing.assert_allclose(np.asarray(out.epoch_loss)[lane], alone.epoch_loss, rtol=1e-4)
    score = population.alone.evaluate(alone.params)
    assert abs(float(scores["accuracy"][lane]) - float(score["accuracy"])) <= 1 / 120
  assert float(np.asarray(scores["accuracy"])[:len(ROWS)].max()) > 0.7


def test_every_new_hyperparameter_changes_training(trained):
  out, _ = trained
  losses = np.asarray(out.epoch_loss)[:len(ROWS)]
  for lane in range(1, len(ROWS)):
    assert not np.allclose(losses[lane], losses[0], rtol=1e-3), ROWS[lane]
  # Dropout and label smoothing make the optimized loss larger on the same minibatches.
  assert losses[2, 0] > losses[0, 0] and losses[3, 0] > losses[0, 0]


def test_new_values_reuse_the_compiled_programs(population, trained):
  _, keys = trained
  rng = np.random.default_rng(1)
  rows = [{"b1": rng.uniform(0.5, 0.95), "b2": rng.uniform(0.9, 0.9999),
           "dropout_rate": rng.uniform(0, 0.5), "label_smoothing": rng.uniform(0, 0.3),
           "warmup_epochs": rng.uniform(0, 2)} for _ in ROWS]
  with CompileCounter() as compiled:
    out = population.train(_lanes(rows), *round_keys(0, 1))
    population.evaluate(out.params)
  assert compiled.compiles == 0
  assert np.isfinite(np.asarray(out.epoch_loss)[:len(rows)]).all()


BASE = {"learning_rate": 3e-2, "weight_decay": 1e-4}  # Lane 0 of ROWS, without the new names.


@pytest.fixture(scope="module")
def baseline(data):
  """BASE trained alone, searching none of the new names, with the round-0 keys."""
  return _population(data, ()).alone.fit(BASE, *round_keys(0, 0))


@pytest.mark.parametrize("name", NEW)
def test_the_default_value_reproduces_the_baseline_exactly(name, data, baseline):
  """Searching a name at its default (0 for the trainer's) is the run that does not search it."""
  with_default = _population(data, (name,)).alone.fit({**BASE, name: DEFAULTS[name]},
                                                     *round_keys(0, 0))
  # One lane alone is the same computation bit for bit.
  _assert_equal(baseline.params, with_default.params)
  np.testing.assert_array_equal(baseline.epoch_loss, with_default.epoch_loss)


def test_all_defaults_in_a_population_reproduce_the_baseline(trained, baseline):
  out, _ = trained
  # Lane 0 holds every default. Batched, XLA may fuse the smoothed loss's backward pass
  # differently from the plain one, so this agrees to float32 rounding, not bit for bit.
  _assert_close(_lane(out.params, 0), baseline.params)
  np.testing.assert_allclose(np.asarray(out.epoch_loss)[0], baseline.epoch_loss, rtol=1e-5)


def test_label_smoothing_matches_optax_and_validation_stays_unsmoothed(population, trained):
  logits = np.asarray(jax.random.normal(jax.random.key(0), (8, 10))) * 3
  labels = np.arange(8) % 10

  @jax.jit
  def both(alpha):
    targets = optax.smooth_labels(jax.nn.one_hot(labels, 10), alpha)
    return (smoothed_cross_entropy(logits, labels, alpha),
            optax.softmax_cross_entropy(logits, targets))

  for alpha in (0.0, 0.1, 0.5):
    ours, theirs = both(np.float32(alpha))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  zero = jax.jit(lambda a: (smoothed_cross_entropy(logits, labels, a),
                            cross_entropy(logits, labels)))(np.float32(0))
  np.testing.assert_array_equal(*zero)
  # The validation loss of the smoothed lane is the plain cross-entropy of its logits.
  out, _ = trained
  params = _lane(out.params, 3)
  batches = population._val
  x = np.asarray(batches.batch.x).reshape((-1, 8, 8, 1))[:120]
  y = np.asarray(batches.batch.y).reshape(-1)[:120]
  plain = jax.jit(lambda p: cross_entropy(population.model.apply({"params": p}, x), y).mean())
  assert float(population.evaluate(out.params)["loss"][3]) == pytest.approx(
      float(plain(params)), rel=1e-5)


def test_adam_betas_live_in_the_optimizer_state_and_follow_mid_run_changes(population):
  init_key, data_key = round_keys(0, 2)
  rows = [{"b1": 0.8}, {"b1": 0.8}]
  lanes, _ = population.advance(population.init(_lanes(rows), init_key), data_key, 0, 1)
  changed = _lanes([{"b1": 0.8}, {"b1": 0.5, "b2": 0.9}])
  after, _ = population.advance(population.select(lanes, np.array([0, 1]), changed), data_key,
                                1, 1)
  kinds = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
  injected = [s for s in jax.tree.leaves(after.state.opt_state,
                                         is_leaf=lambda n: isinstance(n, kinds))
              if isinstance(s, kinds)]
  assert len(injected) == 1
  np.testing.assert_allclose(np.asarray(injected[0].hyperparams["b1"])[:2], [0.8, 0.5])
  np.testing.assert_allclose(np.asarray(injected[0].hyperparams["b2"])[:2], [0.999, 0.9])
  # Same weights after epoch 0, different betas in epoch 1: different results.
  assert not np.allclose(_lane(after.state.params, 0)["Dense_0"]["kernel"],
                         _lane(after.state.params, 1)["Dense_0"]["kernel"])


def test_dropout_keys_depend_on_the_position_in_the_run_only():
  data_key = round_keys(0, 0)[1]
  keys = {(e, s): jax.random.key_data(step_key(data_key, e, s)).tolist()
          for e in range(3) for s in range(3)}
  permutation_keys = [jax.random.key_data(jax.random.fold_in(data_key, e)).tolist()
                      for e in range(3)]
  assert len({str(k) for k in keys.values()} | {str(k) for k in permutation_keys}) == 9 + 3
  assert jax.random.key_data(step_key(data_key, 1, 2)).tolist() == keys[(1, 2)]


def test_dropout_masks_replay_alone_in_segments_and_after_compaction(population):
  """What halving, population-based training and the final fit rely on, with dropout on."""
  init_key, data_key = round_keys(0, 3)
  rows = [{"dropout_rate": 0.1}, {"dropout_rate": 0.4}, {"dropout_rate": 0.2},
          {"dropout_rate": 0.0}, {"dropout_rate": 0.3}, {"dropout_rate": 0.25}]
  hparams = _lanes(rows)
  full, _ = population.advance(population.init(hparams, init_key), data_key, 0, EPOCHS)
  # Compaction: lane 4 and lane 1 continue alone after epoch 0, exactly as uncompacted.
  rung, _ = population.advance(population.init(hparams, init_key), data_key, 0, 1)
  survivors, _ = population.advance(population.select(rung, np.array([4, 1])), data_key, 1, 1)
  _assert_close(_lane(survivors.state.params, 0), _lane(full.state.params, 4))
  _assert_close(_lane(survivors.state.params, 1), _lane(full.state.params, 1))
  # A mid-run change of rate (a population-based-training lineage) replays alone.
  second = {k: v.copy() for k, v in rung.hparams.items()}
  second["dropout_rate"][2] = 0.45
  switched, _ = population.advance(population.select(rung, np.arange(6), second), data_key, 1, 1)
  lineage = [(0, 1, {k: v[2] for k, v in hparams.items()}),
             (1, 2, {**{k: v[2] for k, v in hparams.items()}, "dropout_rate": 0.45})]
  replayed = population.alone.fit_schedule(lineage, init_key, data_key)
  _assert_close(_lane(switched.state.params, 2), replayed.params)
  # Evaluation never drops: the same parameters always score the same.
  first, again = population.evaluate(full.state.params), population.evaluate(full.state.params)
  np.testing.assert_array_equal(np.asarray(first["loss"]), np.asarray(again["loss"]))


def test_the_dropout_layer_takes_a_traced_rate():
  x = jnp.ones((64, 32))
  key = jax.random.key(0)
  layer = vt.models.Dropout()
  assert layer.apply({}, x, None) is x and layer.apply({}, x, 0.0) is x
  drop = jax.jit(jax.vmap(lambda r: layer.apply({}, x, r, rngs={"dropout": key})))
  dropped = np.asarray(drop(jnp.array([0.0, 0.1, 0.5, 0.9], jnp.float32)))
  np.testing.assert_array_equal(dropped[0], x)  # A traced 0 drops nothing.
  kept = (dropped[1:] != 0).mean(axis=(1, 2))
  np.testing.assert_allclose(kept, [0.9, 0.5, 0.1], atol=0.03)
  # Kept units are rescaled so the expectation is unchanged.
  np.testing.assert_allclose(dropped[1:].mean(axis=(1, 2)), 1.0, atol=0.1)
  # Common random numbers: a unit dropped at a low rate is dropped at every higher rate.
  assert ((dropped[2] == 0) >= (dropped[1] == 0)).all()
  cnn = vt.models.CNN(channels=(4,), dense=8)
  images = jax.random.uniform(key, (4, 8, 8, 1))
  rng = np.random.default_rng(0)  # Random weights made on the host: no init program to compile.
  params = jax.tree.map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32),
                        jax.eval_shape(cnn.init, key, images[:1])["params"])
  plain = jax.jit(cnn.apply)({"params": params}, images)
  dropped = jax.jit(lambda rate: cnn.apply({"params": params}, images, dropout_rate=rate,
                                           rngs={"dropout": key}))
  np.testing.assert_array_equal(dropped(jnp.float32(0)), plain)
  assert not np.allclose(dropped(jnp.float32(0.5)), plain)
