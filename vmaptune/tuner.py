"""The rounds loop: sample -> train -> evaluate -> rank -> narrow.

Each round runs the chosen strategy (random search, successive halving,
Hyperband or population-based training; see :mod:`vmaptune.strategies`) in
every bucket of structural values (see :mod:`vmaptune.structural`), each
bucket one compiled population. All the round's trials are ranked together
(the epoch they reached, then validation accuracy, then loss; diverged trials
left out), the top ``keep`` fraction of the round's configurations is kept,
and every range narrows to the span of the kept values (in each parameter's
own scale) widened by ``margin``; categories narrow to those kept. The test
split is not touched until :meth:`TuneResult.final_fit`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.errors
import flax.linen as nn
import jax
import numpy as np

from vmaptune import nnx as nnx_models
from vmaptune import optimizers, rundir
from vmaptune import progress as progress_events
from vmaptune.compilation import CompileCounter
from vmaptune.data import Dataset
from vmaptune.distributed import is_first_process
from vmaptune.population import (
  MATMUL_PRECISIONS,
  OutOfMemoryError,
  Population,
  is_out_of_memory,
  replica_keys,
)
from vmaptune.results import FinalFit, RoundResult, Trial, TuneResult
from vmaptune.space import LogUniform, Space
from vmaptune.strategies import RoundContext, TrialLog, keep_and_narrow, parse_strategy
from vmaptune.structural import Bucket, Buckets, ModelSpec, merge_trials


class SettingsError(ValueError):
  """A tuning setting is out of range or of the wrong type."""


class AllDivergedError(RuntimeError):
  """Every lane of a round diverged; ``partial`` holds the rounds before it."""

  def __init__(self, message: str, partial: TuneResult):
    super().__init__(message)
    self.partial = partial


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings of a run (everything but model, data and space).

  Attributes:
    population: lanes per round, P.
    rounds: rounds of sample -> train -> narrow.
    epochs: training epochs per lane per round.
    batch_size: training examples per step, shared by all lanes.
    keep: fraction of the round's configurations (all brackets' for
      Hyperband) the next ranges are narrowed to.
    margin: each narrowed range is widened on both sides by this fraction of
      the current range's width (in the parameter's scale).
    seed: seeds sampling, initialisation and data order.
    eval_batch_size: validation examples per evaluation batch.
    optimizer: ``"adamw"``, ``"sgd"`` or ``factory(hparams) -> optax transform``.
    schedule: step-size schedule over each lane's run: ``"cosine"`` (decay to
      zero), ``"constant"``, or ``"auto"`` (cosine for built-in optimizers,
      constant for user factories, which may bring their own schedule).
    matmul_precision: ``"default"``, ``"bfloat16"`` (bf16 matmul inputs with
      fp32 accumulation: faster on GPU/TPU, no effect on CPU) or
      ``"float32"`` (full fp32 passes, e.g. no TF32 on NVIDIA GPUs).
    strategy: what a round does: ``"random"`` (every lane trains all
      ``epochs``), ``"halving"``, ``"hyperband"``, ``"pbt"``, a name with
      settings such as ``"halving(eta=4, min_epochs=2)"``, or a
      :class:`vmaptune.strategies.Strategy`.
    seeds: initialisation and data-order seeds every configuration trains
      with, side by side in the same population (``population * seeds``
      lanes); configurations are ranked by their mean validation accuracy,
      and records carry each seed's (``strategy="random"`` only).
    max_lanes_per_chunk: at most this many lanes trained together per device;
      a device's lanes run as equal chunks of at most this size, one after
      another inside the same program (default: automatic: cache-sized
      chunks on CPU, and on GPUs/TPUs as few chunks as fit the device's free
      memory by the compiled program's memory analysis).
    memory_budget_bytes: per-device memory a training program may plan to
      use (default: 90% of the free memory the device reports; none on CPU).
  """

  population: int = 256
  rounds: int = 4
  epochs: int = 5
  batch_size: int = 64
  keep: float = 0.2
  margin: float = 0.1
  seed: int = 0
  eval_batch_size: int = 1024
  optimizer: Any = "adamw"
  schedule: str = "auto"
  matmul_precision: str = "default"
  strategy: Any = "random"
  seeds: int = 1
  max_lanes_per_chunk: int | None = None
  memory_budget_bytes: int | None = None

  def check(self, num_train: int, batch_searched: bool = False,
            lanes: int | None = None) -> None:
    """Raises :class:`SettingsError` naming the first bad setting.

    Args:
      num_train: examples in the training split.
      batch_searched: the space searches ``batch_size`` (a structural
        parameter), so this setting is not used and not checked.
      lanes: lanes each bucket trains (default ``population``), which the
        strategy must be able to run with.
    """
    def whole(name: str, minimum: int, maximum: int | None = None, why: str = ""):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SettingsError(f"{name}={value!r}; expected a whole number >= {minimum}{why}")
      if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SettingsError(f"{name}={value!r}; expected a whole number {bound}{why}")

    whole("population", 1)
    whole("rounds", 1)
    whole("epochs", 1)
    if not batch_searched:
      whole("batch_size", 1, num_train, f" (the training split has {num_train} examples)")
    whole("eval_batch_size", 1)
    whole("seed", 0, 2**32 - 1)
    whole("seeds", 1)
    for name in ("max_lanes_per_chunk", "memory_budget_bytes"):
      if getattr(self, name) is not None:
        whole(name, 1, why=" or None (automatic)")
    for name, ok, expected in (
        ("keep", lambda v: 0 < v <= 1, "a fraction in (0, 1]"),
        ("margin", lambda v: 0 <= v <= 1, "a fraction in [0, 1]")):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or \
          not math.isfinite(value) or not ok(value):
        raise SettingsError(f"{name}={value!r}; expected {expected}")
    if self.matmul_precision not in MATMUL_PRECISIONS:
      raise SettingsError(f"matmul_precision={self.matmul_precision!r}; expected one of "
                          f"{list(MATMUL_PRECISIONS)}")
    if self.schedule not in optimizers.SCHEDULES:
      raise SettingsError(f"schedule={self.schedule!r}; expected one of "
                          f"{list(optimizers.SCHEDULES)}")
    try:
      parse_strategy(self.strategy).check(self.epochs, lanes or self.population)
    except ValueError as e:
      share = (f" (each combination of structural values gets {lanes} "
               f"lane{'s' if lanes > 1 else ''})"
               if lanes and lanes != self.population else "")
      raise SettingsError(f"{e}{share}") from None
    if self.seeds > 1 and parse_strategy(self.strategy).name != "random":
      raise SettingsError(f"seeds={self.seeds} needs strategy='random'; strategies that stop "
                          "or copy lanes compare single runs, not configurations over seeds")

  def to_dict(self) -> dict[str, Any]:
    values = dataclasses.asdict(self)
    values["optimizer"] = optimizers.describe(self.optimizer)
    values["strategy"] = parse_strategy(self.strategy).describe()
    return values


def _takes_dropout_rate(model: nn.Module) -> bool:
  """Whether the model's ``__call__`` accepts a ``dropout_rate`` keyword."""
  try:
    params = inspect.signature(model.__call__).parameters
  except (TypeError, ValueError):
    return True  # No signature to read: the traced call below decides.
  return optimizers.DROPOUT_RATE in params or any(
      p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_model(model: nn.Module, data: Dataset, batch_size: int, *,
                dropout: bool = False) -> Any:
  """Traces (without compiling) the model as training and evaluation will call it.

  Initialises on one example, then applies the parameters to a batch of
  ``batch_size`` examples without random number streams (evaluation, and
  training unless ``dropout``); with ``dropout``, also as training calls it:
  ``apply(..., dropout_rate=<traced scalar>, rngs={"dropout": key})``.

  Args:
    model: the Linen module.
    data: the dataset (feature shape and number of classes).
    batch_size: training examples per step.
    dropout: whether the space searches ``dropout_rate``.

  Returns:
    The shapes of the model's ``params`` (a pytree of ``ShapeDtypeStruct``).

  Raises:
    SettingsError: the model fails on the features, needs random numbers
      where none are given (dropout without ``dropout_rate`` in the space, or
      in evaluation), does not take ``dropout_rate`` although the space searches
      it, has state besides ``params``, or does not output
      ``[batch_size, num_classes]`` logits.
  """
  name = type(model).__name__
  if not isinstance(model, nn.Module):
    raise SettingsError(f"model={model!r} is not a flax.linen Module")
  one = jax.ShapeDtypeStruct((1,) + data.feature_shape, np.float32)
  batch = jax.ShapeDtypeStruct((batch_size,) + data.feature_shape, np.float32)
  key = jax.eval_shape(lambda: jax.random.key(0))  # A key's shape: nothing runs or compiles.
  try:
    variables = jax.eval_shape(model.init, key, one)
  except Exception as e:  # The user's model code: report what it raised.
    raise SettingsError(f"model {name} failed to initialise on one example of shape "
                        f"{one.shape}: {type(e).__name__}: {e}") from e
  extra = sorted(set(variables) - {"params"})
  if extra:
    raise SettingsError(f"model {name} has variable collections {extra} besides 'params'; "
                        "only stateless models (no BatchNorm) are supported")
  how_to = ("a dropout layer that takes the rate as an array, such as "
            "vmaptune.models.Dropout (flax.linen.Dropout needs a Python float), as "
            "vmaptune.models.MLP and CNN do")
  if dropout and not _takes_dropout_rate(model):
    raise SettingsError(f"the space searches 'dropout_rate' but model {name} takes no "
                        "dropout_rate call argument; give its __call__ a dropout_rate "
                        f"keyword and pass it to {how_to}, or remove dropout_rate from "
                        "the space")
  try:
    logits = jax.eval_shape(lambda v, x: model.apply(v, x), variables, batch)
  except flax.errors.InvalidRngError as e:
    if dropout:
      raise SettingsError(f"model {name} asks for random numbers when called without "
                          f"dropout_rate ({e}); evaluation calls it so and must be "
                          "deterministic: let dropout_rate=None turn its randomness off, "
                          f"e.g. with {how_to}") from e
    raise SettingsError(f"model {name} asks for random numbers ({e}); to train with dropout, "
                        "add dropout_rate to the search space and give the model a "
                        f"dropout_rate call argument passed to {how_to}; otherwise make the "
                        "model deterministic") from e
  except Exception as e:
    raise SettingsError(f"model {name} failed on a batch of shape {batch.shape}: "
                        f"{type(e).__name__}: {e}") from e
  _check_logits(name, logits, batch_size, data.num_classes)
  if dropout:
    rate = jax.ShapeDtypeStruct((), np.float32)
    try:
      logits = jax.eval_shape(
          lambda v, x, r, k: model.apply(v, x, dropout_rate=r, rngs={"dropout": k}),
          variables, batch, rate, key)
    except flax.errors.InvalidRngError as e:
      raise SettingsError(f"model {name} asks for random numbers besides the 'dropout' "
                          f"stream in training ({e}); only 'dropout' is provided") from e
    except Exception as e:
      first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise SettingsError(f"model {name} failed on a batch of shape {batch.shape} with a "
                          f"traced dropout_rate ({type(e).__name__}: {first_line}); the rate "
                          f"is one array per lane: pass it to {how_to}") from e
    _check_logits(name, logits, batch_size, data.num_classes)
  return variables["params"]


def _check_logits(name: str, logits: Any, batch_size: int, num_classes: int) -> None:
  if getattr(logits, "shape", None) != (batch_size, num_classes):
    raise SettingsError(f"model {name} outputs shape "
                        f"{getattr(logits, 'shape', type(logits).__name__)} for a batch of "
                        f"{batch_size}; expected logits of shape ({batch_size}, "
                        f"{num_classes}) for the dataset's {num_classes} classes")


def check_optimizer(factory: optimizers.OptimizerFactory, space: Space, params: Any) -> None:
  """Traces ``factory(hparams).init(params)`` (no compilation) with the space's names.

  Raises:
    SettingsError: the factory fails, e.g. it reads a name the space lacks.
  """
  hparams = {name: jax.ShapeDtypeStruct((), np.float32) for name in space}
  try:
    jax.eval_shape(lambda h, p: factory(h).init(p), hparams, params)
  except Exception as e:  # The user's factory: report what it raised.
    raise SettingsError(f"optimizer factory failed with the space's hyperparameters "
                        f"{list(space)}: {type(e).__name__}: {e}") from e


def _divergence_message(result: RoundResult, current: Space, original: Space,
                        done: list[RoundResult], index: int, settings: Settings) -> str:
  ranges = ", ".join(f"{k} {d.describe()}" for k, d in current.items())
  message = (f"no trial trained round {index + 1}/{settings.rounds}'s full budget without "
             f"diverging ({result.num_diverged} of {result.num_trials} trials' training or "
             f"validation loss became NaN/inf); the ranges sampled were: {ranges}.")
  lr = original.get("learning_rate")
  if done:
    best = max((r.trial(r.best_trial) for r in done), key=lambda t: t.val_accuracy)
    message += (f" Earlier rounds trained (best so far: {best.hparams}), so the narrowed "
                "ranges are unstable: try a larger keep or margin, or a lower upper bound.")
  elif isinstance(lr, LogUniform):
    message += (" The learning rate is the usual cause: try a lower range, e.g. "
                f"learning_rate=LogUniform({lr.low / 1e3:.3g}, {lr.high / 1e3:.3g}).")
  else:
    message += " Try lower step sizes or narrower ranges."
  return message


class Prepared(NamedTuple):
  """What :func:`prepare` returns (see there)."""
  model: ModelSpec
  buckets: Buckets
  population: Callable[[Bucket], Population]
  parameters: list[int]


def prepare(model: ModelSpec, data: Dataset, space: Space, settings: Settings) -> Prepared:
  """Checks a run's inputs and builds its buckets, before anything is compiled.

  Shared by :func:`tune` and :mod:`vmaptune.optuna_bridge`. A Flax NNX model
  (a module, or a constructor taking ``rngs``) is wrapped for the trainer
  first (see :mod:`vmaptune.nnx`).

  Returns:
    The model as the buckets use it (NNX wrapped), the buckets (one per
    combination of structural values), and ``population(bucket)``, which
    builds a bucket's :class:`Population` on first use and returns the same
    one (and its compiled programs) after; and each bucket's parameter count,
    in bucket order, from the shapes the check traced.

  Raises:
    SettingsError, SpaceError, DataError: bad input.
  """
  if not isinstance(data, Dataset):
    raise SettingsError(f"data={type(data).__name__}; expected a vmaptune.data.Dataset "
                        "(see vmaptune.data.from_arrays)")
  if not isinstance(space, Space):
    raise SettingsError(f"space={space!r}; expected a vmaptune.Space")
  try:
    model = nnx_models.model_spec(model)
  except ValueError as e:
    raise SettingsError(str(e)) from None
  num_train = len(data.train)
  batch_searched = "batch_size" in space.structural_names
  settings.check(num_train, batch_searched)
  traced = space.traced()
  try:
    buckets = Buckets(model, space, population=settings.population,
                      batch_size=settings.batch_size, num_train=num_train)
    factory = optimizers.resolve(settings.optimizer, tuple(traced))
    optimizers.check_ranges(traced, factory)
  except ValueError as e:
    raise SettingsError(str(e)) from None
  if len(buckets) > 1:
    settings.check(num_train, batch_searched, lanes=buckets.min_lanes())

  def bucket_factory(bucket: Bucket) -> optimizers.OptimizerFactory:
    steps_per_epoch = num_train // bucket.batch_size
    return optimizers.scheduled(factory, settings.schedule, settings.epochs * steps_per_epoch,
                                steps_per_epoch=steps_per_epoch,
                                warmup=optimizers.WARMUP_EPOCHS in traced)

  parameters = []
  for bucket in buckets:  # Every bucket the run may train, before compiling any.
    try:
      params = check_model(bucket.model, data, bucket.batch_size,
                           dropout=optimizers.DROPOUT_RATE in traced)
      check_optimizer(bucket_factory(bucket), traced, params)
    except SettingsError as e:
      if not bucket.values:
        raise
      raise SettingsError(f"with {bucket.describe()}: {e}") from e
    parameters.append(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))

  def population(bucket: Bucket) -> Population:
    return buckets.population_for(bucket, lambda b: Population(
        b.model, bucket_factory(b), data, epochs=settings.epochs, batch_size=b.batch_size,
        eval_batch_size=settings.eval_batch_size, matmul_precision=settings.matmul_precision,
        lanes_per_group=settings.max_lanes_per_chunk,
        memory_budget_bytes=settings.memory_budget_bytes))

  return Prepared(model, buckets, population, parameters)


def tune(model: ModelSpec, data: Dataset, space: Space, *, out: str | None = None,
         verbose: bool = False, on_round: Callable[[RoundResult], None] | None = None,
         resume: bool = True, copy_files: Mapping[str, str] | None = None,
         progress: Any = None, **settings: Any) -> TuneResult:
  """Tunes ``model`` on ``data`` over ``space`` in rounds of ``population`` lanes.

  Every input is checked before anything is compiled. Records are written to
  ``out`` (if given) after every round, so an error in a later round loses
  nothing already computed; running the same call again continues after the
  last completed round (see :mod:`vmaptune.rundir`).

  Args:
    model: a Linen module mapping ``[B, ...]`` features to ``[B, C]`` logits.
      Structural parameters of ``space`` (other than ``batch_size``) set its
      fields; or pass a function ``model(**structural_values) -> nn.Module``.
      Flax NNX models work too: a constructor ``f(rngs, **structural_values)``
      (or an ``nnx.Module`` class) builds each round's initial weights from
      ``rngs``; an ``nnx.Module`` instance's weights are every lane's starting
      weights (see :mod:`vmaptune.nnx`).
    data: a :class:`vmaptune.data.Dataset`; its test split is not read here.
    space: the hyperparameters to search, one value per lane: the names
      ``optimizer`` takes (built-in ``"adamw"``: ``learning_rate``,
      ``weight_decay``, ``b1``, ``b2``, ``eps``; ``"sgd"``: ``learning_rate``,
      ``momentum``, ``weight_decay``), and any of the trainer's
      ``dropout_rate`` (the model must take a ``dropout_rate`` call argument,
      see :class:`vmaptune.models.Dropout`), ``label_smoothing`` and
      ``warmup_epochs`` (see :data:`vmaptune.optimizers.TRAINER_HPARAMS`).
      Structural parameters (:class:`vmaptune.Choice`,
      ``IntUniform(..., structural=True)``) split each round's lanes equally
      over their combinations, one compiled population each.
    out: run directory for ``config.json``, ``trials.jsonl``, ``summary.json``
      and, after the final fit, ``best_params.msgpack`` (written by process 0
      only when the run spans several processes).
    verbose: print a summary of each round (on process 0 of a multi-process run).
    on_round: called with each :class:`RoundResult` as it completes (not
      with the rounds a resumed run restores).
    resume: when ``out`` holds a run of the same config, continue it after its
      last completed round, with the records and choice an uninterrupted run
      would give (a finished run returns at once, its saved final fit
      included); ``False`` refuses any existing run. A run of a different
      config is always refused, naming what differs, and left untouched.
    copy_files: ``{name: source path}`` copied into a new run directory
      (``vmaptune run`` copies the config file).
    progress: report progress during rounds: ``"bar"`` (a live line on
      standard output), ``"json"`` (one JSON object per event), a function
      of one event dict, or a :class:`vmaptune.progress.Progress`; ``None``
      (default) reports nothing and leaves training uncut (see
      :mod:`vmaptune.progress`).
    **settings: any field of :class:`Settings`: ``population`` (256),
      ``rounds`` (4), ``epochs`` (5), ``batch_size`` (64; unused when the space
      searches it), ``keep`` (0.2), ``margin`` (0.1), ``seed`` (0),
      ``optimizer`` ("adamw"), ``schedule`` ("auto"), ``eval_batch_size``
      (1024), ``matmul_precision`` ("default"), ``strategy`` ("random"),
      ``max_lanes_per_chunk`` and ``memory_budget_bytes`` (None: automatic).

  Returns:
    A :class:`TuneResult`; call ``final_fit()`` on it for the test accuracy.

  Raises:
    SettingsError, SpaceError, DataError: bad input, before any compilation.
    AllDivergedError: every lane of a round diverged.

  >>> import vmaptune as vt
  >>> space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  >>> result = vt.tune(vt.models.MLP(hidden=(16,)), vt.data.digits(), space,
  ...                  population=8, rounds=2, epochs=1)
  >>> [r.population for r in result.rounds]
  [8, 8]
  """
  known = [f.name for f in dataclasses.fields(Settings)]
  unknown = sorted(set(settings) - set(known))
  if unknown:
    raise SettingsError(f"unknown settings {unknown}; expected some of {known}")
  settings = Settings(**settings)
  try:
    sink = progress_events.resolve(progress)
  except ValueError as e:
    raise SettingsError(str(e)) from None
  model, buckets, population, parameters = prepare(model, data, space, settings)
  described = {**settings.to_dict(),
               **({"batch_size": None} if buckets.searched_batch_size else {})}
  model_name = (repr(model) if isinstance(model, nn.Module)
                else getattr(model, "__qualname__", repr(model)))
  run_dir, restored = (None, None) if out is None else rundir.open_run(
      out, rundir.snapshot(described, space, model_name, parameters, data), resume=resume,
      copy_files=copy_files)
  record = {**described, "data": repr(data), "model": model_name,
            "devices": [str(d) for d in jax.devices()], "processes": jax.process_count()}
  callbacks = [on_round] if on_round else []
  if verbose and is_first_process():  # Several processes: process 0 speaks for all.
    callbacks.insert(0, lambda r: print(r.describe(settings.rounds), flush=True))

  def refit(trial: Trial, schedule: list) -> FinalFit:
    return _final_fit(population(buckets.find(trial.hparams)), data, settings.seed, trial,
                      schedule)

  done: list[RoundResult] = []
  final = None
  start = time.perf_counter()
  if restored is not None:  # Resuming: the rounds already completed, as they ran.
    done = rundir.restore_rounds(restored, space, settings)
    final = rundir.restore_final_fit(restored, done, buckets)
    start -= restored.summary.get("wall_s", 0.0)
    if verbose and is_first_process():
      print(f"resuming {out}: {len(done)} of {settings.rounds} rounds restored from its "
            "records", flush=True)
  tuned = TuneResult(done, space, record, time.perf_counter() - start, out, refit, final)
  tracker = None if sink is None else progress_events.Tracker(
      sink, rounds=settings.rounds, population=settings.population, epochs=settings.epochs,
      seeds=settings.seeds, strategy=record["strategy"], space=space, restored=done)
  if tracker is not None:  # First, so a live line is cleared before a round's summary.
    callbacks.insert(0, tracker.round_end)
  current = done[-1].next_space if done else space
  for index in range(len(done), settings.rounds):
    try:
      result = _run_round_in_memory(buckets, population, settings, current, space, index,
                                    tracker)
    except OutOfMemoryError as e:
      e.partial = TuneResult(done, space, record, time.perf_counter() - start, out, refit)
      if run_dir is not None:
        run_dir.write_summary({**e.partial.summary(), "error": str(e)})
      raise
    if run_dir is not None:
      run_dir.append_round(result)
    if not result.completed.any():
      for callback in callbacks:
        callback(result)
      message = _divergence_message(result, current, space, done, index, settings)
      partial = TuneResult(done, space, record, time.perf_counter() - start, out, refit)
      if run_dir is not None:
        run_dir.write_summary({**partial.summary(), "error": message})
      raise AllDivergedError(message, partial)
    done.append(result)
    tuned = TuneResult(done, space, record, time.perf_counter() - start, out, refit)
    if run_dir is not None:
      run_dir.write_summary(tuned.summary())
    for callback in callbacks:
      callback(result)
    current = result.next_space
  if tracker is not None:
    tracker.run_end(tuned)
  return tuned


def _run_round_in_memory(buckets: Buckets, population: Callable[[Bucket], Population],
                         settings: Settings, current: Space, bounds: Space,
                         index: int, tracker: Any = None) -> RoundResult:
  """Runs a round; if a device runs out of memory, runs it again with lane
  chunks half as large (same keys, so the same results) down to one lane.

  Raises:
    OutOfMemoryError: one lane per chunk does not fit either.
  """
  while True:
    try:
      return _run_round(buckets, population, settings, current, bounds, index, tracker)
    except jax.errors.JaxRuntimeError as e:
      if not is_out_of_memory(e):
        raise
      pops = [population(bucket) for bucket in buckets.for_space(current)]
      if not [pop.shrink_groups() for pop in pops].count(True):
        raise OutOfMemoryError(f"round {index + 1}/{settings.rounds} ran out of device memory "
                               f"with one lane per chunk: {e}") from e
      lanes = max(pop.lanes_per_group or 1 for pop in pops)
      warnings.warn(f"round {index + 1} ran out of device memory; running it again with at "
                    f"most {lanes} lane{'s' if lanes > 1 else ''} per chunk", RuntimeWarning,
                    stacklevel=3)


def _run_round(buckets: Buckets, population: Callable[[Bucket], Population],
               settings: Settings, current: Space, bounds: Space, index: int,
               tracker: Any = None) -> RoundResult:
  """Runs the strategy for one round in every bucket of ``current``, ranks all
  their trials together and narrows the space (categories included)."""
  strategy = parse_strategy(settings.strategy)
  start = time.perf_counter()
  traced = current.traced()
  lanes_each = buckets.lanes_each(current)
  init_key, data_key = Population.round_keys(settings.seed, index)
  parts = []
  round_buckets = buckets.for_space(current)
  if tracker is not None:
    tracker.round_start(index, current, len(round_buckets))
  with CompileCounter() as compiled:
    # Buckets share the round's keys: a configuration's result does not depend
    # on which other buckets the round has.
    for position, bucket in enumerate(round_buckets):
      if tracker is not None:
        tracker.bucket_start(position, bucket.values)
      numbered = [] if bucket.index is None else [bucket.index]
      ctx = RoundContext(pop=population(bucket), space=traced, seed=settings.seed, index=index,
                         lanes=lanes_each, init_key=init_key, data_key=data_key,
                         rng=np.random.default_rng([settings.seed, index, 1 << 20] + numbered),
                         bucket=bucket.index, seeds=settings.seeds, progress=tracker)
      log = TrialLog(list(traced), settings.epochs)
      strategy.run(ctx, log)
      parts.append((bucket, log.arrays()))
  trials = merge_trials(parts, current)
  lanes, kept, next_space = keep_and_narrow(trials, current, bounds, settings.keep,
                                            settings.margin)
  return RoundResult(index=index, space=current, strategy=strategy.describe(),
                     budget=settings.epochs, lanes=lanes, kept=kept, next_space=next_space,
                     wall_s=time.perf_counter() - start, compile_s=compiled.compile_seconds,
                     trace_s=compiled.trace_seconds, compiles=compiled.compiles, **trials)


def _final_fit(pop: Population, data: Dataset, seed: int, trial: Trial,
               schedule: list) -> FinalFit:
  """Retrains ``trial`` alone (its whole lineage) with its round's keys, in
  its bucket's population ``pop``; reads the test split once."""
  keys = pop.round_keys(seed, trial.round)
  if trial.seed_accuracy is not None:  # Trained with several seeds: refit with the first.
    keys = replica_keys(*keys, 0)
  trained = pop.fit_schedule(schedule, *keys)
  val = pop.evaluate_one_lane(trained.params)
  test = data.read_test()
  if len(test):
    scored = pop.evaluate_one_lane(trained.params, pop.put_batches(test.x, test.y))
    test_accuracy, test_loss = float(scored.accuracy), float(scored.loss)
  else:
    test_accuracy = test_loss = math.nan
  return FinalFit(trial=trial, schedule=schedule, val_accuracy=float(val.accuracy),
                  val_loss=float(val.loss), test_accuracy=test_accuracy, test_loss=test_loss,
                  params=trained.params, model=pop.model, batch_size=pop.batch_size)
