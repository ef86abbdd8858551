"""What a run found, read back from its run directory: ``vmaptune show`` and ``vmaptune report``.

:func:`report` reads the run directory (:func:`vmaptune.rundir.load_run`:
the records of its completed rounds and its summary), prints a table of the
top trials and an importance ranking of the hyperparameters (see
:mod:`vmaptune.reporting.importance`; no extra dependency), and, when matplotlib is
installed (``pip install 'vmaptune[report]'``), writes PNG figures (see
:mod:`vmaptune.reporting.figures`), and one page of it all, ``report.html`` (see
:mod:`vmaptune.reporting.page`). :func:`describe_run` is what ``vmaptune show`` prints.

Both follow the run's objective (:attr:`vmaptune.rundir.Run.scoring`): the
ranking metric's scores are shown (``val accuracy`` for classification,
``val mse`` for regression), a column per metric lists the trials, and the
trials are ranked the way round the metric is better. What they print is
:func:`printable`: a run directory may hold terminal control sequences.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import IO, Any

from vmaptune.reporting.importance import Importance, format_value, importance
from vmaptune.reporting.page import metric_name, ranked_by
from vmaptune.reporting.page import render as render_page
from vmaptune.rundir import PARAMS_FILE, Run, load_run, write_atomic
from vmaptune.search.confirmation import describe as describe_confirmation
from vmaptune.search.results import describe_budget
from vmaptune.space.distributions import describe_values
from vmaptune.validation import whole_number

INSTALL_HINT = ("matplotlib is not installed, so no figures were written; install it with "
                "`pip install 'vmaptune[report]'` (or `pip install matplotlib`) and run the "
                "report again")
PAGE_FILE = "report.html"
PAGE_TOP = 50  # Trials in the page's table (the printed one has ``top``).


def printable(text: str) -> str:
  """``text`` safe to print to a terminal: each character Python deems unprintable
  (escape and other control characters, bidirectional overrides, line separators;
  newlines aside) is written as its escape (``\\x1b``, ``\\u202e``), so a value read
  from a run directory cannot move the cursor, recolour, retitle or clear the screen.

  >>> printable("red\\x1b[31m\\u202e\\nnext")
  'red\\\\x1b[31m\\\\u202e\\nnext'
  """
  if text.isprintable():
    return text
  return "".join(char if char == "\n" or char.isprintable()
                 else char.encode("unicode_escape").decode("ascii") for char in text)


def column(name: str) -> str:
  """A metric's column in the trial tables: ``val_acc`` for accuracy, else ``val_<name>``."""
  return "val_acc" if name == "accuracy" else f"val_{name}"


def _score(value: Any, width: int = 0) -> str:
  """A score as the tables show it (``n/a`` where a record holds none)."""
  return "n/a".rjust(width) if value is None else f"{value:>{width}.4f}"


def describe_run(run: Run, top: int = 10) -> str:
  """What ``vmaptune show`` prints: progress, the chosen config and its
  scores, and the top trials (:func:`printable`)."""
  settings = run.settings
  done, rounds = run.rounds_completed, settings["rounds"]
  state = ("complete" if run.complete else
           "not finished: run the same config into it to resume")
  planned = f"{done} rounds as fit in a budget" if rounds is None else f"{done} of {rounds} rounds"
  lines = [f"run {run.path}: {planned}, {state}",
           f"  {run.config['data']['description']}; population {settings['population']}, "
           f"{settings['epochs']} epochs, sampler {settings['sampler']}, strategy "
           f"{settings['strategy']}, seed {settings['seed']}"]
  summary = run.summary_record
  if summary is not None and summary.error:
    lines.append(f"  stopped with an error: {summary.error}")
  chosen, scoring = run.chosen_record, run.scoring
  metric = metric_name(scoring)
  if chosen is not None:
    lines.append(f"chosen config (round {chosen.round + 1}, trial {chosen.trial}): "
                 f"{describe_values(chosen.hparams, sep='  ')}")
    scores = f"  val {metric}  {_score(chosen.score)} (search)"
    final = run.final_fit_record
    saved = run.params_pointer
    if final is not None:
      scores += f"  {_score(final.val_score)} ({final.refit})"
      test = final.test_score
      scores += f"\n  test {metric} " + ("n/a (empty test split)" if test is None
                                         or math.isnan(test) else f"{test:.4f}")
      scores += f"\n  best parameters: {os.path.join(run.path, PARAMS_FILE)}"
    elif saved is not None:
      scores += (f"\n  best parameters so far: {os.path.join(run.path, PARAMS_FILE)} (round "
                 f"{saved.round + 1}, trial {saved.trial}, as trained in the search)")
    lines.append(scores)
    if summary.confirmation:
      lines.append(describe_confirmation(summary.confirmation))
  if summary is not None and summary.budget is not None:
    lines.append(describe_budget(summary.budget))
  best = [run.trial_records[row] for row in run.top_rows(top)] if run.records else []
  if best:
    # The first metric's column as wide as its value, the others right-aligned under
    # their headers (classification: "val_acc  val_loss").
    names = [column(name) for name in scoring.names]
    widths = [0] + [max(8, len(name)) for name in names[1:]]
    lines.append(f"top {len(best)} of {len(run.records)} trials:")
    lines.append("  round  trial  epochs  " + "  ".join(names) + "  hparams")
    lines += [f"  {r.round + 1:>5}  {r.trial:>5}  {r.start_epoch + r.epochs:>6}  "
              + "".join(f"{_score(r.metrics[name], width)}  "
                        for name, width in zip(scoring.names, widths, strict=True))
              + describe_values(r.hparams) for r in best]
  return printable("\n".join(lines))


def top_rows(run: Run, top: int = 10) -> tuple[list[str], list[list[str]]]:
  """The ``top`` best trials (as the tuner ranks them): the header and one row
  of text cells per trial, best first."""
  names = list(run.space)
  trials = run.trials
  scoring = trials.scoring
  header = (["#", "round", "trial", "status", "epochs"]
            + [column(name) for name in scoring.names] + names)
  rows = []
  for place, i in enumerate(run.top_rows(top)):
    record = run.trial_records[i]
    scores = []
    for name in scoring.names:
      cell = f"{trials.metrics[name][i]:.4f}"
      if name == scoring.rank_by and record.score_std is not None:
        cell += f"±{record.score_std:.4f}"  # Over seeds.
      scores.append(cell)
    rows.append([str(place + 1), str(trials.round[i] + 1), str(trials.trial[i]),
                 record.status, str(trials.reached[i]), *scores]
                + [format_value(record.hparams[n]) for n in names])
  return header, rows


def top_table(run: Run, top: int = 10) -> str:
  """The ``top`` best trials (as the tuner ranks them) as aligned text columns."""
  header, rows = top_rows(run, top)
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
      the ranking metric's field, ``"val_accuracy"`` or ``"val_mse"``, when
      the space has one numeric parameter),
      ``points`` (trials drawn), ``diverged`` (of them), ``box`` (``{name:
      (low, high)}`` of the next round's ranges as drawn, ``None`` when the
      summary has no next space for that round).
    note: why no figures were written, or ``None``.
    page: the path of ``report.html`` (see :mod:`vmaptune.reporting.page`).
  """

  table: str
  importance: list[Importance]
  figures: dict[str, str]
  panels: list[dict[str, Any]]
  note: str | None = None
  page: str | None = None

  def describe(self, run: Run) -> str:
    chosen, final = run.chosen_record, run.final_fit_record
    scoring = run.scoring
    metric = metric_name(scoring)
    rounds = len(set(run.trials.round.tolist()))
    lines = [f"run {run.path}: {len(run.records)} trials over {rounds} round"
             f"{'s' if rounds != 1 else ''}, {int(run.trials.diverged.sum())} diverged"]
    if chosen:
      lines.append(f"chosen (round {chosen.round + 1}, trial {chosen.trial}): "
                   f"{describe_values(chosen.hparams, sep='  ')}  val {metric} "
                   f"{_score(chosen.score)}"
                   + (f", test {metric} {final.test_score:.4f}"
                      if final and final.test_score is not None else ""))
      if run.confirmation_record:
        lines.append(describe_confirmation(run.confirmation_record))
    if run.summary_record is not None and run.summary_record.budget is not None:
      lines.append(describe_budget(run.summary_record.budget))
    lines += ["", f"top trials (full budget first, then {ranked_by(scoring)}):", self.table,
              "", f"importance (spread of mean val {metric} over groups of a parameter's "
              "first-round values):"]
    width = max(len(i.name) for i in self.importance)
    lines += [f"  {i.name:<{width}}  {i.spread:.4f}  ({i.method})" for i in self.importance]
    lines.append("")
    if self.figures:
      lines.append("figures:")
      lines += [f"  {path}" for path in self.figures.values()]
    else:
      lines.append(self.note or "no figures")
    if self.page:
      lines.append(f"page (open it in a browser): {self.page}")
    return printable("\n".join(lines))


def report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
           top: int = 10, curves: int = 8, quiet: bool = False,
           stream: IO[str] | None = None) -> Report:
  """Prints a run's top trials and hyperparameter importance, and writes its figures.

  Figures (PNG, into ``out``, default ``RUN_DIR/report``), when matplotlib is
  installed: ``pairs_round<k>.png`` per round (1-based ``k``), the ranking
  metric (validation accuracy for classification) over each pair of numeric
  hyperparameters with the next round's
  ranges drawn as a box; ``best_so_far.png`` against trials and wall time;
  ``learning_curves.png`` (training loss per epoch of the ``curves`` best
  trials); ``importance.png``; ``surface.png``, the expected score fitted to
  every configuration over the most important pair of parameters (see
  :func:`vmaptune.trials.estimate.surface`; not for a single traced parameter);
  and ``overview.png``, one of each on a page. Without matplotlib the text is
  printed all the same, with how to install it.
  And always ``report.html``, one self-contained page of it all (settings,
  each round's ranges, the chosen configuration, importance, the figures
  embedded, the top ``max(top, 50)`` trials in a sortable table; see
  :mod:`vmaptune.reporting.page`).

  Args:
    run_dir: a run directory (the ``out`` of :func:`vmaptune.tune`); the
      rounds it completed are reported (a round it was stopped in is not).
    out: directory for the figures and the page.
    top: trials in the printed table.
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
  whole_number("top", top, 1, error=ValueError)
  whole_number("curves", curves, 1, error=ValueError)
  run = load_run(run_dir)
  if not run.records:
    raise ValueError(f"{run.path} holds no completed round yet")
  ranking = importance(run.trials, run.space)
  table = top_table(run, top)
  out = os.path.join(run.path, "report") if out is None else os.fspath(out)
  try:
    from vmaptune.reporting import figures as drawn
  except ImportError:
    result = Report(table, ranking, {}, [], note=INSTALL_HINT)
  else:
    figures, panels = drawn.write_figures(run, ranking, out, curves=curves)
    result = Report(table, ranking, figures, panels)
  # Replaced atomically: a link planted as report.html is replaced, not written through.
  result.page = write_atomic(os.path.join(out, PAGE_FILE), render_page(
      run, *top_rows(run, max(top, PAGE_TOP)), ranking, result.figures, result.note).encode())
  if not quiet:
    stream = stream or sys.stdout
    stream.write(result.describe(run) + "\n")
    stream.flush()
  return result
