"""The log a strategy fills as it opens and closes one bucket's trials in a round.

A :class:`TrialLog` collects rows while a round trains; :meth:`TrialLog.trained`
turns them into what the strategy returns: the
:class:`~vmaptune.trials.table.TrialTable` everything else reads, and where each
finished trial's lanes are (so the round can save the best one's parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable


class Trained(NamedTuple):
  """What a strategy trained in one bucket.

  Attributes:
    table: its trials, one row each (``[T]`` columns).
    lanes: per row, ``(lanes, position)``: the population's lanes the trial
      finished in and its lane there, or ``None`` (stopped early, or not kept).
  """
  table: TrialTable
  lanes: list[tuple[Any, int] | None]


class TrialLog:
  """Collects one bucket's trials as a strategy opens and closes them; ``names``
  are the traced hyperparameters, ``budget`` the epochs of a full run,
  ``scoring`` the objective's metrics."""

  def __init__(self, names: list[str], budget: int, round_index: int, scoring: Scoring):
    self.names = names
    self.budget = budget
    self.round_index = round_index
    self.scoring = scoring
    self.rows: list[dict[str, Any]] = []

  def open(self, lane: int, hparams: Mapping[str, float], start_epoch: int,
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

  def close(self, trial: int, end_epoch: int, metrics: Mapping[str, float], status: str,
            seed_scores: np.ndarray | None = None) -> None:
    """Ends a trial with its validation ``metrics`` (``{name: value}``);
    ``seed_scores [k]`` holds each seed's ranking metric when the
    configuration trained with ``k`` seeds."""
    row = self.rows[trial]
    row.update(epochs=end_epoch - row["start_epoch"], metrics=dict(metrics),
               status=status, seed_scores=seed_scores)

  def finished_in(self, trials: list[int], lanes: Any) -> None:
    """Notes that ``trials`` (one per lane, in lane order) finished in ``lanes``
    (a :class:`vmaptune.lanes.population.Lanes`)."""
    for position, trial in enumerate(trials):
      self.rows[trial]["lanes"] = (lanes, position)

  def trained(self) -> Trained:
    """The log's trials as a table, and where each finished (see :class:`Trained`)."""
    return Trained(self.table(), [row.get("lanes") for row in self.rows])

  def table(self) -> TrialTable:
    """The trials as a :class:`TrialTable` (traced hyperparameters only)."""
    rows = self.rows
    missing = [i for i, row in enumerate(rows) if "status" not in row]
    if missing:
      raise RuntimeError(f"trials {missing} were never closed")
    column = lambda key, dtype: np.array([row[key] for row in rows], dtype)
    return TrialTable(
        hparams={k: np.array([row["hparams"][k] for row in rows], np.float32)
                 for k in self.names},
        round=np.full(len(rows), self.round_index, np.int64),
        trial=np.arange(len(rows), dtype=np.int64), lane=column("lane", np.int64),
        bracket=column("bracket", np.int64), start_epoch=column("start_epoch", np.int64),
        epochs=column("epochs", np.int64), parent=column("parent", np.int64),
        status=column("status", object),
        metrics={name: np.array([row["metrics"][name] for row in rows], np.float64)
                 for name in self.scoring.names},
        epoch_loss=(np.stack([row["curve"] for row in rows]) if rows
                    else np.zeros((0, self.budget), np.float32)),
        seed_scores=(np.stack([row["seed_scores"] for row in rows]).astype(np.float64)
                     if rows and rows[0]["seed_scores"] is not None else None),
        scoring=self.scoring)
