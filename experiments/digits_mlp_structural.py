"""Structural search on the digits MLP: hidden width and activation are categories,
learning rate and weight decay traced ranges.

Each of the 2 x 2 combinations of width and activation trains as its own compiled
population of ``population / 4`` lanes; a category that no kept trial uses is dropped,
and its lanes go to the survivors in the next round.

    vmaptune run experiments/digits_mlp_structural.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp_structural",
      model=vt.models.MLP(num_classes=10),  # Its `hidden` and `activation` fields are searched.
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1),
                     hidden=vt.Choice([32, 128]),
                     activation=vt.Choice(["relu", "tanh"])),
      optimizer="adamw",
      population=256, rounds=4, epochs=20, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
