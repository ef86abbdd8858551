"""`report.html`: one self-contained page of a run, read with the stdlib's HTML parser and
opened in headless Chromium (Debian's package; those tests skip without it)."""

import base64
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser

import numpy as np
import pytest

import vmaptune as vt
from conftest import REPORT_SPACE, needs_matplotlib
from vmaptune.reporting.importance import format_value, importance
from vmaptune.reporting.page import SCRIPT, render, script_hash
from vmaptune.reporting.report import INSTALL_HINT, top_rows
from vmaptune.search.confirmation import describe as describe_confirmation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent: the browser tests need Debian's chromium "
           "(apt-get install -y chromium)")


class Page(HTMLParser):
  """What the tests read of a page: each section's text (whitespace collapsed), every
  start tag with its attributes, and the cells of the ``#trials`` table (header first)."""

  def __init__(self, text: str):
    super().__init__()
    self.sections: dict[str, list[str]] = {}
    self.tags: list[tuple[str, dict]] = []
    self.rows: list[list[str]] = []
    self._section, self._in_trials, self._cell = None, False, None
    self.feed(text)
    self.close()

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.tags.append((tag, attrs))
    if tag == "section":
      self._section = self.sections.setdefault(attrs["id"], [])
    self._in_trials |= tag == "table" and attrs.get("id") == "trials"
    if self._in_trials and tag == "tr":
      self.rows.append([])
    if self._in_trials and tag in ("th", "td"):
      self._cell = ""

  def handle_endtag(self, tag):
    if tag == "section":
      self._section = None
    if tag == "table":
      self._in_trials = False
    if tag in ("th", "td") and self._cell is not None:
      self.rows[-1].append(self._cell)
      self._cell = None

  def handle_data(self, data):
    if self._section is not None:
      self._section.append(data)
    if self._cell is not None:
      self._cell += data

  def text(self, section: str) -> str:
    return " ".join(" ".join(self.sections[section]).split())

  def attrs(self, tag: str) -> list[dict]:
    return [a for t, a in self.tags if t == tag]


def read(path) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def assert_fetches_nothing(text: str) -> None:
  """No address to fetch: no link, stylesheet, import or ``url()``, every ``src`` a
  ``data:`` URI, and a policy that forbids the browser any fetch."""
  page = Page(text)
  for tag, attrs in page.tags:
    for name in ("src", "href", "action", "srcset", "poster", "data"):
      assert attrs.get(name) is None or attrs[name].startswith("data:"), (tag, attrs)
  assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
  assert "<link" not in text and "@import" not in text and "url(" not in text
  assert _policy(text).startswith("default-src 'none'; img-src data:;")


def _policy(text: str) -> str:
  """The page's one Content Security Policy."""
  [policy] = [a["content"] for a in Page(text).attrs("meta")
              if a.get("http-equiv") == "Content-Security-Policy"]
  return policy


@needs_matplotlib
def test_the_page_holds_the_run_and_embeds_every_figure(written_run, written_report):
  result, out = written_run
  found = written_report
  run = vt.load_run(out)
  assert found.page == str(out / "report" / "report.html")
  text = read(found.page)
  page = Page(text)
  assert list(page.sections) == ["settings", "chosen", "rounds", "importance", "figures", "top"]
  settings = page.text("settings")
  for name in ("population", "rounds", "epochs", "sampler", "strategy", "seed", "seeds",
               "confirm", "optimizer", "batch_size"):
    assert f"{name} {run.settings[name]}" in settings, name
  assert run.config["data"]["description"] in settings

  rounds = page.text("rounds")
  for r in result.rounds:  # The ranges each round sampled, and those it gave the next one.
    assert (f"Round {r.index + 1} {r.num_trials} trials, {r.num_diverged} diverged, "
            f"{len(r.kept)} kept; best val accuracy {r.best_score:.4f}, median "
            f"{r.median_score:.4f}; {r.wall_s:.1f} s") in rounds
    for name in REPORT_SPACE:
      assert (f"{name} {r.space[name].describe()} {r.next_space[name].describe()}"
              in rounds), (r.index, name)

  chosen, confirmation = page.text("chosen"), run.confirmation_record
  assert f"Round {run.chosen['round'] + 1}, trial {run.chosen['trial']}." in chosen
  for name, value in run.chosen["hparams"].items():
    assert f"{name} {format_value(value)}" in chosen
  assert f"Validation accuracy {run.chosen['val_accuracy']:.4f} in the search" in chosen
  assert confirmation is None or all(" ".join(line.split()) in chosen for line in
                                     describe_confirmation(confirmation).splitlines())
  assert "The final fit has not run" in chosen and "test accuracy" not in chosen

  importance = page.text("importance")
  assert all(f"{i.name} {i.spread:.4f} {i.method}" in importance for i in found.importance)

  images = page.attrs("img")  # Every figure written, embedded byte for byte.
  assert sorted(a["alt"] for a in images) == sorted(found.figures)
  for attrs in images:
    with open(found.figures[attrs["alt"]], "rb") as f:
      assert attrs["src"] == "data:image/png;base64," + base64.b64encode(f.read()).decode()
  assert_fetches_nothing(text)

  header, *rows = page.rows  # All 16 trials (the page shows 50), ranked as the table prints.
  assert header == found.table.splitlines()[0].split() and len(rows) == len(run.records)
  assert rows[:10] == [line.split() for line in found.table.splitlines()[1:]]
  assert len(page.attrs("script")) == 1


@needs_matplotlib
def test_the_final_fit_shows_its_test_accuracy_and_no_figures_say_how_to_get_them(
    written_run, written_report):
  run = vt.load_run(written_run[1])
  chosen = run.chosen
  final = {"round": chosen["round"], "trial": chosen["trial"], "val_accuracy": 0.8125,
           "val_loss": 0.5, "test_accuracy": 0.90625, "test_loss": 0.375}
  fitted = dataclasses.replace(run, summary={**run.summary, "final_fit": final})
  page = Page(render(fitted, *top_rows(run, 3), written_report.importance, {}, INSTALL_HINT))
  chosen_text = page.text("chosen")
  assert ("Final fit: validation accuracy 0.8125 (refit alone), test accuracy 0.9062 "
          "(test loss 0.3750)") in chosen_text and "has not run" not in chosen_text
  assert page.text("figures") == "Figures " + INSTALL_HINT and not page.attrs("img")
  assert len(page.rows) == 4


def test_every_value_from_the_run_directory_is_escaped(handwritten_run, tmp_path):
  path = tmp_path / "run"
  markup = ["<script>alert(1)</script>", "a&b \"c\" <i>"]
  handwritten_run(path, {"learning_rate": {"type": "LogUniform", "low": 1e-3, "high": 1.0},
                         "act": {"type": "Choice", "values": markup}},
                  [{"hparams": {"learning_rate": 10 ** -i, "act": markup[i % 2]},
                    "acc": 0.5 + 0.1 * i} for i in range(4)])
  config = json.loads(read(path / "config.json"))
  config["data"] = {"description": "<script>alert(2)</script> & <b>bold</b>"}
  (path / "config.json").write_text(json.dumps(config))
  found = vt.report(path, tmp_path / "out", quiet=True)
  text = read(found.page)
  assert text.count("<script") == 1 and "<b>" not in text and "<i>" not in text
  page = Page(text)
  assert "data <script>alert(2)</script> & <b>bold</b>" in page.text("settings")
  assert {row[-1] for row in page.rows[1:]} == {repr(m) for m in markup}  # Read back as text.
  assert_fetches_nothing(text)


def test_the_policy_runs_only_the_pages_own_script_pinned_by_the_hash_of_its_bytes(
    synthetic_run):
  run = vt.load_run(synthetic_run)
  text = render(run, *top_rows(run, 10), importance(run.trials, run.space), {}, INSTALL_HINT)
  scripts = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)
  assert len(scripts) == 1 and text.count("<script") == 1
  digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
  policy = {directive.split()[0]: directive.split()[1:]
            for directive in _policy(text).split("; ")}
  # No 'unsafe-inline': a script an escaping slip let into the page would not run.
  assert policy["script-src"] == [f"'sha256-{digest}'"]
  assert policy["default-src"] == ["'none'"] and "script-src" not in policy["style-src"]


@pytest.mark.slow  # A subprocess.
def test_without_matplotlib_the_page_is_written_and_says_how_to_get_figures(synthetic_run,
                                                                           tmp_path):
  out = tmp_path / "report"
  command = ("import sys; sys.modules['matplotlib'] = None; import vmaptune as vt; "
             f"print(vt.report({synthetic_run!r}, {str(out)!r}, quiet=True).page)")
  done = subprocess.run([sys.executable, "-c", command], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == str(out / "report.html") and os.listdir(out) == ["report.html"]
  page = Page(read(out / "report.html"))
  assert page.text("figures") == "Figures " + INSTALL_HINT and not page.attrs("img")
  assert len(page.rows) == 1 + 39  # Every trial but the diverged one.


def chromium(tmp_path, url: str, *flags: str) -> subprocess.CompletedProcess:
  """Headless Chromium on ``url``, offline, a fresh profile, the page's console on stderr."""
  profile = tempfile.mkdtemp(dir=tmp_path)
  done = subprocess.run(
      [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
       "--no-first-run", "--disable-background-networking", "--disable-component-update",
       "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
       *flags, url], capture_output=True, text=True, timeout=60)
  assert done.returncode == 0, done.stderr
  return done


def console(done: subprocess.CompletedProcess) -> list[str]:
  """The page's console messages: Chromium logs each (errors, uncaught exceptions, refused
  fetches, ``console.log``) as an ``INFO:CONSOLE`` line on stderr."""
  return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow  # Subprocesses.
@needs_chromium
@needs_matplotlib
def test_chromium_runs_the_page_without_a_console_message_and_sorts_it_by_the_link(
    written_report, tmp_path):
  text = read(written_report.page)
  # The check can fail: a fetch the page's policy refuses is a console message.
  fetching = tmp_path / "fetching.html"
  fetching.write_text(text.replace("</body>", '<img src="http://127.0.0.1:9/x.png"></body>'))
  refused = console(chromium(tmp_path, fetching.as_uri(), "--dump-dom"))
  assert refused and "Content Security Policy" in refused[0], refused

  url = pathlib.Path(written_report.page).as_uri()
  ranked = Page(text).rows
  for link, column, descending in [("", "val_acc", None), ("#sort=-val_loss", "val_loss", True),
                                   ("#sort=weight_decay", "weight_decay", False)]:
    done = chromium(tmp_path, url + link, "--dump-dom")
    assert console(done) == [], link
    dom = Page(done.stdout)
    table = [a for a in dom.attrs("table") if a.get("id") == "trials"][0]
    assert table["data-sortable"] == "ready"  # The script ran to its end.
    header, *rows = dom.rows
    if descending is None:  # No link: the tuner's ranking, as written.
      assert dom.rows == ranked
      continue
    c = header.index(column)
    cells = [row[c] for row in rows]
    numeric = sorted(cells, key=float, reverse=descending)
    assert cells == numeric and numeric != [row[c] for row in ranked[1:]], link
    assert sorted(map(tuple, rows)) == sorted(map(tuple, ranked[1:]))  # Rows moved whole.
    if column == "weight_decay":  # As text, 1e-05 would sort after 0.001: numbers as numbers.
      assert numeric != sorted(cells)
    sorted_by = [a for a in dom.attrs("th") if a.get("aria-sort")]
    assert sorted_by == [{"data-name": column,
                          "aria-sort": "descending" if descending else "ascending"}]


@pytest.mark.slow  # Subprocesses.
@needs_chromium
@needs_matplotlib
def test_chromium_refuses_a_script_injected_into_the_page_and_runs_the_pages_own(
    written_report, tmp_path):
  # What an escaping slip would let in: an inline script and an inline event handler.
  injected = tmp_path / "injected.html"
  injected.write_text(read(written_report.page).replace("</body>", (
      '<script>document.body.dataset.script = "ran";</script>'
      '<img alt="" src="data:," onerror="document.body.dataset.handler = \'ran\'"></body>')))
  done = chromium(tmp_path, injected.as_uri(), "--dump-dom")
  dom = Page(done.stdout)
  [body] = dom.attrs("body")
  assert "data-script" not in body and "data-handler" not in body, body
  messages = console(done)
  refused = (f"violates the following Content Security Policy directive 'script-src "
             f"{script_hash(SCRIPT)}'")
  assert len(messages) == 2 and all(refused in line and "The action has been blocked" in line
                                    for line in messages), messages
  assert "Executing inline script" in messages[0] and "inline event handler" in messages[1]
  [table] = [a for a in dom.attrs("table") if a.get("id") == "trials"]
  assert table["data-sortable"] == "ready"  # The page's own script ran to its end.


@pytest.mark.slow  # A subprocess.
@needs_chromium
@needs_matplotlib
def test_a_screenshot_shows_the_page_and_its_embedded_figures(written_report, tmp_path):
  import matplotlib.image

  shot = tmp_path / "page.png"
  done = chromium(tmp_path, pathlib.Path(written_report.page).as_uri(), f"--screenshot={shot}",
                  "--window-size=1200,3000", "--hide-scrollbars")
  assert console(done) == []
  pixels = matplotlib.image.imread(shot)[..., :3]  # float [3000, 1200, 3] in [0, 1]
  assert pixels.shape == (3000, 1200, 3) and os.path.getsize(shot) > 100_000
  assert pixels.std() > 0.05 and (pixels[0] == 1).all()  # Not blank; a white page.
  assert (pixels[20:70, 20:400] < 0.3).all(axis=-1).sum() > 500  # The title in dark ink.
  # The overview's importance bars, in matplotlib's tab:blue (the page's own bars differ):
  # the embedded PNGs decoded and drew.
  tab_blue = np.array([31, 119, 180]) / 255
  assert (np.abs(pixels - tab_blue).max(axis=-1) < 0.03).sum() > 2000


def test_a_regression_page_shows_every_metric_and_ranks_lowest_mse_first(tmp_path):
  from test_figures import REGRESSION_MSES, write_regression_run

  path = tmp_path / "regression"
  write_regression_run(path, REGRESSION_MSES)
  run = vt.load_run(path)
  # As a summary holds them (the fields its records require: vmaptune.rundir.records).
  chosen = {"round": 0, "trial": 17, "hparams": {"learning_rate": 0.05}, "start_epoch": 0,
            "epochs": 3, "val_mse": 0.3, "val_mae": 0.15}
  final = {"round": 0, "trial": 17, "val_mse": 0.3125, "val_mae": 0.25, "test_mse": 0.375,
           "test_mae": 0.5}
  fitted = dataclasses.replace(run, summary={**run.summary, "chosen": chosen,
                                             "final_fit": final})
  found = vt.report(path, tmp_path / "report", quiet=True)
  page = Page(render(fitted, *top_rows(run, 50), found.importance, {}, INSTALL_HINT))
  text = " ".join(" ".join(part) for part in page.sections.values())
  assert "accuracy" not in text
  assert "Validation mse 0.3000 in the search (validation mae 0.1500)." in page.text("chosen")
  assert ("Final fit: validation mse 0.3125 (refit alone), test mse 0.3750 (test mae 0.5000)"
          in page.text("chosen"))
  assert "best val mse 0.3000, median" in page.text("rounds")  # The lowest, from the records.
  assert "Spread (max - min) of mean validation mse" in page.text("importance")
  assert "then validation mse, lowest first" in page.text("top")
  header, *rows = page.rows
  assert header[5:7] == ["val_mse", "val_mae"]
  listed = [float(row[5]) for row in rows]
  assert listed == sorted(listed) and listed[0] == 0.3 and len(rows) == 19  # Not the diverged one.
