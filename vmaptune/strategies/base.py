"""What every strategy shares: the :class:`Strategy` base class and the
:class:`RoundContext` a strategy trains with.

A strategy decides how a round's configurations are trained: it asks for
configurations (:meth:`RoundContext.sample`, which the round's sampler
answers), trains them through the population trainer (``ctx.pop.init``,
:meth:`RoundContext.advance` over a range of epochs, ``ctx.pop.select`` to
keep or copy lanes, :meth:`RoundContext.evaluate`), opens and closes trials
in a :class:`~vmaptune.trials.log.TrialLog` (:meth:`RoundContext.new_log`), and
returns what it trained (:meth:`~vmaptune.trials.log.TrialLog.trained`). It
touches neither the trainer nor the round loop. Its fields are its settings, e.g.
``SuccessiveHalving(eta=3)``, written ``"halving(eta=3)"`` in configs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import ClassVar, NamedTuple

import jax
import numpy as np

from vmaptune.lanes import events
from vmaptune.lanes.devices import to_host
from vmaptune.lanes.population import Lanes, Population
from vmaptune.space.space import Space
from vmaptune.trials.log import Trained, TrialLog
from vmaptune.trials.ranking import order_lanes
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import DIVERGED, FINISHED
from vmaptune.validation import to_spec


@dataclasses.dataclass
class RoundContext:
  """What a strategy may use during one round, in one bucket.

  Attributes:
    pop: the bucket's population trainer (epoch budget ``pop.epochs``).
    space: the traced ranges this round samples from (population-based
      training explores inside them).
    index: the round's index.
    configurations: the configurations the round gives this bucket, P.
    init_key, data_key: the round's shared keys.
    rng: host randomness for the strategy's own choices.
    ask: ``ask(size, stream) -> {name: float32 [size]}``, the sampler's
      configurations for this bucket (``stream`` tells draws apart).
    seeds: initialisation and data-order seeds each configuration trains
      with (only :class:`~vmaptune.strategies.RandomSearch` supports more than 1).
    listener: told about each piece of training and each evaluation
      (see :mod:`vmaptune.lanes.events`), or ``None``.
    pieces: how training is cut into reported pieces (with a listener).
  """

  pop: Population
  space: Space
  index: int
  configurations: int
  init_key: jax.Array
  data_key: jax.Array
  rng: np.random.Generator
  ask: Callable[[int, int], dict[str, np.ndarray]]
  seeds: int = 1
  listener: events.Listener | None = None
  pieces: events.Pieces | None = None

  @property
  def budget(self) -> int:
    return self.pop.epochs

  def new_log(self) -> TrialLog:
    """An empty log of this round's trials in this bucket."""
    return TrialLog(list(self.space), self.budget, self.index, self.scoring)

  @property
  def scoring(self) -> Scoring:
    """The objective's metrics and the ranking one."""
    return self.pop.objective.scoring

  def sample(self, size: int, stream: int = 0) -> dict[str, np.ndarray]:
    """``size`` configurations from the round's sampler: ``{name: float32 [size]}``."""
    return self.ask(size, stream)

  def advance(self, lanes: Lanes, first_epoch: int, num_epochs: int) -> tuple[Lanes, jax.Array]:
    """:meth:`Population.advance` with the round's data key (reported in
    pieces when there is a listener: the same computation)."""
    if self.listener is None:
      return self.pop.advance(lanes, self.data_key, first_epoch, num_epochs)
    return events.advance(self.pop, lanes, self.data_key, first_epoch, num_epochs,
                          self.pieces or events.Pieces(None), self.listener)

  def evaluate(self, lanes: Lanes) -> Scores:
    """Validation metrics and divergence ``[count]`` of the real lanes (NaN
    metrics where a lane diverged)."""
    scores = lane_scores(self.pop, lanes)
    if self.listener is not None:
      self.listener.evaluated(scores.metrics[self.scoring.rank_by], scores.diverged)
    return scores

  def order(self, scores: Scores) -> np.ndarray:
    """Every lane of ``scores``, best first, diverged lanes last."""
    return order_lanes(self.scoring, scores.metrics, scores.diverged)


class Scores(NamedTuple):
  """What an evaluation of lanes gives, on the host.

  Attributes:
    metrics: ``{metric: float64 [count]}``, NaN where a lane diverged.
    diverged: bool ``[count]``: the loss or a metric became NaN/inf.
  """
  metrics: dict[str, np.ndarray]
  diverged: np.ndarray

  def at(self, position: int) -> dict[str, float]:
    """One lane's metrics, ``{name: value}``."""
    return {name: float(values[position]) for name, values in self.metrics.items()}

  def reshaped(self, *shape: int) -> Scores:
    """The same scores with the lane axis reshaped (e.g. ``[seeds, configs]``)."""
    return Scores({k: v.reshape(shape) for k, v in self.metrics.items()},
                  self.diverged.reshape(shape))


def lane_scores(pop: Population, lanes: Lanes) -> Scores:
  """Validation metrics (float64) and divergence ``[count]`` of the real lanes
  of ``lanes``, on the host. A lane diverged if its training did or any metric
  is NaN/inf (a NaN metric is a diverged lane); its metrics are then NaN."""
  evaluation, diverged = to_host((pop.evaluate(lanes.state.params), lanes.state.diverged))
  metrics = {name: np.asarray(v).astype(np.float64)[:lanes.count]
             for name, v in evaluation.items()}
  diverged = np.asarray(diverged[:lanes.count]).copy()
  for values in metrics.values():
    diverged |= ~np.isfinite(values)
  for values in metrics.values():
    values[diverged] = np.nan
  return Scores(metrics, diverged)


class Strategy:
  """How a round trains its configurations. Subclasses are frozen dataclasses
  whose fields are their settings; they implement :meth:`run` and may refuse
  settings in :meth:`check`. A new strategy is one file and a line in
  :data:`vmaptune.strategies.STRATEGIES`."""

  name: ClassVar[str] = "strategy"

  def check(self, epochs: int, population: int) -> None:
    """Raises ``ValueError`` if the strategy cannot run with these settings."""

  def run(self, ctx: RoundContext) -> Trained:
    """Trains one bucket's round: samples, trains and logs its trials, and
    returns them (``ctx.new_log()`` ... ``log.trained()``)."""
    raise NotImplementedError

  def describe(self) -> str:
    """``name(key=value, ...)``, as configs write it (the name alone without settings)."""
    return to_spec(self)


def close_all(log: TrialLog, trials: Sequence[int], end: int, scores: Scores,
              status: str = FINISHED, lanes: Lanes | None = None) -> None:
  """Closes ``trials`` (one per lane, in lane order) at epoch ``end``; given
  the ``lanes`` they end in, the round can save the best one's parameters."""
  for position, trial in enumerate(trials):
    close(log, trial, end, scores, position, status)
  if lanes is not None:
    log.finished_in(list(trials), lanes)


def close(log: TrialLog, trial: int, end: int, scores: Scores, position: int,
          status: str) -> None:
  """Closes ``trial`` with lane ``position``'s scores (``diverged`` if it diverged)."""
  log.close(trial, end, scores.at(position),
            DIVERGED if scores.diverged[position] else status)


def record_losses(log: TrialLog, trials: Sequence[int], losses: jax.Array) -> None:
  """Adds each lane's epoch losses ``[L, budget]`` to its trial's curve."""
  host = to_host(losses)
  for position, trial in enumerate(trials):
    log.record_losses(trial, host[position])
