"""Progress of a run as events: a live line on a terminal, JSON lines, or your callback.

This module only listens. Training reports its pieces and evaluations to a
:class:`Reporter` (a :class:`vmaptune.search.observer.Observer`), which turns them
into event dicts for a :class:`Progress` sink. How training is cut into
reported pieces is :mod:`vmaptune.lanes.events`' business: ``every="auto"`` (the
default) sizes pieces to about ``interval_s`` seconds of training each, from
the speed of the pieces before (the first piece of a run is one epoch);
``every=k`` cuts pieces of ``k`` epochs; ``every=None`` reports once per
segment as the strategy planned it (once per round and bucket for random
search, once per rung for successive halving). A piece is the same
computation, bit for bit, at the cost of one program launch and one read
(a few milliseconds on a CPU). Without a progress sink (the default of
:func:`vmaptune.tune`) nothing is cut or read back.

Every event is a dict with ``event`` (its kind) and ``t`` (seconds since the
run started); ``round`` is 0-based, as in ``trials.jsonl``. Scores are the
objective's ranking metric, named by its record field: ``val_accuracy`` and
``best_val_accuracy`` below for classification (the default), ``val_mse`` and
``best_val_mse`` for regression, and so on; "best" is the highest of a
maximised metric and the lowest of a minimised one:

* ``run_start``: ``rounds`` (``None`` when a wall-time budget plans them),
  ``population``, ``epochs``, ``seeds``, ``sampler``, ``strategy``, ``space``,
  ``restored`` (rounds a resumed run restored from its records; their best counts in
  ``best_val_accuracy``), and with a wall-time budget ``time_budget_s``.
* ``round_start``: ``round``, ``rounds``, ``space`` (the ranges sampled),
  ``buckets`` (combinations of structural values trained).
* ``segment``, after each piece of training: ``round``, ``bucket`` (0-based
  position in the round), ``buckets``, ``values`` (the bucket's structural
  values), ``first_epoch``, ``epoch`` (epochs reached), ``budget``, ``lanes``
  (training now), ``alive`` (of them, not diverged), ``lane_epochs`` (trained
  so far this round, seeds included), ``trials_per_s`` (full-budget trials'
  worth of training per second this round), ``best_val_accuracy`` (best of
  the run so far, ``None`` before any trial trained the full budget), and with a
  wall-time budget ``time_left_s`` (also in ``evaluation``).
* ``evaluation``, after each validation pass: ``round``, ``bucket``,
  ``buckets``, ``values``, ``epoch``, ``budget``, ``lanes``, ``alive`` (not
  diverged, validation loss included),
  ``val_accuracy`` (best lane of this pass; ``None`` if all diverged),
  ``best_val_accuracy``.
* ``round_end``: ``round``, ``rounds``, ``configurations``, ``trials``,
  ``diverged``, ``kept``, ``val_accuracy`` (the round's best full-budget trial,
  ``None`` if none), ``best_val_accuracy``, ``lane_epochs``, ``wall_s``,
  ``trials_per_s``, ``next_space``.
* ``run_end``: ``rounds`` (completed), ``best_val_accuracy``, ``chosen``
  (the chosen trial's hyperparameters), ``wall_s``.

A round run again after running out of device memory starts again with a new
``round_start``. In a run over several processes every process must pass the
same ``progress`` (pieces are collective programs), ``"auto"`` pieces fall
back to whole segments (timings differ between processes), and only process 0
reports.

>>> events = []
>>> import vmaptune as vt
>>> result = vt.tune(vt.models.MLP(hidden=(8,)), vt.data.digits(),
...                  vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)),
...                  population=4, rounds=1, epochs=2, progress=events.append)
>>> [e["event"] for e in events]
['run_start', 'round_start', 'segment', 'segment', 'evaluation', 'round_end', 'run_end']
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from typing import IO, Any

import jax
import numpy as np
from tqdm import TqdmWarning, tqdm

from vmaptune.lanes.distributed import is_first_process
from vmaptune.lanes.events import Pieces
from vmaptune.search.observer import Observer
from vmaptune.search.results import round_label
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import finite_or_none

Event = dict[str, Any]


class Progress:
  """Receives events (see the module docstring); subclasses show them.

  Attributes:
    every: how training is cut into reported pieces: ``"auto"`` (about
      ``interval_s`` seconds each), a whole number of epochs, or ``None`` (the
      strategy's segments).
    interval_s: the seconds of training an ``"auto"`` piece aims at.
  """

  every: int | str | None = "auto"
  interval_s: float = 0.5

  def __call__(self, event: Event) -> None:
    raise NotImplementedError

  def close(self) -> None:
    """Ends the display (e.g. clears a live line); called after the run or an error."""


class Callback(Progress):
  """Calls ``fn(event)`` for every event.

  Args:
    fn: called with each event dict.
    every, interval_s: see :class:`Progress`.
  """

  def __init__(self, fn: Callable[[Event], Any], every: int | str | None = "auto",
               interval_s: float = 0.5):
    self.fn = fn
    Pieces(every, interval_s)  # Checks them.
    self.every, self.interval_s = every, float(interval_s)

  def __call__(self, event: Event) -> None:
    self.fn(event)


class JsonLines(Progress):
  """Writes each event as one JSON object per line, flushed, for scripts and batch logs.

  Args:
    stream: where to write (default: standard output).
    every, interval_s: see :class:`Progress`.
  """

  def __init__(self, stream: IO[str] | None = None, every: int | str | None = "auto",
               interval_s: float = 0.5):
    self.stream = stream
    Pieces(every, interval_s)  # Checks them.
    self.every, self.interval_s = every, float(interval_s)

  def __call__(self, event: Event) -> None:
    stream = self.stream or sys.stdout
    stream.write(json_line(event) + "\n")
    stream.flush()


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} {unit} [{elapsed}<{remaining}{postfix}]"
STARTING = "{desc} starting ..."


class Bar(Progress):
  """A live progress bar per round, drawn by tqdm, e.g.
  ``round 2/4: 60%|######    | 12/20 epochs [00:01<00:00, lanes 250/256 alive, 85.1 trials/s,
  best 0.9722]``.

  The bar fills with the epochs reached in the current bucket (combination of
  structural values) over the round's buckets; its line is cleared when the
  round ends, so per-round summaries print on a clean line. In a Jupyter notebook
  with ipywidgets it is tqdm's notebook widget instead (:func:`bar_kind`), one for the
  run, each round starting it again, hidden when the run ends.

  Args:
    stream: where to draw (default: standard output).
    every, interval_s: see :class:`Progress`.
  """

  def __init__(self, stream: IO[str] | None = None, every: int | str | None = "auto",
               interval_s: float = 0.5):
    self.stream = stream
    Pieces(every, interval_s)  # Checks them.
    self.every, self.interval_s = every, float(interval_s)
    self._bar: tqdm | None = None
    self._round = ""
    self._rate: float | None = None  # Evaluations show the last segment's.

  def __call__(self, event: Event) -> None:
    kind = event["event"]
    if kind in ("segment", "evaluation"):
      self._rate = event.get("trials_per_s", self._rate)
      self._update(event)
    elif kind == "round_start":
      self._rate = None
      self._round = round_label(event["round"], event["rounds"])
      self._start_round()
    elif kind == "run_end" or (kind == "round_end" and not self._widget):
      self.close()

  @property
  def _widget(self) -> bool:
    """Whether the bar is the notebook's widget (one per run: a widget per round
    would pile up in the notebook)."""
    return self._bar is not None and type(self._bar) is not tqdm

  def _start_round(self) -> None:
    if not self._widget:
      self.close()
      self._bar = self._open(total=None)
      return
    self._bar.reset()  # The round's time from zero; its length comes with its first piece.
    self._bar.set_description_str(self._round, refresh=False)
    self._bar.bar_format = STARTING
    self._bar.refresh()

  def _open(self, total: int | None) -> tqdm:
    # Every event draws (they come a piece of training apart); leave=False clears the line
    # (and hides the notebook's widget).
    kind = bar_kind(self.stream)
    shape = {}
    if kind is tqdm:  # The notebook's widget sizes itself; a number would be its pixels.
      # The terminal's size, else 100 x 20: a terminal may report none (e.g. a new pty), and
      # tqdm hides a bar below a height of 0.
      size = shutil.get_terminal_size((100, 20))
      shape = dict(file=self.stream or sys.stdout, ncols=max(size.columns - 1, 40),
                   nrows=max(size.lines, 2))
    return kind(total=total, desc=self._round, unit="epochs", leave=False, mininterval=0,
                bar_format=STARTING if total is None else BAR_FORMAT, **shape)

  def postfix(self, event: Event) -> str:
    """What the bar shows after its time: bucket, lanes alive, speed, best so far."""
    parts = []
    if event["buckets"] > 1:
      parts.append(f"bucket {event['bucket'] + 1}/{event['buckets']}")
    parts.append(f"lanes {event['alive']}/{event['lanes']} alive")
    rate = event.get("trials_per_s", self._rate)
    if rate is not None:
      parts.append(f"{rate:.1f} trials/s")
    if event.get("time_left_s") is not None:
      parts.append(f"{tqdm.format_interval(event['time_left_s'])} left")
    # The run's best, whichever metric ranks (best_val_accuracy, best_val_mse, ...).
    best = next((v for k, v in event.items() if k.startswith("best_val_")), None)
    parts.append("best " + ("-" if best is None else f"{best:.4f}"))
    return ", ".join(parts)

  def _update(self, event: Event) -> None:
    total = event["buckets"] * event["budget"]
    if self._bar is None:
      self._bar = self._open(total)
    elif self._bar.total != total or self._bar.bar_format == STARTING:
      # The round's first piece: now its length is known.
      if self._widget:  # The widget learns its length from reset() only.
        started = self._bar.start_t
        self._bar.reset(total)
        self._bar.start_t = started  # The round's time, compilation included, as in a terminal.
      self._bar.total, self._bar.bar_format = total, BAR_FORMAT
    self._bar.n = event["bucket"] * event["budget"] + event["epoch"]
    self._bar.set_postfix_str(self.postfix(event), refresh=False)
    self._bar.refresh()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


def bar_kind(stream: IO[str] | None) -> type[tqdm]:
  """tqdm's notebook bar (a widget) in a Jupyter kernel with ipywidgets installed, as
  ``tqdm.auto`` chooses it; tqdm's text bar elsewhere (a terminal, IPython in a
  terminal, a kernel without ipywidgets) and always when ``stream`` is given."""
  if stream is not None:
    return tqdm
  with warnings.catch_warnings():
    # tqdm's notes that the widget is experimental, or that ipywidgets is missing (then the
    # text bar is the answer, and it draws fine in a notebook).
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.autonotebook import tqdm as chosen
  return chosen


MODES = ("bar", "json", "none")


def resolve(progress: Any) -> Progress | None:
  """A :class:`Progress` from ``None``/``False``/``"none"`` (no reporting),
  ``"bar"``, ``"json"``, a :class:`Progress`, or a function of one event.

  Raises:
    ValueError: anything else.
  """
  if progress is None or progress is False or progress == "none":
    return None
  if isinstance(progress, Progress):
    return progress
  if progress == "bar":
    return Bar()
  if progress == "json":
    return JsonLines()
  if callable(progress) and not isinstance(progress, str):
    return Callback(progress)
  raise ValueError(f"progress={progress!r}; expected one of {list(MODES)}, a "
                   "vmaptune.reporting.progress.Progress, or a function of one event dict")


def _plain(value: Any) -> Any:
  """JSON-ready: NumPy values as Python ones, tuples as lists, NaN/inf as ``None``."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, list | tuple | np.ndarray):
    return [_plain(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def json_line(event: Event) -> str:
  """One event as strict JSON on one line (no ``NaN``: non-finite numbers are ``null``)."""
  return json.dumps(_plain(event), allow_nan=False, default=str)


def pieces_for(sink: Progress) -> Pieces:
  """How training is cut for ``sink``: its ``every``, except that ``"auto"``
  pieces become whole segments in a run over several processes (pieces are
  collective programs, and timings differ between processes)."""
  every = sink.every
  if every == "auto" and jax.process_count() > 1:
    every = None
  return Pieces(every, sink.interval_s)


class Reporter(Observer):
  """Turns what a run reports into events for a :class:`Progress` sink.

  Every process of a multi-process run keeps one; only process 0 passes
  events on.

  Args:
    sink: the :class:`Progress` to report to.
    scoring: the objective's metrics: which one the events report (as
      ``val_<metric>`` and ``best_val_<metric>``) and which way it is better.
  """

  def __init__(self, sink: Progress, scoring: Scoring):
    self.sink = sink
    self.scoring = scoring
    self.field = scoring.field(scoring.rank_by)  # "val_accuracy", "val_mse", ...
    self.best_field = "best_" + self.field
    self.speaks = is_first_process()
    self.start = time.perf_counter()
    self.ends: float | None = None  # When a wall-time budget runs out.
    self.best: float | None = None
    self.round = 0

  def _emit(self, kind: str, **fields: Any) -> None:
    if self.speaks:
      self.sink({"event": kind, "t": round(time.perf_counter() - self.start, 4), **fields})

  def _improve(self, score: float | None) -> None:
    if score is not None and (self.best is None or self.scoring.better(score, self.best)):
      self.best = score

  def run_start(self, *, rounds: int | None, population: int, epochs: int, seeds: int,
                strategy: str, sampler: str, space: Any, restored: list,
                time_budget_s: float | None = None, spent_s: float = 0.0) -> None:
    self.rounds, self.budget, self.seeds = rounds, epochs, seeds
    # The wall-time budget's end, on this reporter's clock (a resumed run spent some).
    self.ends = None if time_budget_s is None else self.start + time_budget_s - spent_s
    for result in restored:
      self._improve(result.best_score if result.completed.any() else None)
    self._emit("run_start", rounds=rounds, population=population, epochs=epochs,
               seeds=seeds, sampler=sampler, strategy=strategy, space=space.to_dict(),
               restored=len(restored),
               **({} if time_budget_s is None else {"time_budget_s": time_budget_s}))

  def round_start(self, index: int, space: Any, buckets: int) -> None:
    self.round, self.buckets = index, buckets
    self.round_start_s = time.perf_counter()
    self.lane_epochs = 0
    self.bucket, self.values, self.epoch = 0, {}, 0
    self._emit("round_start", round=index, rounds=self.rounds, space=space.to_dict(),
               buckets=buckets)

  def bucket_start(self, position: int, values: dict[str, Any]) -> None:
    self.bucket, self.values, self.epoch = position, values, 0

  def _where(self) -> dict[str, Any]:
    where = {"round": self.round, "rounds": self.rounds, "bucket": self.bucket,
             "buckets": self.buckets, "values": self.values}
    if self.ends is not None:
      where["time_left_s"] = round(max(self.ends - time.perf_counter(), 0.0), 1)
    return where

  def trained(self, *, first_epoch: int, epoch: int, lanes: int, alive: int,
              seconds: float) -> None:
    self.epoch, self.lane_epochs = epoch, self.lane_epochs + lanes * (epoch - first_epoch)
    elapsed = time.perf_counter() - self.round_start_s
    rate = self.lane_epochs / (self.budget * self.seeds) / elapsed if elapsed > 0 else 0.0
    self._emit("segment", **self._where(), first_epoch=first_epoch, epoch=epoch,
               budget=self.budget, lanes=lanes, alive=alive, lane_epochs=self.lane_epochs,
               trials_per_s=round(rate, 3), **{self.best_field: self.best})

  def evaluated(self, scores: np.ndarray, diverged: np.ndarray) -> None:
    alive = scores[~diverged]
    best = finite_or_none(self.scoring.best_of(alive)) if len(alive) else None
    if self.epoch == self.budget and self.seeds == 1:
      # With seeds a lane is one seed; a configuration's score (the mean) comes at round_end.
      self._improve(best)
    self._emit("evaluation", **self._where(), epoch=self.epoch, budget=self.budget,
               lanes=len(scores), alive=int(len(alive)),
               **{self.field: best, self.best_field: self.best})

  def round_end(self, result: Any) -> None:
    best = result.best_score if result.completed.any() else None
    self._improve(best)
    self._emit("round_end", round=result.index, rounds=self.rounds,
               configurations=result.configurations, trials=result.num_trials,
               diverged=result.num_diverged, kept=len(result.kept),
               **{self.field: best, self.best_field: self.best},
               lane_epochs=result.lane_epochs,
               wall_s=round(result.wall_s, 4), trials_per_s=round(result.trials_per_s, 3),
               next_space=result.next_space.to_dict())

  def run_end(self, result: Any) -> None:
    best = result.best
    self._emit("run_end", rounds=len(result.rounds),
               **{self.best_field: None if best is None else best.score},
               chosen=None if best is None else best.to_record()["hparams"],
               wall_s=round(result.wall_s, 4))
    self.close()

  def close(self) -> None:
    if self.speaks:
      self.sink.close()
