"""The engine checks every input (settings, space, data, model, optimizer) before
anything compiles, and names what is wrong."""

import flax.linen as nn
import numpy as np
import optax
import pytest

import vmaptune as vt


class _BatchNormMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.BatchNorm(use_running_average=False)(x.reshape((x.shape[0], -1)))
    return nn.Dense(10)(x)


class _DropoutMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.Dropout(0.5, deterministic=False)(x.reshape((x.shape[0], -1)))
    return nn.Dense(10)(x)


class _OneExampleOnly(nn.Module):
  """Works for one example, breaks on a batch: a shape bug the check must catch."""
  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(x.reshape((1, -1)))


def _reads_a_missing_name(hparams):
  return optax.sgd(hparams["learning_rate"])


@pytest.mark.parametrize("change, message", [
    ({"population": 0}, r"population=0; expected a whole number >= 1"),
    ({"population": 2.5}, r"population=2.5; expected a whole number"),
    ({"sampler": "narrow(keep=0.0)"}, r"keep=0.0; expected a fraction in \(0, 1\]"),
    ({"sampler": "narrow(keep=1.5)"}, r"keep=1.5; expected a fraction in \(0, 1\]"),
    ({"rounds": 0}, r"rounds=0; expected a whole number >= 1"),
    ({"epochs": 0}, r"epochs=0; expected a whole number >= 1"),
    ({"batch_size": 361}, r"batch_size=361; expected a whole number in \[1, 360\] "
                          r"\(the training split has 360 examples\)"),
    ({"sampler": "narrow(margin=-0.1)"}, r"margin=-0.1; expected a fraction in \[0, 1\]"),
    ({"keep": 0.5}, r"unknown settings \['keep'\]"),
    ({"populaton": 8}, r"unknown settings \['populaton'\]"),
    ({"optimizer": "adam"}, r"optimizer='adam' is unknown"),
    ({"schedule": "linear"}, r"schedule='linear'; expected one of"),
    ({"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0),
                        dropout=vt.Uniform(0.0, 0.5))}, r"\['dropout'\] are read by nothing"),
    ({"space": vt.Space(weight_decay=vt.LogUniform(1e-6, 1e-2))},
     r"needs \['learning_rate'\] in the search space"),
    ({"model": vt.models.MLP(hidden=(8,), num_classes=5)},
     r"outputs shape \(32, 5\).*expected logits of shape \(32, 10\)"),
    ({"model": _BatchNormMLP()}, r"variable collections \['batch_stats'\]"),
    ({"model": _DropoutMLP()}, r"asks for random numbers.*dropout"),
    ({"model": _OneExampleOnly()}, r"failed on a batch of shape \(32, 8, 8, 1\): ScopeParamShape"),
    ({"space": vt.Space(lr=vt.LogUniform(1e-3, 1.0)), "optimizer": _reads_a_missing_name},
     r"optimizer factory failed with the space's hyperparameters \['lr'\]: "
     r"KeyError: 'learning_rate'"),
    ({"seed": 2**40}, r"seed=1099511627776; expected a whole number in \[0, 4294967295\]"),
    ({"data": (np.zeros((10, 4)), np.zeros(10))}, r"expected a vmaptune.data.Dataset"),
])
def test_bad_settings_fail_before_anything_compiles(change, message, small_data, tiny_mlp,
                                                    lr_space, refused_before_compiling):
  args = dict(model=tiny_mlp, data=small_data, space=lr_space, population=4, rounds=1,
              epochs=1, batch_size=32)
  refused_before_compiling(vt.SettingsError, message, **{**args, **change})
