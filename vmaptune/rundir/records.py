"""The run format's records: what ``trials.jsonl`` and ``summary.json`` hold, typed.

Each record is a frozen dataclass with ``to_json()`` (the JSON object, keys in
the order the files hold them) and ``from_json(value, scoring)``, which checks
every field it reads and raises one :class:`RecordError` naming the field
(``'rounds[1].wall_s' is str, expected number``). The builders (the search's
results, confirmation and final fit) write through them, the damage checks
(:mod:`vmaptune.rundir.damage`) validate through them, and ``show``, the
report, the report page and the trackers read them. Keys derived from a
metric's name (``val_<metric>``, ``test_<metric>``, ``seed_<metric>``,
``best_val_<rank_by>``, ...) are composed by :class:`~vmaptune.trials.scoring.Scoring`
and nowhere else.

* :data:`TrialRecord`: a line of ``trials.jsonl``. It is
  :class:`vmaptune.trials.table.Trial`: the trial table (a lower layer) builds
  and reads it, so its codec lives there; this module only names it.
* :class:`Summary`: ``summary.json``, holding a :class:`RoundEntry` per
  completed round (with :class:`BucketEntry` s for structural spaces), the
  chosen trial (a :data:`TrialRecord`), the :class:`ConfirmationRecord`
  (with a :class:`CandidateRecord` per candidate), the :class:`FinalFitRecord`
  and the :class:`ParamsPointer`.

Fields a format-1 directory lacks read back as ``None``; a record read from
such a file writes them as ``null``.

>>> from vmaptune.trials.scoring import CLASSIFICATION
>>> pointer = ParamsPointer("search", 0, 3, {"learning_rate": 0.01}, sha256="ab")
>>> ParamsPointer.from_json(pointer.to_json(), CLASSIFICATION) == pointer
True
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from vmaptune.trials import fields
from vmaptune.trials.fields import DICT, FLOAT, INT, LIST, NUMBER, STR, RecordError, take, within
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import Trial

TrialRecord = Trial  # A line of trials.jsonl (see the module).
SEARCH, FINAL_FIT = "search", "final_fit"  # Whose parameters best_params.msgpack holds.
_NONE = (type(None),)
CONFIRMATION_RULES = ("mean", "lcb")  # What the confirmation chose by (ConfirmationRecord.rule).
TRAINED_IN = ("alone", "lanes")  # How the final fit trained (FinalFitRecord.trained_in).

__all__ = ["BucketEntry", "BudgetRecord", "CandidateRecord", "ConfirmationRecord",
           "EstimateGroupRecord", "EstimatesRecord", "FinalFitRecord", "ParamsPointer",
           "RecordError", "RoundEntry", "Summary", "TrialRecord"]


def _optional(types: tuple[type, ...]) -> tuple[type, ...]:
  return types + _NONE


def _items(record: Any, key: str, default: Any = None) -> list[Any] | None:
  """``record[key]``: a list (``default`` where absent)."""
  return take(record, key, _optional(LIST) if default is None else LIST, default)


@dataclasses.dataclass(frozen=True)
class BucketEntry:
  """A round's bucket (one combination of structural values) in its summary entry.

  Attributes:
    values: the structural values, JSON-ready.
    configurations: configurations it started; trials: trials it trained.
    kept: trials the sampler kept; diverged: trials that diverged.
    best_trial: its best trial that trained the full budget (``None``: none did).
    best: that trial's ranking metric, ``best_val_<rank_by>``.
  """

  values: dict[str, Any]
  configurations: int
  trials: int
  kept: int
  diverged: int
  best_trial: int | None
  best: float | None
  scoring: Scoring = dataclasses.field(repr=False, compare=False, kw_only=True)

  def to_json(self) -> dict[str, Any]:
    return {"values": self.values, "configurations": self.configurations,
            "trials": self.trials, "kept": self.kept, "diverged": self.diverged,
            "best_trial": self.best_trial, self.scoring.best_field: self.best}

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring) -> BucketEntry:
    count = lambda key: take(value, key, _optional(INT), None)
    return cls(take(value, "values", DICT), count("configurations"), count("trials"),
               count("kept"), count("diverged"), count("best_trial"),
               take(value, scoring.best_field, NUMBER, None), scoring=scoring)


@dataclasses.dataclass(frozen=True)
class RoundEntry:
  """A completed round in ``summary.json``'s ``rounds``.

  Attributes:
    round: 0-based index; trials: trials it trained (its lines of ``trials.jsonl``).
    strategy: the strategy, described (``"halving(eta=3, min_epochs=1)"``).
    space, next_space: the ranges sampled and handed to the next round (``Space.to_dict``).
    configurations, lane_epochs, kept, diverged: counts.
    statuses: ``{status: trials}``.
    best, median: the ranking metric's best and median over the trials that
      trained the full budget (``best_val_<rank_by>``, ``median_val_<rank_by>``).
    best_trial: the best such trial (``None``: none did).
    wall_s, compile_s, trace_s: seconds; compiles: programs compiled.
    trials_per_s: configurations per second of wall time.
    buckets: per bucket, with structural parameters (``None`` without).
  """

  round: int
  trials: int
  strategy: str | None = None
  space: dict[str, Any] | None = None
  next_space: dict[str, Any] | None = None
  configurations: int | None = None
  lane_epochs: int | None = None
  kept: int | None = None
  diverged: int | None = None
  statuses: dict[str, int] | None = None
  best: float | None = None
  median: float | None = None
  best_trial: int | None = None
  wall_s: float | None = None
  compile_s: float | None = None
  trace_s: float | None = None
  compiles: int | None = None
  trials_per_s: float | None = None
  buckets: tuple[BucketEntry, ...] | None = None
  scoring: Scoring = dataclasses.field(repr=False, compare=False, kw_only=True)

  # What resuming a run needs of an entry (reading it back needs round and trials).
  RESUMING = ("strategy", "space", "next_space", "wall_s", "compile_s", "trace_s", "compiles")

  def to_json(self) -> dict[str, Any]:
    entry = {
        "round": self.round, "strategy": self.strategy, "space": self.space,
        "next_space": self.next_space, "configurations": self.configurations,
        "trials": self.trials, "lane_epochs": self.lane_epochs, "kept": self.kept,
        "diverged": self.diverged, "statuses": self.statuses,
        self.scoring.best_field: self.best, self.scoring.median_field: self.median,
        "best_trial": self.best_trial, "wall_s": self.wall_s, "compile_s": self.compile_s,
        "trace_s": self.trace_s, "compiles": self.compiles, "trials_per_s": self.trials_per_s}
    if self.buckets is not None:
      entry["buckets"] = [bucket.to_json() for bucket in self.buckets]
    return entry

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring, complete: bool = True) -> RoundEntry:
    """Raises :class:`RecordError`; with ``complete``, every field resuming reads
    must be there (else only ``round`` and ``trials``)."""
    def get(key: str, types: tuple[type, ...]) -> Any:
      required = complete and key in cls.RESUMING
      return take(value, key, types if required else _optional(types),
                  *(() if required else (None,)))

    buckets = _items(value, "buckets")
    if buckets is not None:
      parsed = []
      for i, bucket in enumerate(buckets):
        with within(f"buckets[{i}]"):
          parsed.append(BucketEntry.from_json(bucket, scoring))
      buckets = tuple(parsed)
    return cls(
        round=take(value, "round", INT), trials=take(value, "trials", INT),
        strategy=get("strategy", STR), space=get("space", DICT),
        next_space=get("next_space", DICT), configurations=get("configurations", INT),
        lane_epochs=get("lane_epochs", INT), kept=get("kept", INT),
        diverged=get("diverged", INT), statuses=get("statuses", DICT),
        best=take(value, scoring.best_field, NUMBER, None),
        median=take(value, scoring.median_field, NUMBER, None),
        best_trial=get("best_trial", INT), wall_s=get("wall_s", FLOAT),
        compile_s=get("compile_s", FLOAT), trace_s=get("trace_s", FLOAT),
        compiles=get("compiles", INT), trials_per_s=get("trials_per_s", FLOAT),
        buckets=buckets, scoring=scoring)


@dataclasses.dataclass(frozen=True)
class ParamsPointer:
  """The summary's ``best_params``: whose parameters ``best_params.msgpack`` holds.

  Attributes:
    source: ``"search"`` (the best trial's so far, as it trained) or
      ``"final_fit"``; recorded as ``from``.
    round, trial: the trial's.
    hparams: its configuration, JSON-ready.
    sha256: the file's digest (``None`` until the file is written).
  """

  source: str
  round: int
  trial: int
  hparams: dict[str, Any]
  sha256: str | None = None

  @classmethod
  def of(cls, source: str, trial: Trial) -> ParamsPointer:
    """The pointer to ``trial``'s parameters (its digest added when written)."""
    return cls(source, trial.round, trial.trial, trial.hparams_json())

  def to_json(self) -> dict[str, Any]:
    pointer = {"from": self.source, "round": self.round, "trial": self.trial,
               "hparams": self.hparams}
    if self.sha256 is not None:
      pointer["sha256"] = self.sha256
    return pointer

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring | None = None) -> ParamsPointer:
    return cls(take(value, "from", STR), take(value, "round", INT), take(value, "trial", INT),
               take(value, "hparams", DICT), take(value, "sha256", STR))


@dataclasses.dataclass(frozen=True)
class BudgetRecord:
  """The summary's ``budget``: a run with a wall-time budget, its plan and its spending.

  Attributes:
    seconds: the budget (the whole call: rounds, confirmation, final fit).
    spent_s: seconds spent when the summary was written (a resumed run's earlier
      time included).
    rounds: rounds completed; planned: rounds the plan held then (completed included).
    round_s, fixed_s: what the plan was made from: a compiled round's training
      and evaluation, and compiling and tracing (``None`` before a round completed).
    reserve_s: seconds kept for the confirmation and the final fit.
  """

  seconds: float
  spent_s: float
  rounds: int
  planned: int
  round_s: float | None = None
  fixed_s: float | None = None
  reserve_s: float | None = None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring | None = None) -> BudgetRecord:
    optional = lambda key: take(value, key, _optional(FLOAT), None)
    return cls(take(value, "seconds", FLOAT), take(value, "spent_s", FLOAT),
               take(value, "rounds", INT), take(value, "planned", INT),
               optional("round_s"), optional("fixed_s"), optional("reserve_s"))


@dataclasses.dataclass(frozen=True)
class CandidateRecord:
  """A configuration the confirmation retrained.

  Attributes:
    round, trial, hparams: the search's trial (hparams JSON-ready).
    search: its ranking metric in the search (``search_val_<rank_by>``).
    mean, sd: the ranking metric's mean and standard deviation over seeds.
    seeds: ``{metric: [S]}`` each seed's value (``seed_<metric>``; ``None`` where it diverged).
    estimate, estimate_se: its estimated expected score and that estimate's
      standard error (see :class:`EstimatesRecord`; ``None`` where it has none).
  """

  round: int
  trial: int
  hparams: dict[str, Any]
  search: float | None
  mean: float | None
  sd: float | None
  seeds: dict[str, list[float | None]]
  estimate: float | None = None
  estimate_se: float | None = None
  scoring: Scoring = dataclasses.field(repr=False, compare=False, kw_only=True)

  def to_json(self) -> dict[str, Any]:
    return {"round": self.round, "trial": self.trial, "hparams": self.hparams,
            self.scoring.search_field: self.search, "mean": self.mean, "sd": self.sd,
            **{self.scoring.seeds_field(name): values for name, values in self.seeds.items()},
            "estimate": self.estimate, "estimate_se": self.estimate_se}

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring) -> CandidateRecord:
    return cls(take(value, "round", INT), take(value, "trial", INT), take(value, "hparams", DICT),
               take(value, scoring.search_field, NUMBER, None), take(value, "mean", NUMBER, None),
               take(value, "sd", NUMBER, None),
               {name: fields.numbers(value, scoring.seeds_field(name)) for name in scoring.names},
               take(value, "estimate", NUMBER, None), take(value, "estimate_se", NUMBER, None),
               scoring=scoring)


@dataclasses.dataclass(frozen=True)
class EstimateGroupRecord:
  """One group of :class:`EstimatesRecord`: configurations fitted together.

  Attributes:
    values: the structural values they share (``{}`` without any).
    reached: the epoch they stopped at.
    trials, fitted: how many there are, and how many the kernel was fitted on
      (0: too few, their raw scores stand).
    noise_sd: the fitted spread of one trial's score around its expected
      score, in the metric's units (``None`` where not fitted).
  """

  values: dict[str, Any]
  reached: int
  trials: int
  fitted: int
  noise_sd: float | None

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: Any) -> EstimateGroupRecord:
    return cls(take(value, "values", DICT), take(value, "reached", INT),
               take(value, "trials", INT), take(value, "fitted", INT),
               take(value, "noise_sd", NUMBER, None))


@dataclasses.dataclass(frozen=True)
class EstimatesRecord:
  """The confirmation's ``estimates``: every estimated trial's expected score
  (:func:`vmaptune.trials.estimate.estimate`, over the search's trials as the
  confirmation chose its candidates), as columns of equal length ``[N]``.

  Attributes:
    round, trial: each estimated trial's round and trial number.
    mean: its estimated expected score (the ranking metric, in its units).
    stderr: that estimate's standard error (``None`` where infinite).
    groups: one :class:`EstimateGroupRecord` per group fitted.
  """

  round: tuple[int, ...]
  trial: tuple[int, ...]
  mean: tuple[float, ...]
  stderr: tuple[float | None, ...]
  groups: tuple[EstimateGroupRecord, ...]

  def of(self, round_index: int, trial: int) -> tuple[float, float | None] | None:
    """``(mean, stderr)`` of a trial, ``None`` if it has no estimate."""
    return self._by_trial.get((round_index, trial))

  @functools.cached_property
  def _by_trial(self) -> dict[tuple[int, int], tuple[float, float | None]]:
    return {(r, t): (m, s) for r, t, m, s in zip(self.round, self.trial, self.mean, self.stderr,
                                                 strict=True)}

  def to_json(self) -> dict[str, Any]:
    return {"round": list(self.round), "trial": list(self.trial), "mean": list(self.mean),
            "stderr": list(self.stderr), "groups": [g.to_json() for g in self.groups]}

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring | None = None) -> EstimatesRecord:
    columns = {key: take(value, key, LIST) for key in ("round", "trial", "mean", "stderr")}
    for key, column in columns.items():
      for i, item in enumerate(column):
        fields.check(item, INT if key in ("round", "trial") else
                     FLOAT if key == "mean" else NUMBER, f"{key}[{i}]")
      if len(column) != len(columns["round"]):
        raise RecordError(key, f"has {len(column)} values, expected {len(columns['round'])} "
                          "(as many as 'round')")
    groups = []
    for i, group in enumerate(take(value, "groups", LIST)):
      with within(f"groups[{i}]"):
        groups.append(EstimateGroupRecord.from_json(group))
    return cls(*(tuple(columns[key]) for key in ("round", "trial", "mean", "stderr")),
               tuple(groups))


@dataclasses.dataclass(frozen=True)
class ConfirmationRecord:
  """The summary's ``confirmation``: the top configurations retrained with fresh seeds.

  Attributes:
    configurations, seeds: ``K`` and ``S``.
    chosen: the chosen candidate's index.
    search: the chosen trial's search score (``search_val_<rank_by>``).
    mean, sd, optimism: the chosen candidate's (see
      :class:`vmaptune.search.confirmation.Confirmation`).
    lane_epochs: epochs trained over its lanes; wall_s: its wall time.
    candidates: one :class:`CandidateRecord` each, best first.
    rule: what chose among them: ``"mean"`` (the best mean over seeds) or
      ``"lcb"`` (the best lower confidence bound, when seeds disagreed widely;
      see :class:`vmaptune.search.confirmation.Confirmation`).
    estimates: the estimates the candidates were chosen by (``None`` without).
  """

  configurations: int | None
  seeds: int
  chosen: int | None
  search: float | None
  mean: float | None
  sd: float | None
  optimism: float | None
  lane_epochs: int | None
  wall_s: float
  candidates: tuple[CandidateRecord, ...]
  rule: str | None = None
  estimates: EstimatesRecord | None = None
  scoring: Scoring = dataclasses.field(repr=False, compare=False, kw_only=True)

  def to_json(self) -> dict[str, Any]:
    return {"configurations": self.configurations, "seeds": self.seeds, "chosen": self.chosen,
            self.scoring.search_field: self.search, "mean": self.mean, "sd": self.sd,
            "optimism": self.optimism, "lane_epochs": self.lane_epochs, "wall_s": self.wall_s,
            "rule": self.rule, "candidates": [c.to_json() for c in self.candidates],
            "estimates": None if self.estimates is None else self.estimates.to_json()}

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring) -> ConfirmationRecord:
    candidates = []
    for i, candidate in enumerate(take(value, "candidates", LIST)):
      with within(f"candidates[{i}]"):
        candidates.append(CandidateRecord.from_json(candidate, scoring))
    count = lambda key: take(value, key, _optional(INT), None)
    number = lambda key: take(value, key, NUMBER, None)
    rule = take(value, "rule", _optional(STR), None)
    if rule not in (None, *CONFIRMATION_RULES):
      raise RecordError("rule", f"is {rule!r}, expected one of {list(CONFIRMATION_RULES)}")
    estimates = take(value, "estimates", _optional(DICT), None)
    with within("estimates"):
      estimates = None if estimates is None else EstimatesRecord.from_json(estimates)
    return cls(count("configurations"), take(value, "seeds", INT), count("chosen"),
               number(scoring.search_field), number("mean"), number("sd"), number("optimism"),
               count("lane_epochs"), take(value, "wall_s", FLOAT), tuple(candidates),
               rule, estimates, scoring=scoring)


@dataclasses.dataclass(frozen=True)
class FinalFitRecord:
  """The summary's ``final_fit``: the chosen configuration retrained alone.

  Attributes:
    config: its hyperparameters, JSON-ready.
    round, trial, lane: the chosen trial's.
    schedule: ``[(first_epoch, end_epoch, hparams), ...]`` it was retrained with.
    batch_size: its training batch size.
    search: the chosen trial's search score (``search_val_<rank_by>``).
    val, test: ``{metric: value}`` on the validation and the test split
      (``val_<metric>``, ``test_<metric>``; NaN without a test split).
    trained_in: ``"alone"`` (one-lane programs compiled for it) or ``"lanes"``
      (the first lane of a population laid out as a round's, in the round's
      programs: see :class:`vmaptune.search.final_fit.FinalFit`); the file holds
      the key only for ``"lanes"``.
  """

  config: dict[str, Any] | None
  round: int
  trial: int
  lane: int | None
  schedule: tuple[tuple[int, int, dict[str, Any]], ...] | None
  batch_size: int | None
  search: float | None
  val: dict[str, float | None]
  test: dict[str, float | None]
  trained_in: str = "alone"
  scoring: Scoring = dataclasses.field(repr=False, compare=False, kw_only=True)

  @property
  def refit(self) -> str:
    """How the scores were refit, as ``show`` and the report say it."""
    return "refit alone" if self.trained_in == "alone" else "refit as a round's lane"

  @property
  def val_score(self) -> float | None:
    """The ranking metric on the validation split, refit."""
    return self.val[self.scoring.rank_by]

  @property
  def test_score(self) -> float | None:
    """The ranking metric on the test split."""
    return self.test[self.scoring.rank_by]

  def to_json(self) -> dict[str, Any]:
    scoring = self.scoring
    return {"config": self.config, "round": self.round, "trial": self.trial, "lane": self.lane,
            "schedule": None if self.schedule is None else
            [{"first_epoch": a, "end_epoch": b, "hparams": h} for a, b, h in self.schedule],
            "batch_size": self.batch_size, scoring.search_field: self.search,
            **{scoring.field(name): value for name, value in self.val.items()},
            **{scoring.test_field(name): value for name, value in self.test.items()},
            **({} if self.trained_in == "alone" else {"trained_in": self.trained_in})}

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring) -> FinalFitRecord:
    steps = _items(value, "schedule")
    schedule = None
    if steps is not None:
      schedule = []
      for i, step in enumerate(steps):
        with within(f"schedule[{i}]"):
          schedule.append((take(step, "first_epoch", INT), take(step, "end_epoch", INT),
                           take(step, "hparams", DICT)))
      schedule = tuple(schedule)
    trained_in = take(value, "trained_in", STR, "alone")
    if trained_in not in TRAINED_IN:
      raise RecordError("trained_in", f"is {trained_in!r}, expected one of {list(TRAINED_IN)}")
    return cls(take(value, "config", _optional(DICT), None), take(value, "round", INT),
               take(value, "trial", INT), take(value, "lane", _optional(INT), None), schedule,
               take(value, "batch_size", _optional(INT), None),
               take(value, scoring.search_field, NUMBER, None),
               {name: take(value, scoring.field(name), NUMBER) for name in scoring.names},
               {name: take(value, scoring.test_field(name), NUMBER) for name in scoring.names},
               trained_in, scoring=scoring)


@dataclasses.dataclass(frozen=True)
class Summary:
  """``summary.json``: the run so far.

  Attributes:
    rounds: one :class:`RoundEntry` per completed round.
    chosen: the chosen trial's record (``None`` before a round completed).
    final_fit, confirmation: ``None`` until they ran.
    settings: the run's settings, described; space: the original space (``Space.to_dict``).
    wall_s, compile_s, trace_s: seconds; programs_compiled: over the search.
    lane_epochs: epochs trained over every lane (the confirmation's included).
    best_params: whose parameters ``best_params.msgpack`` holds (``None``: nobody's yet).
    error: why the run stopped, when a round failed (written only then).
    budget: the wall-time budget's plan and spending (written only with a budget).
  """

  rounds: tuple[RoundEntry, ...]
  chosen: Trial | None = None
  final_fit: FinalFitRecord | None = None
  settings: dict[str, Any] | None = None
  space: dict[str, Any] | None = None
  confirmation: ConfirmationRecord | None = None
  wall_s: float | None = None
  compile_s: float | None = None
  trace_s: float | None = None
  programs_compiled: int | None = None
  lane_epochs: int | None = None
  best_params: ParamsPointer | None = None
  error: str | None = None
  budget: BudgetRecord | None = None

  def to_json(self) -> dict[str, Any]:
    as_json = lambda record: None if record is None else record.to_json()
    summary = {
        "chosen": as_json(self.chosen), "final_fit": as_json(self.final_fit),
        "settings": self.settings, "space": self.space,
        "rounds": [entry.to_json() for entry in self.rounds],
        "confirmation": as_json(self.confirmation), "wall_s": self.wall_s,
        "compile_s": self.compile_s, "trace_s": self.trace_s,
        "programs_compiled": self.programs_compiled, "lane_epochs": self.lane_epochs,
        "best_params": as_json(self.best_params)}
    if self.budget is not None:
      summary["budget"] = self.budget.to_json()
    if self.error is not None:
      summary["error"] = self.error
    return summary

  @classmethod
  def from_json(cls, value: Any, scoring: Scoring, complete: bool = False) -> Summary:
    """Raises :class:`RecordError` naming the first damaged field; ``complete``:
    each round entry holds what resuming reads (see :meth:`RoundEntry.from_json`)."""
    return cls(rounds=round_entries(value, scoring, complete), **parts(value, scoring),
               settings=take(value, "settings", _optional(DICT), None),
               space=take(value, "space", _optional(DICT), None),
               wall_s=take(value, "wall_s", FLOAT, None),
               compile_s=take(value, "compile_s", FLOAT, None),
               trace_s=take(value, "trace_s", FLOAT, None),
               programs_compiled=take(value, "programs_compiled", _optional(INT), None),
               lane_epochs=take(value, "lane_epochs", _optional(INT), None),
               error=take(value, "error", _optional(STR), None),
               budget=budget_record(value))


PARTS = {"chosen": Trial, "final_fit": FinalFitRecord, "confirmation": ConfirmationRecord,
         "best_params": ParamsPointer}


def budget_record(value: Any) -> BudgetRecord | None:
  """A summary's ``budget`` entry, read into its record (``None`` where absent)."""
  entry = take(value, "budget", _optional(DICT), None)
  with within("budget"):
    return None if entry is None else BudgetRecord.from_json(entry)


def parts(value: Any, scoring: Scoring) -> dict[str, Any]:
  """A summary's chosen trial, final fit, confirmation and parameter pointer,
  each read into its record (``None`` where absent or null)."""
  found = {}
  for key, record in PARTS.items():
    part = take(value, key, _optional(DICT), None)
    with within(key):
      found[key] = (None if part is None else record.from_json(part, scoring, complete=False)
                    if record is Trial else record.from_json(part, scoring))
  return found


def round_entries(value: Any, scoring: Scoring, complete: bool = False,
                  leading: bool = False) -> tuple[RoundEntry, ...]:
  """A summary's round entries, checked: each well-formed, numbered in order,
  with at least one trial. With ``leading``, the well-formed leading entries
  (their count tells where the damage is) instead of raising on a damaged one."""
  entries = []
  for index, entry in enumerate(take(value, "rounds", LIST)):
    try:
      with within(f"rounds[{index}]"):
        parsed = RoundEntry.from_json(entry, scoring, complete)
        if parsed.round != index:
          raise RecordError("round", f"is {parsed.round}, expected {index}")
        if parsed.trials < 1:
          raise RecordError("trials", f"is {parsed.trials}, expected at least 1")
    except RecordError:
      if leading:
        break
      raise
    entries.append(parsed)
  return tuple(entries)


def read_summary(value: Mapping[str, Any] | None, scoring: Scoring) -> Summary | None:
  """``summary.json``'s value as a :class:`Summary` (``None`` for ``None``)."""
  return None if value is None else Summary.from_json(value, scoring)
