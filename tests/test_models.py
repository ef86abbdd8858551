"""The reference models: the causal transformer's shapes, causality and dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vmaptune as vt

MODEL = vt.models.CharTransformer(vocab_size=11, max_length=12, width=16, depth=2, num_heads=2)
# Compiled once per input shape: op by op, every small operation would compile on its own.
logits_of = jax.jit(lambda params, tokens: MODEL.apply({"params": params}, tokens))


@pytest.fixture(scope="module")
def tokens_and_params():
  tokens = jax.random.randint(jax.random.key(0), (3, 12), 0, 11)
  return tokens, jax.jit(MODEL.init)(jax.random.key(1), tokens)["params"]


def test_the_transformer_maps_tokens_to_logits_of_every_position(tokens_and_params):
  tokens, params = tokens_and_params
  logits = logits_of(params, tokens)
  assert logits.shape == (3, 12, 11) and logits.dtype == jnp.float32
  # Shorter sequences use the first position embeddings.
  np.testing.assert_allclose(logits_of(params, tokens[:, :5]), logits[:, :5], atol=1e-5)
  with pytest.raises(ValueError, match="exceed max_length=12"):
    jax.eval_shape(logits_of, params, jnp.zeros((1, 13), jnp.int32))
  with pytest.raises(ValueError, match="not a multiple of num_heads=3"):
    jax.eval_shape(vt.models.CharTransformer(vocab_size=11, width=16, num_heads=3).init,
                   jax.random.key(0), tokens)


def test_a_position_sees_only_the_tokens_up_to_it(tokens_and_params):
  tokens, params = tokens_and_params
  changed = tokens.at[:, 7].set((tokens[:, 7] + 1) % 11)
  before, after = (logits_of(params, t) for t in (tokens, changed))
  np.testing.assert_array_equal(before[:, :7], after[:, :7])
  assert not np.allclose(before[:, 7:], after[:, 7:])


def test_dropout_takes_a_traced_rate_per_lane_and_is_off_without_one(tokens_and_params):
  tokens, params = tokens_and_params
  plain = logits_of(params, tokens)  # No rate: no random numbers asked for.

  def apply(rate, key):
    return MODEL.apply({"params": params}, tokens, dropout_rate=rate, rngs={"dropout": key})

  # One program, a rate per lane; the same key draws the same masks.
  lanes = jax.jit(jax.vmap(apply, in_axes=(0, None)))(jnp.array([0.0, 0.3, 0.3]),
                                                      jax.random.key(2))
  np.testing.assert_allclose(lanes[0], plain, atol=1e-5)
  assert not np.allclose(lanes[1], plain)
  np.testing.assert_array_equal(lanes[1], lanes[2])
