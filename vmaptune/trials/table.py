"""Trials: a configuration trained over some epochs, and the table that holds them.

A :class:`TrialTable` is the one representation of trials: columns ``[T]``,
one row per trial, that strategies fill (through a ``TrialLog``), the samplers
and ranking read, and the run directory writes and reads back. A
:class:`Trial` is one row as a record, the form ``trials.jsonl`` holds.

A trial that started from initialisation (no parent, epoch 0) is a
configuration the round sampled: :attr:`TrialTable.is_configuration`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vmaptune.space.discrete import IntUniform
from vmaptune.space.distributions import json_value
from vmaptune.space.space import Space
from vmaptune.trials import fields
from vmaptune.trials.scoring import Scoring

FINISHED, HALVED, EXPLOITED, DIVERGED = "finished", "halved", "exploited", "diverged"


def finite_or_none(value: Any) -> float | None:
  """``float(value)``, or ``None`` where it is NaN or infinite (JSON has no NaN)."""
  value = float(value)
  return value if math.isfinite(value) else None


def _nan(value: float | None) -> float:
  return math.nan if value is None else value


@dataclasses.dataclass(frozen=True)
class Trial:
  """One trial as a record (a line of ``trials.jsonl``).

  Attributes:
    round: 0-based round index.
    trial: 0-based index of the trial within its round.
    lane: the lane it trained on (unique within its round).
    bracket: Hyperband bracket, -1 for other strategies.
    hparams: ``{name: value}``: floats for traced parameters (ints for traced
      integers), the values themselves (ints, strings, tuples, ...) for
      structural ones.
    start_epoch: first epoch it trained (0 unless it continued a parent).
    epochs: epochs it trained.
    metrics: ``{metric: value}`` on the validation split when it stopped, in the
      objective's order (``None`` where it diverged); recorded as ``val_<metric>``
      fields (classification: ``val_accuracy``, ``val_loss``).
    status: why it stopped: ``finished`` (the full budget), ``halved`` (left
      behind at a rung), ``exploited`` (overwritten by a better lane) or ``diverged``.
    parent: the trial whose weights it started from (population-based
      training), -1 if it started from initialisation.
    kept: whether the sampler kept it (the next ranges span it).
    seed_scores: with ``seeds=k``, each seed's ranking metric (``None`` where
      that seed diverged; the metrics are means over seeds), recorded as
      ``seed_<metric>`` (classification: ``seed_accuracy``).
    score_std: with ``seeds=k``, the ranking metric's standard deviation over
      seeds, recorded as ``val_<metric>_std``.
    epoch_loss: mean training loss of each epoch it trained (``epochs``
      values, from ``start_epoch``; ``None`` where not finite).
    scoring: the objective's metric names and directions (not recorded).
  """

  round: int
  trial: int
  lane: int
  bracket: int
  hparams: dict[str, Any]
  start_epoch: int
  epochs: int
  metrics: dict[str, float | None]
  status: str
  parent: int
  kept: bool
  seed_scores: list[float | None] | None = None
  score_std: float | None = None
  epoch_loss: list[float | None] | None = None
  scoring: Scoring = dataclasses.field(kw_only=True, repr=False, compare=False)

  @property
  def score(self) -> float | None:
    """The ranking metric's value (``None`` if it diverged)."""
    return self.metrics.get(self.scoring.rank_by)

  def __getattr__(self, name: str) -> Any:
    # Only for names the class lacks: the record's val_<metric>, seed_<metric>, ..._std.
    if name.startswith("_") or "metrics" not in self.__dict__:
      raise AttributeError(name)
    if name == self.scoring.spread_field:
      return self.score_std
    return self.scoring.value_of(name, self.metrics, seeds=self.seed_scores)

  def hparams_json(self) -> dict[str, Any]:
    """``hparams`` as records hold them (tuples as lists)."""
    return {k: json_value(v) for k, v in self.hparams.items()}

  def to_json(self) -> dict[str, Any]:
    """The record as ``trials.jsonl`` holds it: ``val_<metric>`` fields after
    ``epochs``, tuples as lists, the seed fields only with several seeds."""
    scoring = self.scoring
    record: dict[str, Any] = {
        "round": self.round, "trial": self.trial, "lane": self.lane, "bracket": self.bracket,
        "hparams": self.hparams_json(), "start_epoch": self.start_epoch, "epochs": self.epochs}
    record.update({scoring.field(name): value for name, value in self.metrics.items()})
    record.update(status=self.status, parent=self.parent, kept=self.kept)
    if self.seed_scores is not None:  # One seed: no spread to record.
      record[scoring.seed_field] = list(self.seed_scores)
      record[scoring.spread_field] = self.score_std
    record["epoch_loss"] = self.epoch_loss
    return record

  # What a summary's chosen trial needs besides its metrics (complete=False).
  CHOSEN = ("round", "trial", "hparams", "start_epoch", "epochs")

  @classmethod
  def from_json(cls, record: Any, scoring: Scoring, complete: bool = True) -> Trial:
    """A line of ``trials.jsonl`` read back (hparams as JSON holds them).

    Args:
      complete: every field must be there; else (a summary's ``chosen``) only
        :attr:`CHOSEN` and the metrics, the others ``None`` where absent.

    Raises:
      RecordError: a field is missing or of the wrong type (the error names it).
    """
    def take(key: str, types: tuple[type, ...]) -> Any:
      if complete or key in cls.CHOSEN:
        return fields.take(record, key, types)
      return fields.take(record, key, types + (type(None),), None)

    return cls(
        round=take("round", fields.INT), trial=take("trial", fields.INT),
        lane=take("lane", fields.INT), bracket=take("bracket", fields.INT),
        hparams=dict(take("hparams", fields.DICT)), start_epoch=take("start_epoch", fields.INT),
        epochs=take("epochs", fields.INT),
        metrics={name: fields.take(record, scoring.field(name), fields.NUMBER)
                 for name in scoring.names},
        status=take("status", fields.STR), parent=take("parent", fields.INT),
        kept=take("kept", fields.BOOL),
        seed_scores=fields.numbers(record, scoring.seed_field, None),
        score_std=fields.take(record, scoring.spread_field, fields.NUMBER, None),
        epoch_loss=fields.numbers(record, "epoch_loss", *(() if complete else (None,))),
        scoring=scoring)

  def to_record(self) -> dict[str, Any]:
    """:meth:`to_json` (the name earlier versions used)."""
    return self.to_json()

  @classmethod
  def from_record(cls, record: Mapping[str, Any], scoring: Scoring) -> Trial:
    """:meth:`from_json` (the name earlier versions used)."""
    return cls.from_json(record, scoring)


@dataclasses.dataclass(frozen=True)
class TrialTable:
  """Trials as columns: every array has one row per trial, ``[T]``.

  Attributes:
    hparams: ``{name: [T]}``: float32 for traced parameters; for structural
      ones the values themselves (int64, or objects for a Choice).
    round, trial: int ``[T]``: the round, and the index within it.
    lane, bracket, start_epoch, epochs, parent: int ``[T]`` (see :class:`Trial`;
      ``parent`` indexes trials of the same round).
    status: object ``[T]`` strings.
    metrics: ``{metric: float64 [T]}`` on the validation split when each trial
      stopped, NaN if it diverged; in ``scoring``'s order.
    epoch_loss: float32 ``[T, budget]`` mean training loss per epoch, NaN
      outside the epochs a trial trained.
    seed_scores: float64 ``[T, k]`` each seed's ranking metric when every
      configuration trained with ``k`` seeds (NaN where a seed diverged);
      ``None`` for one seed.
    scoring: the metrics' names and directions, and the ranking one.
  """

  hparams: dict[str, np.ndarray]
  round: np.ndarray
  trial: np.ndarray
  lane: np.ndarray
  bracket: np.ndarray
  start_epoch: np.ndarray
  epochs: np.ndarray
  parent: np.ndarray
  status: np.ndarray
  metrics: dict[str, np.ndarray]
  epoch_loss: np.ndarray
  seed_scores: np.ndarray | None = None
  scoring: Scoring = dataclasses.field(kw_only=True)

  def __len__(self) -> int:
    return len(self.status)

  @property
  def num_trials(self) -> int:
    return len(self.status)

  @property
  def budget(self) -> int:
    """Epochs of a full run."""
    return int(self.epoch_loss.shape[1])

  @property
  def seeds(self) -> int:
    """Seeds every configuration trained with."""
    return 1 if self.seed_scores is None else int(self.seed_scores.shape[1])

  @property
  def score(self) -> np.ndarray:
    """float64 ``[T]``: the ranking metric (NaN where a trial diverged)."""
    return self.metrics[self.scoring.rank_by]

  def __getattr__(self, name: str) -> Any:
    # Only for names the class lacks: ``val_<metric>`` and ``seed_<metric>`` columns.
    if name.startswith("_") or "metrics" not in self.__dict__:
      raise AttributeError(name)
    return self.scoring.value_of(name, self.metrics, seeds=self.seed_scores)

  @property
  def reached(self) -> np.ndarray:
    """int ``[T]``: the epoch each trial stopped at (its ancestors' epochs included)."""
    return self.start_epoch + self.epochs

  @property
  def diverged(self) -> np.ndarray:
    """bool ``[T]``."""
    return self.status == DIVERGED

  @property
  def completed(self) -> np.ndarray:
    """bool ``[T]``: trained to the end of the budget without diverging."""
    return (self.reached == self.budget) & ~self.diverged

  @property
  def is_configuration(self) -> np.ndarray:
    """bool ``[T]``: started from initialisation, a configuration a sampler
    proposed (not a population-based-training child continuing a parent)."""
    return (self.parent < 0) & (self.start_epoch == 0)

  @property
  def lane_epochs(self) -> int:
    """Epochs trained, summed over trials and seeds: the training cost."""
    return int(self.epochs.sum()) * self.seeds

  def take(self, rows: np.ndarray) -> TrialTable:
    """The trials ``rows`` (an index array or a bool mask), in that order."""
    def taken(name: str) -> Any:
      value = getattr(self, name)
      if value is None or name == "scoring":
        return value
      if isinstance(value, dict):
        return {k: v[rows] for k, v in value.items()}
      return value[rows]

    return TrialTable(**{f.name: taken(f.name) for f in dataclasses.fields(TrialTable)})

  def columns(self) -> dict[str, Any]:
    """The table's columns, ``{field: array}`` (to build a subclass from)."""
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrialTable)}

  @classmethod
  def concat(cls, tables: Sequence[TrialTable]) -> TrialTable:
    """The rows of ``tables`` one after another (their hparams' names must agree)."""
    first = tables[0]
    columns = {f.name: (None if getattr(first, f.name) is None
                        else np.concatenate([getattr(t, f.name) for t in tables]))
               for f in dataclasses.fields(TrialTable)
               if f.name not in ("hparams", "metrics", "scoring")}
    for name in ("hparams", "metrics"):
      columns[name] = {key: np.concatenate([getattr(t, name)[key] for t in tables])
                       for key in getattr(first, name)}
    return TrialTable(**columns, scoring=first.scoring)

  @classmethod
  def merge_buckets(cls, parts: Sequence[tuple[Mapping[str, Any], TrialTable]],
                    space: Space) -> TrialTable:
    """One round's table from its buckets' tables, in bucket order.

    Lanes are renumbered so they stay unique within the round (bucket
    ``b``'s lanes follow bucket ``b - 1``'s), trials and parents are offset to
    the merged indices, and each structural value becomes a column of
    ``hparams``, in ``space``'s order.

    Args:
      parts: ``(structural values, table)`` per bucket.
      space: the round's space.
    """
    if len(parts) == 1 and not parts[0][0]:
      return parts[0][1]
    lane_offset = trial_offset = 0
    shifted = []
    for values, table in parts:
      count = len(table)
      hparams = {name: (table.hparams[name] if name in table.hparams
                        else _column(space[name], values[name], count)) for name in space}
      shifted.append(TrialTable(**
          {**table.columns(), "hparams": hparams, "lane": table.lane + lane_offset,
           "trial": table.trial + trial_offset,
           "parent": np.where(table.parent >= 0, table.parent + trial_offset, -1)}))
      lane_offset += int(table.lane.max()) + 1 if count else 0
      trial_offset += count
    return cls.concat(shifted)

  def reordered(self, rows: np.ndarray) -> TrialTable:
    """The same trials of one round, in the order ``rows`` (a permutation of
    every row), renumbered: trial ``i`` is old row ``rows[i]``, and parents follow."""
    first = int(self.trial.min()) if len(self) else 0
    if sorted(np.asarray(rows).tolist()) != list(range(len(self))) or \
        self.trial.tolist() != list(range(first, first + len(self))):
      raise ValueError("reordered takes a permutation of the rows of one round's table")
    position = np.empty(len(rows), np.int64)
    position[np.asarray(rows)] = np.arange(len(rows))
    table = self.take(np.asarray(rows))
    return TrialTable(**{**table.columns(), "trial": np.arange(len(rows)) + first,
                         "parent": np.where(table.parent >= 0,
                                            position[np.maximum(table.parent - first, 0)] + first,
                                            -1)})

  def row(self, round_index: int, trial: int) -> int:
    """The row of trial ``trial`` of round ``round_index``."""
    rows = np.flatnonzero((self.round == round_index) & (self.trial == trial))
    if not len(rows):
      raise KeyError(f"no trial {trial} in round {round_index}")
    return int(rows[0])

  def lineage(self, row: int) -> list[int]:
    """The rows of ``row``'s ancestors and itself, oldest first."""
    chain = [row]
    while self.parent[chain[-1]] >= 0:
      chain.append(self.row(int(self.round[chain[-1]]), int(self.parent[chain[-1]])))
    return chain[::-1]

  def curve(self, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Training loss of a trial over every epoch of its lineage (a
    population-based-training lane's ancestors first): ``(epochs [E], loss
    [E])``, epochs 1-based; an ancestor counts up to its child's start."""
    chain = self.lineage(row)
    epochs: list[int] = []
    losses: list[float] = []
    for position, ancestor in enumerate(chain):
      start = int(self.start_epoch[ancestor])
      end = (int(self.start_epoch[chain[position + 1]]) if position + 1 < len(chain)
             else int(self.reached[ancestor]))
      epochs += range(start + 1, end + 1)
      losses += self.epoch_loss[ancestor, start:end].astype(np.float64).tolist()
    return np.array(epochs), np.array(losses)

  def values(self, row: int, space: Space) -> dict[str, Any]:
    """``{name: value}`` of a trial, every parameter (plain Python values)."""
    return {name: space[name].value(self.hparams[name][row]) for name in self.hparams}

  def traced_values(self, row: int, space: Space) -> dict[str, float]:
    """The traced hyperparameters of a trial, as floats (what its lane was fed)."""
    return {name: float(self.hparams[name][row]) for name in self.hparams
            if not space[name].structural}

  def trial_at(self, row: int, space: Space, kept: bool = False) -> Trial:
    """Trial ``row`` as a record."""
    diverged = bool(self.diverged[row])
    start, epochs = int(self.start_epoch[row]), int(self.epochs[row])
    spread = {}
    if self.seed_scores is not None:
      per_seed = self.seed_scores[row]
      finite = per_seed[np.isfinite(per_seed)]
      spread = {"seed_scores": [finite_or_none(a) for a in per_seed],
                "score_std": float(finite.std()) if len(finite) else None}
    return Trial(
        round=int(self.round[row]), trial=int(self.trial[row]), lane=int(self.lane[row]),
        bracket=int(self.bracket[row]), hparams=self.values(row, space),
        start_epoch=start, epochs=epochs,
        metrics={name: None if diverged else finite_or_none(values[row])
                 for name, values in self.metrics.items()},
        status=str(self.status[row]), parent=int(self.parent[row]), kept=kept,
        epoch_loss=[finite_or_none(v) for v in self.epoch_loss[row, start:start + epochs]],
        scoring=self.scoring, **spread)

  @classmethod
  def from_records(cls, records: Sequence[Mapping[str, Any]], space: Space,
                   budget: int, scoring: Scoring) -> TrialTable:
    """The table ``records`` (``trials.jsonl`` lines) were written from, with
    the dtypes a round produces: exact, since traced values are recorded as
    the float32 values' exact decimals."""
    column = lambda key, dtype: np.array([_nan(r[key]) for r in records], dtype)
    curves = np.full((len(records), budget), np.nan, np.float32)
    for row, record in enumerate(records):
      start = record["start_epoch"]
      curves[row, start:start + record["epochs"]] = [_nan(v) for v in record["epoch_loss"]]
    seeded = bool(records) and records[0].get(scoring.seed_field) is not None
    return TrialTable(
        hparams=_hparams_from_records(records, space), round=column("round", np.int64),
        trial=column("trial", np.int64), lane=column("lane", np.int64),
        bracket=column("bracket", np.int64), start_epoch=column("start_epoch", np.int64),
        epochs=column("epochs", np.int64), parent=column("parent", np.int64),
        status=np.array([r["status"] for r in records], object),
        metrics={name: column(scoring.field(name), np.float64) for name in scoring.names},
        epoch_loss=curves,
        seed_scores=np.array([[_nan(a) for a in r[scoring.seed_field]] for r in records],
                             np.float64) if seeded else None, scoring=scoring)


def _column(dist: Any, value: Any, count: int) -> np.ndarray:
  """``[count]`` copies of one structural value: int64 for integers, else objects."""
  if isinstance(dist, IntUniform):
    return np.full(count, value, np.int64)
  column = np.empty(count, object)
  column.fill(value)
  return column


def _hparams_from_records(records: Sequence[Mapping[str, Any]],
                          space: Space) -> dict[str, np.ndarray]:
  """``{name: [T]}``: float32 traced values, int64 structural integers, the
  values themselves for a Choice (JSON lists back to tuples)."""
  columns = {}
  for name, dist in space.items():
    values = [r["hparams"][name] for r in records]
    if not dist.structural:
      columns[name] = np.array(values, np.float32)  # Exact: the record is a float32's value.
    elif isinstance(dist, IntUniform):
      columns[name] = np.array(values, np.int64)
    else:
      columns[name] = np.empty(len(values), object)
      for i, value in enumerate(values):
        columns[name][i] = dist.value(value)
  return columns
