"""Which hyperparameter mattered: the spread of the mean ranking metric
(validation accuracy for classification) over groups of its first-round values.

Over the first round's configurations (the trials that started from
initialisation, sampled from the whole space; later rounds sample narrowed
ranges, so they mostly compare good values with each other), each scored by
the objective's ranking metric when it stopped, a diverged one by the worst
value of the others (the lowest of a maximised metric such as accuracy, the
highest of a minimised one such as mse: a parameter that makes training blow
up matters). A parameter's trials are grouped by its value when it has at
most ``bins`` distinct values (categories, structural parameters), else into
``bins`` equal-count quantile bins of its values in its own scale (log for
log-scaled ones). Its importance is the spread (max - min) of the groups'
means: how much the metric moves between its worst and its best region, in
the metric's own units, whichever way the metric is better (the spread is
the same either way round; the group means are the metric's values, not
turned). It sees one parameter at a time (no interactions), and with few
trials per group it is noisy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vmaptune.space.discrete import Choice
from vmaptune.space.space import Space
from vmaptune.trials.table import TrialTable


@dataclasses.dataclass(frozen=True)
class Importance:
  """How much one hyperparameter moved the ranking metric (validation accuracy
  for classification).

  Attributes:
    name: the hyperparameter.
    spread: max - min of the groups' mean metric (0 with fewer than two groups);
      never negative, whichever way the metric is better.
    groups: ``[(label, trials, mean metric), ...]`` in value order; means in
      the metric's own units (for a minimised metric the best group has the
      lowest mean).
    method: ``"categories"``, ``"distinct values"`` or ``"quantile bins (log)"``
      / ``"... (linear)"``.
  """

  name: str
  spread: float
  groups: list[tuple[str, int, float]]
  method: str


def is_log(dist: Any) -> bool:
  """Whether a distribution samples on a log scale."""
  return getattr(dist, "scale_name", "linear") == "log"


def values(trials: TrialTable, name: str, rows: np.ndarray | None = None) -> np.ndarray:
  """``name``'s values for ``rows`` (default all): float64 for traced
  parameters, the values themselves (objects) for structural ones."""
  column = trials.hparams[name] if rows is None else trials.hparams[name][rows]
  return column if column.dtype == object else column.astype(np.float64)


def format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return repr(value) if isinstance(value, str) else str(value)


def importance(trials: TrialTable, space: Space, bins: int | None = None) -> list[Importance]:
  """Ranks the hyperparameters by the spread of the mean ranking metric
  (``trials.scoring.rank_by``) over groups of their values in the first round
  (see the module docstring).

  Args:
    trials: a run's trials (at least one round's); scored by their scoring.
    space: the original space.
    bins: groups per numeric parameter (default ``n // 10`` clipped to
      ``[2, 5]`` for ``n`` trials).

  Returns:
    One :class:`Importance` per parameter, largest spread first.
  """
  rows = np.flatnonzero((trials.round == trials.round.min()) & trials.is_configuration)
  score = trials.score[rows].copy()
  finite = score[np.isfinite(score)]
  # A diverged trial counts as the worst of the others, whichever way that is.
  worst = (finite.min() if trials.scoring.maximize else finite.max()) if len(finite) else 0.0
  score[~np.isfinite(score)] = worst
  bins = bins or int(np.clip(len(rows) // 10, 2, 5))
  ranking = []
  for name, dist in space.items():
    found = values(trials, name, rows)
    present = set(found.tolist())
    distinct = ([v for v in dist.values if v in present] if isinstance(dist, Choice)
                else sorted(present))  # Categories in the space's order.
    if dist.structural or len(distinct) <= bins:
      method = "categories" if dist.structural else "distinct values"
      groups = [(format_value(v), np.array([x == v for x in found.tolist()], bool))
                for v in distinct]
    else:
      scaled = np.log(found) if is_log(dist) else found
      edges = np.quantile(scaled, np.linspace(0, 1, bins + 1))
      which = np.clip(np.searchsorted(edges[1:-1], scaled, side="right"), 0, bins - 1)
      unscale = np.exp if is_log(dist) else (lambda v: v)
      groups = [(f"{unscale(edges[b]):.3g}..{unscale(edges[b + 1]):.3g}", which == b)
                for b in range(bins)]
      method = f"quantile bins ({'log' if is_log(dist) else 'linear'})"
    groups = [(label, int(mask.sum()), float(score[mask].mean()))
              for label, mask in groups if mask.any()]
    means = [g[2] for g in groups]
    ranking.append(Importance(name, max(means) - min(means) if len(means) > 1 else 0.0,
                              groups, method))
  return sorted(ranking, key=lambda r: -r.spread)
