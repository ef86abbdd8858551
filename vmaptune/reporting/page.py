"""The report as one page to open: ``report.html``, written by :func:`vmaptune.reporting.report`.

One self-contained file: the figures are embedded as ``data:image/png`` URIs,
the style and the table-sorting script are inline, and a Content Security
Policy forbids the browser to fetch anything at all, so the page opens the same
offline, from an archive or attached to a mail. Every value read from the run
directory is escaped (a data description or a category value may hold markup),
and the policy runs only the page's own script, pinned by its SHA-256: markup an
escaping slip let through shows, but no script in it runs.
Scores follow the run's objective (:attr:`vmaptune.rundir.Run.scoring`): the
ranking metric first, every other metric beside it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vmaptune.reporting.importance import Importance, format_value
from vmaptune.rundir import PARAMS_FILE, Run
from vmaptune.rundir.records import RoundEntry
from vmaptune.search.confirmation import describe as describe_confirmation
from vmaptune.space.space import Space
from vmaptune.trials.scoring import Scoring

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1150px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
.path { color: #555; font-family: monospace; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left;
         vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { margin: 0; font-size: 12px; }
.bar { display: inline-block; height: 0.8em; background: #4c72b0; }
.note { background: #fff6d5; padding: 0.5em 1em; border-left: 4px solid #e0b000; }
#trials th { cursor: pointer; user-select: none; background: #f4f4f4; }
#trials th[aria-sort=ascending]::after { content: " \\25B2"; }
#trials th[aria-sort=descending]::after { content: " \\25BC"; }
dl.settings { display: grid; grid-template-columns: repeat(3, max-content minmax(0, 1fr));
              gap: 2px 12px; } dt { font-weight: 600; } dd { margin: 0; overflow-x: auto; }
dd.wide { grid-column: 2 / -1; }
.cards { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.cards td { white-space: nowrap; } .cards > figure { margin-bottom: 1em; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
"""

# Click a header to sort by it (again: the other way); numbers sort as numbers. A link
# ending in #sort=NAME (or #sort=-NAME, descending) opens the table sorted by column NAME.
SCRIPT = """
(() => {
  const table = document.getElementById("trials");
  if (!table) return;
  const heads = Array.from(table.tHead.rows[0].cells);
  const key = (row, c) => {
    const text = row.cells[c].textContent, n = parseFloat(text);
    return isNaN(n) ? text : n;
  };
  const sort = (c, descending) => {
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a, c), y = key(b, c);
      const d = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1)
                                      : (x < y ? -1 : x > y ? 1 : 0);
      return descending ? -d : d;
    });
    rows.forEach(row => body.appendChild(row));
    heads.forEach(th => th.removeAttribute("aria-sort"));
    heads[c].setAttribute("aria-sort", descending ? "descending" : "ascending");
  };
  heads.forEach((th, c) => th.addEventListener(
      "click", () => sort(c, th.getAttribute("aria-sort") === "ascending")));
  const asked = /^#sort=(-?)(.+)$/.exec(location.hash);
  const c = asked ? heads.findIndex(th => th.dataset.name === decodeURIComponent(asked[2])) : -1;
  if (c >= 0) sort(c, asked[1] === "-");
  table.dataset.sortable = "ready";
})();
"""


def script_hash(script: str) -> str:
  """The CSP source that allows exactly ``script``'s bytes: ``'sha256-<base64>'``."""
  return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


# The page may use its own inline style, run its own script (pinned by its hash: a script
# that an escaping slip let in does not run, nor does an inline event handler) and show
# data: images; nothing else loads.
POLICY = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
          f"script-src {script_hash(SCRIPT)}; base-uri 'none'; form-action 'none'")


def _e(value: Any) -> str:
  return html.escape(str(value))


def _number(value: Any, form: str = ".4f") -> str:
  """A score as text: ``n/a`` for ``None`` (JSON's NaN) and NaN."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  return format(value, form)


def metric_name(scoring: Scoring, name: str | None = None) -> str:
  """A metric as the text names it (the ranking one by default): ``accuracy``, ``mse``."""
  return (name or scoring.rank_by).replace("_", " ")


def ranked_by(scoring: Scoring) -> str:
  """``validation accuracy``, ``validation mse, lowest first``: what ranks the trials."""
  return scoring.label() + ("" if scoring.maximize else ", lowest first")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], attrs: str = "") -> str:
  """A table of escaped cells, numbers right-aligned; each header cell names its column
  in ``data-name`` (what ``#sort=`` matches)."""
  head = "".join(f'<th data-name="{_e(h)}">{_e(h)}</th>' for h in header)
  body = "".join(
      "<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if _numeric(c) else f"<td>{_e(c)}</td>"
                       for c in row) + "</tr>\n" for row in rows)
  return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _numeric(value: Any) -> bool:
  try:
    float(str(value).split("±")[0])
  except ValueError:
    return False
  return True


def settings_list(run: Run) -> str:
  """The run's data, model, settings and environment as name/value rows."""
  config = run.config
  rows = [("data", config.get("data", {}).get("description", "n/a"))]
  model = config.get("model", {})
  rows.append(("model", model.get("description", "n/a")))
  if model.get("parameters"):
    rows.append(("model parameters", ", ".join(f"{p:,}" for p in model["parameters"])))
  rows += [(name, "none" if value is None else value) for name, value in run.settings.items()]
  rows += [(name, value) for name, value in config.get("environment", {}).items()]
  if run.summary and run.summary.get("wall_s") is not None:
    rows.append(("wall time", f"{run.summary['wall_s']:.1f} s"))
  wide = {"data": ' class="wide"', "model": ' class="wide"'}  # A line of their own.
  cells = "".join(f"<dt>{_e(name)}</dt><dd{wide.get(name, '')}><pre>{_e(value)}</pre></dd>\n"
                  for name, value in rows)
  return f'<dl class="settings">{cells}</dl>'


def _ranges(described: Mapping[str, Any] | None) -> dict[str, str]:
  return {} if not described else {n: d.describe() for n, d in Space.from_dict(described).items()}


def round_cards(run: Run) -> str:
  """Per completed round: its counts and scores, the ranges it sampled and those it
  handed to the next round."""
  trials, scoring = run.trials, run.scoring
  parts = []
  for r in sorted(set(trials.round.tolist())):
    entry = run.round_record(r) or RoundEntry(r, 0, scoring=scoring)
    mine = trials.round == r
    score = trials.score[mine]
    finite = score[~np.isnan(score)]  # A hand-written summary may lack the scores.
    best = entry.best if entry.best is not None else (
        scoring.best_of(finite) if finite.size else None)
    median = entry.median if entry.median is not None else (
        np.median(finite) if finite.size else None)
    wall = entry.wall_s
    diverged, kept = int(trials.diverged[mine].sum()), int(run.kept[mine].sum())
    parts.append(
        f"<div><h3>Round {r + 1}</h3><p>{int(mine.sum())} trials, {diverged} diverged, "
        f"{kept} kept;<br>best val {_e(metric_name(scoring))} {_number(best)}, "
        f"median {_number(median)}"
        + (f"; {wall:.1f} s" if wall is not None else "") + "</p>")
    sampled, following = _ranges(entry.space), _ranges(entry.next_space)
    if sampled or following:
      parts.append(table(["parameter", "sampled", "next round's"],
                          [(n, sampled.get(n, "n/a"), following.get(n, "n/a"))
                           for n in sampled or following]))
    else:
      parts.append("<p>The summary records no ranges for this round.</p>")
    parts.append("</div>")
  return '<div class="cards">' + "\n".join(parts) + "</div>"


def chosen_section(run: Run) -> str:
  """The chosen configuration: values, search score, confirmation, final fit."""
  chosen, scoring = run.chosen_record, run.scoring
  if chosen is None:
    return "<p>Nothing was chosen yet.</p>"
  metric, rank_by = _e(metric_name(scoring)), scoring.rank_by
  others = [name for name in scoring.names if name != rank_by]

  def besides(prefix: str, values: Mapping[str, Any]) -> str:
    """`` (validation loss 0.5000)``: the other metrics, in parentheses."""
    shown = ", ".join(f"{prefix} {_e(metric_name(scoring, name))} "
                      f"{_number(values.get(name))}" for name in others)
    return f" ({shown})" if shown else ""

  lines = [f"<p>Round {chosen.round + 1}, trial {chosen.trial}.</p>",
           table(["parameter", "value"],
                  [(n, format_value(v)) for n, v in chosen.hparams.items()]),
           f"<p>Validation {metric} {_number(chosen.score)} in the "
           f"search{besides('validation', chosen.metrics)}.</p>"]
  confirmation = run.confirmation_record
  if confirmation:
    lines += [f"<p>{_e(line.strip())}</p>"
              for line in describe_confirmation(confirmation).splitlines()]
  final = run.final_fit_record
  # A result held in memory (out=None) has no directory, so no parameters file.
  params = (f" Its parameters: <code>{_e(os.path.join(run.path, PARAMS_FILE))}</code>."
            if run.path else "")
  if final is not None:
    lines.append(f"<p>Final fit: validation {metric} "
                 f"{_number(final.val_score)} ({_e(final.refit)}), <strong>test "
                 f"{metric} {_number(final.test_score)}</strong>"
                 f"{besides('test', final.test)}.{params}</p>")
  else:
    lines.append("<p>The final fit has not run, so the sealed test split is still unread: "
                 "<code>vmaptune run</code> ends with it (in Python, "
                 "<code>TuneResult.final_fit()</code>).</p>")
  return "\n".join(lines)


def _importance(ranking: Sequence[Importance], scoring: Scoring) -> str:
  widest = max((i.spread for i in ranking), default=0) or 1
  rows = "".join(
      f"<tr><td>{_e(i.name)}</td><td class=\"num\">{i.spread:.4f}</td><td><span class=\"bar\" "
      f"style=\"width: {200 * i.spread / widest:.0f}px\"></span></td><td>{_e(i.method)}</td>"
      "</tr>\n" for i in ranking)
  return (f"<p>Spread (max - min) of mean {_e(scoring.label())} over groups of each "
          "parameter's first-round values; diverged trials count as the worst.</p>"
          "<table><thead><tr>"
          "<th>parameter</th><th>spread</th><th></th><th>grouped by</th></tr></thead>"
          f"<tbody>{rows}</tbody></table>")


def _figures(figures: Mapping[str, str], note: str | None) -> str:
  if not figures:
    return f'<p class="note">{_e(note or "No figures were written.")}</p>'
  parts = []
  for name in sorted(figures, key=lambda n: n != "overview"):  # The overview first.
    with open(figures[name], "rb") as f:
      data = base64.b64encode(f.read()).decode("ascii")
    parts.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
                 f"<figcaption>{_e(os.path.basename(figures[name]))}</figcaption></figure>")
  return '<div class="cards">' + "\n".join(parts) + "</div>"


def render(run: Run, header: Sequence[str], rows: Sequence[Sequence[str]],
           ranking: Sequence[Importance], figures: Mapping[str, str],
           note: str | None = None) -> str:
  """The report page of ``run``, as one HTML document.

  Args:
    run: the run directory read back.
    header, rows: the top trials as :func:`vmaptune.reporting.report.top_rows` gives
      them (columns ``#``, ``round``, ..., one per hyperparameter), best first.
    ranking: the hyperparameter importance, largest first.
    figures: ``{name: path}`` of the PNG files to embed.
    note: why there are no figures (shown when ``figures`` is empty).
  """
  done, total = run.rounds_completed, run.settings["rounds"]
  state = "complete" if run.complete else "not finished"
  diverged = int(run.trials.diverged.sum())
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(POLICY)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vmaptune report: {_e(os.path.basename(os.path.normpath(run.path)))}</title>
<style>{STYLE}</style></head>
<body>
<h1>vmaptune report</h1>
<p class="path">{_e(run.path)}</p>
<p>{done} of {total} rounds, {state}; {len(run.records)} trials, {diverged} diverged.</p>
<section id="settings"><h2>Settings</h2>
{settings_list(run)}</section>
<section id="chosen"><h2>Chosen configuration</h2>
{chosen_section(run)}</section>
<section id="rounds"><h2>Rounds</h2>
{round_cards(run)}</section>
<section id="importance"><h2>Hyperparameter importance</h2>
{_importance(ranking, run.scoring)}</section>
<section id="figures"><h2>Figures</h2>
{_figures(figures, note)}</section>
<section id="top"><h2>Top {len(rows)} trials</h2>
<p>Ranked as the tuner ranks (full budget first, then {_e(ranked_by(run.scoring))}); click a
header to sort by it.</p>
{table(header, rows, ' id="trials"')}</section>
<script>{SCRIPT}</script>
</body></html>
"""

