"""How runs and results show in a notebook: a compact HTML summary.

A :class:`vmaptune.TuneResult` or a run read back (:func:`vmaptune.load_run`) shows
its state, its settings (the main ones, the rest folded), the chosen configuration
with its confirmation and, once the final fit ran, its test score, the top trials,
and the report's overview figure; a :class:`vmaptune.RoundResult` shows its counts,
the ranges it sampled and handed on, its top trials and its pair panels. The
figures are the report's drawings (:mod:`vmaptune.reporting.figures`), embedded as
``data:image/png`` URIs: nothing is fetched. Without matplotlib the summary has no
figure. Every value is escaped (a data description or category value may hold
markup). :func:`install` makes it the objects' ``_repr_html_``.
"""

from __future__ import annotations

import base64
import html as markup
from typing import Any

from vmaptune.reporting.importance import importance
from vmaptune.reporting.page import chosen_section, round_cards, settings_list, table
from vmaptune.reporting.report import top_rows
from vmaptune.reporting.source import Source, as_run
from vmaptune.rundir import Run, display
from vmaptune.search.results import RoundResult

TOP = 5  # Trials in a summary's table.
# The settings shown on the summary's first line; the others are folded under "all settings".
MAIN_SETTINGS = ("population", "epochs", "rounds", "budget", "sampler", "strategy", "seed")
# Scoped to the summary's own box: a notebook's other outputs keep their style.
STYLE = """<style>
.vmaptune-summary { font: 13px/1.4 system-ui, sans-serif; max-width: 900px; }
.vmaptune-summary h3 { margin: 0.6em 0 0.2em; font-size: 14px; }
.vmaptune-summary table { border-collapse: collapse; margin: 0.2em 0; }
.vmaptune-summary th, .vmaptune-summary td { padding: 1px 8px; text-align: left;
  border-bottom: 1px solid #eee; }
.vmaptune-summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
.vmaptune-summary p { margin: 0.2em 0; } .vmaptune-summary pre { margin: 0; }
.vmaptune-summary dl.settings { display: grid; grid-template-columns: max-content 1fr;
  gap: 0 10px; } .vmaptune-summary dd { margin: 0; }
.vmaptune-summary .cards { display: flex; flex-wrap: wrap; gap: 0 2em; }
.vmaptune-summary img { max-width: 100%; }
</style>"""


def _e(value: Any) -> str:
  return markup.escape(str(value))


def html(source: Source) -> str:
  """The HTML summary of a :class:`vmaptune.TuneResult`, a :class:`vmaptune.RoundResult`,
  a :class:`vmaptune.rundir.Run` or a run directory's path (one ``<div>``)."""
  if isinstance(source, RoundResult):
    body = _round_body(source)
  else:
    body = _run_body(as_run(source))
  return f'<div class="vmaptune-summary">{STYLE}\n{body}</div>'


def _state(run: Run) -> str:
  """One line: rounds done (of how many), trials, diverged, wall time."""
  done, rounds = run.rounds_completed, run.settings.get("rounds")
  planned = f"{done} round{'s' if done != 1 else ''}" + ("" if rounds is None else f" of {rounds}")
  state = "complete" if run.complete else "not finished"
  line = (f"{planned}, {state}; {len(run.records)} trials, "
          f"{int(run.trials.diverged.sum())} diverged")
  wall = (run.summary or {}).get("wall_s")
  return line + ("" if wall is None else f"; {wall:.1f} s")


def _main_settings(run: Run) -> str:
  settings = run.settings
  return ", ".join(f"{name} {settings[name]}" for name in MAIN_SETTINGS
                   if settings.get(name) is not None)


def _run_body(run: Run) -> str:
  where = (f"<code>{_e(run.path)}</code>" if run.path
           else "held in memory (<code>out=None</code>)")
  parts = [f"<h3>vmaptune run, {where}</h3>", f"<p>{_e(_state(run))}</p>",
           f"<p>{_e(_main_settings(run))}</p>",
           f"<details><summary>all settings</summary>{settings_list(run)}</details>",
           "<h3>Chosen configuration</h3>", chosen_section(run)]
  if run.records:
    parts += [f"<h3>Top {min(TOP, len(run.records))} trials</h3>", table(*top_rows(run, TOP)),
              _image(run, "overview")]
  return "\n".join(parts)


def _round_body(result: RoundResult) -> str:
  run = as_run(result)
  parts = [f"<h3>Round {result.index + 1} (index {result.index}), {_e(result.strategy)}</h3>",
           f"<p>{result.configurations} configurations, {result.num_trials} trials, "
           f"{result.lane_epochs} lane-epochs in {result.wall_s:.2f} s "
           f"({result.compiles} programs compiled, {result.compile_s:.1f} s)</p>",
           round_cards(run)]
  if run.records:
    parts += [f"<h3>Top {min(TOP, len(run.records))} trials</h3>", table(*top_rows(run, TOP)),
              _image(run, "pairs", result.index)]
  return "\n".join(parts)


def _image(run: Run, kind: str, round_index: int = 0) -> str:
  """The overview (or round ``round_index``'s pair panels) as an embedded PNG; a note
  without matplotlib."""
  try:
    from vmaptune.reporting import figures
  except ImportError:
    return "<p>Install matplotlib (<code>pip install 'vmaptune[notebook]'</code>) for figures.</p>"
  ranking = importance(run.trials, run.space)
  if kind == "overview":
    figure = figures.overview_figure(run, ranking)
  else:
    figure, _ = figures.pairs_figure(run, round_index, ranking)
  data = base64.b64encode(figures.png(figure)).decode("ascii")
  return f'<img alt="{_e(kind)}" src="data:image/png;base64,{data}">'


def install() -> None:
  """Makes :func:`html` the ``_repr_html_`` of runs and results."""
  display.install(html)
