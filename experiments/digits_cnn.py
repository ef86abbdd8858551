"""A small CNN on the 8x8 digits: two 3x3 convolutions, pooling, a dense head; AdamW.

Convolutions cost far more per lane than the MLP, so the population is smaller.

    vmaptune run experiments/digits_cnn.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_cnn",
      model=vt.models.CNN(channels=(16, 32), dense=64, num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e-1),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)),
      optimizer="adamw",
      population=32, rounds=3, epochs=5, batch_size=64,
      sampler="narrow(keep=0.25, margin=0.1)", seed=0,
      schedule="cosine",
  )
