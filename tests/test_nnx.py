"""Flax NNX models: the same architecture as in Linen gives the same results, lanes
equal their configuration trained alone, structural values are constructor arguments,
and models with state besides parameters are refused before compiling."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.lanes.keys import round_keys
from vmaptune.lanes.population import Population
from vmaptune.models.optimizers import BUILTIN

PARAM_ATOL = 1e-4  # As in test_population: float32 rounding over a few dozen steps.


class NNXMLP(nnx.Module):
  """64 -> hidden -> 10 with ReLU, optionally with a traced dropout rate."""

  def __init__(self, hidden: int = 16, *, rngs: nnx.Rngs, kernels=None):
    inits = ({} if kernels is None else
             [dict(kernel_init=lambda *_, w=w: w, bias_init=lambda *_, b=b: b)
              for w, b in kernels])
    self.hidden = nnx.Linear(64, hidden, rngs=rngs, **(inits[0] if inits else {}))
    self.out = nnx.Linear(hidden, 10, rngs=rngs, **(inits[1] if inits else {}))

  def __call__(self, x, dropout_rate=None, rngs=None):
    h = nnx.relu(self.hidden(x.reshape((x.shape[0], -1))))
    return self.out(vt.models.nnx.dropout(h, dropout_rate, rngs))


class LinenMLP(nn.Module):
  """The same architecture in Linen, starting from given weights."""

  kernels: tuple

  @nn.compact
  def __call__(self, x):
    (w1, b1), (w2, b2) = self.kernels
    dense = lambda w, b: nn.Dense(w.shape[1], kernel_init=lambda *_: w, bias_init=lambda *_: b)
    return dense(w2, b2)(nn.relu(dense(w1, b1)(x.reshape((x.shape[0], -1)))))


def _weights(module: NNXMLP) -> tuple:
  return tuple((np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]))
               for layer in (module.hidden, module.out))


# With the confirmation stage (the default): the Linen and NNX runs confirm the same choice.
RUN = dict(population=6, rounds=2, epochs=2, batch_size=32, seed=0)
# Without it, for the tests of other things (one program less to compile).
UNCONFIRMED = dict(RUN, confirm="off")
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 3e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))


@pytest.fixture(scope="module")
def linen_run(small_arrays):
  """The NNX module the equivalence test starts from, and the Linen run from its weights."""
  start = NNXMLP(rngs=nnx.Rngs(7))
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  return start, vt.tune(LinenMLP(_weights(start)), data, SPACE, **RUN)


@pytest.mark.slow  # Two runs and a Linen one; the fast NNX test is lanes-equal-alone below.
@pytest.mark.parametrize("form", ["instance", "constructor"])
def test_the_same_mlp_in_linen_and_nnx_gives_the_same_records(form, linen_run, small_data):
  start, linen = linen_run
  kernels = _weights(start)  # The Linen model was built from these weights.
  nnx_model = start if form == "instance" else (
      lambda rngs: NNXMLP(rngs=rngs, kernels=kernels))
  with CompileCounter() as compiled:
    ours = vt.tune(nnx_model, small_data, SPACE, **RUN)
  assert ours.rounds[1].compiles == 0 and compiled.compiles > 0
  for a, b in zip(linen.rounds, ours.rounds, strict=True):
    assert a.space == b.space  # Same scores so far, so the same narrowing.
    np.testing.assert_array_equal(a.hparams["learning_rate"], b.hparams["learning_rate"])
    np.testing.assert_allclose(a.epoch_loss, b.epoch_loss, rtol=1e-4)
    np.testing.assert_allclose(a.val_loss, b.val_loss, rtol=1e-4)
    assert np.abs(a.val_accuracy - b.val_accuracy).max() <= 1 / 120
  np.testing.assert_allclose(linen.confirmation.seed_scores, ours.confirmation.seed_scores,
                             atol=1 / 120)
  assert linen.best.trial == ours.best.trial and linen.best.round == ours.best.round
  assert linen.best.val_accuracy > 0.5  # Trained, so the agreement is not between noise.
  final = ours.final_fit()
  assert abs(final.val_accuracy - linen.final_fit().val_accuracy) <= 1 / 120
  trained = final.model.merge(final.params)  # The refit weights as an NNX module again.
  assert isinstance(trained, NNXMLP)
  logits = trained(small_data.val.x)
  assert float((np.argmax(logits, -1) == small_data.val.y).mean()) == pytest.approx(
      final.val_accuracy, abs=1 / 120)
  if form == "instance":  # Wrapping copied the weights; training left the module as it was.
    np.testing.assert_array_equal(_weights(start)[0][0], kernels[0][0])


def test_nnx_lanes_draw_their_weights_from_the_key_and_equal_training_alone(small_data):
  model = vt.models.nnx.NNXModel(NNXMLP)
  pop = Population(model, BUILTIN["adamw"], small_data, epochs=2, batch_size=32,
                      eval_batch_size=60)
  lr = np.array([3e-3, 3e-2, 1e-1], np.float32)
  hparams = {"learning_rate": lr, "weight_decay": np.full_like(lr, 1e-4)}
  keys = round_keys(seed=0, round_index=0)
  first = pop.init(hparams, keys[0]).state.params["nnx"]["hidden"]["kernel"]
  again = pop.init(hparams, keys[0]).state.params["nnx"]["hidden"]["kernel"]
  other = pop.init(hparams, round_keys(0, 1)[0]).state.params["nnx"]["hidden"]["kernel"]
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(first[0], first[2])  # A round's lanes share their start.
  assert not np.allclose(first[0], other[0])  # Another round's key draws other weights.
  out = pop.train(hparams, *keys)
  scores = pop.evaluate(out.params)
  for lane in range(3):
    alone = pop.alone.fit({k: v[lane] for k, v in hparams.items()}, *keys)
    lane_params = jax.tree.map(lambda p, lane=lane: p[lane], out.params)
    for got, want in zip(jax.tree.leaves(lane_params), jax.tree.leaves(alone.params),
                         strict=True):
      np.testing.assert_allclose(got, want, atol=PARAM_ATOL, rtol=0)
    assert abs(float(scores["accuracy"][lane])
               - float(pop.alone.evaluate(alone.params)["accuracy"])) <= 1 / 120
  assert float(scores["accuracy"].max()) > 0.7


@pytest.mark.slow  # A further NNX feature; the fast NNX test is lanes-equal-alone above.
def test_a_searched_dropout_rate_reaches_nnx_models_as_a_traced_value(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 1e-1), dropout_rate=vt.Uniform(0.0, 0.5))
  result = vt.tune(NNXMLP, small_data, space, **UNCONFIRMED)
  assert result.rounds[1].compiles == 0  # New rates, same program.
  # A rate of 0 is the run without dropout; a high rate changes training.
  pop = Population(vt.models.nnx.NNXModel(NNXMLP), BUILTIN["adamw"], small_data, epochs=1,
                      batch_size=32, eval_batch_size=60)
  keys = round_keys(0, 0)
  plain = pop.alone.fit({"learning_rate": 0.03}, *keys)
  zero = pop.alone.fit({"learning_rate": 0.03, "dropout_rate": 0.0}, *keys)
  half = pop.alone.fit({"learning_rate": 0.03, "dropout_rate": 0.5}, *keys)
  np.testing.assert_allclose(zero.epoch_loss, plain.epoch_loss, rtol=1e-6)
  assert not np.allclose(half.epoch_loss, plain.epoch_loss, rtol=1e-3)


@pytest.mark.slow  # A further NNX feature; the fast NNX test is lanes-equal-alone above.
def test_structural_values_are_nnx_constructor_arguments(small_data, refused_before_compiling):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 1e-1), hidden=vt.Choice([8, 24]))
  build = lambda rngs, hidden: NNXMLP(hidden, rngs=rngs)
  result = vt.tune(build, small_data, space, population=4, rounds=1, epochs=1, batch_size=32,
                   confirm="off")
  assert sorted(set(result.rounds[0].hparams["hidden"].tolist())) == [8, 24]
  final = result.final_fit()
  assert final.model.merge(final.params).hidden.kernel.shape == (64, result.best.hparams["hidden"])
  refused_before_compiling(
      vt.SettingsError, r"structural parameters \['depth'\] are neither 'batch_size' nor "
      r"taken by model function .*<lambda> \(it takes hidden\)",
      model=build, data=small_data, space=vt.Space(learning_rate=vt.LogUniform(1e-2, 1e-1),
                                                   depth=vt.Choice([1, 2])))


class WithBatchNorm(nnx.Module):
  def __init__(self, *, rngs):
    self.dense = nnx.Linear(64, 10, rngs=rngs)
    self.norm = nnx.BatchNorm(10, rngs=rngs)

  def __call__(self, x):
    return self.norm(self.dense(x.reshape((x.shape[0], -1))))


class WithDropoutStream(nnx.Module):
  def __init__(self, *, rngs):
    self.dense = nnx.Linear(64, 10, rngs=rngs)
    self.drop = nnx.Dropout(0.1, rngs=rngs)

  def __call__(self, x):
    return self.drop(self.dense(x.reshape((x.shape[0], -1))))


class NoDropoutArgument(nnx.Module):
  def __init__(self, *, rngs):
    self.dense = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    return self.dense(x.reshape((x.shape[0], -1)))


@pytest.mark.parametrize("model, space, message", [
    (WithBatchNorm, SPACE, r"NNX module WithBatchNorm holds state besides nnx.Param "
                           r"\(BatchStat at norm/mean, norm/var\); only stateless"),
    (WithBatchNorm(rngs=nnx.Rngs(0)), SPACE, r"WithBatchNorm holds state besides nnx.Param"),
    (WithDropoutStream, SPACE, r"\(RngCount at drop/rngs/count; RngKey at drop/rngs/key\)"),
    (NoDropoutArgument, vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1),
                                 dropout_rate=vt.Uniform(0.0, 0.5)),
     r"NNX module NoDropoutArgument does not take dropout_rate and rngs call arguments"),
    (lambda rngs: NNXMLP(rngs=nnx.Rngs(0)).hidden.kernel, SPACE,
     r"NNX constructor .*<lambda> returned Param; expected an nnx.Module"),
])
def test_unsupported_nnx_models_are_refused_before_compiling(model, space, message, small_data,
                                                             refused_before_compiling):
  refused_before_compiling(vt.SettingsError, message, model=model, data=small_data, space=space)
