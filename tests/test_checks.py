"""Model and optimizer checks: traced, never compiled, and refused with the reason
named before anything trains."""

import flax.linen as nn
import pytest

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter

BATCH = 32

class _NoRateArgument(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(x.reshape((x.shape[0], -1)))


class _FlaxDropout(nn.Module):
  """Takes dropout_rate but hands it to flax's Dropout, which needs a Python float."""
  @nn.compact
  def __call__(self, x, dropout_rate=None):
    x = x.reshape((x.shape[0], -1))
    if dropout_rate is not None:
      x = nn.Dropout(dropout_rate, deterministic=False)(x)
    return nn.Dense(10)(x)


class _AlwaysDrops(nn.Module):
  """Takes dropout_rate, but drops in evaluation too."""
  @nn.compact
  def __call__(self, x, dropout_rate=None):
    x = nn.Dropout(0.5, deterministic=False)(x.reshape((x.shape[0], -1)))
    return nn.Dense(10)(x)


class _StaticDropout(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(nn.Dropout(0.5, deterministic=False)(x.reshape((x.shape[0], -1))))


SPACE = dict(learning_rate=vt.LogUniform(1e-3, 1e-1))


@pytest.mark.parametrize("change, message", [
    ({"space": vt.Space(**SPACE, dropout=vt.Uniform(0.0, 0.5))},
     r"\['dropout'\] are read by nothing: not by optimizer 'adamw', which takes "
     r"\['learning_rate', 'weight_decay', 'b1', 'b2', 'eps'\], nor by the trainer, which takes "
     r"\['dropout_rate', 'warmup_epochs'\], nor by objective 'classification' "
     r"\(did you mean 'dropout' -> 'dropout_rate'\?\)"),
    ({"space": vt.Space(**SPACE, label_smothing=vt.Uniform(0.0, 0.2))},
     r"did you mean 'label_smothing' -> 'label_smoothing'"),
    ({"space": vt.Space(**SPACE, beta1=vt.Uniform(0.5, 0.9))}, r"\['beta1'\] are read by nothing"),
    ({"space": vt.Space(**SPACE, b1=vt.Uniform(0.5, 0.9)), "optimizer": "sgd"},
     r"\['b1'\] are read by nothing: not by optimizer 'sgd'"),
    ({"space": vt.Space(**SPACE, dropout_rate=vt.Uniform(0.0, 0.5)),
      "model": _NoRateArgument()},
     r"the space searches 'dropout_rate' but model _NoRateArgument takes no dropout_rate call "
     r"argument.*vmaptune.models.reference.Dropout"),
    ({"model": _StaticDropout()},
     r"model _StaticDropout asks for random numbers.*add dropout_rate to the search space.*"
     r"otherwise make the model deterministic"),
    ({"space": vt.Space(**SPACE, dropout_rate=vt.Uniform(0.0, 0.5)), "model": _FlaxDropout()},
     r"model _FlaxDropout failed on a batch of shape \(32, 8, 8, 1\) with a traced "
     r"dropout_rate \(TracerBoolConversionError: .*\); the rate is one array per lane: pass "
     r"it to .*vmaptune.models.reference.Dropout \(flax.linen.Dropout needs a Python float\)"),
    ({"space": vt.Space(**SPACE, dropout_rate=vt.Uniform(0.0, 0.5)), "model": _AlwaysDrops()},
     r"asks for random numbers when called without dropout_rate.*must be deterministic"),
    ({"space": vt.Space(**SPACE, dropout_rate=vt.Uniform(0.0, 1.0))},
     r"'dropout_rate': range \[0, 1\] leaves \[0, 1\)"),
    ({"space": vt.Space(**SPACE, label_smoothing=vt.Uniform(0.0, 1.5))},
     r"'label_smoothing': range \[0, 1.5\] leaves \[0, 1\]"),
    ({"space": vt.Space(**SPACE, b2=vt.Uniform(0.9, 1.0))}, r"'b2': range \[0.9, 1\] leaves"),
    ({"space": vt.Space(**SPACE, warmup_epochs=vt.Uniform(-1.0, 2.0))},
     r"'warmup_epochs': range \[-1, 2\] leaves \[0, inf\)"),
])
def test_bad_hyperparameters_and_models_fail_before_anything_compiles(change, message,
                                                                      small_data, tiny_mlp):
  args = dict(model=tiny_mlp, data=small_data, space=vt.Space(**SPACE), population=4, rounds=1,
              epochs=1, batch_size=BATCH)
  args.update(change)
  with CompileCounter() as compiled, pytest.raises(vt.SettingsError, match=message):
    vt.tune(**args)
  assert compiled.compiles == 0
