"""Strategies: what one round does with the population trainer.

Every strategy samples configurations from the round's space, trains them
through the same :class:`~vmaptune.population.Population` operations (``init``,
``advance`` over a range of epochs, ``evaluate``, ``select`` lanes), and logs
*trials*: a configuration trained over a range of epochs, and why it stopped.
The tuner ranks the trials, narrows the ranges and writes the records; a new
strategy touches neither the trainer nor the tuner.

* :class:`RandomSearch`: every lane trains the full budget (the default).
* :class:`SuccessiveHalving`: all lanes train a first rung of epochs, the best
  ``1/eta`` continue, and so on up to the full budget; survivors are gathered
  into a smaller population between rungs.
* :class:`Hyperband`: brackets of successive halving that start with fewer,
  longer-trained lanes, one after another.
* :class:`PopulationBasedTraining`: every ``interval`` epochs the worst lanes
  copy the weights and optimizer state of good ones (exploit) and perturb or
  resample their hyperparameters (explore).

A trial's record says how many epochs it trained and why it stopped:
``finished`` (the full budget), ``halved`` (left behind at a rung),
``exploited`` (overwritten by a better lane) or ``diverged``.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any

import jax
import numpy as np

from vmaptune.devices import to_host
from vmaptune.population import REPLICA, Lanes, Population
from vmaptune.space import Space

FINISHED, HALVED, EXPLOITED, DIVERGED = "finished", "halved", "exploited", "diverged"

# Population sizes a rung may have: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... Rounding
# survivors to these keeps the number of compiled programs small and shared by
# every round and bracket.
LADDER = tuple(sorted({m * 2**k for k in range(20) for m in (2, 3)} | {1}))


def ladder_size(n: float) -> int:
  """The ladder size nearest to ``n`` (ties go up), at least 1."""
  return min(LADDER, key=lambda size: (abs(size - n), -size))


def ladder_floor(n: int) -> int:
  """The largest ladder size ``<= n`` (0 for ``n < 1``)."""
  return max((size for size in LADDER if size <= n), default=0)


@dataclasses.dataclass
class RoundContext:
  """What a strategy may use during one round.

  Attributes:
    pop: the population trainer (epoch budget ``pop.epochs``).
    space: the ranges this round samples from (traced parameters only: with
      structural parameters, each bucket of the round runs the strategy on
      its own population, see :mod:`vmaptune.structural`).
    seed, index: the run's seed and the round's index.
    lanes: the population size P the round was asked for (of this bucket).
    init_key, data_key: the round's shared keys.
    rng: host randomness for the strategy's own choices.
    bucket: the bucket's number, which seeds its own draws (``None``
      without structural parameters).
    seeds: initialisation and data-order seeds each configuration trains
      with (only :class:`RandomSearch` supports more than 1).
    progress: a :class:`vmaptune.progress.Tracker` that :meth:`advance` and
      :meth:`evaluate` report to, or ``None``.
  """

  pop: Population
  space: Space
  seed: int
  index: int
  lanes: int
  init_key: jax.Array
  data_key: jax.Array
  rng: np.random.Generator
  bucket: int | None = None
  seeds: int = 1
  progress: Any = None

  @property
  def budget(self) -> int:
    return self.pop.epochs

  def advance(self, lanes: Lanes, first_epoch: int, num_epochs: int) -> tuple[Lanes, jax.Array]:
    """:meth:`Population.advance` with the round's data key (reported, in
    pieces, when progress is on: the same computation)."""
    if self.progress is None:
      return self.pop.advance(lanes, self.data_key, first_epoch, num_epochs)
    return self.progress.advance(self.pop, lanes, self.data_key, first_epoch, num_epochs)

  def sample(self, size: int, stream: int = 0) -> dict[str, np.ndarray]:
    return self.space.sample(self.seed, self.index, size, stream, self.bucket)

  def evaluate(self, lanes: Lanes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation accuracy, loss and divergence ``[count]`` of the real lanes
    (NaN scores where a lane diverged)."""
    scores = self.pop.evaluate(lanes.state.params)
    accuracy, loss, diverged = to_host((scores.accuracy, scores.loss, lanes.state.diverged))
    accuracy = accuracy.astype(np.float64)[:lanes.count]
    loss = loss.astype(np.float64)[:lanes.count]
    diverged = diverged[:lanes.count] | ~np.isfinite(loss) | ~np.isfinite(accuracy)
    accuracy[diverged] = np.nan
    loss[diverged] = np.nan
    if self.progress is not None:
      self.progress.evaluated(accuracy, diverged)
    return accuracy, loss, diverged


def rank_trials(accuracy: np.ndarray, loss: np.ndarray, diverged: np.ndarray,
                reached: np.ndarray | None = None) -> np.ndarray:
  """Trials that did not diverge, best first.

  Sorted by the epoch each trial reached (descending: a trial that trained
  the full budget outranks one stopped at an early rung), then validation
  accuracy (descending), validation loss (ascending) and index, so ties
  break deterministically.

  Args:
    accuracy, loss: ``[T]``.
    diverged: bool ``[T]``; these trials are left out.
    reached: ``[T]`` epoch each trial stopped at (default: all equal).

  Returns:
    int array ``[T - diverged.sum()]`` of trial indices.
  """
  alive = np.flatnonzero(~diverged)
  reached = np.zeros(len(accuracy)) if reached is None else np.asarray(reached)
  order = np.lexsort((alive, loss[alive], -accuracy[alive], -reached[alive]))
  return alive[order]


def keep_and_narrow(trials: dict[str, Any], current: Space, bounds: Space, keep: float,
                    margin: float) -> tuple[int, np.ndarray, Space]:
  """Ranks a round's trials and narrows its space to the kept ones.

  Args:
    trials: the round's columns ``[T]`` (``hparams``, ``status``,
      ``start_epoch``, ``epochs``, ``parent``, ``val_accuracy``, ``val_loss``).
    current: the space the round sampled from.
    bounds: the original space.
    keep: fraction of the round's configurations kept.
    margin: see :meth:`vmaptune.Space.narrow`.

  Returns:
    The round's configurations (trials started from initialisation), the
    kept trials ``[K]`` best first, and the next round's space.
  """
  lanes = int(((trials["parent"] < 0) & (trials["start_epoch"] == 0)).sum())
  diverged = trials["status"] == DIVERGED
  reached = trials["start_epoch"] + trials["epochs"]
  num_kept = max(1, math.ceil(keep * lanes))
  kept = rank_trials(trials["val_accuracy"], trials["val_loss"], diverged, reached)[:num_kept]
  next_space = (current.narrow({k: v[kept] for k, v in trials["hparams"].items()}, margin,
                               bounds) if len(kept) else current)
  return lanes, kept, next_space


def rank(accuracy: np.ndarray, loss: np.ndarray, diverged: np.ndarray) -> np.ndarray:
  """Every lane, best first (see :func:`rank_trials`), diverged lanes last."""
  return np.concatenate([rank_trials(accuracy, loss, diverged), np.flatnonzero(diverged)])


class TrialLog:
  """Collects the trials of one round as a strategy opens and closes them."""

  def __init__(self, names: list[str], budget: int):
    self.names = names
    self.budget = budget
    self.rows: list[dict[str, Any]] = []

  def open(self, lane: int, hparams: dict[str, float], start_epoch: int,
           parent: int = -1, bracket: int = -1) -> int:
    """Starts a trial; returns its index."""
    self.rows.append({"lane": lane, "bracket": bracket, "start_epoch": start_epoch,
                      "parent": parent, "hparams": {k: float(hparams[k]) for k in self.names},
                      "curve": np.full(self.budget, np.nan, np.float32)})
    return len(self.rows) - 1

  def record_losses(self, trial: int, losses: np.ndarray) -> None:
    """Adds epoch losses ``[budget]`` (NaN where not trained) to a trial's curve."""
    curve = self.rows[trial]["curve"]
    self.rows[trial]["curve"] = np.fmax(curve, np.asarray(losses, np.float32))

  def close(self, trial: int, end_epoch: int, accuracy: float, loss: float, status: str,
            seed_accuracy: np.ndarray | None = None) -> None:
    """Ends a trial; ``seed_accuracy [k]`` holds each seed's validation
    accuracy when the configuration trained with ``k`` seeds."""
    row = self.rows[trial]
    row.update(epochs=end_epoch - row["start_epoch"], accuracy=accuracy, loss=loss,
               status=status, seed_accuracy=seed_accuracy)

  def arrays(self) -> dict[str, Any]:
    """Column arrays ``[T]`` (and ``hparams {name: [T]}``, ``epoch_loss [T, budget]``)."""
    rows = self.rows
    missing = [i for i, row in enumerate(rows) if "status" not in row]
    if missing:
      raise RuntimeError(f"trials {missing} were never closed")
    column = lambda key, dtype: np.array([row[key] for row in rows], dtype)
    return {
        "lane": column("lane", np.int64), "bracket": column("bracket", np.int64),
        "start_epoch": column("start_epoch", np.int64), "epochs": column("epochs", np.int64),
        "parent": column("parent", np.int64), "status": column("status", object),
        "val_accuracy": column("accuracy", np.float64), "val_loss": column("loss", np.float64),
        "hparams": {k: np.array([row["hparams"][k] for row in rows], np.float32)
                    for k in self.names},
        "epoch_loss": np.stack([row["curve"] for row in rows]),
        "seed_accuracy": (np.stack([row["seed_accuracy"] for row in rows]).astype(np.float64)
                          if rows and rows[0]["seed_accuracy"] is not None else None),
    }


class Strategy:
  """One round's plan. Subclasses implement :meth:`run` and may validate in
  :meth:`check`; their fields are their settings."""

  name = "strategy"

  def check(self, epochs: int, population: int) -> None:
    """Raises ``ValueError`` if the strategy cannot run with these settings."""

  def run(self, ctx: RoundContext, log: TrialLog) -> None:
    raise NotImplementedError

  def describe(self) -> str:
    fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
    return f"{self.name}({fields})" if fields else self.name


def _close_all(log: TrialLog, trials: list[int], end: int, accuracy, loss, diverged,
               status: str = FINISHED) -> None:
  for position, trial in enumerate(trials):
    log.close(trial, end, accuracy[position], loss[position],
              DIVERGED if diverged[position] else status)


def _record(log: TrialLog, trials: list[int], losses: jax.Array) -> None:
  host = to_host(losses)
  for position, trial in enumerate(trials):
    log.record_losses(trial, host[position])


@dataclasses.dataclass(frozen=True)
class RandomSearch(Strategy):
  """Every lane trains the full epoch budget; the round's ranges are then narrowed."""

  name = "random"

  def run(self, ctx: RoundContext, log: TrialLog) -> None:
    hparams = ctx.sample(ctx.lanes)
    trials = [log.open(i, {k: v[i] for k, v in hparams.items()}, 0) for i in range(ctx.lanes)]
    if ctx.seeds > 1:
      self._run_seeds(ctx, log, hparams, trials)
      return
    lanes, losses = ctx.advance(ctx.pop.init(hparams, ctx.init_key), 0, ctx.budget)
    _record(log, trials, losses)
    _close_all(log, trials, ctx.budget, *ctx.evaluate(lanes))

  @staticmethod
  def _run_seeds(ctx: RoundContext, log: TrialLog, hparams: dict[str, np.ndarray],
                 trials: list[int]) -> None:
    """Every configuration on ``ctx.seeds`` lanes, one per seed (lane
    ``s * P + i`` is configuration ``i`` with seed ``s``), in one population.
    A configuration scores its mean over seeds, and counts as diverged if
    any seed diverged (a setting that blows up for some seeds is unsafe)."""
    configs, seeds = ctx.lanes, ctx.seeds
    tiled = {k: np.tile(v, seeds) for k, v in hparams.items()}
    tiled[REPLICA] = np.repeat(np.arange(seeds), configs).astype(np.float32)
    lanes, losses = ctx.advance(ctx.pop.init(tiled, ctx.init_key), 0, ctx.budget)
    curves = to_host(losses)[:configs * seeds].reshape(seeds, configs, -1)
    accuracy, loss, diverged = (a.reshape(seeds, configs) for a in ctx.evaluate(lanes))
    bad = diverged.any(axis=0)
    with np.errstate(invalid="ignore"):
      mean_curve = curves.mean(axis=0)
    for i, trial in enumerate(trials):
      log.record_losses(trial, mean_curve[i])
      log.close(trial, ctx.budget, np.nan if bad[i] else accuracy[:, i].mean(),
                np.nan if bad[i] else loss[:, i].mean(), DIVERGED if bad[i] else FINISHED,
                seed_accuracy=accuracy[:, i])


def halving_budgets(epochs: int, eta: int, lanes: int, min_epochs: int) -> list[int]:
  """Rung budgets (epochs reached at each rung) for successive halving.

  As many halvings as both the population (``lanes / eta**s >= 1``) and the
  budget (``epochs / eta**s >= min_epochs``) allow; budget ``i`` is
  ``epochs / eta**(s - i)``, rounded, strictly increasing, the last = ``epochs``.
  """
  halvings = 0
  while lanes / eta ** (halvings + 1) >= 1 and epochs / eta ** (halvings + 1) >= min_epochs:
    halvings += 1
  return rung_budgets(epochs, eta, halvings, min_epochs)


def rung_budgets(epochs: int, eta: int, halvings: int, min_epochs: int) -> list[int]:
  """Budget ``i`` of ``halvings + 1`` rungs: ``epochs / eta**(halvings - i)``,
  rounded, at least ``min_epochs``, strictly increasing, the last ``epochs``."""
  budgets = sorted({max(min_epochs, round(epochs / eta ** (halvings - i)))
                    for i in range(halvings + 1)} | {epochs})
  return [b for b in budgets if b <= epochs]


def _halve(ctx: RoundContext, log: TrialLog, hparams: dict[str, np.ndarray],
           budgets: list[int], eta: int, bracket: int = -1, lane_offset: int = 0) -> None:
  """Successive halving of ``hparams`` over rung ``budgets`` (shared by Hyperband)."""
  count = len(next(iter(hparams.values())))
  trials = [log.open(lane_offset + i, {k: v[i] for k, v in hparams.items()}, 0,
                     bracket=bracket) for i in range(count)]
  lanes = ctx.pop.init(hparams, ctx.init_key)
  reached = 0
  for rung, budget in enumerate(budgets):
    lanes, losses = ctx.advance(lanes, reached, budget - reached)
    reached = budget
    _record(log, trials, losses)
    accuracy, loss, diverged = ctx.evaluate(lanes)
    if rung == len(budgets) - 1:
      _close_all(log, trials, budget, accuracy, loss, diverged)
      return
    order = rank(accuracy, loss, diverged)
    alive = int((~diverged).sum())
    # A ladder size, even when divergence leaves fewer lanes than planned, so
    # the survivors reuse a compiled program.
    keep = ladder_floor(min(alive, ladder_size(lanes.count / eta)))
    survivors = order[:keep]
    for position in order[keep:]:
      log.close(trials[position], budget, accuracy[position], loss[position],
                DIVERGED if diverged[position] else HALVED)
    if keep == 0:
      return
    lanes = ctx.pop.select(lanes, survivors)
    trials = [trials[position] for position in survivors]


@dataclasses.dataclass(frozen=True)
class SuccessiveHalving(Strategy):
  """Train everyone briefly, keep the best ``1/eta``, train them longer, repeat.

  Attributes:
    eta: the halving factor (survivors are rounded to the nearest size of
      ``LADDER``, so compiled programs are shared across rounds).
    min_epochs: epochs of the first rung, at least.
  """

  eta: int = 3
  min_epochs: int = 1
  name = "halving"

  def check(self, epochs: int, population: int) -> None:
    if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
      raise ValueError(f"eta={self.eta!r}; expected a whole number >= 2")
    if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) \
        or not 1 <= self.min_epochs <= epochs:
      raise ValueError(f"min_epochs={self.min_epochs!r}; expected a whole number in "
                       f"[1, {epochs}] (the epoch budget)")
    if len(halving_budgets(epochs, self.eta, population, self.min_epochs)) < 2:
      raise ValueError(
          f"{self.name} with eta={self.eta} and min_epochs={self.min_epochs} cannot halve "
          f"{population} lanes over {epochs} epochs (it needs population >= eta and epochs "
          f">= eta * min_epochs = {self.eta * self.min_epochs}); it would be random search")

  def run(self, ctx: RoundContext, log: TrialLog) -> None:
    budgets = halving_budgets(ctx.budget, self.eta, ctx.lanes, self.min_epochs)
    _halve(ctx, log, ctx.sample(ctx.lanes), budgets, self.eta)


@dataclasses.dataclass(frozen=True)
class Hyperband(SuccessiveHalving):
  """Brackets of successive halving, from many briefly trained lanes to few
  fully trained ones, so a setting that starts slowly still gets a chance.

  Bracket ``s`` (``s = s_max .. 0``) starts
  ``population * (s_max + 1) / (s + 1) / eta**(s_max - s)`` lanes (rounded to
  the nearest ``LADDER`` size, so brackets share compiled programs) at
  ``epochs / eta**s`` epochs and halves ``s`` times; ``s_max`` is the most
  halvings both the budget (rungs of at least ``min_epochs``) and the
  population (``eta**s_max <= population``) allow. Each bracket samples its
  own configurations.
  """

  name = "hyperband"

  def brackets(self, epochs: int, population: int) -> list[tuple[int, list[int]]]:
    """``[(lanes, rung budgets), ...]`` from the most exploratory bracket down."""
    s_max = len(halving_budgets(epochs, self.eta, population, self.min_epochs)) - 1
    plan = []
    for s in range(s_max, -1, -1):
      lanes = population if s == s_max else ladder_size(
          population * (s_max + 1) / (s + 1) / self.eta ** (s_max - s))
      plan.append((lanes, rung_budgets(epochs, self.eta, s, self.min_epochs)))
    return plan

  def run(self, ctx: RoundContext, log: TrialLog) -> None:
    offset = 0
    for bracket, (lanes, budgets) in enumerate(self.brackets(ctx.budget, ctx.lanes)):
      _halve(ctx, log, ctx.sample(lanes, stream=bracket + 1), budgets, self.eta,
             bracket=bracket, lane_offset=offset)
      offset += lanes


@dataclasses.dataclass(frozen=True)
class PopulationBasedTraining(Strategy):
  """Train all lanes; every ``interval`` epochs the bottom ``fraction`` copies a
  random lane of the top ``fraction`` (weights and optimizer state) and
  explores: each hyperparameter is resampled from the round's space with
  probability ``resample``, else moved one step of ``perturb`` (see
  :meth:`vmaptune.space.Continuous.perturbed`). Diverged lanes are always
  replaced.

  Every lane shares the round's initial weights and minibatch order, so a
  lane's lineage (which configuration it followed over which epochs) replays
  as one training run that reproduces it exactly.
  """

  interval: int = 2
  fraction: float = 0.25
  perturb: float = 1.25
  resample: float = 0.25
  name = "pbt"

  def check(self, epochs: int, population: int) -> None:
    if isinstance(self.interval, bool) or not isinstance(self.interval, int) \
        or not 1 <= self.interval <= epochs:
      raise ValueError(f"interval={self.interval!r}; expected a whole number of epochs in "
                       f"[1, {epochs}]")
    if not 0 < self.fraction <= 0.5:
      raise ValueError(f"fraction={self.fraction!r}; expected a fraction in (0, 0.5]")
    if not self.perturb > 1:
      raise ValueError(f"perturb={self.perturb!r}; expected a factor > 1")
    if not 0 <= self.resample <= 1:
      raise ValueError(f"resample={self.resample!r}; expected a probability in [0, 1]")
    if population < 2:
      raise ValueError(f"population={population}; population-based training needs >= 2 lanes")
    if self.interval >= epochs:
      raise ValueError(f"interval={self.interval} with epochs={epochs}: no lane would ever be "
                       "exploited; use an interval shorter than the epoch budget")

  def explore(self, ctx: RoundContext, hparams: dict[str, float]) -> dict[str, float]:
    moved = {}
    for name, dist in ctx.space.items():
      if ctx.rng.random() < self.resample:
        moved[name] = float(dist.sample(ctx.rng, 1)[0])
      else:
        moved[name] = dist.perturbed(hparams[name], ctx.rng, self.perturb)
    return moved

  def run(self, ctx: RoundContext, log: TrialLog) -> None:
    hparams = ctx.sample(ctx.lanes)
    current = [log.open(i, {k: v[i] for k, v in hparams.items()}, 0) for i in range(ctx.lanes)]
    lanes = ctx.pop.init(hparams, ctx.init_key)
    quota = max(1, math.floor(self.fraction * ctx.lanes))
    for start in range(0, ctx.budget, self.interval):
      end = min(start + self.interval, ctx.budget)
      lanes, losses = ctx.advance(lanes, start, end - start)
      _record(log, current, losses)
      accuracy, loss, diverged = ctx.evaluate(lanes)
      if end == ctx.budget:
        _close_all(log, current, end, accuracy, loss, diverged)
        return
      order = rank(accuracy, loss, diverged)
      top = order[:quota][~diverged[order[:quota]]]
      replaced = sorted(set(order[-quota:].tolist()) | set(np.flatnonzero(diverged).tolist()))
      replaced = [lane for lane in replaced if lane not in set(top.tolist())]
      if len(top) == 0:  # Every lane diverged: nothing to copy from.
        _close_all(log, current, end, accuracy, loss, diverged)
        return
      index = np.arange(ctx.lanes)
      new = {k: lanes.hparams[k][:ctx.lanes].copy() for k in lanes.hparams}
      for lane in replaced:
        source = int(ctx.rng.choice(top))
        log.close(current[lane], end, accuracy[lane], loss[lane],
                  DIVERGED if diverged[lane] else EXPLOITED)
        explored = self.explore(ctx, {k: float(new[k][source]) for k in new})
        for k, value in explored.items():
          new[k][lane] = value
        index[lane] = source
        current[lane] = log.open(lane, explored, end, parent=current[source])
      lanes = ctx.pop.select(lanes, index, new)


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomSearch, SuccessiveHalving, Hyperband,
                              PopulationBasedTraining)}


def parse_strategy(spec: Any) -> Strategy:
  """A :class:`Strategy` from itself, a name, or ``"name(key=value, ...)"``.

  >>> parse_strategy("halving(eta=4)")
  SuccessiveHalving(eta=4, min_epochs=1)

  Raises:
    ValueError: an unknown name, malformed text, or an unknown setting.
  """
  if isinstance(spec, Strategy):
    return spec
  if not isinstance(spec, str):
    raise ValueError(f"strategy={spec!r}; expected one of {sorted(STRATEGIES)} or a Strategy")
  text = spec.strip()
  name, _, rest = text.partition("(")
  name = name.strip()
  if name not in STRATEGIES:
    raise ValueError(f"strategy={spec!r} is unknown; expected one of {sorted(STRATEGIES)}, "
                     "optionally with settings, e.g. 'halving(eta=3)'")
  kwargs: dict[str, Any] = {}
  if rest:
    if not rest.endswith(")"):
      raise ValueError(f"strategy={spec!r}: expected name(key=value, ...)")
    try:
      call = ast.parse(f"f({rest}", mode="eval").body
      if call.args:
        raise ValueError("positional values")
      kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as e:
      raise ValueError(f"strategy={spec!r}: expected name(key=value, ...) with literal "
                       f"values ({e})") from None
  cls = STRATEGIES[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(f"strategy {name!r} has no setting {unknown}; it takes "
                     f"{sorted(fields) or 'none'}")
  return cls(**kwargs)
