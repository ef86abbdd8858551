"""What a finished (or interrupted) run found, read back from its run directory.

:func:`report` reads the run directory (:func:`vmaptune.rundir.load_run`: the
records of its completed rounds and its summary), prints a table of
the top trials and an importance ranking of the hyperparameters (no extra
dependency), and, when matplotlib is installed (``pip install
'vmaptune[report]'``), writes PNG figures (see :mod:`vmaptune.plots`).

Importance, as computed by :func:`importance`: over the first round's
configurations (the trials that started from initialisation, sampled from
the whole space; later rounds sample narrowed ranges, so they mostly compare
good values with each other), each scored by its validation accuracy when
it stopped, a diverged one by the worst accuracy of the others (a parameter
that makes training blow up matters). A parameter's trials are grouped by its
value when it has at most ``bins`` distinct values (categories, structural
parameters), else into ``bins`` equal-count quantile bins of its values in
its own scale (log for log-scaled ones; equal-count bins are the same in
either scale). Its importance is the spread (max - min) of the groups' mean
accuracy: how much accuracy moves from its worst to its best region, in
accuracy units. It sees one parameter at a time (no interactions), and with
few trials per group it is noisy.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
from typing import IO, Any

import numpy as np

from vmaptune.rundir import load_run
from vmaptune.space import describe_values

INSTALL_HINT = ("matplotlib is not installed, so no figures were written; install it with "
                "`pip install 'vmaptune[report]'` (or `pip install matplotlib`) and run the "
                "report again")

LOG_TYPES = ("LogUniform",)


def _is_log(spec: dict[str, Any]) -> bool:
  return spec["type"] in LOG_TYPES or (spec["type"] == "IntUniform" and spec.get("log", False))


def _is_categorical(spec: dict[str, Any]) -> bool:
  return spec["type"] == "Choice" or bool(spec.get("structural", False))


def _hashable(value: Any) -> Any:
  """A JSON value as the space held it: lists back to tuples."""
  return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _nan(value: float | None) -> float:
  return math.nan if value is None else float(value)


class RunRecords:
  """A run directory's completed rounds as arrays ``[N]`` over their trials, in file order.

  Attributes:
    run: the :class:`vmaptune.rundir.Run` read back.
    path: the run directory.
    records: the trial records of the completed rounds.
    summary: ``summary.json``.
    space: the original space, ``{name: {"type", ...}}`` as ``config.json`` holds it.
    budget: epochs of a full run.
    round, trial, reached: int ``[N]`` (``reached``: the epoch a trial stopped at).
    accuracy, loss: float ``[N]``, NaN where diverged.
    diverged: bool ``[N]``.

  Raises:
    FileNotFoundError: ``path`` holds no run.
    ValueError: no round of it completed yet.
  """

  def __init__(self, path: str | os.PathLike):
    self.run = load_run(path)
    self.path, self.records, self.summary = self.run.path, self.run.records, self.run.summary
    if not self.records:
      raise ValueError(f"{self.path} holds no completed round yet")
    self.space: dict[str, dict] = self.run.config["space"]
    column = lambda key, dtype: np.array([r[key] for r in self.records], dtype)
    self.round, self.trial = column("round", np.int64), column("trial", np.int64)
    self.reached = column("start_epoch", np.int64) + column("epochs", np.int64)
    self.accuracy = np.array([_nan(r["val_accuracy"]) for r in self.records])
    self.loss = np.array([_nan(r["val_loss"]) for r in self.records])
    self.diverged = column("status", object) == "diverged"
    self.budget = int(self.run.settings["epochs"])
    self._rounds = {entry["round"]: entry for entry in self.summary.get("rounds", [])}
    self._row = {(r["round"], r["trial"]): i for i, r in enumerate(self.records)}

  @property
  def rounds(self) -> list[int]:
    """Round indices (0-based) that have records."""
    return sorted(set(self.round.tolist()))

  def round_entry(self, index: int) -> dict[str, Any] | None:
    """The summary's entry for round ``index`` (its ``space``, ``next_space``,
    ``wall_s``, ...), ``None`` if it has none."""
    return self._rounds.get(index)

  def values(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """The values of ``name`` for ``rows`` (default all): float64 for numeric
    parameters, objects for categorical ones."""
    rows = np.arange(len(self.records)) if rows is None else rows
    raw = [self.records[i]["hparams"][name] for i in rows]
    if _is_categorical(self.space[name]):
      out = np.empty(len(raw), object)
      for i, value in enumerate(raw):  # One by one: tuples must stay single elements.
        out[i] = _hashable(value)
      return out
    return np.array(raw, np.float64)

  def numeric(self) -> list[str]:
    """Names of the traced numeric parameters (what the pair scatters plot)."""
    return [n for n, spec in self.space.items() if not _is_categorical(spec)]

  def ranked(self, count: int) -> list[int]:
    """Rows of the ``count`` best trials, ranked as the tuner ranks (see
    :meth:`vmaptune.rundir.Run.top`); diverged trials left out."""
    return [self._row[r["round"], r["trial"]] for r in self.run.top(count)]

  def full_budget(self) -> np.ndarray:
    """bool ``[N]``: trained the full budget without diverging."""
    return (self.reached == self.budget) & ~self.diverged

  def curve(self, row: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Training loss of a trial over every epoch of its lineage (a
    population-based-training lane's ancestors first): ``(epochs [E], loss
    [E])`` with epochs 1-based, or ``None`` if the records hold no curves."""
    chain, current = [], row
    while True:
      chain.append(current)
      parent = (self.records[current]["round"], self.records[current]["parent"])
      if parent not in self._row:
        break
      current = self._row[parent]
    epochs, losses = [], []
    chain.reverse()
    for i, child in itertools.zip_longest(chain, chain[1:]):
      record = self.records[i]
      if record.get("epoch_loss") is None:
        return None
      # An ancestor may train on after a child copied it: keep its epochs up to the copy.
      start = record["start_epoch"]
      end = self.records[child]["start_epoch"] if child is not None else \
          start + len(record["epoch_loss"])
      epochs += range(start + 1, end + 1)
      losses += [_nan(v) for v in record["epoch_loss"][:end - start]]
    return np.array(epochs), np.array(losses)

  def label(self, row: int) -> str:
    """``"r2 t17"``: a trial's round (1-based, as the run printed it) and index."""
    return f"r{self.round[row] + 1} t{self.trial[row]}"


@dataclasses.dataclass(frozen=True)
class Importance:
  """How much one hyperparameter moved validation accuracy (see the module docstring).

  Attributes:
    name: the hyperparameter.
    spread: max - min of the groups' mean accuracy (0 with fewer than two groups).
    groups: ``[(label, trials, mean accuracy), ...]`` in value order.
    method: ``"categories"`` or ``"quantile bins (log)"`` / ``"... (linear)"``.
  """

  name: str
  spread: float
  groups: list[tuple[str, int, float]]
  method: str


def importance(run: RunRecords, bins: int | None = None) -> list[Importance]:
  """Ranks the hyperparameters by the spread of mean validation accuracy over
  groups of their values in the first round (see the module docstring).

  Args:
    run: the run's records.
    bins: groups per numeric parameter (default ``n // 10`` clipped to
      ``[2, 5]`` for ``n`` trials).

  Returns:
    One :class:`Importance` per parameter, largest spread first.
  """
  first = run.rounds[0]
  rows = np.flatnonzero((run.round == first)
                        & np.array([r["parent"] < 0 and r["start_epoch"] == 0
                                    for r in run.records]))
  score = run.accuracy[rows].copy()
  finite = score[np.isfinite(score)]
  score[~np.isfinite(score)] = finite.min() if len(finite) else 0.0
  bins = bins or int(np.clip(len(rows) // 10, 2, 5))
  ranking = []
  for name, spec in run.space.items():
    values = run.values(name, rows)
    present = set(values.tolist())
    if spec["type"] == "Choice":  # In the space's order.
      distinct = [v for v in map(_hashable, spec["values"]) if v in present]
    else:
      distinct = sorted(present)
    if _is_categorical(spec) or len(distinct) <= bins:
      method = "categories" if _is_categorical(spec) else "distinct values"
      groups = [(_format(v), np.array([x == v for x in values.tolist()], bool))
                for v in distinct]
    else:
      scaled = np.log(values) if _is_log(spec) else values
      edges = np.quantile(scaled, np.linspace(0, 1, bins + 1))
      which = np.clip(np.searchsorted(edges[1:-1], scaled, side="right"), 0, bins - 1)
      unscale = np.exp if _is_log(spec) else (lambda v: v)
      groups = [(f"{unscale(edges[b]):.3g}..{unscale(edges[b + 1]):.3g}", which == b)
                for b in range(bins)]
      method = f"quantile bins ({'log' if _is_log(spec) else 'linear'})"
    groups = [(label, int(mask.sum()), float(score[mask].mean()))
              for label, mask in groups if mask.any()]
    means = [g[2] for g in groups]
    ranking.append(Importance(name, max(means) - min(means) if len(means) > 1 else 0.0,
                              groups, method))
  return sorted(ranking, key=lambda r: -r.spread)


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return repr(value) if isinstance(value, str) else str(value)


def top_table(run: RunRecords, top: int = 10) -> str:
  """The ``top`` best trials (as the tuner ranks them) as aligned text columns."""
  names = list(run.space)
  header = ["#", "round", "trial", "status", "epochs", "val_acc", "val_loss"] + names
  rows = []
  for place, i in enumerate(run.ranked(top)):
    record = run.records[i]
    accuracy = f"{run.accuracy[i]:.4f}"
    if record.get("val_accuracy_std") is not None:
      accuracy += f"±{record['val_accuracy_std']:.4f}"
    rows.append([str(place + 1), str(run.round[i] + 1), str(run.trial[i]), record["status"],
                 str(run.reached[i]), accuracy, f"{run.loss[i]:.4f}"]
                + [_format(record["hparams"][n]) for n in names])
  widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
  return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
                   for row in [header] + rows)


@dataclasses.dataclass
class Report:
  """What :func:`report` found and wrote.

  Attributes:
    table: the top trials, as printed.
    importance: one :class:`Importance` per hyperparameter, largest first.
    figures: ``{name: path}`` of the PNG files written (empty without matplotlib).
    panels: one dict per scatter panel drawn, read back from the drawn
      artists: ``round`` (0-based), ``x``, ``y`` (parameter names; ``y`` is
      ``"val_accuracy"`` when the space has one numeric parameter),
      ``points`` (trials drawn), ``diverged`` (of them), ``box`` (``{name:
      (low, high)}`` of the next round's ranges as drawn, ``None`` when the
      summary has no next space for that round).
    note: why no figures were written, or ``None``.
  """

  table: str
  importance: list[Importance]
  figures: dict[str, str]
  panels: list[dict[str, Any]]
  note: str | None = None

  def describe(self, run: RunRecords) -> str:
    chosen, final = run.summary.get("chosen"), run.summary.get("final_fit")
    lines = [f"run {run.path}: {len(run.records)} trials over {len(run.rounds)} round"
             f"{'s' if len(run.rounds) != 1 else ''}, {int(run.diverged.sum())} diverged"]
    if chosen:
      lines.append(f"chosen (round {chosen['round'] + 1}, trial {chosen['trial']}): "
                   f"{describe_values(chosen['hparams'], sep='  ')}  val accuracy "
                   f"{chosen['val_accuracy']:.4f}"
                   + (f", test accuracy {final['test_accuracy']:.4f}"
                      if final and final.get("test_accuracy") is not None else ""))
    lines += ["", "top trials (full budget first, then validation accuracy):", self.table, "",
              "importance (spread of mean val accuracy over groups of a parameter's "
              "first-round values):"]
    width = max(len(i.name) for i in self.importance)
    lines += [f"  {i.name:<{width}}  {i.spread:.4f}  ({i.method})" for i in self.importance]
    lines.append("")
    if self.figures:
      lines.append("figures:")
      lines += [f"  {path}" for path in self.figures.values()]
    else:
      lines.append(self.note or "no figures")
    return "\n".join(lines)


def report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
           top: int = 10, curves: int = 8, quiet: bool = False,
           stream: IO[str] | None = None) -> Report:
  """Prints a run's top trials and hyperparameter importance, and writes its figures.

  Figures (PNG, into ``out``, default ``RUN_DIR/report``), when matplotlib is
  installed: ``pairs_round<k>.png`` per round (1-based ``k``), validation
  accuracy over each pair of numeric hyperparameters with the next round's
  ranges drawn as a box; ``best_so_far.png`` against trials and wall time;
  ``learning_curves.png`` (training loss per epoch of the ``curves`` best
  trials); ``importance.png``; and ``overview.png``, one of each on a page.
  Without matplotlib the text is printed all the same, with how to install it.

  Args:
    run_dir: a run directory (the ``out`` of :func:`vmaptune.tune`); the
      rounds it completed are reported (a round it was stopped in is not).
    out: directory for the figures.
    top: trials in the table.
    curves: trials whose learning curves are drawn.
    quiet: print nothing.
    stream: where to print (default: standard output).

  Returns:
    A :class:`Report`.

  Raises:
    FileNotFoundError: ``run_dir`` is not a run directory.
    ValueError: ``top`` or ``curves`` is not a whole number >= 1, or no round
      of the run completed yet.

  >>> import tempfile, vmaptune as vt
  >>> run_dir = tempfile.mkdtemp()
  >>> _ = vt.tune(vt.models.MLP(hidden=(8,)), vt.data.digits(),
  ...             vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)), population=4, rounds=1,
  ...             epochs=1, out=run_dir)
  >>> found = vt.report(run_dir, quiet=True)
  >>> [i.name for i in found.importance]
  ['learning_rate']
  """
  for name, value in (("top", top), ("curves", curves)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}={value!r}; expected a whole number >= 1")
  run = RunRecords(run_dir)
  ranking = importance(run)
  table = top_table(run, top)
  try:
    from vmaptune import plots
  except ImportError:
    result = Report(table, ranking, {}, [], note=INSTALL_HINT)
  else:
    out = os.path.join(run.path, "report") if out is None else os.fspath(out)
    figures, panels = plots.write_figures(run, ranking, out, curves=curves)
    result = Report(table, ranking, figures, panels)
  if not quiet:
    stream = stream or sys.stdout
    stream.write(result.describe(run) + "\n")
    stream.flush()
  return result
