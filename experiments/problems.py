"""Tuning problems the benchmark scripts share: a model, a dataset per seed, a search
space and the run's settings.

``bench_strategies.py`` runs :data:`STRATEGY_PROBLEMS` as they are;
``bench_search.py`` takes the same models and data with its own spaces and
settings (:meth:`Problem.but`). A dataset is built from the seed, so the
train/validation/test split varies with it.

    from problems import DIGITS_MLP
    result = vt.tune(DIGITS_MLP.model, DIGITS_MLP.data(0), DIGITS_MLP.space,
                     **DIGITS_MLP.settings)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import vmaptune as vt

# The two hyperparameters every optimizer has, over the ranges the strategy benchmark searches.
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0), weight_decay=vt.LogUniform(1e-8, 1e-1))


@dataclasses.dataclass(frozen=True)
class Problem:
  """One tuning problem.

  Attributes:
    name: its name in results and tables.
    model: the Flax module every configuration trains.
    data: ``seed -> Dataset`` (the split varies with the seed).
    settings: ``vt.tune`` settings (population, rounds, epochs, batch size).
    space: the search space.
  """

  name: str
  model: Any
  data: Callable[[int], vt.Dataset]
  settings: dict
  space: vt.Space = dataclasses.field(default_factory=lambda: SPACE)

  def but(self, **changes: Any) -> Problem:
    """This problem with some fields replaced (``settings`` replaces them all)."""
    return dataclasses.replace(self, **changes)


def digits(seed: int) -> vt.Dataset:
  """The 8x8 digits (1797 images), split by ``seed``."""
  return vt.data.digits(seed=seed)


def noisy_teacher(seed: int) -> vt.Dataset:
  """8000 training examples labelled by a random teacher network, 10% of labels noise."""
  return vt.data.teacher(n=8000, features=32, hidden=32, label_noise=0.1, seed=seed)


DIGITS_MLP = Problem("digits_mlp", vt.models.MLP(hidden=(128,)), digits,
                     dict(population=256, rounds=4, epochs=20, batch_size=64))
# 9 epochs: the fewest that leave successive halving (eta 3) two halvings.
DIGITS_CNN = Problem("digits_cnn", vt.models.CNN(), digits,
                     dict(population=32, rounds=3, epochs=9, batch_size=64))
TEACHER_MLP = Problem("teacher_mlp", vt.models.MLP(hidden=(64, 64)), noisy_teacher,
                      dict(population=128, rounds=3, epochs=12, batch_size=128))

# The strategy benchmark's problems, with its settings.
STRATEGY_PROBLEMS = {p.name: p for p in (DIGITS_MLP, DIGITS_CNN, TEACHER_MLP)}
