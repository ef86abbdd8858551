"""A run's figures, drawn with matplotlib's object API (Agg canvas, no pyplot, no display).

Importing this module needs matplotlib (the ``report`` extra); see
:func:`vmaptune.report`, which falls back to text without it. Every figure is
drawn from a :class:`vmaptune.rundir.Run`: its trial table and its summary.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from vmaptune.importance import Importance, is_log, values
from vmaptune.ranking import rank
from vmaptune.rundir import Run
from vmaptune.space import Space
from vmaptune.trials import TrialTable

# Pair panels use the most important numeric parameters, at most this many
# (4 parameters: 6 pairs per round).
MAX_PAIR_PARAMS = 4
DPI = 80
CMAP = matplotlib.colormaps["viridis"]


def _rounds(trials: TrialTable) -> list[int]:
  """Round indices (0-based) that have trials."""
  return sorted(set(trials.round.tolist()))


def _figure(width: float, height: float) -> Figure:
  figure = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(figure)  # Agg renders PNGs without any display or pyplot state.
  return figure


def _save(figure: Figure, out: str, name: str) -> str:
  path = os.path.join(out, name + ".png")
  figure.savefig(path, dpi=DPI)
  return path


def _limits(dist: Any) -> tuple[float, float]:
  """The original range widened by 5% of its width (in its scale) on each side."""
  low, high = float(dist.low), float(dist.high)
  if is_log(dist):
    pad = (math.log10(high) - math.log10(low)) * 0.05
    return low / 10 ** pad, high * 10 ** pad
  pad = (high - low) * 0.05
  return low - pad, high + pad


def _bounds(space: dict[str, Any] | None, name: str) -> tuple[float, float] | None:
  """``(low, high)`` of ``name`` in a summary's space description, if it has a range."""
  if not space or name not in space or "low" not in space[name]:
    return None
  dist = Space.from_dict({name: space[name]})[name]
  return float(dist.low), float(dist.high)


def accuracy_norm(run: Run) -> Normalize:
  """Colours from the 10th percentile of finite accuracies (below saturates,
  so chance-level trials do not squash the good ones together) to the best."""
  accuracy = run.trials.val_accuracy
  finite = accuracy[np.isfinite(accuracy)]
  if not len(finite):
    return Normalize(0.0, 1.0)
  low, high = float(np.percentile(finite, 10)), float(finite.max())
  return Normalize(low, high if high > low else low + 1e-6)


def pair_params(run: Run, ranking: list[Importance]) -> list[tuple[str, str | None]]:
  """Axes of the scatter panels: every pair of the most important numeric
  parameters (most important pair first), or ``[(name, None)]`` for a space
  with one numeric parameter (accuracy on the y axis)."""
  numeric = {name for name, dist in run.space.items() if not dist.structural}
  ordered = [i.name for i in ranking if i.name in numeric][:MAX_PAIR_PARAMS]
  if len(ordered) == 1:
    return [(ordered[0], None)]
  return list(itertools.combinations(ordered, 2))


def draw_pair(ax: Any, run: Run, round_index: int, x: str, y: str | None,
              norm: Normalize, title: bool = False) -> dict[str, Any]:
  """Round ``round_index``'s trials over parameters ``x`` and ``y`` coloured by
  validation accuracy (or accuracy against ``x`` when ``y`` is ``None``), kept
  trials ringed, diverged ones as red crosses, the round's ranges dashed grey
  and the next round's as a red box.

  Returns:
    The panel as drawn (see :class:`vmaptune.report.Report`'s ``panels``).
  """
  trials = run.trials
  rows = np.flatnonzero(trials.round == round_index)
  xs = values(trials, x, rows)
  ys = values(trials, y, rows) if y else trials.val_accuracy[rows]
  accuracy = trials.val_accuracy[rows]
  diverged = trials.diverged[rows] | ~np.isfinite(accuracy)
  kept = run.kept[rows]
  entry = run.round_entry(round_index) or {}
  # The y of a diverged trial in a 1-D panel: the axis floor.
  floor = (np.nanmin(trials.val_accuracy) if np.isfinite(trials.val_accuracy).any()
           else 0.0)
  points = ax.scatter(xs[~diverged], ys[~diverged], c=accuracy[~diverged], cmap=CMAP,
                      norm=norm, s=18, linewidths=0)
  crosses = ax.scatter(xs[diverged], ys[diverged] if y else np.full(diverged.sum(), floor),
                       marker="x", color="tab:red", s=18, linewidths=1)
  ax.scatter(xs[kept], ys[kept], facecolors="none", edgecolors="black", s=40, linewidths=0.8)
  box: dict[str, tuple[float, float]] | None = None
  for space, style, is_next in ((entry.get("space"), dict(edgecolor="0.5", linestyle="--"),
                                 False),
                                (entry.get("next_space"), dict(edgecolor="tab:red",
                                                               linewidth=1.5), True)):
    bx, by = _bounds(space, x), _bounds(space, y) if y else None
    if bx is None or (y and by is None):
      continue
    if y:
      rect = Rectangle((bx[0], by[0]), bx[1] - bx[0], by[1] - by[0], fill=False, **style)
    else:  # Spans the axis height: x in data units, y in axes units.
      rect = Rectangle((bx[0], 0), bx[1] - bx[0], 1, fill=False,
                       transform=ax.get_xaxis_transform(), **style)
    ax.add_patch(rect)
    if is_next:
      box = {x: (rect.get_x(), rect.get_x() + rect.get_width())}
      if y:
        box[y] = (rect.get_y(), rect.get_y() + rect.get_height())
  for name, set_scale, set_lim in ((x, ax.set_xscale, ax.set_xlim),
                                   (y, ax.set_yscale, ax.set_ylim)):
    if name is None:
      continue
    dist = run.space[name]
    set_scale("log" if is_log(dist) else "linear")
    set_lim(*_limits(dist))
  ax.set_xlabel(x)
  ax.set_ylabel(y or "val accuracy")
  if title:
    ax.set_title(f"round {round_index + 1}: ranges sampled (dashed) and next (red), "
                 "kept ringed", fontsize=10)
  return {"round": round_index, "x": x, "y": y or "val_accuracy",
          "points": len(points.get_offsets()) + len(crosses.get_offsets()),
          "diverged": len(crosses.get_offsets()), "box": box}


def draw_history(ax: Any, run: Run, floor: float | None = None) -> None:
  """Each trial's validation accuracy in file order (grey) and the best
  full-budget accuracy so far (line), rounds separated by dotted lines; the
  axis starts at ``floor`` (trials below it are not shown) if given."""
  trials = run.trials
  accuracy = trials.val_accuracy
  order = np.arange(1, len(trials) + 1)
  finite = np.isfinite(accuracy)
  ax.scatter(order[finite], accuracy[finite], s=6, color="0.7", label="trial")
  best = np.fmax.accumulate(np.where(trials.completed, accuracy, np.nan))
  ax.step(order, best, where="post", color="tab:blue", linewidth=2, label="best so far")
  for r in _rounds(trials)[1:]:
    ax.axvline(np.flatnonzero(trials.round == r)[0] + 0.5, color="0.6", linestyle=":",
               linewidth=0.8)
  ax.set_xlabel("trials (in record order; dotted: rounds)")
  ax.set_ylabel("val accuracy")
  if floor is not None and np.isfinite(accuracy).any():
    top = float(np.nanmax(accuracy))
    ax.set_ylim(floor - 0.05 * (top - floor), top + 0.05 * (top - floor))
    ax.set_ylabel(f"val accuracy (from {floor:.3g}, the 10th percentile)")
  ax.set_title("best so far against trials", fontsize=10)
  ax.legend(loc="lower right", fontsize=8)


def draw_wall_time(ax: Any, run: Run) -> None:
  """The best full-budget accuracy at the end of each round against the
  rounds' cumulative wall time (compilation included)."""
  times, bests, elapsed = [], [], 0.0
  trials = run.trials
  for r in _rounds(trials):
    entry = run.round_entry(r)
    if entry is None:
      continue
    elapsed += entry["wall_s"]
    done = trials.completed & (trials.round <= r)
    times.append(elapsed)
    bests.append(trials.val_accuracy[done].max() if done.any() else np.nan)
  if not times:
    ax.text(0.5, 0.5, "no round timings in summary.json", ha="center", transform=ax.transAxes)
    return
  ax.step([0.0] + times, [np.nan] + bests, where="post", color="tab:blue")
  ax.plot(times, bests, "o", color="tab:blue")
  ax.set_xlabel("wall time of the rounds (s)")
  ax.set_ylabel("best val accuracy")
  ax.set_title("best so far against wall time", fontsize=10)


def draw_curves(ax: Any, run: Run, count: int) -> int:
  """Training loss per epoch of the ``count`` best trials (their whole
  lineage for population-based training). Returns the curves drawn."""
  drawn = 0
  trials = run.trials
  for row in rank(trials)[:count]:
    ax.plot(*trials.curve(row), marker=".", markersize=3, linewidth=1,
            label=f"r{trials.round[row] + 1} t{trials.trial[row]}  "
                  f"{trials.val_accuracy[row]:.3f}")
    drawn += 1
  if not drawn:
    ax.text(0.5, 0.5, "the records hold no training-loss curves", ha="center",
            transform=ax.transAxes)
    return 0
  if all((line.get_ydata() > 0).all() for line in ax.get_lines()):
    ax.set_yscale("log")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel("training loss")
  ax.set_title(f"learning curves of the {drawn} best trials (val accuracy)", fontsize=10)
  ax.legend(fontsize=7)
  return drawn


def draw_importance(ax: Any, ranking: list[Importance]) -> None:
  """Horizontal bars of each parameter's spread, the largest on top."""
  names = [i.name for i in ranking][::-1]
  ax.barh(names, [i.spread for i in ranking][::-1], color="tab:blue")
  ax.set_xlabel("spread of mean val accuracy (round 1 trials)")
  ax.set_title("hyperparameter importance", fontsize=10)


def write_figures(run: Run, ranking: list[Importance], out: str,
                  curves: int = 8) -> tuple[dict[str, str], list[dict[str, Any]]]:
  """Writes every figure of :func:`vmaptune.report` into ``out``.

  Returns:
    ``({name: path}, panels)``: the files, and one dict per pair panel drawn.
  """
  os.makedirs(out, exist_ok=True)
  norm = accuracy_norm(run)
  pairs = pair_params(run, ranking)
  files, panels = {}, []
  columns = min(len(pairs), 3)
  rows = math.ceil(len(pairs) / columns)
  for r in _rounds(run.trials):
    figure = _figure(3.6 * columns + 0.8, 3.2 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (x, y) in zip(axes, pairs, strict=False):
      panels.append(draw_pair(ax, run, r, x, y, norm))
    for ax in axes[len(pairs):]:
      ax.set_visible(False)
    figure.colorbar(ScalarMappable(norm, CMAP), ax=list(axes[:len(pairs)]),
                    label="val accuracy")
    figure.suptitle(f"round {r + 1}\nringed: kept; dashed: ranges sampled; red: next round's",
                    fontsize=10)
    files[f"pairs_round{r + 1}"] = _save(figure, out, f"pairs_round{r + 1}")

  figure = _figure(10, 3.6)
  history, wall = figure.subplots(1, 2)
  draw_history(history, run, norm.vmin)
  draw_wall_time(wall, run)
  files["best_so_far"] = _save(figure, out, "best_so_far")

  figure = _figure(6.5, 4.2)
  draw_curves(figure.subplots(), run, curves)
  files["learning_curves"] = _save(figure, out, "learning_curves")

  figure = _figure(6, 0.6 + 0.45 * len(ranking))
  draw_importance(figure.subplots(), ranking)
  files["importance"] = _save(figure, out, "importance")

  figure = _figure(11, 7.5)
  (scatter, history), (curve_ax, importance_ax) = figure.subplots(2, 2)
  draw_pair(scatter, run, _rounds(run.trials)[0], *pairs[0], norm, title=True)
  figure.colorbar(ScalarMappable(norm, CMAP), ax=scatter, label="val accuracy")
  draw_history(history, run, norm.vmin)
  draw_curves(curve_ax, run, curves)
  draw_importance(importance_ax, ranking)
  files["overview"] = _save(figure, out, "overview")
  return files, panels
