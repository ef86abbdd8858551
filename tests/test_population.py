"""Population invariants: lane equivalence, divergence isolation, shared minibatches,
batched evaluation."""

import jax
import jax.extend
import numpy as np
import pytest

import vmaptune as vt
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.lanes.train import eval_batches
from vmaptune.models.optimizers import BUILTIN

# Lane i of a vmapped population against the same config trained alone: XLA may
# order a batched matmul's sums differently, so parameters agree to float32
# rounding grown over a few dozen steps, not bit for bit.
PARAM_ATOL = 1e-4


@pytest.fixture(scope="module")
def population():
  x, y = _digits_subset()
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  return Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], data, epochs=2,
                       batch_size=32, eval_batch_size=50)


def _digits_subset():
  from sklearn.datasets import load_digits
  raw = load_digits()
  return (raw.images[:600, :, :, None] / 16.0).astype(np.float32), raw.target[:600]


def _hparams(learning_rates, weight_decay=1e-4):
  lr = np.asarray(learning_rates, np.float32)
  return {"learning_rate": lr, "weight_decay": np.full_like(lr, weight_decay)}


def test_each_lane_equals_its_config_trained_alone(population):
  hparams = _hparams([3e-3, 1e-2, 3e-2, 1e-1])
  keys = round_keys(seed=0, round_index=0)
  out = population.train(hparams, *keys)
  scores = population.evaluate(out.params)
  for lane in range(4):
    alone = population.alone.fit({k: v[lane] for k, v in hparams.items()}, *keys)
    lane_params = jax.tree.map(lambda p, lane=lane: p[lane], out.params)
    for got, want in zip(jax.tree.leaves(lane_params), jax.tree.leaves(alone.params), strict=True):
      np.testing.assert_allclose(got, want, atol=PARAM_ATOL, rtol=0)
    np.testing.assert_allclose(out.epoch_loss[lane], alone.epoch_loss, rtol=1e-4)
    score = population.alone.evaluate(alone.params)
    # Equal accuracy: at most one of the 120 validation examples may flip.
    assert abs(float(scores["accuracy"][lane]) - float(score["accuracy"])) <= 1 / 120
    np.testing.assert_allclose(scores["loss"][lane], score["loss"], rtol=1e-3)
  # Training made progress, so the comparison above is not between untrained models.
  assert float(scores["accuracy"].max()) > 0.7


def test_a_diverged_lane_is_marked_and_disturbs_no_other_lane(population):
  keys = round_keys(seed=0, round_index=0)
  sane = population.train(_hparams([1e-2, 3e-2, 1e-1]), *keys)
  mixed = population.train(_hparams([1e-2, 3e-2, 1e6]), *keys)
  assert mixed.diverged[:3].tolist() == [False, False, True]
  assert not sane.diverged.any()
  # Lanes 0 and 1 are bit-for-bit the same whatever lane 2 does.
  for a, b in zip(jax.tree.leaves(sane.params), jax.tree.leaves(mixed.params), strict=True):
    np.testing.assert_array_equal(a[:2], b[:2])
  assert not np.isfinite(mixed.epoch_loss[2]).all()


def test_the_minibatch_is_gathered_once_and_broadcast_to_all_lanes(population):
  """The gather from the training set must produce [B, ...], not [lanes, B, ...]."""
  advance, args = population.advance_program(_hparams([1e-2] * 5))
  jaxpr = jax.make_jaxpr(advance.__wrapped__)(*args)  # The function inside jit.
  feature_gathers = []

  def visit(jx):
    for eqn in jx.eqns:
      if eqn.primitive.name == "gather" and eqn.invars[0].aval.shape[1:] == (8, 8, 1):
        feature_gathers.append(eqn.outvars[0].aval.shape)
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        visit(sub)

  visit(jaxpr.jaxpr)
  assert feature_gathers, "no gather from the training features found"
  assert all(shape == (32, 8, 8, 1) for shape in feature_gathers), feature_gathers


def test_batched_evaluation_equals_one_pass_over_the_whole_split(population):
  out = population.train(_hparams([1e-2, 1e-1]), *round_keys(0, 1))
  x, y = population._train.x, population._train.y  # 360 examples; 7 batches of 50 + pad.
  split = vt.data.Split(np.asarray(x), np.asarray(y))
  batches = eval_batches(split, 50)
  assert batches.batch.x.shape[:2] == (8, 50) and batches.mask.sum() == 360
  scores = population.evaluate(out.params, jax.device_put(batches))
  apply = jax.jit(population.model.apply)  # One program, not one per operation.
  for lane in range(2):
    params = jax.tree.map(lambda p, lane=lane: p[lane], out.params)
    logits = apply({"params": params}, x)
    accuracy = float((np.argmax(logits, -1) == np.asarray(y)).mean())
    loss = float(vt.objectives.cross_entropy(logits, y).mean())
    assert float(scores["accuracy"][lane]) == pytest.approx(accuracy, abs=1e-6)
    assert float(scores["loss"][lane]) == pytest.approx(loss, rel=1e-5)


def test_same_keys_same_result_new_data_key_new_order(population):
  hparams = _hparams([1e-2, 3e-2])
  init_key, data_key = round_keys(0, 0)
  a = population.train(hparams, init_key, data_key)
  b = population.train(hparams, init_key, data_key)
  c = population.train(hparams, init_key, jax.random.fold_in(data_key, 1))
  np.testing.assert_array_equal(a.epoch_loss, b.epoch_loss)
  assert not np.array_equal(a.epoch_loss, c.epoch_loss)


def test_bfloat16_matmul_precision_reaches_every_dot_of_the_compiled_program():
  x, y = _digits_subset()
  data = vt.data.from_arrays(x, y, num_classes=10)
  texts = {}
  for precision in ("default", "bfloat16"):
    pop = Population(vt.models.MLP(hidden=(16,)), BUILTIN["adamw"], data, epochs=1,
                        batch_size=32, eval_batch_size=50, matmul_precision=precision)
    advance, args = pop.advance_program(_hparams([1e-2, 1e-1]))
    with jax.default_matmul_precision(pop._precision):
      texts[precision] = advance.lower(*args).as_text()
  dots = [line for line in texts["bfloat16"].splitlines() if "dot_general" in line]
  assert dots and all("lhs_precision_type = bf16" in line for line in dots)
  assert "bf16" not in texts["default"]
