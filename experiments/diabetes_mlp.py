"""Regression: an MLP on scikit-learn's diabetes set (442 patients, 10 features), AdamW.

``objective="regression"`` trains on the squared error and ranks lanes by the validation
mean squared error (``val_mse``; ``val_mae`` beside it). ``vt.data.diabetes`` standardises
the features and the target with the training split's statistics only, so predicting the
training mean scores an MSE of about 1; a linear fit reaches about 0.5. The model is
``vt.models.MLP`` with one output (``num_classes=1``: outputs ``[B, 1]`` for targets ``[B]``).
About 15 s on a 2-core CPU, compiling included (validation MSE near 0.5):

    time vmaptune run experiments/diabetes_mlp.py --no-cache
"""

import vmaptune as vt


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="diabetes_mlp",
      model=vt.models.MLP(hidden=(64,), num_classes=1),
      data=lambda: vt.data.diabetes(val_fraction=0.2, test_fraction=0.2, seed=0),
      objective="regression",
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e-1),
                     weight_decay=vt.LogUniform(1e-6, 1e0)),
      optimizer="adamw",
      population=128, rounds=3, epochs=30, batch_size=32,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
