"""A run's figures, drawn with matplotlib's object API (Agg canvas, no pyplot, no display).

Importing this module needs matplotlib (the ``report`` extra); see
:func:`vmaptune.reporting.report`, which falls back to text without it. Every figure is
drawn from a :class:`vmaptune.rundir.Run`: its trial table and its summary.

Scores are the run's ranking metric (:attr:`vmaptune.rundir.Run.scoring`:
validation accuracy for classification, mse for regression, ...) the way
round it is better: "best" is the highest of a maximised metric and the
lowest of a minimised one, whose axes say "lower is better", whose colours
run the other way (the best trials are bright either way) and whose axis
ranges cut off the worst values (the 90th percentile up) instead of the
lowest.
"""

from __future__ import annotations

import io
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

from vmaptune.reporting.importance import Importance, is_log, values
from vmaptune.rundir import Run, write_atomic
from vmaptune.space.space import Space
from vmaptune.trials.estimate import Surface, surface
from vmaptune.trials.ranking import rank
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import TrialTable

# Pair panels use the most important numeric parameters, at most this many
# (4 parameters: 6 pairs per round).
MAX_PAIR_PARAMS = 4
DPI = 80
CMAP = matplotlib.colormaps["viridis"]


def rounds_of(trials: TrialTable) -> list[int]:
  """Round indices (0-based) that have trials."""
  return sorted(set(trials.round.tolist()))


class ShownFigure(Figure):
  """A matplotlib figure that a notebook shows as its PNG, with or without pyplot
  (whose inline backend, when loaded, shows it the same way)."""

  def _repr_png_(self) -> bytes:
    return png(self)


def _figure(width: float, height: float) -> Figure:
  figure = ShownFigure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(figure)  # Agg renders PNGs without any display or pyplot state.
  return figure


def _save(figure: Figure, out: str, name: str) -> str:
  """Writes ``figure`` as ``out/<name>.png``, atomically: a link planted under
  that name is replaced, never written through."""
  return write_atomic(os.path.join(out, name + ".png"), png(figure))


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


def short_label(scoring: Scoring) -> str:
  """The ranking metric as the figures name it: ``val accuracy``, ``val mse``."""
  return "val " + scoring.rank_by.replace("_", " ")


def axis_label(scoring: Scoring) -> str:
  """:func:`short_label`, saying ``lower is better`` for a minimised metric."""
  return short_label(scoring) + ("" if scoring.maximize else " (lower is better)")


def cmap(scoring: Scoring) -> Any:
  """Viridis with the best trials bright: reversed for a minimised metric."""
  return CMAP if scoring.maximize else CMAP.reversed()


def score_norm(run: Run) -> Normalize:
  """Colours from the 10th percentile of the finite scores (below saturates,
  so chance-level trials do not squash the good ones together) to the best;
  for a minimised metric from the best to the 90th percentile."""
  scoring, score = run.scoring, run.trials.score
  finite = score[np.isfinite(score)]
  if not len(finite):
    return Normalize(0.0, 1.0)
  if scoring.maximize:
    low, high = float(np.percentile(finite, 10)), float(finite.max())
  else:
    low, high = float(finite.min()), float(np.percentile(finite, 90))
  return Normalize(low, high if high > low else low + 1e-6)


def worst_shown(norm: Normalize, scoring: Scoring) -> float:
  """The worst score :func:`score_norm` colours apart: where history axes stop."""
  return float(norm.vmin if scoring.maximize else norm.vmax)


def pair_params(run: Run, ranking: list[Importance]) -> list[tuple[str, str | None]]:
  """Axes of the scatter panels: every pair of the most important numeric
  parameters (most important pair first), or ``[(name, None)]`` for a space
  with one numeric parameter (the ranking metric on the y axis)."""
  numeric = {name for name, dist in run.space.items() if not dist.structural}
  ordered = [i.name for i in ranking if i.name in numeric][:MAX_PAIR_PARAMS]
  if len(ordered) == 1:
    return [(ordered[0], None)]
  return list(itertools.combinations(ordered, 2))


def draw_pair(ax: Any, run: Run, round_index: int, x: str, y: str | None,
              norm: Normalize, title: bool = False) -> dict[str, Any]:
  """Round ``round_index``'s trials over parameters ``x`` and ``y`` coloured by
  the ranking metric (or the metric against ``x`` when ``y`` is ``None``), kept
  trials ringed, diverged ones as red crosses (at the worst score in a 1-D
  panel), the round's ranges dashed grey and the next round's as a red box.

  Returns:
    The panel as drawn (see :class:`vmaptune.reporting.report.Report`'s ``panels``).
  """
  trials, scoring = run.trials, run.scoring
  rows = np.flatnonzero(trials.round == round_index)
  xs = values(trials, x, rows)
  score = trials.score[rows]
  ys = values(trials, y, rows) if y else score
  diverged = trials.diverged[rows] | ~np.isfinite(score)
  kept = run.kept[rows]
  entry = run.round_record(round_index)
  # The y of a diverged trial in a 1-D panel: the worst score of the run.
  finite = trials.score[np.isfinite(trials.score)]
  worst = (float(finite.min() if scoring.maximize else finite.max()) if len(finite)
           else 0.0)
  points = ax.scatter(xs[~diverged], ys[~diverged], c=score[~diverged], cmap=cmap(scoring),
                      norm=norm, s=18, linewidths=0)
  crosses = ax.scatter(xs[diverged], ys[diverged] if y else np.full(diverged.sum(), worst),
                       marker="x", color="tab:red", s=18, linewidths=1)
  ax.scatter(xs[kept], ys[kept], facecolors="none", edgecolors="black", s=40, linewidths=0.8)
  box: dict[str, tuple[float, float]] | None = None
  for space, style, is_next in ((entry and entry.space, dict(edgecolor="0.5", linestyle="--"),
                                 False),
                                (entry and entry.next_space, dict(edgecolor="tab:red",
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
  ax.set_ylabel(y or axis_label(scoring))
  if title:
    ax.set_title(f"round {round_index + 1}: ranges sampled (dashed) and next (red), "
                 "kept ringed", fontsize=10)
  return {"round": round_index, "x": x, "y": y or scoring.field(scoring.rank_by),
          "points": len(points.get_offsets()) + len(crosses.get_offsets()),
          "diverged": len(crosses.get_offsets()), "box": box}


def draw_history(ax: Any, run: Run, worst: float | None = None) -> None:
  """Each trial's ranking metric in file order (grey) and the best full-budget
  score so far (line: rising for a maximised metric, falling for a minimised
  one), rounds separated by dotted lines; the axis stops at ``worst`` (the
  lowest value shown of a maximised metric, the highest of a minimised one;
  trials beyond it are not shown) if given."""
  trials, scoring = run.trials, run.scoring
  score = trials.score
  order = np.arange(1, len(trials) + 1)
  finite = np.isfinite(score)
  ax.scatter(order[finite], score[finite], s=6, color="0.7", label="trial")
  accumulate = np.fmax.accumulate if scoring.maximize else np.fmin.accumulate
  best = accumulate(np.where(trials.completed, score, np.nan))
  ax.step(order, best, where="post", color="tab:blue", linewidth=2, label="best so far")
  for r in rounds_of(trials)[1:]:
    ax.axvline(np.flatnonzero(trials.round == r)[0] + 0.5, color="0.6", linestyle=":",
               linewidth=0.8)
  ax.set_xlabel("trials (in record order; dotted: rounds)")
  ax.set_ylabel(axis_label(scoring))
  if worst is not None and finite.any():
    top = float(np.nanmax(score) if scoring.maximize else np.nanmin(score))
    pad = 0.05 * abs(top - worst)
    ax.set_ylim(*sorted((worst - pad, top + pad) if scoring.maximize
                        else (top - pad, worst + pad)))
    ax.set_ylabel(f"{short_label(scoring)} (from {worst:.3g}, the 10th percentile)"
                  if scoring.maximize else
                  f"{short_label(scoring)} (up to {worst:.3g}, the 90th percentile)")
  ax.set_title("best so far against trials"
               + ("" if scoring.maximize else " (lower is better)"), fontsize=10)
  ax.legend(loc="lower right" if scoring.maximize else "upper right", fontsize=8)


def draw_wall_time(ax: Any, run: Run) -> None:
  """The best full-budget score at the end of each round against the
  rounds' cumulative wall time (compilation included)."""
  times, bests, elapsed = [], [], 0.0
  trials, scoring = run.trials, run.scoring
  for r in rounds_of(trials):
    entry = run.round_record(r)
    if entry is None or entry.wall_s is None:
      continue
    elapsed += entry.wall_s
    done = trials.completed & (trials.round <= r)
    times.append(elapsed)
    bests.append(scoring.best_of(trials.score[done]))
  if not times:
    ax.text(0.5, 0.5, "no round timings in summary.json", ha="center", transform=ax.transAxes)
    return
  ax.step([0.0] + times, [np.nan] + bests, where="post", color="tab:blue")
  ax.plot(times, bests, "o", color="tab:blue")
  ax.set_xlabel("wall time of the rounds (s)")
  ax.set_ylabel("best " + axis_label(scoring))
  ax.set_title("best so far against wall time", fontsize=10)


def draw_curves(ax: Any, run: Run, count: int) -> int:
  """Training loss per epoch of the ``count`` best trials (their whole
  lineage for population-based training). Returns the curves drawn."""
  drawn = 0
  trials = run.trials
  for row in rank(trials)[:count]:
    ax.plot(*trials.curve(row), marker=".", markersize=3, linewidth=1,
            label=f"r{trials.round[row] + 1} t{trials.trial[row]}  "
                  f"{trials.score[row]:.3f}")
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
  ax.set_title(f"learning curves of the {drawn} best trials ({short_label(run.scoring)})",
               fontsize=10)
  ax.legend(fontsize=7)
  return drawn


def draw_importance(ax: Any, ranking: list[Importance], scoring: Scoring) -> None:
  """Horizontal bars of each parameter's spread, the largest on top."""
  names = [i.name for i in ranking][::-1]
  ax.barh(names, [i.spread for i in ranking][::-1], color="tab:blue")
  ax.set_xlabel(f"spread of mean {short_label(scoring)} (round 1 trials)")
  ax.set_title("hyperparameter importance", fontsize=10)


def png(figure: Figure) -> bytes:
  """``figure`` as PNG bytes, at the report's resolution."""
  data = io.BytesIO()
  figure.savefig(data, dpi=DPI, format="png")
  return data.getvalue()


def pairs_figure(run: Run, round_index: int, ranking: list[Importance],
                 norm: Normalize | None = None) -> tuple[Figure, list[dict[str, Any]]]:
  """Round ``round_index``'s (0-based) trials over every pair of the most important
  numeric parameters (:func:`pair_params`), one panel each, coloured by the ranking metric.

  Returns:
    ``(figure, panels)``: one dict per panel drawn (see :func:`draw_pair`).
  """
  scoring = run.scoring
  norm = norm or score_norm(run)
  pairs = pair_params(run, ranking)
  columns = min(len(pairs), 3)
  rows = math.ceil(len(pairs) / columns)
  figure = _figure(3.6 * columns + 0.8, 3.2 * rows)
  axes = figure.subplots(rows, columns, squeeze=False).ravel()
  panels = [draw_pair(ax, run, round_index, x, y, norm)
            for ax, (x, y) in zip(axes, pairs, strict=False)]
  for ax in axes[len(pairs):]:
    ax.set_visible(False)
  figure.colorbar(ScalarMappable(norm, cmap(scoring)), ax=list(axes[:len(pairs)]),
                  label=axis_label(scoring))
  figure.suptitle(f"round {round_index + 1}\nringed: kept; dashed: ranges sampled; "
                  "red: next round's", fontsize=10)
  return figure, panels


def best_so_far_figure(run: Run) -> Figure:
  """The best score so far against trials (:func:`draw_history`) and against the
  rounds' wall time (:func:`draw_wall_time`), side by side."""
  figure = _figure(10, 3.6)
  history, wall = figure.subplots(1, 2)
  draw_history(history, run, worst_shown(score_norm(run), run.scoring))
  draw_wall_time(wall, run)
  return figure


def curves_figure(run: Run, count: int = 8) -> Figure:
  """Training loss per epoch of the ``count`` best trials (:func:`draw_curves`)."""
  figure = _figure(6.5, 4.2)
  draw_curves(figure.subplots(), run, count)
  return figure


def importance_figure(run: Run, ranking: list[Importance]) -> Figure:
  """Each parameter's importance as a bar, the largest on top (:func:`draw_importance`)."""
  figure = _figure(6, 0.6 + 0.45 * len(ranking))
  draw_importance(figure.subplots(), ranking, run.scoring)
  return figure


def fitted_surface(run: Run, ranking: list[Importance]) -> Surface | None:
  """The estimated expected score (:func:`vmaptune.trials.estimate.surface`) over the
  most important pair of numeric parameters (the first pair panel's), the others at
  the chosen configuration's values; ``None`` where the space has one traced
  parameter, nothing was chosen yet, or too few configurations to fit."""
  x, y = pair_params(run, ranking)[0]
  chosen = run.chosen_record
  if y is None or chosen is None or not run.trials.is_configuration.any():
    return None
  return surface(run.trials, run.space, x, y, chosen.hparams)


def surface_figure(run: Run, ranking: list[Importance]) -> Figure | None:
  """The fitted surface of :func:`fitted_surface` as filled contours, coloured
  as the pair panels are, with every configuration it was fitted to (dots) and
  the chosen one (a red star); ``None`` where there is no surface."""
  found = fitted_surface(run, ranking)
  if found is None:
    return None
  scoring = run.scoring
  norm = score_norm(run)
  figure = _figure(6.2, 4.8)
  ax = figure.subplots()
  ax.contourf(found.x_values, found.y_values, found.mean, levels=14, cmap=cmap(scoring),
              norm=norm)
  rows = found.group.rows
  ax.scatter(values(run.trials, found.x, rows), values(run.trials, found.y, rows), s=6,
             color="white", edgecolors="black", linewidths=0.3)
  chosen = run.chosen_record.hparams
  ax.scatter([chosen[found.x]], [chosen[found.y]], marker="*", s=160, color="tab:red",
             edgecolors="black", linewidths=0.6, label="chosen")
  for name, set_scale in ((found.x, ax.set_xscale), (found.y, ax.set_yscale)):
    set_scale("log" if is_log(run.space[name]) else "linear")
  ax.set_xlim(*_limits(run.space[found.x]))
  ax.set_ylim(*_limits(run.space[found.y]))
  ax.set_xlabel(found.x)
  ax.set_ylabel(found.y)
  ax.legend(loc="upper right", fontsize=8)
  figure.colorbar(ScalarMappable(norm, cmap(scoring)), ax=ax,
                  label=f"estimated expected {axis_label(scoring)}")
  others = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in found.at.items())
  ax.set_title(f"fitted surface of {found.group.rows.size} configurations"
               + (f"\nat {others}" if others else ""), fontsize=9)
  return figure


def overview_figure(run: Run, ranking: list[Importance], curves: int = 8) -> Figure:
  """One of each on a page: the first round's most important pair, the best so far
  against trials, the learning curves of the ``curves`` best trials, the importance."""
  scoring = run.scoring
  norm = score_norm(run)
  figure = _figure(11, 7.5)
  (scatter, history), (curve_ax, importance_ax) = figure.subplots(2, 2)
  draw_pair(scatter, run, rounds_of(run.trials)[0], *pair_params(run, ranking)[0], norm,
            title=True)
  figure.colorbar(ScalarMappable(norm, cmap(scoring)), ax=scatter, label=axis_label(scoring))
  draw_history(history, run, worst_shown(norm, scoring))
  draw_curves(curve_ax, run, curves)
  draw_importance(importance_ax, ranking, scoring)
  return figure


def write_figures(run: Run, ranking: list[Importance], out: str,
                  curves: int = 8) -> tuple[dict[str, str], list[dict[str, Any]]]:
  """Writes every figure of :func:`vmaptune.reporting.report` into ``out``: the
  figures above, saved as PNG files.

  Returns:
    ``({name: path}, panels)``: the files, and one dict per pair panel drawn.
  """
  os.makedirs(out, exist_ok=True)
  norm = score_norm(run)
  files, panels = {}, []
  for r in rounds_of(run.trials):
    figure, drawn = pairs_figure(run, r, ranking, norm)
    panels += drawn
    files[f"pairs_round{r + 1}"] = _save(figure, out, f"pairs_round{r + 1}")
  files["best_so_far"] = _save(best_so_far_figure(run), out, "best_so_far")
  files["learning_curves"] = _save(curves_figure(run, curves), out, "learning_curves")
  files["importance"] = _save(importance_figure(run, ranking), out, "importance")
  fitted = surface_figure(run, ranking)
  if fitted is not None:
    files["surface"] = _save(fitted, out, "surface")
  files["overview"] = _save(overview_figure(run, ranking, curves), out, "overview")
  return files, panels
