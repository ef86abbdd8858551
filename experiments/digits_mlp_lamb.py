"""A custom optimizer factory: LAMB (layer-wise adaptive moments) on the digits MLP.

Any ``factory(hparams) -> optax.GradientTransformation`` can be tuned: it receives one lane's
searched values as traced scalars and hands the numeric ones to
``optax.inject_hyperparams``, so they live in the optimizer state with one value per lane and a
new value never recompiles. Here the factory searches LAMB's learning rate, weight decay and
first-moment decay ``b1``; ``schedule="cosine"`` decays each lane's step size over its run
(factories get a constant schedule by default, as they may bring their own).

    vmaptune run experiments/digits_mlp_lamb.py
"""

from collections.abc import Mapping

import jax
import optax

import vmaptune as vt


def lamb(hparams: Mapping[str, jax.Array]) -> optax.GradientTransformation:
  """LAMB with one lane's ``learning_rate``, ``weight_decay`` and ``b1`` (scalars)."""
  return optax.inject_hyperparams(optax.lamb)(
      learning_rate=hparams["learning_rate"], weight_decay=hparams["weight_decay"],
      b1=hparams["b1"])


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp_lamb",
      model=vt.models.MLP(hidden=(128,), num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-6, 1e-1),
                     b1=vt.Uniform(0.8, 0.95)),
      optimizer=lamb,
      population=128, rounds=3, epochs=10, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
