"""Per-lane training hyperparameters: dropout, label smoothing, warmup and Adam's b1, searched
beside the learning rate and weight decay.

All six are traced values of the one compiled program, so every lane trains with its own
dropout rate, smoothing weight, warmup length and moment decay, and narrowing them never
recompiles. ``vt.models.MLP`` takes the rate as a call argument (``vt.models.Dropout``); the
validation and test scores never use dropout or smoothing.

    vmaptune run experiments/digits_mlp_regularized.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp_regularized",
      model=vt.models.MLP(hidden=(128,), num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1),
                     b1=vt.Uniform(0.8, 0.95),
                     dropout_rate=vt.Uniform(0.0, 0.5),
                     label_smoothing=vt.Uniform(0.0, 0.2),
                     warmup_epochs=vt.Uniform(0.0, 3.0)),
      optimizer="adamw",
      population=128, rounds=3, epochs=20, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
