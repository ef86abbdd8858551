"""A Flax NNX model: the digits MLP written as an ``nnx.Module``, tuned like a Linen one.

vmaptune builds one copy of the module per lane under the lane's key (``nnx.Rngs``) and
trains its ``nnx.Param`` state functionally (``nnx.split`` / ``nnx.merge``), so lanes still
share one compiled program. The searched ``dropout_rate`` reaches the model as a traced
per-lane value through ``vt.models.nnx.dropout``; the hidden width is a structural parameter
(a constructor argument), one compiled population per width.

    vmaptune run experiments/digits_nnx.py
"""

import jax
from flax import nnx

import vmaptune as vt


class MLP(nnx.Module):
  """64 -> hidden -> 10, ReLU, dropout after the hidden layer."""

  def __init__(self, hidden: int = 128, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 10, rngs=rngs)

  def __call__(self, x: jax.Array, dropout_rate=None, rngs=None) -> jax.Array:
    """``x [B, 8, 8, 1]`` -> logits ``[B, 10]``."""
    x = jax.nn.relu(self.hidden(x.reshape((x.shape[0], -1))))
    return self.out(vt.models.nnx.dropout(x, dropout_rate, rngs))


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_nnx",
      model=lambda rngs, hidden: MLP(hidden, rngs=rngs),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1),
                     dropout_rate=vt.Uniform(0.0, 0.5),
                     hidden=vt.Choice([64, 128])),
      optimizer="adamw",
      population=128, rounds=3, epochs=10, batch_size=64, sampler="narrow(keep=0.2, margin=0.1)",
      seed=0, schedule="cosine",
  )
