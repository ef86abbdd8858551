"""The embedded default: a 64-128-10 MLP on scikit-learn's 8x8 digits, AdamW.

    vmaptune run experiments/digits_mlp.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp",
      model=vt.models.MLP(hidden=(128,), num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)),
      optimizer="adamw",
      population=256, rounds=4, epochs=20, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
