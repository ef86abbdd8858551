"""What a trial is scored by: its metrics' names and directions, and which ranks.

A :class:`Scoring` is the part of an objective (see :mod:`vmaptune.objectives`)
that every consumer of trials needs: the ranking, the samplers, the strategies,
the records, ``vmaptune show``, reports and trackers. It holds names and
directions only, no functions, so a run directory can store it and a reader
rebuild it without the objective's code.

Trials are ordered by the ranking metric in its direction, ties broken by the
other metrics in their order and directions (classification: accuracy
descending, then loss ascending).

>>> CLASSIFICATION.rank_by, CLASSIFICATION.direction
('accuracy', 'maximize')
>>> CLASSIFICATION.field("loss"), CLASSIFICATION.label("accuracy")
('val_loss', 'validation accuracy')
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

MAXIMIZE, MINIMIZE = "maximize", "minimize"
DIRECTIONS = (MAXIMIZE, MINIMIZE)

# A metric name becomes a record field (``val_<name>``) and a Python keyword.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Scoring:
  """Metric names with their directions, and the one that ranks trials.

  Attributes:
    metrics: ``((name, direction), ...)`` in the order records list them;
      ``direction`` is ``"maximize"`` or ``"minimize"``.
    rank_by: the ranking metric, one of the names.
  """

  metrics: tuple[tuple[str, str], ...]
  rank_by: str

  def __post_init__(self):
    names = [name for name, _ in self.metrics]
    if not names:
      raise ValueError("an objective needs at least one metric")
    for name, direction in self.metrics:
      if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"metric name {name!r}; expected lower-case letters, digits and "
                         "underscores, starting with a letter (it becomes the record "
                         f"field 'val_{name}')")
      if direction not in DIRECTIONS:
        raise ValueError(f"metric {name!r} has direction {direction!r}; expected one of "
                         f"{list(DIRECTIONS)}")
    if len(set(names)) != len(names):
      raise ValueError(f"metric names {names} repeat a name")
    if self.rank_by not in names:
      raise ValueError(f"rank_by={self.rank_by!r} is not a metric; expected one of {names}")
    if f"{self.rank_by}_std" in names:  # Its field would be the spread over seeds'.
      raise ValueError(f"metric name '{self.rank_by}_std' is taken: with several seeds the "
                       f"record field 'val_{self.rank_by}_std' holds the spread of "
                       f"{self.rank_by!r}, the ranking metric")

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.metrics)

  @property
  def directions(self) -> dict[str, str]:
    return dict(self.metrics)

  @property
  def direction(self) -> str:
    """The ranking metric's direction."""
    return self.directions[self.rank_by]

  @property
  def maximize(self) -> bool:
    """Whether a higher ranking metric is better."""
    return self.direction == MAXIMIZE

  # Every record key derived from a metric's name is composed here, once (the
  # run format's records in vmaptune.rundir.records, the trackers and reports read them).

  def field(self, name: str) -> str:
    """The record field of a metric on the validation split: ``val_<name>``."""
    return f"val_{name}"

  def test_field(self, name: str) -> str:
    """The final fit's field of a metric on the test split: ``test_<name>``."""
    return f"test_{name}"

  def seeds_field(self, name: str) -> str:
    """The field of a metric's value for each seed: ``seed_<name>``."""
    return f"seed_{name}"

  @property
  def seed_field(self) -> str:
    """The record field of the ranking metric of each seed: ``seed_<rank_by>``."""
    return self.seeds_field(self.rank_by)

  @property
  def spread_field(self) -> str:
    """The record field of its standard deviation over seeds: ``val_<rank_by>_std``."""
    return f"{self.field(self.rank_by)}_std"

  @property
  def best_field(self) -> str:
    """A round entry's best ranking-metric value: ``best_val_<rank_by>``."""
    return f"best_{self.field(self.rank_by)}"

  @property
  def median_field(self) -> str:
    """A round entry's median ranking-metric value: ``median_val_<rank_by>``."""
    return f"median_{self.field(self.rank_by)}"

  @property
  def search_field(self) -> str:
    """A chosen trial's ranking metric in the search (the confirmation's and the
    final fit's entries): ``search_val_<rank_by>``."""
    return f"search_{self.field(self.rank_by)}"

  def label(self, name: str | None = None) -> str:
    """``"validation <metric>"`` (the ranking metric by default), for axes and tables."""
    return "validation " + (name or self.rank_by).replace("_", " ")

  def ordering(self) -> tuple[str, ...]:
    """Metric names in the order they rank: the ranking metric, then the others."""
    return (self.rank_by,) + tuple(n for n in self.names if n != self.rank_by)

  def sort_keys(self, values: Mapping[str, np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
    """Keys for ``np.lexsort`` (last key primary) that put the best of ``rows`` first."""
    keys = []
    for name in reversed(self.ordering()):
      column = np.asarray(values[name], np.float64)[rows]
      keys.append(-column if self.directions[name] == MAXIMIZE else column)
    return keys

  def better(self, a: float, b: float) -> bool:
    """Whether ranking-metric value ``a`` is strictly better than ``b`` (NaN never is)."""
    if not math.isfinite(a):
      return False
    if not math.isfinite(b):
      return True
    return a > b if self.maximize else a < b

  def oriented(self, values: np.ndarray) -> np.ndarray:
    """The ranking metric turned so that higher is better (negated when minimised)."""
    values = np.asarray(values, np.float64)
    return values if self.maximize else -values

  def best_of(self, values: np.ndarray) -> float:
    """The best finite value of ``values`` (NaN if none is finite)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
      return math.nan
    return float(finite.max() if self.maximize else finite.min())

  def value_of(self, name: str, metrics: Mapping[str, Any], *, seeds: Any = None,
               test: Mapping[str, Any] | None = None) -> Any:
    """A record field's value by its name, so ``trial.val_accuracy``,
    ``table.val_mse`` and ``final.test_mse`` read like the records:
    ``val_<metric>`` from ``metrics``, ``test_<metric>`` from ``test``,
    ``seed_<rank_by>`` is ``seeds``.

    Raises:
      AttributeError: no such field for this scoring.
    """
    for metric in self.names:
      if name == self.field(metric):
        return metrics[metric]
      if test is not None and name == self.test_field(metric):
        return test[metric]
    if seeds is not None and name == self.seed_field:
      return seeds
    raise AttributeError(name)

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready, as a run directory stores it."""
    return {"metrics": [[name, direction] for name, direction in self.metrics],
            "rank_by": self.rank_by}

  @classmethod
  def from_dict(cls, value: Mapping[str, Any] | None) -> Scoring:
    """The scoring a run directory stored (classification for runs that stored none)."""
    if value is None:
      return CLASSIFICATION
    if not isinstance(value, Mapping) or not isinstance(value.get("metrics"), list):
      raise ValueError(f"scoring {value!r}; expected {{'metrics': [[name, direction], ...], "
                       "'rank_by': name}")
    return cls(tuple((str(name), str(direction)) for name, direction in value["metrics"]),
               str(value.get("rank_by")))


# Classification's: accuracy maximised, then loss minimised (a config without a scoring's).
CLASSIFICATION = Scoring((("accuracy", MAXIMIZE), ("loss", MINIMIZE)), "accuracy")
