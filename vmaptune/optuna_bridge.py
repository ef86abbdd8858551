"""Optuna bridge: an Optuna sampler picks the configurations, a vmaptune population trains them.

Each *batch* asks the study for ``population`` trials (``study.ask`` with the
space converted by :func:`distributions`), trains them side by side as one
population with the batch's shared keys, scores them on the validation split
in one call, and tells the study each trial's validation accuracy. So any
sampler (TPE, CMA-ES, QMC, random, GP), any storage (an SQLite or other RDB
URL, journal files) and the Optuna dashboard work as usual, while the training
runs at vmaptune's speed: every batch of the same size reuses the same
compiled programs.

How a trial is told:

* trained the full budget: ``COMPLETE`` with its validation accuracy (the
  study must maximise); user attributes ``vmaptune_batch``,
  ``vmaptune_lane``, ``val_loss``, ``train_loss`` (one mean per epoch) and,
  with ``seeds=k``, ``seed_accuracy``;
* diverged (its loss or weights became NaN/inf): ``PRUNED`` by default, which
  Optuna's TPE sampler reads as a bad result and steers away from, or
  ``FAIL`` (``diverged="fail"``; samplers then ignore the trial).

Structural parameters (:class:`~vmaptune.space.Choice`,
``IntUniform(..., structural=True)``) are asked like the others; the batch's
trials are then grouped by their structural values, and each group trains in
its bucket's population (see :mod:`vmaptune.structural`). A sampler decides
how many trials fall in each bucket, so a group's lanes are padded (with
copies of its last trial, ignored) up to the next power of two, at most
``population``: a bucket compiles at most ``log2(population) + 2`` programs
over a whole study, and later batches reuse them.

Lane ``i`` of a batch is its configuration trained alone with the batch's
keys (:meth:`vmaptune.Population.round_keys` of ``(seed, batch)``), so
:meth:`vmaptune.TuneResult.final_fit` retrains the best trial and reads the
test split once. The search itself never reads the test split.

Optuna is an optional dependency: ``pip install 'vmaptune[optuna]'``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

try:
  import optuna
except ImportError as e:  # Optional: say how to get it.
  raise ImportError("vmaptune.optuna_bridge needs Optuna, an optional dependency: "
                    "pip install 'vmaptune[optuna]' (or pip install 'optuna>=3.0')") from e
import flax.linen as nn
import numpy as np
from optuna.distributions import (
  BaseDistribution,
  CategoricalDistribution,
  FloatDistribution,
  IntDistribution,
)
from optuna.trial import TrialState

from vmaptune.compilation import CompileCounter
from vmaptune.data import Dataset
from vmaptune.population import Population
from vmaptune.results import FinalFit, RoundResult, Trial, TuneResult
from vmaptune.space import Choice, Continuous, IntUniform, LogUniform, Space, SpaceError
from vmaptune.strategies import DIVERGED, RandomSearch, RoundContext, TrialLog, rank_trials
from vmaptune.structural import Bucket, ModelSpec, merge_trials
from vmaptune.tuner import Settings, SettingsError, _final_fit, prepare

BATCH_ATTR = "vmaptune_batch"
LANE_ATTR = "vmaptune_lane"

# Settings of vmaptune.tune that mean nothing here: Optuna chooses the configurations.
_NOT_APPLICABLE = ("rounds", "keep", "margin", "strategy")

_DIVERGED_STATES = {"pruned": TrialState.PRUNED, "fail": TrialState.FAIL}

# Values Optuna's storages hold as categorical choices.
_CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def distributions(space: Space) -> dict[str, BaseDistribution]:
  """The Optuna distributions of a vmaptune space.

  ``LogUniform`` and ``Uniform`` become ``FloatDistribution`` (``log=True``
  for the first), ``IntUniform`` an ``IntDistribution`` (with its ``log``),
  ``Choice`` a ``CategoricalDistribution``.

  Raises:
    SpaceError: a ``Choice`` holds values Optuna cannot store (tuples).

  >>> import vmaptune as vt
  >>> distributions(vt.Space(learning_rate=vt.LogUniform(1e-4, 1e-1)))
  {'learning_rate': FloatDistribution(high=0.1, log=True, low=0.0001, step=None)}
  """
  converted = {}
  for name, dist in space.items():
    if isinstance(dist, Continuous):
      converted[name] = FloatDistribution(float(dist.low), float(dist.high),
                                          log=isinstance(dist, LogUniform))
    elif isinstance(dist, IntUniform):
      converted[name] = IntDistribution(int(dist.low), int(dist.high), log=dist.log)
    elif isinstance(dist, Choice):
      odd = [v for v in dist.values if not isinstance(v, _CATEGORICAL_TYPES)]
      if odd:
        raise SpaceError(f"parameter {name!r}: Choice value {odd[0]!r} cannot be an Optuna "
                         "categorical choice (None, bool, int, float or str); name it, e.g. "
                         "'64x64', and map the names in a model function")
      converted[name] = CategoricalDistribution(dist.values)
    else:
      raise SpaceError(f"parameter {name!r}: {type(dist).__name__} has no Optuna counterpart")
  return converted


class BridgeResult(TuneResult):
  """A :class:`vmaptune.TuneResult` whose rounds are the batches of an Optuna study.

  Trial ``i`` of ``rounds[b]`` is the ``i``-th trial batch ``b`` asked for;
  ``numbers[b][i]`` is its Optuna trial number; ``kept`` marks each batch's
  best trial (nothing is narrowed: the sampler adapts itself). ``best`` and
  :meth:`final_fit` work as for :func:`vmaptune.tune` (the best trial
  retrained alone, the test split read once).

  Attributes:
    study: the study, updated in place.
    numbers: ``[batches]`` int arrays ``[population]`` of Optuna trial numbers.
  """

  def __init__(self, study: optuna.Study, numbers: list[np.ndarray], *args: Any):
    super().__init__(*args)
    self.study = study
    self.numbers = numbers

  def optuna_trial(self, trial: Trial) -> optuna.trial.FrozenTrial:
    """The study's record of a vmaptune trial (e.g. ``result.best``)."""
    position = [r.index for r in self.rounds].index(trial.round)
    return self.study.trials[int(self.numbers[position][trial.trial])]


class _Asked(RoundContext):
  """A round context whose ``sample`` returns the configurations Optuna chose,
  so :class:`RandomSearch` trains them (with ``seeds`` too) as it trains its own."""

  def __init__(self, given: dict[str, np.ndarray], **fields: Any):
    super().__init__(**fields)
    self.given = given

  def sample(self, size: int, stream: int = 0) -> dict[str, np.ndarray]:
    assert size == len(next(iter(self.given.values())))
    return self.given


def _lanes(count: int, population: int, structural: bool) -> int:
  """Lanes a bucket's group of ``count`` trials trains on: all of them without
  structure (the batch is one group), else the next power of two, at most
  ``population`` (few shapes, so few compiled programs)."""
  if not structural:
    return count
  return min(population, 1 << max(0, math.ceil(math.log2(count))))


def _take(columns: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
  """Trial columns (as :meth:`TrialLog.arrays` gives them) of trials ``index``."""
  return {key: (None if value is None
                else {k: v[index] for k, v in value.items()} if key == "hparams"
                else value[index])
          for key, value in columns.items()}


def _first_batch(study: optuna.Study) -> int:
  """One past the last batch an earlier call told this study (0 for a new one),
  so a continued study trains its new batches with new keys."""
  told = [t.user_attrs[BATCH_ATTR] for t in study.get_trials(deepcopy=False)
          if BATCH_ATTR in t.user_attrs]
  return max(told, default=-1) + 1


def _check_study(study: Any, diverged: str) -> None:
  if not isinstance(study, optuna.Study):
    raise SettingsError(f"study={study!r}; expected an optuna.Study "
                        "(optuna.create_study(direction='maximize'))")
  if len(study.directions) != 1 or study.direction != optuna.study.StudyDirection.MAXIMIZE:
    directions = [d.name.lower() for d in study.directions]
    raise SettingsError(f"study directions {directions}; expected one direction, 'maximize': "
                        "each trial is told its validation accuracy "
                        "(optuna.create_study(direction='maximize'))")
  if diverged not in _DIVERGED_STATES:
    raise SettingsError(f"diverged={diverged!r}; expected one of {list(_DIVERGED_STATES)}")


def _whole(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise SettingsError(f"{name}={value!r}; expected a whole number >= 1")


def optimize(study: optuna.Study, model: ModelSpec, data: Dataset, space: Space, *,
             batches: int, population: int, diverged: str = "pruned", verbose: bool = False,
             **settings: Any) -> BridgeResult:
  """Runs ``batches`` batches of ``population`` Optuna trials, each batch one population.

  Every input is checked before anything is compiled or asked.

  Args:
    study: a single-objective study with ``direction="maximize"``; its sampler
      chooses every configuration and its storage records the trials. For
      TPE, ``TPESampler(constant_liar=True)`` spreads a batch's trials apart.
    model: as for :func:`vmaptune.tune`: a Linen module, a function of the
      structural values returning one, or a Flax NNX model.
    data: a :class:`vmaptune.data.Dataset`; its test split is not read here.
    space: the hyperparameters to search (see :func:`distributions`).
    batches: batches to run.
    population: trials per batch, trained together.
    diverged: the state a diverged trial is told: ``"pruned"`` or ``"fail"``.
    verbose: print one line per batch.
    **settings: fields of :class:`vmaptune.Settings` that shape training:
      ``epochs``, ``batch_size``, ``seed`` (the batches' initialisation and
      data-order keys; the sampler has its own seed), ``optimizer``,
      ``schedule``, ``seeds``, ``eval_batch_size``, ``matmul_precision``,
      ``max_lanes_per_chunk``, ``memory_budget_bytes``.

  Returns:
    A :class:`BridgeResult`: the batches as rounds, the best trial, a final fit.

  Raises:
    SettingsError, SpaceError, DataError: bad input, before any trial is asked.

  >>> import optuna, vmaptune as vt
  >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
  >>> study = optuna.create_study(direction="maximize",
  ...                             sampler=optuna.samplers.TPESampler(seed=0))
  >>> result = optimize(study, vt.models.MLP(hidden=(16,)), vt.data.digits(),
  ...                   vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)),
  ...                   batches=2, population=4, epochs=1)
  >>> len(study.trials), [t.state.name for t in study.trials][:2]
  (8, ['COMPLETE', 'COMPLETE'])
  """
  _check_study(study, diverged)
  _whole("batches", batches)
  _whole("population", population)
  known = [f.name for f in dataclasses.fields(Settings)
           if f.name not in _NOT_APPLICABLE + ("population",)]
  unknown = sorted(set(settings) - set(known))
  if unknown:
    raise SettingsError(f"unknown settings {unknown}; expected some of {known}")
  settings = Settings(population=population, rounds=batches, **settings)
  if not isinstance(space, Space):
    raise SettingsError(f"space={space!r}; expected a vmaptune.Space")
  asked_as = distributions(space)
  model, buckets, pop_for, _ = prepare(model, data, space, settings)
  traced = space.traced()
  structural = bool(space.structural_names)

  def refit(trial: Trial, schedule: list) -> FinalFit:
    return _final_fit(pop_for(buckets.find(trial.hparams)), data, settings.seed, trial,
                      schedule)

  record = {key: value for key, value in settings.to_dict().items()
            if key not in _NOT_APPLICABLE + ("population", "rounds")}
  record.update(trials_per_batch=population, batches=batches, data=repr(data),
                model=repr(model) if isinstance(model, nn.Module)
                else getattr(model, "__qualname__", repr(model)), study=study.study_name,
                sampler=type(study.sampler).__name__, diverged=diverged)
  rounds: list[RoundResult] = []
  numbers: list[np.ndarray] = []
  start = time.perf_counter()
  first = _first_batch(study)
  for index in range(first, first + batches):
    began = time.perf_counter()
    with CompileCounter() as compiled:
      asked = [study.ask(asked_as) for _ in range(population)]
      trials = _train(asked, index, buckets, pop_for, settings, space, traced, structural)
      _tell(study, asked, trials, index, _DIVERGED_STATES[diverged])
    done = trials["status"] != DIVERGED
    best = rank_trials(trials["val_accuracy"], trials["val_loss"], ~done)[:1]
    result = RoundResult(
        index=index, space=space, strategy=f"optuna({type(study.sampler).__name__})",
        budget=settings.epochs, lanes=population, kept=best, next_space=space,
        wall_s=time.perf_counter() - began, compile_s=compiled.compile_seconds,
        trace_s=compiled.trace_seconds, compiles=compiled.compiles, **trials)
    rounds.append(result)
    numbers.append(np.array([t.number for t in asked]))
    if verbose:
      print(_describe(result, index - first, batches, study), flush=True)
  return BridgeResult(study, numbers, rounds, space, record, time.perf_counter() - start, None,
                      refit)


def _train(asked: list[optuna.Trial], index: int, buckets, pop_for, settings: Settings,
           space: Space, traced: Space, structural: bool) -> dict[str, Any]:
  """Trains one batch of asked trials, grouped by bucket; trial columns ``[T]``
  in the order they were asked (see :meth:`TrialLog.arrays`)."""
  init_key, data_key = Population.round_keys(settings.seed, index)
  groups: dict[tuple, list[int]] = {}
  for position, trial in enumerate(asked):
    groups.setdefault(tuple(trial.params[n] for n in space.structural_names), []).append(position)
  parts: list[tuple[Bucket, dict[str, Any]]] = []
  order: list[int] = []
  for positions in groups.values():
    bucket = buckets.find(asked[positions[0]].params)
    lanes = _lanes(len(positions), settings.population, structural)
    rows = positions + [positions[-1]] * (lanes - len(positions))  # Padding: ignored copies.
    given = {name: np.array([asked[p].params[name] for p in rows], np.float32)
             for name in traced}
    ctx = _Asked(given, pop=pop_for(bucket), space=traced, seed=settings.seed, index=index,
                 lanes=lanes, init_key=init_key, data_key=data_key,
                 rng=np.random.default_rng([settings.seed, index]), bucket=bucket.index,
                 seeds=settings.seeds)
    log = TrialLog(list(traced), settings.epochs)
    RandomSearch().run(ctx, log)
    parts.append((bucket, _take(log.arrays(), np.arange(len(positions)))))
    order += positions
  return _take(merge_trials(parts, space), np.argsort(order))


def _tell(study: optuna.Study, asked: list[optuna.Trial], trials: Mapping[str, Any],
          index: int, diverged_state: TrialState) -> None:
  """Tells the study each trial's result, with vmaptune's figures as user attributes."""
  finite = lambda v: float(v) if math.isfinite(v) else None
  for position, trial in enumerate(asked):
    trial.set_user_attr(BATCH_ATTR, index)
    trial.set_user_attr(LANE_ATTR, int(trials["lane"][position]))
    trial.set_user_attr("val_loss", finite(trials["val_loss"][position]))
    trial.set_user_attr("train_loss", [finite(v) for v in trials["epoch_loss"][position]])
    if trials["seed_accuracy"] is not None:
      trial.set_user_attr("seed_accuracy",
                          [finite(v) for v in trials["seed_accuracy"][position]])
    if trials["status"][position] == DIVERGED:
      study.tell(trial, state=diverged_state)
    else:
      study.tell(trial, float(trials["val_accuracy"][position]))


def _describe(result: RoundResult, number: int, batches: int, study: optuna.Study) -> str:
  compiled = (f", {result.compile_s:.1f}s compiling {result.compiles} programs"
              if result.compiles else "")
  best = (f"batch best {result.best_accuracy:.4f}" if result.completed.any()
          else "no trial finished")
  try:
    overall = f"study best {study.best_value:.4f} (trial {study.best_trial.number})"
  except ValueError:  # No trial of the study has completed.
    overall = "no completed trial in the study"
  return (f"batch {number + 1}/{batches}: {result.lanes} trials in {result.wall_s:.1f}s "
          f"({result.trials_per_s:.1f} trials/s{compiled}); {best}, diverged "
          f"{result.num_diverged}/{result.num_trials}; {overall}")
