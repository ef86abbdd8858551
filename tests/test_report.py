"""`vmaptune report`: the table, the importance ranking, and figures driven by the records."""

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.importance import importance
from vmaptune.report import INSTALL_HINT
from vmaptune.rundir import write_json

# The test extra installs matplotlib; without it the figure tests skip, and the text
# report is still tested (test_report_without_matplotlib_*).
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="figures need matplotlib (the report extra)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0), weight_decay=vt.LogUniform(1e-6, 1e-2),
                 b1=vt.Uniform(0.8, 0.95))


@pytest.fixture(scope="module")
def run(small_arrays, tmp_path_factory):
  """Two rounds of a three-parameter space, written to a run directory."""
  out = tmp_path_factory.mktemp("run") / "run"
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  result = vt.tune(vt.models.MLP(hidden=(16,)), data, SPACE, out=str(out), population=8,
                   rounds=2, epochs=2, batch_size=32, sampler="narrow(keep=0.25)", seed=0)
  return result, out


@pytest.fixture(scope="module")
def reported(run):
  return vt.report(run[1], quiet=True)


@needs_matplotlib
def test_figures_are_pngs_and_the_pair_panels_follow_the_records(run, reported):
  result, out = run
  found = reported
  names = ["pairs_round1", "pairs_round2", "best_so_far", "learning_curves", "importance",
           "overview"]
  assert list(found.figures) == names and found.note is None
  for path in found.figures.values():
    assert os.path.dirname(path) == str(out / "report")  # The default place.
    with open(path, "rb") as f:
      content = f.read()
    assert content.startswith(PNG) and len(content) > 5000, path
  # Every pair of the three numeric parameters, for each of the two rounds.
  assert len(found.panels) == len(result.rounds) * 3
  pairs = {frozenset((p["x"], p["y"])) for p in found.panels}
  assert pairs == {frozenset(p) for p in itertools.combinations(SPACE, 2)}
  for panel in found.panels:
    r = result.rounds[panel["round"]]
    assert panel["points"] == r.num_trials and panel["diverged"] == r.num_diverged
    for name in (panel["x"], panel["y"]):  # The box drawn is the next round's range.
      assert panel["box"][name] == pytest.approx((r.next_space[name].low,
                                                  r.next_space[name].high), rel=1e-12)
  assert result.rounds[1].space == result.rounds[0].next_space  # What the box promised.


@needs_matplotlib
def test_the_table_starts_with_the_chosen_trial_and_importance_covers_the_space(run, reported):
  result, out = run
  found = reported
  printed = found.describe(vt.load_run(out))
  assert found.table in printed and str(out / "report" / "overview.png") in printed
  header, *rows = found.table.splitlines()
  assert header.split() == ["#", "round", "trial", "status", "epochs", "val_acc", "val_loss",
                            "learning_rate", "weight_decay", "b1"]
  assert len(rows) == 10  # The default top 10 of 16 trials.
  best = result.best
  assert rows[0].split()[:6] == ["1", str(best.round + 1), str(best.trial), "finished", "2",
                                 f"{best.val_accuracy:.4f}"]
  spreads = [i.spread for i in found.importance]
  assert sorted(i.name for i in found.importance) == sorted(SPACE)
  assert spreads == sorted(spreads, reverse=True) and min(spreads) >= 0


def test_learning_curves_come_from_the_records(run):
  result, out = run
  records = vt.load_run(out)
  for row, record in enumerate(records.records):
    epochs, losses = records.trials.curve(row)
    assert epochs.tolist() == [1, 2]
    assert losses.tolist() == pytest.approx(
        result.rounds[record["round"]].epoch_loss[record["trial"]].tolist(), rel=1e-6)


def _write_run(path, space: dict, rows: list[dict], epochs: int = 1) -> None:
  """A run directory of one round written by hand: ``rows`` of hparams and accuracy
  (``None``: diverged), and the summary of a run stopped before its round's entry."""
  os.makedirs(path)
  write_json(os.path.join(path, "config.json"),
             {"settings": {"epochs": epochs, "rounds": 1}, "space": space})
  with open(os.path.join(path, "trials.jsonl"), "w") as f:
    for i, row in enumerate(rows):
      diverged = row["acc"] is None
      f.write(json.dumps({
          "round": 0, "trial": i, "lane": i, "bracket": -1, "hparams": row["hparams"],
          "start_epoch": 0, "epochs": epochs, "val_accuracy": row["acc"],
          "val_loss": None if diverged else 1 - row["acc"],
          "status": "diverged" if diverged else "finished", "parent": -1, "kept": False,
          "epoch_loss": [None if diverged else 1.0] * epochs}) + "\n")
  write_json(os.path.join(path, "summary.json"),
             {"space": space, "settings": {"epochs": epochs},
              "rounds": [{"round": 0, "wall_s": 1.0}]})


def _synthetic_run(path) -> None:
  """Accuracy rises by 0.4 with the learning rate above 1e-2, by 0.05 with relu, and
  does not depend on the weight decay; the last trial (tanh, highest rate) diverged."""
  rows = []
  for i in range(40):
    acc = 0.5 + 0.4 * (i >= 20) + 0.05 * (i % 2 == 0)
    rows.append({"hparams": {"learning_rate": 10 ** (-4 + 4 * i / 39),
                             "weight_decay": 10 ** (-6 + 4 * ((i * 17) % 40) / 39),
                             "activation": ["relu", "tanh"][i % 2], "depth": i % 3 + 1},
                 "acc": None if i == 39 else acc})
  space = {"learning_rate": {"type": "LogUniform", "low": 1e-4, "high": 1.0},
           "weight_decay": {"type": "LogUniform", "low": 1e-6, "high": 1e-2},
           "activation": {"type": "Choice", "values": ["relu", "tanh"]},
           "depth": {"type": "IntUniform", "low": 1, "high": 3, "log": False,
                     "structural": True}}
  _write_run(path, space, rows)


def test_importance_ranks_by_the_spread_of_group_means_and_scores_divergence_worst(tmp_path):
  _synthetic_run(tmp_path / "run")
  run = vt.load_run(tmp_path / "run")
  ranking = {i.name: i for i in importance(run.trials, run.space)}
  assert list(ranking)[:2] == ["learning_rate", "activation"]
  # Four bins of ten: the rates below 1e-2 average 0.525, those above 0.925, less the
  # diverged trial scored as the worst accuracy (0.5 instead of 0.9) in the top bin.
  lr = ranking["learning_rate"]
  assert lr.method == "quantile bins (log)" and [g[1] for g in lr.groups] == [10] * 4
  assert lr.spread == pytest.approx(0.925 - 0.525)
  assert [g[2] for g in lr.groups] == pytest.approx([0.525, 0.525, 0.925, 0.925 - 0.04])
  activation = ranking["activation"]
  assert activation.method == "categories"
  assert activation.groups == [("'relu'", 20, pytest.approx(0.75)),
                               ("'tanh'", 20, pytest.approx(0.70 - 0.4 / 20))]
  assert ranking["weight_decay"].spread < activation.spread
  depth = ranking["depth"]  # A structural integer: grouped by value.
  assert depth.method == "categories" and [g[:2] for g in depth.groups] == [
      ("1", 14), ("2", 13), ("3", 13)]


@needs_matplotlib
@needs_matplotlib
def test_categories_stay_out_of_the_scatters_and_diverged_trials_are_crossed(tmp_path):
  _synthetic_run(tmp_path / "run")
  found = vt.report(tmp_path / "run", quiet=True)
  # The summary's round entry holds no ranges: no box is drawn.
  assert found.panels == [{"round": 0, "x": "learning_rate", "y": "weight_decay",
                           "points": 40, "diverged": 1, "box": None}]


def test_one_numeric_parameter_draws_accuracy_against_it_and_a_lineage_curve(tmp_path, small_data,
                                                                             tiny_mlp):
  out = tmp_path / "run"
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  vt.tune(tiny_mlp, small_data, space, out=str(out), population=4, rounds=1, epochs=4,
          batch_size=32, strategy="pbt(interval=2)")
  found = vt.report(out, quiet=True)
  assert [(p["x"], p["y"]) for p in found.panels] == [("learning_rate", "val_accuracy")]
  assert set(found.panels[0]["box"]) == {"learning_rate"}
  records = vt.load_run(out)
  children = [i for i, r in enumerate(records.records) if r["parent"] >= 0]
  assert children, "no lane was exploited"
  epochs, losses = records.trials.curve(children[0])
  parent = records.records[records.records[children[0]]["parent"]]
  assert epochs.tolist() == [1, 2, 3, 4]  # The parent's two epochs, then its own two.
  assert losses[:2].tolist() == parent["epoch_loss"][:2]
  assert losses[2:].tolist() == records.records[children[0]]["epoch_loss"]


def test_report_without_matplotlib_prints_the_table_and_how_to_install(run, tmp_path):
  _, out = run
  figures = tmp_path / "figures"
  command = ("import sys; sys.modules['matplotlib'] = None; from vmaptune.cli import main; "
             f"sys.exit(main(['report', {str(out)!r}, '--out', {str(figures)!r}]))")
  done = subprocess.run([sys.executable, "-c", command], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
  assert done.returncode == 0, done.stderr
  assert "top trials" in done.stdout and "learning_rate" in done.stdout
  assert INSTALL_HINT in done.stdout and "pip install 'vmaptune[report]'" in INSTALL_HINT
  assert not figures.exists()


@pytest.mark.parametrize("make, args, message", [
    (lambda d: None, [], "holds no vmaptune run (no config.json)"),
    (lambda d: os.makedirs(d), [], "holds no vmaptune run (no config.json)"),
    (lambda d: _write_run(d, {}, []), [], "holds no completed round yet"),
    (lambda d: _write_run(d, {"learning_rate": {"type": "LogUniform", "low": 1e-3,
                                                "high": 1.0}},
                          [{"hparams": {"learning_rate": 0.01}, "acc": 0.5}]),
     ["--top", "0"], "top=0; expected a whole number >= 1"),
])
def test_the_command_refuses_what_is_not_a_run(make, args, message, tmp_path, capsys):
  make(tmp_path / "run")
  assert main(["report", str(tmp_path / "run"), *args]) == 2
  assert message in capsys.readouterr().err


@needs_matplotlib
def test_the_command_writes_the_figures(run, tmp_path, capsys):
  _, out = run
  assert main(["report", str(out), "--out", str(tmp_path / "figs"), "--top", "3",
               "--curves", "2"]) == 0
  printed = capsys.readouterr().out
  assert "chosen (round" in printed and str(tmp_path / "figs" / "overview.png") in printed
  table = printed.split("top trials (full budget first, then validation accuracy):\n")[1]
  assert [line.split()[0] for line in table.split("\n\n")[0].splitlines()] == \
      ["#", "1", "2", "3"]
  assert np.all([f.read_bytes().startswith(PNG) for f in (tmp_path / "figs").iterdir()])


def test_the_readme_figures_are_committed_small_pngs():
  with open(os.path.join(ROOT, "README.md")) as f:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", f.read())
  assert images, "the README shows no figure"
  for image in images:
    with open(os.path.join(ROOT, image), "rb") as f:
      content = f.read()
    assert content.startswith(PNG) and 10_000 < len(content) < 200_000, image
