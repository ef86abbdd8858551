"""Models and optimizers: reference Flax models, Flax NNX behind the functional
interface, and optimizer factories whose hyperparameters are traced.

- ``reference``: :class:`MLP`, :class:`CNN`, :class:`CharTransformer` and dropout;
- ``nnx``: NNX modules as lanes (see :mod:`vmaptune.models.nnx`), imported on first
  use (``vt.models.nnx``): Flax NNX takes 0.5 to 1 s to import;
- ``optimizers``: optimizer factories, schedules, warmup, the trainer's own names.
"""

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
  if name == "nnx":  # Imported here on first use; importing it sets the attribute.
    return importlib.import_module("vmaptune.models.nnx")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
