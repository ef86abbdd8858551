"""Models and optimizers: reference Flax models, Flax NNX behind the functional
interface, and optimizer factories whose hyperparameters are traced.

- ``reference``: :class:`MLP`, :class:`CNN`, :class:`CharTransformer` and dropout;
- ``nnx``: NNX modules as lanes (see :mod:`vmaptune.models.nnx`);
- ``optimizers``: optimizer factories, schedules, warmup, the trainer's own names.
"""

from vmaptune.models.reference import (
  ACTIVATIONS,
  CNN,
  MLP,
  CausalSelfAttention,
  CharTransformer,
  Dropout,
  PatchConv,
  TransformerBlock,
  dropout,
  dropout_off,
)

__all__ = ["ACTIVATIONS", "CNN", "MLP", "CausalSelfAttention", "CharTransformer", "Dropout",
           "PatchConv", "TransformerBlock", "dropout", "dropout_off"]
