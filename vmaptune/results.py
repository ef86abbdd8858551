"""What a run produces: per-trial records, per-round results, the run directory.

A run directory holds:

* ``trials.jsonl``: one JSON object per trial (round, lane, hyperparameters,
  validation accuracy and loss, status), appended and flushed after each round
  so a crash never loses a finished round;
* ``summary.json``: the chosen configuration, every round's ranges and
  timings, and, after the final fit, the test accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from vmaptune.space import Space

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"


def _float_or_none(value: float) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Trial:
  """One lane of one round: a configuration and how it scored.

  Attributes:
    round: 0-based round index.
    lane: 0-based lane index within the round.
    hparams: ``{name: value}``.
    val_accuracy: validation accuracy, ``None`` if the lane diverged.
    val_loss: mean validation cross-entropy, ``None`` if the lane diverged.
    status: ``"finished"`` or ``"diverged"``.
    epochs: epochs trained.
    kept: whether the lane was among those the next range was narrowed to.
  """

  round: int
  lane: int
  hparams: dict[str, float]
  val_accuracy: float | None
  val_loss: float | None
  status: str
  epochs: int
  kept: bool

  def to_record(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RoundResult:
  """Everything one round sampled and measured; arrays are host NumPy.

  Attributes:
    index: 0-based round index.
    space: the ranges this round sampled from.
    hparams: ``{name: float32 [P]}``, the sampled values.
    val_accuracy: ``[P]``, NaN where a lane diverged.
    val_loss: ``[P]``, NaN where a lane diverged.
    diverged: bool ``[P]``.
    epoch_loss: ``[P, epochs]`` mean training loss per epoch.
    kept: lane indices ``[K]``, best first, that the next range spans.
    next_space: the narrowed ranges for the following round.
    wall_s: wall time of the round, compilation included.
    compile_s: time XLA spent compiling (or loading cached programs) in the round.
    trace_s: time JAX spent tracing and lowering new programs in the round.
    compiles: XLA programs the round needed: compiled, or loaded from the
      persistent compilation cache.
  """

  index: int
  space: Space
  hparams: dict[str, np.ndarray]
  val_accuracy: np.ndarray
  val_loss: np.ndarray
  diverged: np.ndarray
  epoch_loss: np.ndarray
  kept: np.ndarray
  next_space: Space
  wall_s: float
  compile_s: float
  trace_s: float
  compiles: int

  @property
  def population(self) -> int:
    return len(self.diverged)

  @property
  def num_diverged(self) -> int:
    return int(self.diverged.sum())

  @property
  def trials_per_s(self) -> float:
    """Lanes trained and evaluated per second of wall time (compilation included)."""
    return self.population / self.wall_s if self.wall_s > 0 else math.inf

  @property
  def best_lane(self) -> int:
    """The best lane that did not diverge (raises if every lane diverged)."""
    if not len(self.kept):
      raise ValueError(f"every lane of round {self.index} diverged")
    return int(self.kept[0])

  @property
  def best_accuracy(self) -> float:
    return float(self.val_accuracy[self.best_lane])

  @property
  def median_accuracy(self) -> float:
    """Median over lanes that did not diverge (NaN if all did)."""
    alive = self.val_accuracy[~self.diverged]
    return float(np.median(alive)) if len(alive) else math.nan

  def config(self, lane: int) -> dict[str, float]:
    return {name: float(values[lane]) for name, values in self.hparams.items()}

  def trial(self, lane: int, kept: set[int] | None = None) -> Trial:
    diverged = bool(self.diverged[lane])
    kept = set(self.kept.tolist()) if kept is None else kept
    return Trial(
        round=self.index, lane=lane, hparams=self.config(lane),
        val_accuracy=None if diverged else _float_or_none(self.val_accuracy[lane]),
        val_loss=None if diverged else _float_or_none(self.val_loss[lane]),
        status="diverged" if diverged else "finished",
        epochs=self.epoch_loss.shape[1], kept=lane in kept)

  def trials(self) -> list[Trial]:
    kept = set(self.kept.tolist())
    return [self.trial(lane, kept) for lane in range(self.population)]

  def describe(self, rounds: int) -> str:
    """A few lines: the ranges sampled, throughput, and scores of this round."""
    compile_note = (f", {self.compile_s:.1f}s compiling + {self.trace_s:.1f}s tracing"
                    if self.compiles else "")
    if len(self.kept):
      scores = (f"best {self.best_accuracy:.4f} (lane {self.best_lane})  "
                f"median {self.median_accuracy:.4f}")
    else:
      scores = "no lane finished"
    return "\n".join([
        f"round {self.index + 1}/{rounds}: {self.population} lanes in {self.wall_s:.1f}s "
        f"({self.trials_per_s:.1f} trials/s{compile_note})",
        "  sampled ranges:", self.space.describe(),
        f"  val accuracy: {scores}  diverged {self.num_diverged}/{self.population}",
    ])

  def summary(self) -> dict[str, Any]:
    return {
        "round": self.index, "space": self.space.to_dict(),
        "next_space": self.next_space.to_dict(), "population": self.population,
        "kept": len(self.kept), "diverged": self.num_diverged,
        "best_val_accuracy": self.best_accuracy if len(self.kept) else None,
        "median_val_accuracy": _float_or_none(self.median_accuracy),
        "best_lane": self.best_lane if len(self.kept) else None,
        "wall_s": self.wall_s, "compile_s": self.compile_s, "trace_s": self.trace_s,
        "compiles": self.compiles, "trials_per_s": self.trials_per_s,
    }


@dataclasses.dataclass(frozen=True)
class FinalFit:
  """The chosen configuration retrained alone, then scored on validation and test.

  Attributes:
    trial: the chosen trial from the search.
    val_accuracy, val_loss: of the retrained model (equal to the search's
      figures within float tolerance: same keys, same data order).
    test_accuracy, test_loss: the only read of the test split.
    params: the retrained parameters (no lane axis).
  """

  trial: Trial
  val_accuracy: float
  val_loss: float
  test_accuracy: float
  test_loss: float
  params: Any

  def summary(self) -> dict[str, Any]:
    return {"config": self.trial.hparams, "round": self.trial.round,
            "lane": self.trial.lane, "search_val_accuracy": self.trial.val_accuracy,
            "val_accuracy": self.val_accuracy, "val_loss": self.val_loss,
            "test_accuracy": self.test_accuracy, "test_loss": self.test_loss}


class TuneResult:
  """The outcome of :func:`vmaptune.tune`.

  Attributes:
    rounds: one :class:`RoundResult` per completed round, in order (a round in
      which every lane diverged is not among them).
    space: the original search space.
    settings: the run's settings (population, epochs, ...), JSON-ready.
    wall_s: wall time of the search.
    out_dir: the run directory, or ``None`` when records were not written.
  """

  def __init__(self, rounds: list[RoundResult], space: Space, settings: dict[str, Any],
               wall_s: float, out_dir: str | None,
               refit: Callable[[Trial], FinalFit] | None):
    self.rounds = rounds
    self.space = space
    self.settings = settings
    self.wall_s = wall_s
    self.out_dir = out_dir
    self._refit = refit
    self._final: FinalFit | None = None

  @property
  def best(self) -> Trial | None:
    """The best trial of all rounds (highest validation accuracy, then lowest
    loss, then earliest round); ``None`` before any round completed."""
    candidates = [r.trial(r.best_lane) for r in self.rounds]
    if not candidates:
      return None
    return max(candidates, key=lambda t: (t.val_accuracy, -t.val_loss, -t.round))

  @property
  def compile_s(self) -> float:
    """XLA compile (or cache-load) seconds over all rounds."""
    return sum(r.compile_s for r in self.rounds)

  @property
  def trace_s(self) -> float:
    """JAX tracing and lowering seconds over all rounds."""
    return sum(r.trace_s for r in self.rounds)

  def trials(self) -> list[Trial]:
    return [t for r in self.rounds for t in r.trials()]

  def final_fit(self) -> FinalFit:
    """Retrains the chosen configuration and reads the test split, once.

    The result is cached: calling again returns it without touching the test
    split a second time.
    """
    if self._final is None:
      if self.best is None:
        raise RuntimeError("no round completed, so there is no configuration to refit")
      if self._refit is None:
        raise RuntimeError("this result has no data or model attached to refit with")
      self._final = self._refit(self.best)
      if self.out_dir is not None:
        RunDirectory(self.out_dir, create=False).write_summary(self.summary())
    return self._final

  def summary(self) -> dict[str, Any]:
    best = self.best
    return {
        "chosen": None if best is None else best.to_record(),
        "final_fit": None if self._final is None else self._final.summary(),
        "settings": self.settings, "space": self.space.to_dict(),
        "rounds": [r.summary() for r in self.rounds],
        "wall_s": self.wall_s, "compile_s": self.compile_s, "trace_s": self.trace_s,
    }


  def describe(self) -> str:
    """The chosen configuration, its validation and (after the final fit) test
    accuracy, timings, and where the records are."""
    best = self.best
    if best is None:
      return "no round completed"
    config = "  ".join(f"{name}={value:.4g}" for name, value in best.hparams.items())
    lines = [f"chosen config (round {best.round + 1}/{len(self.rounds)}, lane {best.lane}): "
             f"{config}",
             f"  val accuracy  {best.val_accuracy:.4f} (search)"]
    if self._final is not None:
      test = self._final.test_accuracy
      lines[-1] += f"  {self._final.val_accuracy:.4f} (refit alone)"
      lines.append("  test accuracy " + ("n/a (empty test split)" if math.isnan(test)
                                         else f"{test:.4f} (test split read once)"))
    lines.append(f"  search wall time {self.wall_s:.1f}s, of which compiling "
                 f"{self.compile_s:.1f}s and tracing {self.trace_s:.1f}s")
    if self.out_dir is not None:
      lines.append(f"records: {os.path.join(self.out_dir, TRIALS_FILE)}, "
                   f"{os.path.join(self.out_dir, SUMMARY_FILE)}")
    return "\n".join(lines)


class RunDirectory:
  """Writes a run's records; refuses to overwrite an earlier run's trials.

  Args:
    path: the directory; created if missing.
    create: check and create (``True``) or reopen an existing one (``False``).
  """

  def __init__(self, path: str | os.PathLike, create: bool = True):
    self.path = os.fspath(path)
    if create:
      if os.path.exists(os.path.join(self.path, TRIALS_FILE)):
        raise FileExistsError(
            f"{self.path} already holds a run ({TRIALS_FILE}); choose another --out / out "
            "directory so its records are not overwritten")
      os.makedirs(self.path, exist_ok=True)

  @property
  def trials_path(self) -> str:
    return os.path.join(self.path, TRIALS_FILE)

  @property
  def summary_path(self) -> str:
    return os.path.join(self.path, SUMMARY_FILE)

  def append_round(self, result: RoundResult) -> None:
    """Appends one line per trial and forces it to disk."""
    with open(self.trials_path, "a") as f:
      for trial in result.trials():
        f.write(json.dumps(trial.to_record()) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def write_summary(self, summary: dict[str, Any]) -> None:
    """Writes ``summary.json`` atomically (a crash leaves the old one intact)."""
    write_json(self.summary_path, summary)


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes ``value`` as indented JSON, atomically, creating parent directories.

  Returns:
    The path written.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)
  return path


def read_trials(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads ``trials.jsonl`` from a run directory (or the file itself)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, TRIALS_FILE)
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
