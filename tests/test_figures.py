"""The report's figures: PNGs drawn from the records, pair panels whose boxes are the
next round's ranges, diverged trials crossed, lineage curves."""

import itertools
import os
import re

import pytest

import vmaptune as vt
from conftest import PNG, REPORT_SPACE, needs_matplotlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@needs_matplotlib
def test_figures_are_pngs_and_the_pair_panels_follow_the_records(written_run, written_report):
  result, out = written_run
  found = written_report
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
