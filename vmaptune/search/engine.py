"""What every round of a run trains with: the checked model, data and settings,
the buckets, and one :class:`~vmaptune.lanes.population.Population` per bucket.

An :class:`Engine` checks everything before anything compiles (settings,
space, data, every bucket's model and optimizer, traced), then builds each
bucket's population on first use and keeps it, so a bucket's compiled
programs serve every round in which it recurs. It also trains the chosen
configuration alone for the final fit, the only read of the test split.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from vmaptune.data import Dataset
from vmaptune.data.dataset import split_length
from vmaptune.errors import SettingsError
from vmaptune.lanes import devices
from vmaptune.lanes.keys import replica_keys, round_keys
from vmaptune.lanes.population import Population
from vmaptune.lanes.train import first_example
from vmaptune.models import optimizers
from vmaptune.search.checks import check_model, check_optimizer, check_training
from vmaptune.search.final_fit import FinalFit
from vmaptune.search.settings import Settings
from vmaptune.space.space import Space
from vmaptune.space.structural import Bucket, Buckets, ModelSpec
from vmaptune.trials.table import Trial


def _model_spec(model: Any) -> ModelSpec:
  """:func:`vmaptune.models.nnx.model_spec` of ``model``, importing Flax NNX (0.5 to 1 s of
  every process) only where ``model`` may be an NNX model: NNX is imported already (an
  ``nnx.Module`` or its class needs it), or ``model`` is a function taking ``rngs``."""
  if "flax.nnx" not in sys.modules and not _takes_rngs(model):
    return model  # No NNX module, class or constructor: unchanged, as model_spec returns it.
  from vmaptune.models import nnx

  return nnx.model_spec(model)


def _takes_rngs(model: Any) -> bool:
  if isinstance(model, (type, nn.Module)) or not callable(model):
    return False
  try:
    return "rngs" in inspect.signature(model).parameters
  except (TypeError, ValueError):
    return False


class Engine:
  """A run's checked inputs and its populations.

  Args:
    model: a Linen module, a function of the structural values returning
      one, or a Flax NNX model (see :func:`vmaptune.tune`).
    data: the dataset; its test split is read only by :meth:`refit`.
    space: the search space.
    settings: the run's settings.

  Attributes:
    model, data, space, settings, sampler, strategy, objective: as checked (an
      NNX model wrapped).
    buckets: every combination of structural values, with its model.
    parameters: each bucket's parameter count, in bucket order.

  Raises:
    SettingsError, SpaceError, DataError: bad input, before anything compiles.
  """

  def __init__(self, model: ModelSpec, data: Dataset, space: Space, settings: Settings):
    # One CPU device per core, before JAX starts; a warning points at tune's caller.
    devices.configure_cpu_devices(stacklevel=4)
    if not isinstance(data, Dataset):
      raise SettingsError(f"data={type(data).__name__}; expected a vmaptune.data.Dataset "
                          "(see vmaptune.data.from_arrays)")
    if not isinstance(space, Space):
      raise SettingsError(f"space={space!r}; expected a vmaptune.Space")
    try:
      model = _model_spec(model)
    except ValueError as e:
      raise SettingsError(str(e)) from None
    self.model, self.data, self.space, self.settings = model, data, space, settings
    num_train = split_length(data.train)
    settings.check(num_train, space)
    self.sampler = settings.parsed_sampler()
    self.strategy = settings.parsed_strategy()
    self.objective = settings.parsed_objective()
    self.objective.check_data(data)
    traced = space.traced()
    try:
      self.buckets = Buckets(model, space, population=settings.population,
                             batch_size=settings.batch_size, num_train=num_train)
      self._factory = optimizers.resolve(settings.optimizer, tuple(traced))
      optimizers.check_ranges(traced, self._factory, self.objective.hparam_ranges)
    except ValueError as e:
      raise SettingsError(str(e)) from None
    fewest = self.sampler.fewest_configurations(space, settings.population)
    if fewest != settings.population:
      settings.check(num_train, space, lanes=fewest)
    self.parameters = []
    read: set[str] = set()
    for bucket in self.buckets:  # Every bucket the run may train, before compiling any.
      try:
        params = check_model(bucket.model, data, bucket.batch_size,
                             dropout=optimizers.DROPOUT_RATE in traced, objective=self.objective)
        optimizer = self._optimizer(bucket)
        check_optimizer(optimizer, traced, params)
        read |= check_training(bucket.model, optimizer, self.objective, data,
                               bucket.batch_size, list(traced))
      except SettingsError as e:
        if not bucket.values:
          raise
        raise SettingsError(f"with {bucket.describe()}: {e}") from e
      self.parameters.append(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))
    unread = [name for name in traced if name not in read]
    if unread:
      known = (list(optimizers.TRAINER_HPARAMS) + list(self.objective.hparam_ranges)
               + (list(self._factory.accepted)
                  if isinstance(self._factory, optimizers.BuiltinOptimizer) else []))
      raise SettingsError(optimizers.unread_message(unread, settings.optimizer,
                                                    self.objective.describe(), known))
    sizes = self.sampler.lane_sizes(space, settings.population)
    # Sizes count configurations; with seeds, every configuration takes `seeds` lanes.
    self._lane_sizes = None if sizes is None else tuple(s * settings.seeds for s in sizes)
    self._populations: dict[tuple, Population] = {}

  @property
  def model_name(self) -> str:
    """The model as records describe it: a module's repr, a function's name."""
    if isinstance(self.model, nn.Module):
      return repr(self.model)
    return getattr(self.model, "__qualname__", repr(self.model))

  def described_settings(self) -> dict[str, Any]:
    """The settings as records hold them (no batch size when the space searches it)."""
    return {**self.settings.to_dict(),
            **({"batch_size": None} if self.buckets.searched_batch_size else {})}

  @property
  def example_inputs(self) -> Any:
    """The model's inputs for one training example (``[1, ...]`` leaves)."""
    return first_example(self.objective, self.data.train)

  def _optimizer(self, bucket: Bucket) -> optimizers.OptimizerFactory:
    steps_per_epoch = split_length(self.data.train) // bucket.batch_size
    return optimizers.scheduled(
        self._factory, self.settings.schedule, self.settings.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        warmup=optimizers.WARMUP_EPOCHS in self.space.traced())

  def population(self, bucket: Bucket) -> Population:
    """The bucket's population, built on first use and the same one after."""
    key = tuple(bucket.values.items())
    if key not in self._populations:
      settings = self.settings
      self._populations[key] = Population(
          bucket.model, self._optimizer(bucket), self.data, epochs=settings.epochs,
          batch_size=bucket.batch_size, eval_batch_size=settings.eval_batch_size,
          objective=self.objective,
          matmul_precision=settings.matmul_precision,
          lanes_per_chunk=settings.max_lanes_per_chunk,
          memory_budget_bytes=settings.memory_budget_bytes, lane_sizes=self._lane_sizes)
    return self._populations[key]

  def round_lanes(self, pop: Population, lanes: int, at_least: int = 1) -> int:
    """Lanes to train ``lanes`` of work in, in programs a round of ``pop`` has
    compiled: one bucket's round layout (``population * seeds`` lanes, padded;
    more work goes in several calls). Structural buckets share a round's lanes,
    so each trains at sizes of its own: the smallest size ``pop`` was built for
    that holds the work, else its largest that holds ``at_least`` lanes (more
    calls); only where none does, ``lanes`` laid out anew (a new program)."""
    whole_round = pop.padded_size(self.settings.population * self.settings.seeds)
    built = [size for size in pop.built_sizes() if size >= at_least]
    if self._lane_sizes is None and (whole_round in built or not built):
      return whole_round
    holding = [size for size in built if size >= lanes]
    if holding:
      return holding[0]
    return built[-1] if built else pop.padded_size(lanes)

  def round_chunks(self) -> int:
    """Lane chunks a round (of the first bucket) trains one after another on a device."""
    pop = self.population(next(iter(self.buckets)))
    return pop.layout(self.settings.population * self.settings.seeds).chunks

  def confirm_calls(self) -> int:
    """Rounds' worth of lanes the confirmation stage trains (0: turned off)."""
    size = self.settings.confirm_size()
    if size is None:
      return 0
    count, seeds = size
    if self.settings.seeds > 1:  # Every seed of a candidate in one call.
      return math.ceil(count * seeds / (self.settings.population * self.settings.seeds))
    return seeds * math.ceil(count / self.settings.population)  # A call per seed.

  def populations(self) -> list[Population]:
    """The populations built so far."""
    return list(self._populations.values())

  def prepare_refit(self, trial: Trial, schedule: list) -> tuple[float, float]:
    """Compiles what :meth:`refit` runs alone for ``trial``'s bucket (scoring on a
    split shaped as the test split included; the test split is not read).

    Returns:
      ``(compile_s, train_s)``: the seconds compiling took, and those the refit's
      training and scoring will take: an epoch of ``trial`` trained and the
      validation split scored, timed, as many times as a refit runs them.
    """
    alone = self.population(self.buckets.find(trial.hparams)).alone
    hparams = schedule[0][2]
    began = time.perf_counter()
    alone.compile(hparams, self.data.test_structure())
    compile_s = time.perf_counter() - began
    began = time.perf_counter()
    trained = alone.fit_schedule([(0, 1, hparams)], *round_keys(self.settings.seed, 0))
    epoch_s = time.perf_counter() - began
    began = time.perf_counter()
    jax.block_until_ready(alone.evaluate(trained.params))
    return compile_s, self.settings.epochs * epoch_s + 2 * (time.perf_counter() - began)

  def refit(self, trial: Trial, schedule: list, in_lanes: bool = False) -> FinalFit:
    """Retrains ``trial`` (its whole lineage ``schedule``) with its round's keys,
    in its bucket; then scores it on validation and reads the test split once.

    Alone (one-lane programs, compiled for it), or with ``in_lanes`` as the
    first lane of a population laid out as a round's (padding fills the rest),
    in the programs the rounds compiled: a round's training instead of a
    compile. Either way it equals the trial's lane within float rounding."""
    bucket = self.buckets.find(trial.hparams)
    fit = self._fit_in_lanes if in_lanes else self._fit_alone
    params, score = fit(self.population(bucket), trial, schedule)
    val = score(None)
    test = self.data.read_test()
    test_metrics = score(test) if split_length(test) else {
        name: math.nan for name in self.objective.scoring.names}
    return FinalFit(trial=trial, schedule=schedule, val=val, test=test_metrics,
                    params=params, model=bucket.model, batch_size=bucket.batch_size,
                    in_lanes=in_lanes)

  def _fit_alone(self, pop: Population, trial: Trial,
                 schedule: list) -> tuple[Any, Callable[[Any], dict[str, float]]]:
    """``trial`` trained by one-lane programs: its parameters (no lane axis), and
    what scores them on a split (``None``: the validation split)."""
    keys = round_keys(self.settings.seed, trial.round)
    if trial.seed_scores is not None:  # Trained with several seeds: refit with the first.
      keys = replica_keys(*keys, 0)
    params = pop.alone.fit_schedule(schedule, *keys).params
    names = self.objective.scoring.names  # In the objective's order, not the pytree's.

    def score(split: Any) -> dict[str, float]:
      scored = pop.alone.evaluate(params, None if split is None else pop.put_batches(split))
      return {name: float(scored[name]) for name in names}

    return params, score

  def _fit_in_lanes(self, pop: Population, trial: Trial,
                    schedule: list) -> tuple[Any, Callable[[Any], dict[str, float]]]:
    """As :meth:`_fit_alone`, in lane 0 of a population laid out as a round's."""
    keys = round_keys(self.settings.seed, trial.round)
    # With seeds the rounds' programs take a seed per lane: the first, as alone.
    trained = pop.train_schedules([schedule], self.round_lanes(pop, 1), *keys,
                                  replicas=1 if self.settings.seeds > 1 else None)
    lanes = trained.state.params
    names = self.objective.scoring.names

    def score(split: Any) -> dict[str, float]:
      scored = pop.evaluate(lanes, None if split is None else pop.put_batches_as_val(split))
      scored = devices.to_host(scored)
      return {name: float(scored[name][0]) for name in names}

    return jax.device_put(devices.first_lane_to_host(lanes)), score
