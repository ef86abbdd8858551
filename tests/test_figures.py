"""The report's figures: PNGs drawn from the records, pair panels whose boxes are the
next round's ranges, diverged trials crossed, lineage curves."""

import itertools
import json
import os
import re

import numpy as np
import pytest

import vmaptune as vt
from conftest import PNG, REPORT_SPACE, needs_matplotlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@needs_matplotlib
def test_figures_are_pngs_and_the_pair_panels_follow_the_records(written_run, written_report):
  result, out = written_run
  found = written_report
  names = ["pairs_round1", "pairs_round2", "best_so_far", "learning_curves", "importance",
           "surface", "overview"]
  assert list(found.figures) == names and found.note is None
  for path in found.figures.values():
    assert os.path.dirname(path) == str(out / "report")  # The default place.
    with open(path, "rb") as f:
      content = f.read()
    assert content.startswith(PNG) and len(content) > 5000, path
  # Every pair of the three numeric parameters, for each of the two rounds.
  assert len(found.panels) == len(result.rounds) * 3
  pairs = {frozenset((p["x"], p["y"])) for p in found.panels}
  assert pairs == {frozenset(p) for p in itertools.combinations(REPORT_SPACE, 2)}
  for panel in found.panels:
    r = result.rounds[panel["round"]]
    assert panel["points"] == r.num_trials and panel["diverged"] == r.num_diverged
    for name in (panel["x"], panel["y"]):  # The box drawn is the next round's range.
      assert panel["box"][name] == pytest.approx((r.next_space[name].low,
                                                  r.next_space[name].high), rel=1e-12)
  assert result.rounds[1].space == result.rounds[0].next_space  # What the box promised.


@needs_matplotlib
@needs_matplotlib
def test_categories_stay_out_of_the_scatters_and_diverged_trials_are_crossed(synthetic_run):
  found = vt.report(synthetic_run, quiet=True)
  # The summary's round entry holds no ranges: no box is drawn.
  assert found.panels == [{"round": 0, "x": "learning_rate", "y": "weight_decay",
                           "points": 40, "diverged": 1, "box": None}]


def test_one_numeric_parameter_draws_accuracy_against_it_and_a_lineage_curve(tmp_path, small_data,
                                                                             tiny_mlp):
  out = tmp_path / "run"
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  vt.tune(tiny_mlp, small_data, space, out=str(out), population=4, rounds=1, epochs=4,
          batch_size=32, strategy="pbt(interval=2)", confirm="off")  # Figures of the search.
  found = vt.report(out, quiet=True)
  assert [(p["x"], p["y"]) for p in found.panels] == [("learning_rate", "val_accuracy")]
  assert "surface" not in found.figures  # One traced parameter: no surface to draw.
  assert set(found.panels[0]["box"]) == {"learning_rate"}
  records = vt.load_run(out)
  children = [i for i, r in enumerate(records.records) if r["parent"] >= 0]
  assert children, "no lane was exploited"
  epochs, losses = records.trials.curve(children[0])
  parent = records.records[records.records[children[0]]["parent"]]
  assert epochs.tolist() == [1, 2, 3, 4]  # The parent's two epochs, then its own two.
  assert losses[:2].tolist() == parent["epoch_loss"][:2]
  assert losses[2:].tolist() == records.records[children[0]]["epoch_loss"]


def test_the_readme_figures_are_committed_small_pngs():
  with open(os.path.join(ROOT, "README.md")) as f:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", f.read())
  assert images, "the README shows no figure"
  for image in images:
    with open(os.path.join(ROOT, image), "rb") as f:
      content = f.read()
    assert content.startswith(PNG) and 10_000 < len(content) < 200_000, image


def write_regression_run(path, mses: list) -> None:
  """A hand-written regression run of one round: trial ``i`` has learning rate
  ``10 ** (-4 + 3 i / n)`` and validation mse ``mses[i]`` (``None``: diverged)."""
  from vmaptune.objectives import parse
  from vmaptune.rundir import write_json

  os.makedirs(path)
  space = {"learning_rate": {"type": "LogUniform", "low": 1e-4, "high": 1e-1}}
  write_json(os.path.join(path, "config.json"),
             {"settings": {"epochs": 1, "rounds": 1}, "space": space,
              "scoring": parse("regression").scoring.to_dict()})
  with open(os.path.join(path, "trials.jsonl"), "w") as f:
    for i, mse in enumerate(mses):
      f.write(json.dumps({
          "round": 0, "trial": i, "lane": i, "bracket": -1,
          "hparams": {"learning_rate": 10 ** (-4 + 3 * i / len(mses))}, "start_epoch": 0,
          "epochs": 1, "val_mse": mse, "val_mae": None if mse is None else mse / 2,
          "status": "diverged" if mse is None else "finished", "parent": -1,
          "kept": False, "epoch_loss": [None if mse is None else 2 * (mse or 0)]}) + "\n")
  write_json(os.path.join(path, "summary.json"),
             {"space": space, "settings": {"epochs": 1},
              "rounds": [{"round": 0, "trials": len(mses), "wall_s": 1.0}]})


# Mostly falling with the learning rate, a few bad trials far up, the last one diverged.
REGRESSION_MSES = [4.0, 3.5, 50.0, 3.0, 2.5, 2.8, 2.0, 40.0, 1.5, 1.7, 1.0, 0.5, 0.8, 0.6,
                   0.4, 0.9, 30.0, 0.3, 0.35, None]


@needs_matplotlib
def test_a_minimised_metric_is_drawn_lowest_best(tmp_path):
  """A regression run: its mse is labelled as such, best so far falls, the colours and the
  axis range keep the lowest values (the best) and cut off the highest (the worst)."""
  from vmaptune.reporting import figures

  path = tmp_path / "regression"
  write_regression_run(path, REGRESSION_MSES)
  found = vt.report(path, tmp_path / "report", quiet=True)
  assert [(p["x"], p["y"], p["points"], p["diverged"]) for p in found.panels] == [
      ("learning_rate", "val_mse", 20, 1)]
  run = vt.load_run(path)
  scoring = run.scoring
  finite = np.array([m for m in REGRESSION_MSES if m is not None])
  norm = figures.score_norm(run)  # From the best to the 90th percentile, best bright.
  assert norm.vmin == 0.3 and norm.vmax == pytest.approx(np.percentile(finite, 90))
  assert figures.cmap(scoring)(0.0) == figures.CMAP(1.0)
  assert figures.axis_label(scoring) == "val mse (lower is better)"

  ax = figures._figure(5, 4).subplots()
  figures.draw_history(ax, run, figures.worst_shown(norm, scoring))
  best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
  steps = np.asarray(best.get_ydata(), float)  # Finite: the first trial finished.
  assert (np.diff(steps) <= 0).all() and steps[-1] == 0.3
  low, high = ax.get_ylim()
  assert low < 0.3 < norm.vmax < high < 40.0  # The best shown, the worst two cut off.
  assert ax.get_ylabel().startswith("val mse (up to")
  assert ax.get_title() == "best so far against trials (lower is better)"

  ax = figures._figure(5, 4).subplots()
  figures.draw_pair(ax, run, 0, "learning_rate", None, norm)
  crosses = ax.collections[1].get_offsets()  # A diverged trial at the worst score: the top.
  assert len(crosses) == 1 and crosses[0][1] == 50.0
  assert ax.get_ylabel() == "val mse (lower is better)"

  ax = figures._figure(5, 4).subplots()
  figures.draw_wall_time(ax, run)
  assert ax.get_lines()[-1].get_ydata().tolist() == [0.3]
  assert ax.get_ylabel() == "best val mse (lower is better)"
