"""What a run produces: per-trial records, per-round results, the run directory.

A run directory holds:

* ``config.json``: what the run is (settings, space, model, data), written
  when the run starts and compared when it is resumed (:mod:`vmaptune.rundir`);
* ``trials.jsonl``: one JSON object per trial (round, lane, hyperparameters,
  validation accuracy and loss, training curve, status), appended and forced
  to disk after each round so a crash never loses a finished round;
* ``summary.json``: the chosen configuration, every round's ranges and
  timings, and, after the final fit, the test accuracy; replaced atomically
  after each round, so the rounds it lists are the run's completed rounds;
* ``best_params.msgpack``: the final fit's parameters (``flax.serialization``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import flax.serialization
import jax
import numpy as np

from vmaptune.distributed import is_first_process, on_first_process
from vmaptune.space import Space, describe_values, json_value

TRIALS_FILE = "trials.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
PARAMS_FILE = "best_params.msgpack"


def _float_or_none(value: float) -> float | None:
  value = float(value)
  return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Trial:
  """One configuration trained over a range of epochs, and how it scored.

  Attributes:
    round: 0-based round index.
    trial: 0-based index of the trial within its round.
    lane: the population lane it trained on.
    bracket: Hyperband bracket, -1 for other strategies.
    hparams: ``{name: value}``: floats for traced parameters (ints for traced
      integers), the values themselves (ints, strings, tuples, ...) for
      structural ones.
    start_epoch: first epoch it trained (0 unless it continued a parent).
    epochs: epochs it trained.
    val_accuracy: validation accuracy when it stopped, ``None`` if it diverged.
    val_loss: mean validation cross-entropy when it stopped, ``None`` if diverged.
    status: why it stopped: ``"finished"`` (the full budget), ``"halved"`` (left
      behind at a rung), ``"exploited"`` (overwritten by a better lane) or
      ``"diverged"``.
    parent: the trial whose weights it started from (population-based
      training), -1 if it started from initialisation.
    kept: whether the next round's ranges were narrowed to include it.
    seed_accuracy: with ``seeds=k``, each seed's validation accuracy (``None``
      where that seed diverged); ``val_accuracy`` is their mean.
    val_accuracy_std: with ``seeds=k``, the standard deviation over seeds.
    epoch_loss: mean training loss of each epoch it trained (``epochs``
      values, from ``start_epoch``; ``None`` where not finite).
  """

  round: int
  trial: int
  lane: int
  bracket: int
  hparams: dict[str, Any]
  start_epoch: int
  epochs: int
  val_accuracy: float | None
  val_loss: float | None
  status: str
  parent: int
  kept: bool
  seed_accuracy: list[float | None] | None = None
  val_accuracy_std: float | None = None
  epoch_loss: list[float | None] | None = None

  def to_record(self) -> dict[str, Any]:
    """The record as ``trials.jsonl`` holds it (tuples as lists; the seed
    fields only with several seeds)."""
    record = dataclasses.asdict(self)
    record["hparams"] = {k: json_value(v) for k, v in self.hparams.items()}
    if self.seed_accuracy is None:  # One seed: no spread to record.
      del record["seed_accuracy"], record["val_accuracy_std"]
    return record


@dataclasses.dataclass(frozen=True)
class RoundResult:
  """Every trial one round trained, and what it measured; arrays are host NumPy,
  indexed by trial (``[T]``).

  Attributes:
    index: 0-based round index.
    space: the ranges this round sampled from.
    strategy: the strategy that ran the round, e.g. ``"halving(eta=3, min_epochs=1)"``.
    budget: epochs of a full run.
    lanes: configurations sampled (lanes started from initialisation).
    hparams: ``{name: [T]}``: float32 for traced parameters; for structural
      ones the values themselves (int64, or objects for a Choice).
    lane, bracket, start_epoch, epochs, parent: ``[T]`` ints (see :class:`Trial`).
    status: ``[T]`` strings (see :class:`Trial`).
    val_accuracy, val_loss: ``[T]`` when each trial stopped, NaN if diverged.
    epoch_loss: ``[T, budget]`` mean training loss per epoch, NaN outside the
      epochs a trial trained.
    kept: trial indices ``[K]``, best first, that the next ranges span.
    next_space: the narrowed ranges for the following round.
    wall_s: wall time of the round, compilation included.
    compile_s: time XLA spent compiling (or loading cached programs) in the round.
    trace_s: time JAX spent tracing and lowering new programs in the round.
    compiles: XLA programs the round needed: compiled, or loaded from the
      persistent compilation cache.
    seed_accuracy: ``[T, k]`` each seed's validation accuracy when every
      configuration trained with ``k`` seeds (NaN where a seed diverged);
      ``None`` for one seed.
  """

  index: int
  space: Space
  strategy: str
  budget: int
  lanes: int
  hparams: dict[str, np.ndarray]
  lane: np.ndarray
  bracket: np.ndarray
  start_epoch: np.ndarray
  epochs: np.ndarray
  parent: np.ndarray
  status: np.ndarray
  val_accuracy: np.ndarray
  val_loss: np.ndarray
  epoch_loss: np.ndarray
  kept: np.ndarray
  next_space: Space
  wall_s: float
  compile_s: float
  trace_s: float
  compiles: int
  seed_accuracy: np.ndarray | None = None

  @property
  def seeds(self) -> int:
    """Seeds every configuration trained with."""
    return 1 if self.seed_accuracy is None else self.seed_accuracy.shape[1]

  @property
  def num_trials(self) -> int:
    return len(self.status)

  @property
  def population(self) -> int:
    """Configurations sampled this round (lanes started from initialisation)."""
    return self.lanes

  @property
  def diverged(self) -> np.ndarray:
    """bool ``[T]``."""
    return self.status == "diverged"

  @property
  def completed(self) -> np.ndarray:
    """bool ``[T]``: trained to the end of the budget without diverging."""
    return (self.start_epoch + self.epochs == self.budget) & ~self.diverged

  @property
  def num_diverged(self) -> int:
    return int(self.diverged.sum())

  @property
  def lane_epochs(self) -> int:
    """Epochs trained, summed over trials and seeds: the round's training cost."""
    return int(self.epochs.sum()) * self.seeds

  @property
  def trials_per_s(self) -> float:
    """Configurations per second of wall time (compilation included)."""
    return self.lanes / self.wall_s if self.wall_s > 0 else math.inf

  @property
  def best_trial(self) -> int:
    """The best trial that trained the full budget (raises if there is none)."""
    if not len(self.kept) or not self.completed[self.kept[0]]:
      raise ValueError(f"no trial of round {self.index} trained the full budget")
    return int(self.kept[0])

  @property
  def best_accuracy(self) -> float:
    return float(self.val_accuracy[self.best_trial])

  @property
  def median_accuracy(self) -> float:
    """Median over the trials that completed the budget (NaN if none did)."""
    done = self.val_accuracy[self.completed]
    return float(np.median(done)) if len(done) else math.nan

  def config(self, trial: int) -> dict[str, Any]:
    """``{name: value}`` of a trial, every parameter of the space (plain Python values)."""
    return {name: self.space[name].value(values[trial]) for name, values in self.hparams.items()}

  def structural(self, trial: int) -> dict[str, Any]:
    """The structural values of a trial: which bucket it trained in."""
    return {name: self.space[name].value(self.hparams[name][trial])
            for name in self.space.structural_names}

  def traced_config(self, trial: int) -> dict[str, float]:
    """The traced hyperparameters of a trial, as floats (what its lane was fed)."""
    return {name: float(self.hparams[name][trial]) for name in self.hparams
            if not self.space[name].structural}

  def buckets(self) -> list[tuple[dict[str, Any], np.ndarray]]:
    """``[(structural values, trial indices [T_b]), ...]`` per bucket, in order
    of first appearance; one bucket ``({}, all trials)`` without structure."""
    groups: dict[tuple, list[int]] = {}
    for index in range(self.num_trials):
      key = tuple(self.structural(index).items())
      groups.setdefault(key, []).append(index)
    return [(dict(key), np.array(trials)) for key, trials in groups.items()]

  def bucket_summaries(self) -> list[dict[str, Any]]:
    """Per bucket: its structural values (JSON-ready), configurations started,
    trials, kept trials, diverged trials, and its best trial that trained the
    full budget (``None`` if none did, e.g. when all its lanes diverged)."""
    kept = set(self.kept.tolist())
    summaries = []
    for values, trials in self.buckets():
      done = trials[self.completed[trials]]
      best = (int(done[np.lexsort((done, self.val_loss[done], -self.val_accuracy[done]))[0]])
              if len(done) else None)
      summaries.append({
          "values": {k: json_value(v) for k, v in values.items()},
          "configurations": int(((self.parent[trials] < 0)
                                 & (self.start_epoch[trials] == 0)).sum()),
          "trials": len(trials), "kept": len(kept.intersection(trials.tolist())),
          "diverged": int(self.diverged[trials].sum()), "best_trial": best,
          "best_val_accuracy": None if best is None else float(self.val_accuracy[best])})
    return summaries

  def schedule(self, trial: int) -> list[tuple[int, int, dict[str, float]]]:
    """The configurations ``trial`` and its ancestors trained with, oldest
    first: ``[(first_epoch, end_epoch, hparams), ...]`` covering ``[0, end)``,
    with the traced hyperparameters only (a lineage never changes bucket).
    Replaying it from the round's initialisation, in the trial's bucket,
    reproduces the trial."""
    chain = [trial]
    while self.parent[chain[-1]] >= 0:
      chain.append(int(self.parent[chain[-1]]))
    chain.reverse()
    starts = [int(self.start_epoch[t]) for t in chain]
    ends = starts[1:] + [int(self.start_epoch[trial] + self.epochs[trial])]
    return [(start, end, self.traced_config(t)) for start, end, t in zip(starts, ends, chain,
                                                                         strict=True)]

  def trial(self, index: int, kept: set[int] | None = None) -> Trial:
    diverged = bool(self.diverged[index])
    kept = set(self.kept.tolist()) if kept is None else kept
    start, epochs = int(self.start_epoch[index]), int(self.epochs[index])
    return Trial(
        round=self.index, trial=index, lane=int(self.lane[index]),
        bracket=int(self.bracket[index]), hparams=self.config(index),
        start_epoch=start, epochs=epochs,
        val_accuracy=None if diverged else _float_or_none(self.val_accuracy[index]),
        val_loss=None if diverged else _float_or_none(self.val_loss[index]),
        status=str(self.status[index]), parent=int(self.parent[index]), kept=index in kept,
        epoch_loss=[_float_or_none(v) for v in self.epoch_loss[index, start:start + epochs]],
        **self._spread(index))

  def _spread(self, index: int) -> dict[str, Any]:
    if self.seed_accuracy is None:
      return {}
    per_seed = self.seed_accuracy[index]
    finite = per_seed[np.isfinite(per_seed)]
    return {"seed_accuracy": [_float_or_none(a) for a in per_seed],
            "val_accuracy_std": float(finite.std()) if len(finite) else None}

  def trials(self) -> list[Trial]:
    kept = set(self.kept.tolist())
    return [self.trial(index, kept) for index in range(self.num_trials)]

  def describe(self, rounds: int) -> str:
    """A few lines: the ranges sampled, throughput, and scores of this round."""
    compile_note = (f", {self.compile_s:.1f}s compiling + {self.trace_s:.1f}s tracing"
                    if self.compiles else "")
    if self.completed.any():
      scores = (f"best {self.best_accuracy:.4f} (trial {self.best_trial})  "
                f"median {self.median_accuracy:.4f}")
    else:
      scores = "no trial finished"
    counts = ", ".join(f"{status} {int((self.status == status).sum())}"
                       for status in ("finished", "halved", "exploited")
                       if (self.status == status).any())
    lines = [
        f"round {self.index + 1}/{rounds}: {self.lanes} configurations, {self.lane_epochs} "
        f"lane-epochs in {self.wall_s:.1f}s ({self.trials_per_s:.1f} trials/s{compile_note})",
        "  sampled ranges:", self.space.describe(),
        f"  val accuracy: {scores}  diverged {self.num_diverged}/{self.num_trials}"
        + (f"  ({counts})" if self.strategy.split("(")[0] != "random" else ""),
    ]
    if self.space.structural_names:
      lines.append("  by bucket:")
      for (values, _), bucket in zip(self.buckets(), self.bucket_summaries(), strict=True):
        best = bucket["best_val_accuracy"]
        count = bucket["configurations"]
        lines.append(f"    {describe_values(values)}: {count} configuration"
                     f"{'s' if count != 1 else ''}, best "
                     + ("-" if best is None else f"{best:.4f}")
                     + f", kept {bucket['kept']}, diverged {bucket['diverged']}/"
                     f"{bucket['trials']}")
    return "\n".join(lines)

  def summary(self) -> dict[str, Any]:
    best = self.best_trial if self.completed.any() else None
    return {
        "round": self.index, "strategy": self.strategy, "space": self.space.to_dict(),
        "next_space": self.next_space.to_dict(), "configurations": self.lanes,
        "trials": self.num_trials, "lane_epochs": self.lane_epochs,
        "kept": len(self.kept), "diverged": self.num_diverged,
        "statuses": {str(k): int(v) for k, v in zip(*np.unique(self.status, return_counts=True),
                                                     strict=True)},
        "best_val_accuracy": None if best is None else self.best_accuracy,
        "median_val_accuracy": _float_or_none(self.median_accuracy),
        "best_trial": best,
        "wall_s": self.wall_s, "compile_s": self.compile_s, "trace_s": self.trace_s,
        "compiles": self.compiles, "trials_per_s": self.trials_per_s,
        **({"buckets": self.bucket_summaries()} if self.space.structural_names else {}),
    }


@dataclasses.dataclass(frozen=True)
class FinalFit:
  """The chosen configuration retrained alone, then scored on validation and test.

  Attributes:
    trial: the chosen trial from the search.
    schedule: ``[(first_epoch, end_epoch, hparams), ...]`` it was retrained
      with: one entry, or a population-based-training lineage.
    val_accuracy, val_loss: of the retrained model (equal to the search's
      figures within float tolerance: same keys, same data order).
    test_accuracy, test_loss: the only read of the test split.
    params: the retrained parameters (no lane axis).
    model: the module ``params`` belong to: the chosen trial's bucket's, when
      the space has structural parameters (``model.apply({"params": params}, x)``).
    batch_size: the training batch size it was retrained with (its bucket's).
  """

  trial: Trial
  schedule: list
  val_accuracy: float
  val_loss: float
  test_accuracy: float
  test_loss: float
  params: Any
  model: Any = None
  batch_size: int | None = None

  def summary(self) -> dict[str, Any]:
    return {"config": self.trial.to_record()["hparams"], "round": self.trial.round,
            "trial": self.trial.trial, "lane": self.trial.lane,
            "schedule": [{"first_epoch": a, "end_epoch": b, "hparams": h}
                         for a, b, h in self.schedule],
            "batch_size": self.batch_size, "search_val_accuracy": self.trial.val_accuracy,
            "val_accuracy": self.val_accuracy, "val_loss": self.val_loss,
            "test_accuracy": self.test_accuracy, "test_loss": self.test_loss}


def best_trial(rounds: list[RoundResult]) -> Trial | None:
  """The best trial of all ``rounds`` (highest validation accuracy, then lowest
  loss, then earliest round); ``None`` before any round completed."""
  candidates = [r.trial(r.best_trial) for r in rounds if r.completed.any()]
  if not candidates:
    return None
  return max(candidates, key=lambda t: (t.val_accuracy, -t.val_loss, -t.round))


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
               refit: Callable[[Trial, list], FinalFit] | None, final: FinalFit | None = None):
    self.rounds = rounds
    self.space = space
    self.settings = settings
    self.wall_s = wall_s
    self.out_dir = out_dir
    self._refit = refit
    self._final = final  # Restored from the run directory when a finished run is resumed.

  @property
  def best(self) -> Trial | None:
    """The best trial of all rounds (see :func:`best_trial`)."""
    return best_trial(self.rounds)

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
    split a second time. With a run directory, its parameters are saved there
    (``best_params.msgpack``, see :func:`vmaptune.rundir.load_best_params`)
    and the summary records its scores; resuming the finished run restores it
    from there, without retraining or reading the test split again.
    """
    if self._final is None:
      if self.best is None:
        raise RuntimeError("no round completed, so there is no configuration to refit")
      if self._refit is None:
        raise RuntimeError("this result has no data or model attached to refit with")
      best = self.best
      round_result = next(r for r in self.rounds if r.index == best.round)
      self._final = self._refit(best, round_result.schedule(best.trial))
      if self.out_dir is not None:
        run_dir = RunDirectory(self.out_dir, create=False)
        run_dir.write_params(self._final.params)  # Before the summary that points to it.
        run_dir.write_summary(self.summary())
    return self._final

  def summary(self) -> dict[str, Any]:
    best = self.best
    return {
        "chosen": None if best is None else best.to_record(),
        "final_fit": None if self._final is None else self._final.summary(),
        "settings": self.settings, "space": self.space.to_dict(),
        "rounds": [r.summary() for r in self.rounds],
        "wall_s": self.wall_s, "compile_s": self.compile_s, "trace_s": self.trace_s,
        # XLA programs compiled (or loaded from the cache) over the whole search:
        # one set per population size a strategy used, reused by later rounds.
        "programs_compiled": sum(r.compiles for r in self.rounds),
        "lane_epochs": sum(r.lane_epochs for r in self.rounds),
    }


  def describe(self) -> str:
    """The chosen configuration, its validation and (after the final fit) test
    accuracy, timings, and where the records are."""
    best = self.best
    if best is None:
      return "no round completed"
    config = lambda hparams: describe_values(hparams, sep="  ")
    lines = [f"chosen config (round {best.round + 1}/{len(self.rounds)}, trial {best.trial}): "
             f"{config(best.hparams)}"]
    schedule = next(r for r in self.rounds if r.index == best.round).schedule(best.trial)
    if len(schedule) > 1:
      lines += [f"  lineage: epochs {a}-{b}: {config(h)}" for a, b, h in schedule]
    lines.append(f"  val accuracy  {best.val_accuracy:.4f} (search)")
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

  In a run over several processes only process 0 touches the directory; on
  the others a ``RunDirectory`` keeps the path and writes nothing (creating
  one is then a collective: if process 0 refuses the directory, every
  process raises).

  Args:
    path: the directory; created if missing.
    create: check and create (``True``) or reopen an existing one (``False``).
  """

  def __init__(self, path: str | os.PathLike, create: bool = True):
    self.path = os.fspath(path)
    self.writes = is_first_process()
    if create:
      on_first_process(self._create)

  def _create(self) -> None:
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

  @property
  def params_path(self) -> str:
    return os.path.join(self.path, PARAMS_FILE)

  def append_round(self, result: RoundResult) -> None:
    """Appends one line per trial and forces it to disk (process 0 only)."""
    if not self.writes:
      return
    with open(self.trials_path, "a") as f:
      for trial in result.trials():
        f.write(json.dumps(trial.to_record()) + "\n")
      f.flush()
      os.fsync(f.fileno())

  def write_summary(self, summary: dict[str, Any]) -> None:
    """Writes ``summary.json`` atomically (a crash leaves the old one intact;
    process 0 only)."""
    if not self.writes:
      return
    write_json(self.summary_path, summary)

  def write_params(self, params: Any) -> None:
    """Writes a parameter pytree (no lane axis) as ``flax.serialization``
    msgpack, atomically (process 0 only)."""
    if not self.writes:
      return
    write_atomic(self.params_path, flax.serialization.to_bytes(jax.device_get(params)))


def write_atomic(path: str | os.PathLike, data: bytes) -> str:
  """Writes ``data`` to ``path`` atomically and durably: a crash (or a kill)
  leaves either the old file or the new one, never a mix; creates parent
  directories.

  Returns:
    The path written.
  """
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return path


def write_json(path: str | os.PathLike, value: Any) -> str:
  """Writes ``value`` as indented JSON, atomically (see :func:`write_atomic`).

  Returns:
    The path written.
  """
  return write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def read_trials(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads ``trials.jsonl`` from a run directory (or the file itself)."""
  path = os.fspath(path)
  if os.path.isdir(path):
    path = os.path.join(path, TRIALS_FILE)
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
