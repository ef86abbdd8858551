"""Ranking trials and keeping the top: the one ordering every part of vmaptune uses.

Trials are ordered by the epoch they reached (descending: a trial that
trained the full budget outranks one stopped at an early rung), then the
objective's ranking metric in its direction, then its other metrics in theirs
(classification: validation accuracy descending, then loss ascending; see
:class:`~vmaptune.trials.scoring.Scoring`), then their position (round, then index),
so ties break deterministically. Diverged trials are left out (or, for
strategies that must place every lane, put last). Samplers, strategies, the
chosen configuration, ``vmaptune show`` and the reports all rank with these
functions.

>>> import numpy as np
>>> from vmaptune.trials.scoring import CLASSIFICATION
>>> metrics = {"accuracy": np.array([0.9, 0.8, 0.9]), "loss": np.array([0.3, 0.2, 0.1])}
>>> order(CLASSIFICATION, metrics, np.array([False, False, True]))
array([0, 1])
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable


def order(scoring: Scoring, metrics: Mapping[str, np.ndarray], diverged: np.ndarray,
          reached: np.ndarray | None = None) -> np.ndarray:
  """Indices of the trials that did not diverge, best first.

  Args:
    scoring: the metrics' directions and the ranking one.
    metrics: ``{name: [T]}``, every metric of ``scoring``.
    diverged: bool ``[T]``; these trials are left out.
    reached: ``[T]`` epoch each trial stopped at (default: all equal).

  Returns:
    int ``[T - diverged.sum()]``.
  """
  alive = np.flatnonzero(~np.asarray(diverged))
  reached = np.zeros(len(diverged)) if reached is None else np.asarray(reached)
  return alive[np.lexsort((alive, *scoring.sort_keys(metrics, alive), -reached[alive]))]


def order_lanes(scoring: Scoring, metrics: Mapping[str, np.ndarray],
                diverged: np.ndarray) -> np.ndarray:
  """Every lane, best first (see :func:`order`), diverged lanes last: ``[T]``."""
  return np.concatenate([order(scoring, metrics, diverged), np.flatnonzero(diverged)])


def rank(table: TrialTable) -> np.ndarray:
  """The rows of ``table`` that did not diverge, best first (ties by row,
  i.e. by round, then index within the round). Ranked once per table: the
  order is kept on it (read-only), so a round, its summary and its readers
  share one ranking."""
  ranked = table.__dict__.get("_ranked")
  if ranked is None:
    ranked = order(table.scoring, table.metrics, table.diverged, table.reached)
    ranked.flags.writeable = False
    object.__setattr__(table, "_ranked", ranked)  # A frozen table: its ranking never changes.
  return ranked


def keep_top(table: TrialTable, fraction: float) -> np.ndarray:
  """The rows of the best ``ceil(fraction * configurations)`` trials, best
  first (at least one; fewer when fewer did not diverge)."""
  count = max(1, math.ceil(fraction * int(table.is_configuration.sum())))
  return rank(table)[:count]


def best_row(table: TrialTable) -> int | None:
  """The best row that trained the full budget without diverging, ``None`` if none did."""
  ranked = rank(table)
  if not len(ranked) or not table.completed[ranked[0]]:
    return None
  return int(ranked[0])
