"""Notebooks: results and runs as HTML summaries, short reprs, the figures from Python
(vt.plots), the progress bar's kind, and examples/quickstart.ipynb run in a real kernel."""

import base64
import importlib.util
import json
import os
import re
import sys

import pytest

import vmaptune as vt
from conftest import PNG, needs_matplotlib
from vmaptune.reporting.progress import Bar, bar_kind

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart.ipynb")
needs_kernel = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("nbclient", "ipykernel")),
    reason="running the notebook needs nbclient and ipykernel (the notebook or test extra)")


@pytest.fixture(scope="module")
def finished(small_arrays, tiny_mlp, lr_space):
  """Two confirmed rounds held in memory (``out=None``), then the final fit."""
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  result = vt.tune(tiny_mlp, data, lr_space, population=8, rounds=2, epochs=2, batch_size=32,
                   seed=0, confirm="auto")
  result.final_fit()
  return result


def images(html: str) -> list[bytes]:
  """The PNGs a summary embeds, decoded."""
  return [base64.b64decode(data) for data in
          re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', html)]


def assert_self_contained(html: str) -> None:
  """Nothing to fetch, nothing to run: every source a data: URI, no script, no link."""
  assert not re.search(r"<(script|link|iframe)\b", html, re.I)
  assert re.findall(r'\b(?:src|href)="([^"]*)"', html) == [
      src for src in re.findall(r'\bsrc="([^"]*)"', html) if src.startswith("data:image/png")]


@needs_matplotlib
def test_a_result_shows_its_choice_confirmation_test_score_top_trials_and_overview(finished):
  html = finished._repr_html_()
  best, final = finished.best, finished.final
  assert "held in memory" in html and "Chosen configuration" in html
  assert f"Round {best.round + 1}, trial {best.trial}." in html
  assert f"Validation accuracy {best.score:.4f} in the search" in html
  for line in finished.confirmation.describe().splitlines():  # The confirmation, every line.
    assert " ".join(line.split()) in " ".join(html.split())
  assert f"<strong>test accuracy {final.test_accuracy:.4f}</strong>" in html
  assert html.count("<tr>") == 1 + 2 + 1 + 5  # The chosen configuration's 2 values, top 5.
  (overview,) = images(html)  # The report's drawing: the run directory's test compares it.
  assert overview.startswith(PNG) and len(overview) > 20_000
  assert_self_contained(html)


@needs_matplotlib
def test_a_run_read_back_embeds_the_reports_overview_file_byte_for_byte(written_run,
                                                                         written_report):
  result, out = written_run
  run = vt.load_run(out)
  html = run._repr_html_()
  with open(written_report.figures["overview"], "rb") as f:
    assert images(html) == [f.read()]
  assert f"<code>{out}</code>" in html and "2 rounds of 2, complete; 16 trials" in html
  assert "The final fit has not run" in html
  assert_self_contained(html)


@needs_matplotlib
def test_a_round_shows_its_ranges_top_trials_and_pair_panels(written_run):
  result, _ = written_run
  second = result.rounds[1]
  html = second._repr_html_()
  assert "Round 2 (index 1)" in html and f"{second.configurations} configurations" in html
  for name, dist in second.space.items():  # The ranges sampled, and those handed on.
    assert f"<td>{name}</td><td>{dist.describe()}</td>" \
           f"<td>{second.next_space[name].describe()}</td>" in html
  assert images(html) == [vt.plots.pairs(second)._repr_png_()]
  assert f"<td class=\"num\">{second.best_trial}</td>" in html.split("Top 5 trials")[1]


def test_every_value_read_from_a_run_directory_is_escaped(handwritten_run, tmp_path):
  path = tmp_path / "<i>run"
  handwritten_run(path, {"learning_rate": {"type": "LogUniform", "low": 1e-4, "high": 1.0}},
                  [{"hparams": {"learning_rate": 0.01}, "acc": 0.5},
                   {"hparams": {"learning_rate": 0.1}, "acc": 0.6}])
  with open(path / "config.json") as f:
    config = json.load(f)
  config["data"] = {"description": "<img src=x onerror=alert(1)>"}
  with open(path / "config.json", "w") as f:
    json.dump(config, f)
  html = vt.load_run(path)._repr_html_()
  assert "<i>run" not in html and "&lt;i&gt;run" in html
  assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_without_matplotlib_the_summary_has_no_figure_and_the_plots_say_what_to_install(
    written_run, monkeypatch):
  for name in ("matplotlib", "vmaptune.reporting.figures"):
    monkeypatch.setitem(sys.modules, name, None)  # Importing them now fails.
  monkeypatch.delattr(vt.reporting, "figures", raising=False)
  result, _ = written_run
  html = result._repr_html_()
  assert "Top 5 trials" in html and not images(html)
  assert "<code>pip install 'vmaptune[notebook]'</code>" in html
  with pytest.raises(ImportError, match=r"vmaptune\[notebook\]"):
    vt.plots.overview(result)


def test_reprs_are_one_short_line_that_names_the_choice_and_its_scores(finished, written_run):
  best, test = finished.best, finished.final.test_accuracy
  text = repr(finished)
  assert text == (f"<TuneResult: 2 rounds, 16 trials, {finished.wall_s:.1f}s; chosen "
                  f"learning_rate={best.hparams['learning_rate']:.4g} "
                  f"weight_decay={best.hparams['weight_decay']:.4g} (round {best.round + 1}, "
                  f"trial {best.trial}), val accuracy {best.score:.4f}, test accuracy "
                  f"{test:.4f}>")
  second = written_run[0].rounds[1]
  assert repr(second) == (
      f"<RoundResult round 2 (index 1): 8 configurations, 8 trials, {second.num_diverged} "
      f"diverged, best val accuracy {second.best_score:.4f} (trial {second.best_trial}), "
      f"{second.wall_s:.2f}s>")
  run = vt.load_run(written_run[1])
  chosen = run.chosen_record
  assert repr(run) == (f"<Run {run.path}: 2 rounds of 2, 16 trials; chosen round "
                       f"{chosen.round + 1} trial {chosen.trial}, val accuracy "
                       f"{chosen.score:.4f}>")


@needs_matplotlib
def test_the_plots_draw_from_results_rounds_runs_and_paths_without_pyplot(written_run,
                                                                          written_report):
  import matplotlib.figure
  import matplotlib.pyplot as plt

  result, out = written_run
  run = vt.load_run(out)
  open_before = plt.get_fignums()
  sources = (result, result.rounds[0], run, str(out), result, run)
  draws = (vt.plots.overview, vt.plots.pairs, vt.plots.best_so_far, vt.plots.learning_curves,
           vt.plots.importance, vt.plots.surface)
  for source, draw in zip(sources, draws, strict=True):
    assert isinstance(draw(source), matplotlib.figure.Figure), (draw, source)
  # The report's files are these figures saved; a notebook shows them as their PNG.
  with open(written_report.figures["pairs_round2"], "rb") as f:
    assert vt.plots.pairs(run)._repr_png_() == f.read()  # The last round by default.
  with open(written_report.figures["surface"], "rb") as f:
    assert vt.plots.surface(run)._repr_png_() == f.read()
  assert plt.get_fignums() == open_before  # Nothing joined pyplot's list of figures.
  with pytest.raises(ValueError, match=r"round_index=2; expected one of .*\[0, 1\]"):
    vt.plots.pairs(result, 2)
  with pytest.raises(TypeError, match="expected a vmaptune TuneResult, RoundResult, Run"):
    vt.plots.overview(42)


def test_the_bar_is_the_text_one_outside_a_notebook_and_with_a_stream():
  from tqdm import tqdm

  assert bar_kind(None) is tqdm  # This process is no Jupyter kernel.
  assert bar_kind(sys.stderr) is tqdm
  assert Bar()._bar is None  # Nothing is drawn before the first round.


def test_the_committed_quickstart_holds_no_outputs_and_runs_the_whole_story():
  with open(QUICKSTART) as f:
    notebook = json.load(f)
  code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
  assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code)
  assert "widgets" not in notebook["metadata"]  # No saved widget state either.
  source = "\n".join("".join(cell["source"]) for cell in code)
  for step in ("vt.data.digits()", "vt.Space(", "vt.tune(", "rounds=", "vt.plots.",
               ".final_fit()"):
    assert step in source, step


@pytest.mark.slow  # A kernel: about 25 s.
@needs_kernel
@needs_matplotlib
def test_the_quickstart_runs_in_a_kernel_and_shows_summary_widget_and_figure(monkeypatch):
  import nbclient
  import nbformat

  notebook = nbformat.read(QUICKSTART, as_version=4)
  # The kernel imports this checkout's vmaptune.
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
  nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                          resources={"metadata": {"path": os.path.dirname(QUICKSTART)}}).execute()
  outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
  streams = [o for cell in outputs for o in cell if o.output_type == "stream"]
  assert [o.name for o in streams] == ["stdout"]  # No warning, no text bar: one print.
  assert re.fullmatch(r"test accuracy 0\.9\d\d\n", streams[0].text)
  kinds = [sorted(o.get("data", {})) for cell in outputs for o in cell
           if o.output_type != "stream"]
  widget = ["application/vnd.jupyter.widget-view+json", "text/plain"]
  assert kinds == [["text/plain"], widget, ["text/html", "text/plain"],
                   ["image/png", "text/plain"]]  # data; one bar for the run; summary; figure
  summary = next(o.data["text/html"] for cell in outputs for o in cell
                 if "text/html" in o.get("data", {}))
  assert "Chosen configuration" in summary and len(images(summary)) == 1
  assert images(summary)[0].startswith(PNG)
