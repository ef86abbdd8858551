"""Seeds as an axis: every configuration trains with 3 initialisation and data-order seeds.

The 64 configurations of a round run as 64 x 3 = 192 lanes of one population; each is ranked
by its mean validation accuracy over the seeds, so a lucky seed cannot win the search. The
records carry each seed's accuracy and their spread (``seed_accuracy``, ``val_accuracy_std``).

    vmaptune run experiments/digits_mlp_seeds.py
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="digits_mlp_seeds",
      model=vt.models.MLP(hidden=(128,), num_classes=10),
      data=lambda: vt.data.digits(val_fraction=0.2, test_fraction=0.2, seed=0),
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)),
      optimizer="adamw",
      population=64, seeds=3, rounds=3, epochs=10, batch_size=64,
      sampler="narrow(keep=0.2, margin=0.1)",
      seed=0, schedule="cosine",
  )
