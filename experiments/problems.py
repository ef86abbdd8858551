"""Tuning problems the benchmark scripts share: a model, a dataset per seed, a search
space and the run's settings.

``bench_strategies.py`` runs :data:`STRATEGY_PROBLEMS` as they are;
``bench_search.py`` and ``bench_budget.py`` run :data:`SEARCH_PROBLEMS`: the same
models and data with wide spaces and smaller settings (:meth:`Problem.but`). A
dataset is built from the seed, so the train/validation/test split varies with it
(and a teacher task's teacher too). :class:`OneLane` and :func:`tpe_search` are
the outside baseline both search benchmarks race: Optuna's TPE over vmaptune's
one-lane compiled trainer.

    from problems import DIGITS_MLP
    result = vt.tune(DIGITS_MLP.model, DIGITS_MLP.data(0), DIGITS_MLP.space,
                     **DIGITS_MLP.settings)
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import vmaptune as vt
from vmaptune.lanes.keys import round_keys
from vmaptune.search.engine import Engine
from vmaptune.search.settings import Settings

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

# The search benchmarks' tasks (bench_search.py, bench_budget.py).
# Learning rate and weight decay over wide ranges: the search has to find the good region.
WIDE = dict(learning_rate=vt.LogUniform(1e-5, 1e0), weight_decay=vt.LogUniform(1e-8, 1e-1))
SIX = vt.Space(**WIDE, b1=vt.Uniform(0.5, 0.99), b2=vt.Uniform(0.9, 0.9999),
               label_smoothing=vt.Uniform(0.0, 0.3), dropout_rate=vt.Uniform(0.0, 0.5))


def small_noisy_teacher(seed: int) -> vt.Dataset:
  """2000 training examples from a random teacher network, 20% of labels noise: an MLP
  overfits it unless dropout, smoothing and decay hold it back. Validation and test splits
  of 1000 examples each, so that one example moves a score by 0.1 points."""
  return vt.data.teacher(n=2000, features=32, hidden=32, label_noise=0.2, val_fraction=0.25,
                         test_fraction=0.25, seed=seed)


SEARCH_PROBLEMS = {p.name: p for p in (
    DIGITS_MLP.but(settings=dict(population=64, rounds=3, epochs=8, batch_size=64),
                   space=vt.Space(**WIDE)),
    # Half the widths of the strategy benchmark's CNN (half its time on CPU), to fit the budget.
    DIGITS_CNN.but(model=vt.models.CNN(channels=(8, 16), dense=32),
                   settings=dict(population=12, rounds=3, epochs=3, batch_size=64),
                   space=vt.Space(**WIDE)),
    TEACHER_MLP.but(settings=dict(population=64, rounds=3, epochs=4, batch_size=128),
                    space=vt.Space(**WIDE)),
    Problem("teacher_6p", vt.models.MLP(hidden=(64, 64)), small_noisy_teacher,
            dict(population=64, rounds=3, epochs=5, batch_size=64), SIX),
)}

SUPPORTS_CONFIRM = "confirm" in {f.name for f in dataclasses.fields(Settings)}
RETRAIN_ROUND = 10_000  # OneLane's retrain s uses the keys of round RETRAIN_ROUND + s.


class OneLane:
  """The task's configurations trained one at a time: vmaptune's own one-lane trainer
  (compiled once), as the final fit uses it."""

  def __init__(self, problem: Problem, data: vt.Dataset, seed: int):
    settings = {**problem.settings, "population": 1, "rounds": 1, "seed": seed,
                "sampler": "narrow", "strategy": "random"}
    if SUPPORTS_CONFIRM:
      settings["confirm"] = "off"
    self.engine = Engine(problem.model, data, problem.space, Settings.from_kwargs(settings))
    self.pop = self.engine.population(self.engine.buckets.find({}))
    self.alone = self.pop.alone
    self.epochs = problem.settings["epochs"]

  def train(self, schedule: list | dict, round_index: int) -> tuple[Any, float, bool]:
    """Trains a configuration (or a lineage schedule) with round ``round_index``'s keys.

    Returns:
      ``(params, validation accuracy, diverged)``.
    """
    if isinstance(schedule, dict):
      schedule = [(0, self.epochs, schedule)]
    trained = self.alone.fit_schedule(schedule, *round_keys(self.engine.settings.seed,
                                                            round_index))
    accuracy = float(self.alone.evaluate(trained.params)["accuracy"])
    diverged = bool(np.asarray(trained.diverged)) or not math.isfinite(accuracy)
    return trained.params, accuracy, diverged

  def retrained_accuracy(self, schedule: list | dict, seeds: int) -> float:
    """Mean validation accuracy over ``seeds`` fresh seeds (0 where one diverged): seed
    ``s`` trains with the keys of round ``RETRAIN_ROUND + s``, which no search reaches."""
    scores = []
    for s in range(seeds):
      _, accuracy, diverged = self.train(schedule, RETRAIN_ROUND + s)
      scores.append(0.0 if diverged else accuracy)
    return float(np.mean(scores))

  def test_accuracy(self, params: Any, data: vt.Dataset) -> float:
    """Reads the test split (once) and scores ``params`` on it, as the final fit does."""
    test = data.read_test()
    return float(self.alone.evaluate(params, self.pop.put_batches(test))["accuracy"])

@dataclasses.dataclass
class TPEOutcome:
  """What :func:`tpe_search` found.

  Attributes:
    best: ``(validation accuracy, hparams, params, trial index)`` of the best
      trial that did not diverge (``None``: every one diverged).
    times: seconds of each trial, Optuna's proposal included (the first compiled).
  """
  best: tuple[float, dict[str, float], Any, int] | None
  times: list[float]


def recent_pace(times: list[float]) -> float:
  """Seconds a trial takes now: the median of the last 5 after the first (which
  compiled); 0 before a second trial."""
  return statistics.median(times[1:][-5:]) if len(times) > 1 else 0.0


def tpe_search(lane: OneLane, space: vt.Space, seed: int,
               stop: Callable[[list[float]], bool]) -> TPEOutcome:
  """Optuna's ``TPESampler(seed=seed)`` proposing configurations of ``space`` that
  ``lane`` trains one at a time (trial ``n`` with round ``n``'s keys), until
  ``stop(times)`` (asked before every trial but the first) says to stop. A trial
  that diverged is told to Optuna as pruned, as vmaptune's Optuna sampler tells it."""
  import optuna

  from vmaptune.samplers.optuna import distributions

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(direction="maximize",
                              sampler=optuna.samplers.TPESampler(seed=seed))
  asked = distributions(space)
  outcome = TPEOutcome(None, [])
  while not (outcome.times and stop(outcome.times)):
    began = time.perf_counter()
    n = len(outcome.times)
    trial = study.ask(asked)
    hparams = {k: float(v) for k, v in trial.params.items()}
    params, accuracy, diverged = lane.train(hparams, n)
    if diverged:
      study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
      study.tell(trial, accuracy)
      if outcome.best is None or accuracy > outcome.best[0]:
        outcome.best = (accuracy, hparams, params, n)
    outcome.times.append(time.perf_counter() - began)
  return outcome
