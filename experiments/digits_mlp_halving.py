"""A strategy: successive halving on the digits MLP gives up on bad settings early.

Each round, all 256 configurations train a first rung of epochs; the best third continue, and
so on to the full 20 epochs (256 lanes to epoch 2, 96 to epoch 7, 32 to epoch 20): about 28% of
the lane-epochs random search spends. Survivors keep their weights and optimizer state.
Other strategies are one setting away: ``--set strategy=hyperband`` or ``strategy=pbt``.

    vmaptune run experiments/digits_mlp_halving.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp_halving",
      model=vt.models.MLP(hidden=(128,), num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)),
      optimizer="adamw",
      population=256, rounds=3, epochs=20, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine", strategy="halving(eta=3)",
  )
