"""The settings of a run (everything but model, data and space), checked in one place.

>>> settings = Settings(population=8, rounds=2, epochs=1)
>>> settings.to_dict()["sampler"], settings.to_dict()["strategy"]
('narrow(keep=0.2, margin=0.1)', 'random')
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from vmaptune import objectives, samplers, strategies
from vmaptune.errors import SettingsError
from vmaptune.lanes.compilation import MATMUL_PRECISIONS
from vmaptune.models import optimizers
from vmaptune.search.budget import parse_budget
from vmaptune.space.space import Space
from vmaptune.validation import one_of, optional_whole_number, whole_number

# "KxS": whole numbers (ASCII digits; more than 18 is no population's size) either side of x.
_CONFIRM = re.compile(r"\s*(\d{1,18})\s*x\s*(\d{1,18})\s*", re.ASCII | re.IGNORECASE)
DEFAULT_ROUNDS = 4
ROUND_CAP = 100_000  # "As many rounds as fit" still has an end.


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings of a run.

  Attributes:
    population: configurations per round, P (lanes, before seeds and padding).
    rounds: rounds of ask -> train -> evaluate -> tell (default 4; with a
      ``budget``, as many as fit, at most ``rounds`` when given).
    budget: the wall time of the whole call, confirmation and final fit
      included: seconds, or text such as ``"90s"``, ``"10m"``, ``"2h"``
      (see :mod:`vmaptune.search.budget`); ``None``: no budget.
    epochs: the epoch budget: epochs a configuration trains in full.
    batch_size: training examples per step, shared by all lanes.
    seed: seeds sampling, initialisation and data order.
    eval_batch_size: validation examples per evaluation batch.
    optimizer: ``"adamw"``, ``"sgd"`` or ``factory(hparams) -> optax transform``.
    objective: how models are trained and trials scored (see
      :mod:`vmaptune.objectives`): ``"classification"`` (the default),
      ``"regression"``, ``"language_model"``, a name with settings such as
      ``"regression(rank_by='mae')"``, or an :class:`~vmaptune.objectives.Objective`.
    schedule: step-size schedule over each lane's run: ``"cosine"`` (decay to
      zero), ``"constant"``, or ``"auto"`` (cosine for built-in optimizers,
      constant for user factories, which may bring their own schedule).
    matmul_precision: ``"default"``, ``"bfloat16"`` (bf16 matmul inputs with
      fp32 accumulation: faster on GPU/TPU, no effect on CPU) or
      ``"float32"`` (full fp32 passes, e.g. no TF32 on NVIDIA GPUs).
    sampler: which configurations each round tries: ``"narrow"`` (the
      default; ``"narrow(keep=0.2, margin=0.1)"``), ``"optuna"``, or a
      :class:`vmaptune.samplers.Sampler` such as ``Optuna(study)``.
    strategy: how a round trains them: ``"random"`` (every configuration
      trains all ``epochs``), ``"halving"``, ``"hyperband"``, ``"pbt"``, a
      name with settings such as ``"halving(eta=4, min_epochs=2)"``, or a
      :class:`vmaptune.strategies.Strategy`.
    seeds: initialisation and data-order seeds every configuration trains
      with, side by side in the same population (``population * seeds``
      lanes); configurations are ranked by their metrics' means
      (``strategy="random"`` only).
    confirm: the confirmation stage after the last round (see
      :mod:`vmaptune.search.confirmation`): ``"KxS"`` retrains the search's top ``K``
      configurations with ``S`` fresh seeds each and chooses by the mean;
      ``"auto"`` (the default) retrains the top ``population`` configurations
      (a round's lanes) with 2 seeds each (:meth:`confirm_size`); ``"off"``
      keeps the search's best.
    max_lanes_per_chunk: at most this many lanes trained together per device
      (default: automatic: cache-sized chunks on CPU, and on GPUs/TPUs as few
      chunks as fit the device's free memory).
    memory_budget_bytes: per-device memory a training program may plan to
      use (default: 90% of the free memory the device reports; none on CPU).
  """

  population: int = 256
  rounds: int | None = None
  budget: Any = None
  epochs: int = 5
  batch_size: int = 64
  seed: int = 0
  eval_batch_size: int = 1024
  optimizer: Any = "adamw"
  objective: Any = "classification"
  schedule: str = "auto"
  matmul_precision: str = "default"
  sampler: Any = "narrow"
  strategy: Any = "random"
  seeds: int = 1
  confirm: Any = "auto"
  max_lanes_per_chunk: int | None = None
  memory_budget_bytes: int | None = None

  def __post_init__(self):
    if self.rounds is None and self.budget is None:
      object.__setattr__(self, "rounds", DEFAULT_ROUNDS)

  @property
  def round_limit(self) -> int:
    """The most rounds the run may train: ``rounds``, or with a budget and no
    ``rounds`` as many as fit (``ROUND_CAP``)."""
    return ROUND_CAP if self.rounds is None else self.rounds

  def budget_seconds(self) -> float | None:
    """The budget in seconds (``None``: none).

    Raises:
      SettingsError: ``budget`` is not a wall time.
    """
    return parse_budget(self.budget)

  @classmethod
  def from_kwargs(cls, values: Mapping[str, Any], excluded: tuple[str, ...] = (),
                  **fixed: Any) -> Settings:
    """Settings from keyword arguments, refusing names that are not settings (or
    are ``excluded``: set by the caller, ``fixed``)."""
    known = [f.name for f in dataclasses.fields(cls) if f.name not in excluded]
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise SettingsError(f"unknown settings {unknown}; expected some of {known}")
    return cls(**values, **fixed)

  def confirm_size(self) -> tuple[int, int] | None:
    """``(configurations, seeds)`` the confirmation stage trains, or ``None`` (off).

    ``"auto"``: as many configurations as a round has (they fill a round's
    lanes), 2 fresh seeds each. Without ``seeds``, each fresh seed trains in
    calls of a round's lanes, so ``K`` may be at most a round's lanes
    (``population x seeds``), and so may ``S``; with ``seeds``, one call holds
    every seed of its candidates, so ``K x S`` may be at most a round's lanes.

    >>> [Settings(population=p).confirm_size() for p in (256, 64, 8)]
    [(256, 2), (64, 2), (8, 2)]
    >>> Settings(population=8, seeds=2).confirm_size()
    (8, 2)
    >>> Settings(confirm="8x3").confirm_size(), Settings(confirm="off").confirm_size()
    ((8, 3), None)

    Raises:
      SettingsError: ``confirm`` is none of these, or ``K x S`` exceeds a round's lanes.
    """
    value = self.confirm
    if value in ("off", None, False):
      return None
    most = self.population * self.seeds  # The lanes of a round.
    if value == "auto":
      return (self.population, 2) if self.seeds == 1 else (most // 2, 2)
    found = _CONFIRM.fullmatch(value) if isinstance(value, str) else None
    if found is None or min(int(found[1]), int(found[2])) < 1:
      raise SettingsError(f"confirm={value!r}; expected 'auto', 'off', or 'KxS' with whole "
                          "numbers K, S >= 1 (retrain the top K configurations with S seeds "
                          "each), e.g. '16x4'")
    count, seeds = int(found[1]), int(found[2])
    lanes = count * seeds if self.seeds > 1 else max(count, seeds)
    if lanes > most:
      asked = (f"retrains {count} x {seeds} = {lanes:,} lanes in one call" if self.seeds > 1
               else f"asks for {lanes:,} {'configurations' if count >= seeds else 'seeds'}")
      raise SettingsError(
          f"confirm={value!r} {asked}; expected at most {most:,}, the lanes of a round "
          f"(population={self.population} x seeds={self.seeds}): the confirmation trains in "
          "a round's programs")
    return count, seeds

  def parsed_objective(self) -> objectives.Objective:
    return objectives.parse(self.objective)

  def parsed_strategy(self) -> strategies.Strategy:
    try:
      return strategies.parse(self.strategy)
    except ValueError as e:
      raise SettingsError(str(e)) from None

  def parsed_sampler(self) -> samplers.Sampler:
    try:
      return samplers.parse(self.sampler)
    except ValueError as e:
      raise SettingsError(str(e)) from None

  def check(self, num_train: int, space: Space, lanes: int | None = None) -> None:
    """Raises :class:`SettingsError` naming the first bad setting.

    Args:
      num_train: examples in the training split.
      space: the search space (a searched ``batch_size`` replaces the
        setting, which is then not checked; the sampler must take the space).
      lanes: configurations a bucket trains at the fewest (default
        ``population``; see :meth:`vmaptune.samplers.Sampler.fewest_configurations`),
        which the strategy must be able to run with.
    """
    whole_number("population", self.population, 1)
    self.budget_seconds()
    if self.rounds is not None or self.budget is None:
      whole_number("rounds", self.rounds, 1)
    whole_number("epochs", self.epochs, 1)
    if "batch_size" not in space.structural_names:
      whole_number("batch_size", self.batch_size, 1, num_train,
                   why=f" (the training split has {num_train} examples)")
    whole_number("eval_batch_size", self.eval_batch_size, 1)
    whole_number("seed", self.seed, 0, 2**32 - 1)
    whole_number("seeds", self.seeds, 1)
    self.confirm_size()
    optional_whole_number("max_lanes_per_chunk", self.max_lanes_per_chunk, 1)
    optional_whole_number("memory_budget_bytes", self.memory_budget_bytes, 1)
    one_of("matmul_precision", self.matmul_precision, MATMUL_PRECISIONS)
    one_of("schedule", self.schedule, optimizers.SCHEDULES)
    self.parsed_objective()
    strategy = self.parsed_strategy()
    try:
      strategy.check(self.epochs, lanes or self.population)
    except ValueError as e:
      share = (f" (a combination of structural values gets as few as {lanes} "
               f"configuration{'s' if lanes > 1 else ''})"
               if lanes and lanes != self.population else "")
      raise SettingsError(f"{e}{share}") from None
    if self.seeds > 1 and strategy.name != "random":
      raise SettingsError(f"seeds={self.seeds} needs strategy='random'; strategies that stop "
                          "or copy lanes compare single runs, not configurations over seeds")
    try:
      self.parsed_sampler().check(space, strategy, self.parsed_objective().scoring)
    except ValueError as e:
      raise SettingsError(str(e)) from None

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready: the optimizer, sampler and strategy described by name."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    if self.budget is None:  # Records of runs without a budget hold no such key.
      del values["budget"]
    values["optimizer"] = optimizers.describe(self.optimizer)
    values["objective"] = self.parsed_objective().describe()
    values["sampler"] = self.parsed_sampler().describe()
    values["strategy"] = self.parsed_strategy().describe()
    return values
