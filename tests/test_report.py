"""`vmaptune report`: the table, the importance ranking, and figures driven by the records."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import vmaptune as vt
from conftest import PNG, REPORT_SPACE, needs_matplotlib
from vmaptune.cli import main
from vmaptune.reporting.importance import importance
from vmaptune.reporting.report import INSTALL_HINT, Report, top_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))






@needs_matplotlib
def test_the_table_starts_with_the_chosen_trial_and_importance_covers_the_space(written_run,
                                                                              written_report):
  result, out = written_run
  found = written_report
  printed = found.describe(vt.load_run(out))
  assert found.table in printed and str(out / "report" / "overview.png") in printed
  header, *rows = found.table.splitlines()
  assert header.split() == ["#", "round", "trial", "status", "epochs", "val_acc", "val_loss",
                            "learning_rate", "weight_decay", "b1"]
  assert len(rows) == 10  # The default top 10 of 16 trials.
  best = result.best
  assert rows[0].split()[:6] == ["1", str(best.round + 1), str(best.trial), "finished", "2",
                                 f"{best.score:.4f}"]
  spreads = [i.spread for i in found.importance]
  assert sorted(i.name for i in found.importance) == sorted(REPORT_SPACE)
  assert spreads == sorted(spreads, reverse=True) and min(spreads) >= 0






def test_show_and_report_print_control_characters_from_the_run_directory_escaped(
    handwritten_run, tmp_path, capsys):
  # Printed raw before: these clear the screen, recolour it, ring, rewind the line, and
  # reverse the text that follows.
  hostile = "\x1b[2J\x1b[31m\x07\r\u202e"
  escaped = "\\x1b[2J\\x1b[31m\\x07\\r\\u202e"
  controls = {"\x1b", "\x07", "\r", "\u202e"}
  path = tmp_path / "run"
  handwritten_run(path, {"learning_rate": {"type": "LogUniform", "low": 1e-3, "high": 1.0},
                         "act": {"type": "Choice", "values": ["relu" + hostile, "tanh"]}},
                  [{"hparams": {"learning_rate": 10 ** -i,
                                "act": ("relu" + hostile, "tanh")[i % 2]},
                    "acc": 0.5 + 0.1 * i} for i in range(3)])
  settings = {"epochs": 1, "rounds": 1, "population": 3, "sampler": "narrow", "seed": 0,
              "strategy": "random"}
  for name, changes in [("config.json", {"data": {"description": "digits" + hostile},
                                         "settings": settings}),
                        ("summary.json", {"error": "boom" + hostile})]:
    with open(path / name) as f:
      content = json.load(f)
    with open(path / name, "w") as f:
      json.dump({**content, **changes}, f)
  assert main(["show", str(path)]) == 0
  shown = capsys.readouterr().out
  assert not controls & set(shown), shown
  assert f"  digits{escaped}; population" in shown
  assert f"  stopped with an error: boom{escaped}\n" in shown
  assert shown.count(f"act='relu{escaped}'") == 2  # Trials 0 and 2.
  run = vt.load_run(path)
  printed = Report(top_table(run), importance(run.trials, run.space), {}, []).describe(run)
  assert not controls & set(printed) and f"relu{escaped}" in printed
  # An error names the directory it was given, escaped too.
  named = tmp_path / f"not a run{hostile}"
  named.mkdir()
  assert main(["show", str(named)]) == 2
  error = capsys.readouterr().err
  assert not controls & set(error) and f"not a run{escaped} holds no vmaptune run" in error


@pytest.mark.slow  # A subprocess.
def test_report_without_matplotlib_prints_the_table_and_how_to_install(written_run, tmp_path):
  _, out = written_run
  figures = tmp_path / "figures"
  command = ("import sys; sys.modules['matplotlib'] = None; from vmaptune.cli import main; "
             f"sys.exit(main(['report', {str(out)!r}, '--out', {str(figures)!r}]))")
  done = subprocess.run([sys.executable, "-c", command], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert done.returncode == 0, done.stderr
  assert "top trials" in done.stdout and "learning_rate" in done.stdout
  assert INSTALL_HINT in done.stdout and "pip install 'vmaptune[report]'" in INSTALL_HINT
  assert os.listdir(figures) == ["report.html"]  # The page, saying how to get figures.


@pytest.mark.parametrize("make, args, message", [
    (lambda d, write: None, [], "holds no vmaptune run (no config.json)"),
    (lambda d, write: os.makedirs(d), [], "holds no vmaptune run (no config.json)"),
    (lambda d, write: write(d, {"learning_rate": {"type": "LogUniform", "low": 1e-3,
                                                "high": 1.0}}, []),
     [], "holds no completed round yet"),
    (lambda d, write: write(d, {"learning_rate": {"type": "LogUniform", "low": 1e-3,
                                                "high": 1.0}},
                          [{"hparams": {"learning_rate": 0.01}, "acc": 0.5}]),
     ["--top", "0"], "top=0; expected a whole number >= 1"),
])
def test_the_command_refuses_what_is_not_a_run(make, args, message, tmp_path, capsys,
                                               handwritten_run):
  make(tmp_path / "run", handwritten_run)
  assert main(["report", str(tmp_path / "run"), *args]) == 2
  assert message in capsys.readouterr().err


@needs_matplotlib
def test_the_command_writes_the_figures(written_run, tmp_path, capsys):
  _, out = written_run
  assert main(["report", str(out), "--out", str(tmp_path / "figs"), "--top", "3",
               "--curves", "2"]) == 0
  printed = capsys.readouterr().out
  assert "chosen (round" in printed and str(tmp_path / "figs" / "overview.png") in printed
  table = printed.split("top trials (full budget first, then validation accuracy):\n")[1]
  assert [line.split()[0] for line in table.split("\n\n")[0].splitlines()] == \
      ["#", "1", "2", "3"]
  assert np.all([f.read_bytes().startswith(PNG) for f in (tmp_path / "figs").glob("*.png")])
  assert str(tmp_path / "figs" / "report.html") in printed


def regression_data() -> vt.Dataset:
  """400 examples of a noisy linear target: a regression dataset (float targets)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=400)).astype(np.float32)
  return vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
  """Two rounds of a regression run, its final fit included: ``(result, path)``."""
  out = tmp_path_factory.mktemp("regression") / "run"
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))
  result = vt.tune(vt.models.MLP(hidden=(8,), num_classes=1), regression_data(), space,
                   objective="regression", population=6, rounds=2, epochs=2, batch_size=32,
                   confirm="off", seed=0, out=str(out))
  result.final_fit()
  return result, out


def test_show_into_a_pipe_its_reader_closed_ends_quietly(regression_run, monkeypatch):
  _, out = regression_run
  read, write = os.pipe()
  os.close(read)  # As `vmaptune show DIR | head -1` once head has its line.
  closed = os.fdopen(write, "w", buffering=1)
  monkeypatch.setattr(sys, "stdout", closed)
  assert main(["show", str(out)]) == 1  # No traceback: BrokenPipeError is handled.
  print("after", file=closed)  # The pipe now leads nowhere: writing fails no more.
  closed.close()


def test_show_lists_a_regression_run_by_its_mse_lowest_first(regression_run, capsys):
  result, out = regression_run
  run = vt.load_run(out)
  best, finished = result.best, [r for r in run.records if r["status"] == "finished"]
  assert best.score == min(r["val_mse"] for r in finished)  # The lowest mse was chosen.
  assert main(["show", str(out)]) == 0
  shown = capsys.readouterr().out
  assert "accuracy" not in shown and "val_acc" not in shown
  assert f"  val mse  {best.score:.4f} (search)  {run.final_fit['val_mse']:.4f} (refit alone)" \
      in shown
  assert f"  test mse {run.final_fit['test_mse']:.4f}" in shown
  header, *rows = shown.split(" trials:\n")[1].splitlines()
  assert header.split() == ["round", "trial", "epochs", "val_mse", "val_mae", "hparams"]
  listed = [float(row.split()[3]) for row in rows]
  assert listed == sorted(listed) and listed[0] == float(f"{best.score:.4f}")
  assert [float(row.split()[4]) for row in rows] == [
      float(f"{r['val_mae']:.4f}") for r in run.top(10)]  # Every metric kept.


@needs_matplotlib
def test_the_report_of_a_regression_run_ranks_and_labels_by_mse(regression_run, tmp_path):
  result, out = regression_run
  run = vt.load_run(out)
  found = vt.report(out, tmp_path / "report", quiet=True)
  printed = found.describe(run)
  assert "accuracy" not in printed
  assert (f"val mse {result.best.score:.4f}, test mse {run.final_fit['test_mse']:.4f}"
          in printed)
  assert "top trials (full budget first, then validation mse, lowest first):" in printed
  assert "importance (spread of mean val mse over groups" in printed
  header, *rows = found.table.splitlines()
  assert header.split() == ["#", "round", "trial", "status", "epochs", "val_mse", "val_mae",
                            "learning_rate", "weight_decay"]
  listed = [float(row.split()[5]) for row in rows]
  assert listed == sorted(listed) and len(rows) == 10
  assert {(p["x"], p["y"]) for p in found.panels} == {("learning_rate", "weight_decay")}


@needs_matplotlib
def test_the_page_and_figures_replace_links_instead_of_writing_through_them(handwritten_run,
                                                                             tmp_path):
  """A ``report.html`` planted as a symbolic link, a figure as another hard link of a
  file: each is replaced by a file of its own; what they pointed to is untouched."""
  run_dir, out = tmp_path / "run", tmp_path / "run" / "report"
  handwritten_run(str(run_dir), {"learning_rate": {"type": "LogUniform", "low": 1e-3,
                                                   "high": 1.0}},
                  [{"hparams": {"learning_rate": 0.01}, "acc": 0.5},
                   {"hparams": {"learning_rate": 0.1}, "acc": 0.75}])
  out.mkdir()
  victim, shared = tmp_path / "bashrc", tmp_path / "shared.png"
  victim.write_text("precious\n")
  shared.write_bytes(b"another copy's figure")
  os.symlink(victim, out / "report.html")
  os.link(shared, out / "overview.png")
  found = vt.report(run_dir, quiet=True)
  assert victim.read_text() == "precious\n"
  assert shared.read_bytes() == b"another copy's figure"
  for path in (out / "report.html", out / "overview.png"):
    assert not path.is_symlink() and path.stat().st_nlink == 1
  assert (out / "overview.png").read_bytes().startswith(PNG)
  assert found.page == str(out / "report.html")
  assert "<html" in (out / "report.html").read_text()
  assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
