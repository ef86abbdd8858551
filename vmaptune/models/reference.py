"""Small reference Flax Linen models for the shipped experiments.

Any Linen module works with vmaptune if ``module.apply({"params": p}, x)``
maps a batch's inputs to the outputs its objective reads: logits
``[B, num_classes]`` for classification (:class:`MLP`, :class:`CNN`), outputs
shaped like the targets for regression (:class:`MLP` with ``num_classes=1``),
logits ``[B, T, V]`` for a language model (:class:`CharTransformer`).

To search a dropout rate per lane, a model takes it as a call argument,
``module.apply({"params": p}, x, dropout_rate=rate, rngs={"dropout": key})``,
and is deterministic when called without it (evaluation): :class:`Dropout`
is a dropout layer for that, and :class:`MLP`, :class:`CNN` and
:class:`CharTransformer` use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Dropout(nn.Module):
  """Dropout whose rate is a call argument, so it can be a traced per-lane value.

  ``flax.linen.Dropout`` holds its rate as a static attribute and branches on
  it in Python, so one compiled program cannot serve lanes with different
  rates. Here the rate is an array: each unit is kept where a uniform draw
  from the ``"dropout"`` stream is below ``1 - rate``, and kept units are
  scaled by ``1 / (1 - rate)``. A traced rate of 0 keeps every unit
  unchanged; a rate of ``None`` (or a Python 0) is the identity and asks for
  no random numbers, as in evaluation.

  >>> import jax, jax.numpy as jnp
  >>> x = jnp.ones((2, 4))
  >>> Dropout().apply({}, x, None) is x  # No rate: the identity, no random numbers.
  True
  >>> y = Dropout().apply({}, x, jnp.float32(0.5), rngs={"dropout": jax.random.key(0)})
  >>> bool(jnp.all((y == 0) | (y == 2)))  # Dropped, or kept and scaled by 1 / (1 - 0.5).
  True
  """

  @nn.compact
  def __call__(self, x: jax.Array, rate: jax.Array | float | None) -> jax.Array:
    """Drops entries of ``x [...]`` with probability ``rate`` (a scalar)."""
    if dropout_off(rate):
      return x
    return dropout(x, rate, self.make_rng("dropout"))


def dropout_off(rate: jax.Array | float | None) -> bool:
  """Whether ``rate`` turns dropout off statically: ``None`` or a Python 0."""
  return rate is None or (isinstance(rate, (int, float)) and rate == 0)


def dropout(x: jax.Array, rate: jax.Array | float | None, key: jax.Array) -> jax.Array:
  """Dropout as a function, with a rate that may be traced (see :class:`Dropout`).

  Args:
    x: ``[...]``.
    rate: a scalar; ``None`` or a Python 0 returns ``x`` unchanged.
    key: the random key the mask is drawn from.

  Returns:
    ``x`` with each entry zeroed with probability ``rate``, the rest scaled
    by ``1 / (1 - rate)``; same shape and dtype.
  """
  if dropout_off(rate):
    return x
  keep = 1.0 - jnp.asarray(rate, jnp.float32)
  kept = jax.random.uniform(key, x.shape) < keep
  return jnp.where(kept, (x / keep).astype(x.dtype), jnp.zeros_like(x))


# Activation names an MLP accepts (a name, not a function, so that it can be a
# structural hyperparameter: hashable, and recorded as JSON).
ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu,
               "elu": nn.elu, "sigmoid": nn.sigmoid, "leaky_relu": nn.leaky_relu}


class MLP(nn.Module):
  """A multilayer perceptron on flattened inputs (ReLU by default).

  Attributes:
    hidden: widths of the hidden layers, e.g. ``(128,)`` for 64-128-10 on
      digits; an int is one hidden layer of that width.
    num_classes: width of the output layer.
    activation: a name in ``ACTIVATIONS``, e.g. ``"tanh"``.

  Called with ``dropout_rate`` (and a ``"dropout"`` rng), every hidden
  activation goes through :class:`Dropout`.

  >>> import jax, jax.numpy as jnp
  >>> logits, _ = jax.eval_shape(MLP(hidden=(32,), num_classes=10).init_with_output,
  ...                            jax.random.key(0), jnp.zeros((4, 8, 8, 1)))
  >>> logits.shape
  (4, 10)
  """

  hidden: int | Sequence[int] = (128,)
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, dropout_rate: jax.Array | float | None = None) -> jax.Array:
    """Maps ``x [B, ...]`` to logits ``[B, num_classes]``; ``dropout_rate`` is a
    scalar (``None``: deterministic)."""
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"activation={self.activation!r}; expected one of {sorted(ACTIVATIONS)}")
    act = ACTIVATIONS[self.activation]
    x = x.reshape((x.shape[0], -1))
    for width in (self.hidden,) if isinstance(self.hidden, int) else self.hidden:
      x = Dropout()(act(nn.Dense(width)(x)), dropout_rate)
    return nn.Dense(self.num_classes)(x)


class PatchConv(nn.Module):
  """A stride-1 ``SAME`` convolution computed as image patches times a dense kernel.

  Same function class and initialisation (fan-in ``kh * kw * C``) as
  ``nn.Conv``, but lowered to a matmul: under ``vmap`` XLA turns a convolution
  with a per-lane kernel into a grouped convolution, which is about ten times
  slower per lane on CPU, while patches of a shared input are extracted once
  and meet every lane's kernel in one matmul.

  Attributes:
    features: output channels.
    kernel_size: ``(kh, kw)``.
  """

  features: int
  kernel_size: tuple[int, int] = (3, 3)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps ``x [B, H, W, C]`` to ``[B, H, W, features]``."""
    patches = jax.lax.conv_general_dilated_patches(
        x, self.kernel_size, window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))  # [B, H, W, C * kh * kw]
    return nn.Dense(self.features)(patches)


class CNN(nn.Module):
  """Two 3x3 convolutions, average pooling, and a dense head, for small images.

  Attributes:
    channels: output channels of the two convolutions.
    dense: width of the hidden dense layer.
    num_classes: width of the output layer.

  Called with ``dropout_rate`` (and a ``"dropout"`` rng), the pooled features
  and the hidden dense activations go through :class:`Dropout`.
  """

  channels: Sequence[int] = (16, 32)
  dense: int = 64
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, dropout_rate: jax.Array | float | None = None) -> jax.Array:
    """Maps images ``x [B, H, W, C]`` to logits ``[B, num_classes]``;
    ``dropout_rate`` is a scalar (``None``: deterministic)."""
    for width in self.channels:
      x = nn.relu(PatchConv(width, kernel_size=(3, 3))(x))
    x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = Dropout()(x.reshape((x.shape[0], -1)), dropout_rate)
    x = Dropout()(nn.relu(nn.Dense(self.dense)(x)), dropout_rate)
    return nn.Dense(self.num_classes)(x)


class CausalSelfAttention(nn.Module):
  """Multi-head self-attention in which position ``t`` attends to positions ``<= t``.

  Attributes:
    num_heads: heads; they split the input width evenly.
  """

  num_heads: int = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps ``x [B, T, D]`` to ``[B, T, D]``."""
    batch, length, width = x.shape
    if width % self.num_heads:
      raise ValueError(f"width {width} is not a multiple of num_heads={self.num_heads}")
    head = width // self.num_heads
    qkv = nn.Dense(3 * width, use_bias=False)(x).reshape(batch, length, 3, self.num_heads, head)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, D / H] each.
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(head))
    causal = jnp.tril(jnp.ones((length, length), bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    attended = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
    return nn.Dense(width)(attended.reshape(batch, length, width))


class TransformerBlock(nn.Module):
  """A pre-norm transformer block: causal attention, then a GELU MLP, each on a
  LayerNorm of the residual stream and added back through :class:`Dropout`.

  Attributes:
    num_heads: attention heads.
    mlp_ratio: the MLP's hidden width over the model width.
  """

  num_heads: int = 4
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, dropout_rate: jax.Array | float | None = None) -> jax.Array:
    """Maps ``x [B, T, D]`` to ``[B, T, D]``; ``dropout_rate`` a scalar or ``None``."""
    x = x + Dropout()(CausalSelfAttention(self.num_heads)(nn.LayerNorm()(x)), dropout_rate)
    hidden = nn.gelu(nn.Dense(self.mlp_ratio * x.shape[-1])(nn.LayerNorm()(x)))
    return x + Dropout()(nn.Dense(x.shape[-1])(hidden), dropout_rate)


class CharTransformer(nn.Module):
  """A small causal transformer language model over a token vocabulary.

  Token embeddings plus learned position embeddings, ``depth`` pre-norm
  :class:`TransformerBlock` s, a final LayerNorm and a dense head. Position
  ``t``'s logits depend only on tokens ``0..t``, so with the
  ``language_model`` objective it predicts every next token of a sequence at once.

  Attributes:
    vocab_size: tokens ``[0, vocab_size)``, and the logits' last axis.
    max_length: the longest input it takes (position embeddings).
    width: the model width ``D``.
    depth: transformer blocks.
    num_heads: attention heads per block (dividing ``width``).
    mlp_ratio: the MLPs' hidden width over ``width``.

  Called with ``dropout_rate`` (and a ``"dropout"`` rng), the embeddings and
  every block's attention and MLP outputs go through :class:`Dropout`.

  >>> import jax, jax.numpy as jnp
  >>> model = CharTransformer(vocab_size=30, max_length=16, width=32, depth=1)
  >>> logits, _ = jax.eval_shape(model.init_with_output, jax.random.key(0),
  ...                            jnp.zeros((4, 16), jnp.int32))
  >>> logits.shape
  (4, 16, 30)
  """

  vocab_size: int
  max_length: int = 64
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, tokens: jax.Array,
               dropout_rate: jax.Array | float | None = None) -> jax.Array:
    """Maps int tokens ``[B, T]`` (``T <= max_length``) to logits ``[B, T, vocab_size]``;
    ``dropout_rate`` is a scalar (``None``: deterministic)."""
    length = tokens.shape[1]
    if length > self.max_length:
      raise ValueError(f"sequences of {length} tokens exceed max_length={self.max_length}")
    positions = self.param("positions", nn.initializers.normal(0.02),
                           (self.max_length, self.width))
    x = nn.Embed(self.vocab_size, self.width)(tokens) + positions[:length]
    x = Dropout()(x, dropout_rate)
    for _ in range(self.depth):
      x = TransformerBlock(self.num_heads, self.mlp_ratio)(x, dropout_rate)
    return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))
