"""Progress events: their order, counts and fields; JSON lines; the live line; quiet runs."""

import io
import json
import os
import pty
import re
import subprocess
import sys

import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.errors import SettingsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "experiments", "digits_mlp.py")
# Small enough steps that no lane diverges, so lane counts are known in advance.
SAFE = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), weight_decay=vt.LogUniform(1e-6, 1e-2))
# The confirmation stage after the last round reports no events and prints nothing: the tests of
# the rounds' events run without it (confirm="off"); the tests that a whole run prints nothing, or
# nothing but JSON lines or the final result, keep it, as a run has it by default.


def _json_run(small_data, tiny_mlp, **settings) -> tuple[vt.TuneResult, list[dict]]:
  stream = io.StringIO()
  result = vt.tune(tiny_mlp, small_data, SAFE,
                   progress=vt.reporting.progress.JsonLines(stream, every=1), **settings)
  lines = stream.getvalue().splitlines()
  return result, [json.loads(line) for line in lines]


def test_json_lines_give_every_event_in_order_with_the_round_results(small_data, tiny_mlp,
                                                                    tmp_path):
  settings = dict(population=8, rounds=2, epochs=2, batch_size=32, seed=0, confirm="off")
  result, events = _json_run(small_data, tiny_mlp, out=str(tmp_path / "run"), **settings)
  round_events = ["round_start", "segment", "segment", "evaluation", "round_end"]
  assert [e["event"] for e in events] == ["run_start"] + round_events * 2 + ["run_end"]
  times = [e["t"] for e in events]
  assert times == sorted(times)
  assert events[0] | {"t": 0} == {"event": "run_start", "t": 0, "rounds": 2, "population": 8,
                                  "epochs": 2, "seeds": 1, "strategy": "random",
                                  "sampler": "narrow(keep=0.2, margin=0.1)",
                                  "space": SAFE.to_dict(), "restored": 0}
  best = None
  for r, chunk in zip(result.rounds, (events[1:6], events[6:11]), strict=True):
    start, first, second, evaluation, end = chunk
    assert start["round"] == r.index and start["space"] == r.space.to_dict()
    assert start["buckets"] == 1
    assert [(s["first_epoch"], s["epoch"], s["lane_epochs"]) for s in (first, second)] == \
        [(0, 1, 8), (1, 2, 16)]
    for segment in (first, second):
      assert (segment["lanes"], segment["alive"], segment["budget"]) == (8, 8, 2)
      assert segment["trials_per_s"] > 0 and segment["best_val_accuracy"] == best
    assert evaluation["epoch"] == 2 and evaluation["alive"] == 8
    assert evaluation["val_accuracy"] == pytest.approx(r.best_score)
    best = max(best or 0.0, r.best_score)
    assert end == end | {"round": r.index, "configurations": 8, "trials": 8, "diverged": 0,
                         "kept": len(r.kept), "lane_epochs": r.lane_epochs,
                         "best_val_accuracy": pytest.approx(best),
                         "val_accuracy": pytest.approx(r.best_score),
                         "next_space": r.next_space.to_dict()}
  assert events[-1]["chosen"] == result.best.hparams
  assert events[-1]["best_val_accuracy"] == result.best.score
  # The same call again resumes a finished run: its rounds are restored, none is trained.
  again = []
  vt.tune(tiny_mlp, small_data, SAFE, out=str(tmp_path / "run"), progress=again.append,
          **settings)
  assert [e["event"] for e in again] == ["run_start", "run_end"]
  assert again[0]["restored"] == 2
  assert again[1]["best_val_accuracy"] == pytest.approx(result.best.score)


def test_pieces_of_training_are_reported_and_change_no_result(small_data, tiny_mlp):
  """Successive halving over epochs [0,1), [1,2), [2,4): per epoch with every=1, per
  rung with every=None; the records equal a run without progress, bit for bit."""
  settings = dict(population=8, rounds=1, epochs=4, batch_size=32, seed=0,
                  strategy="halving(eta=2)", confirm="off")
  plain = vt.tune(tiny_mlp, small_data, SAFE, **settings)
  reported, events = _json_run(small_data, tiny_mlp, **settings)
  rungs = []
  coarse = vt.tune(tiny_mlp, small_data, SAFE, progress=vt.reporting.progress.Callback(
      rungs.append, every=None), **settings)
  segments = lambda evs: [(e["first_epoch"], e["epoch"], e["lanes"])
                          for e in evs if e["event"] == "segment"]
  assert segments(events) == [(0, 1, 8), (1, 2, 4), (2, 3, 2), (3, 4, 2)]
  assert segments(rungs) == [(0, 1, 8), (1, 2, 4), (2, 4, 2)]
  for evs in (events, rungs):
    assert [e["epoch"] for e in evs if e["event"] == "evaluation"] == [1, 2, 4]
    assert [e["lanes"] for e in evs if e["event"] == "evaluation"] == [8, 4, 2]
  for other in (reported, coarse):
    assert [t.to_record() for t in other.trials()] == [t.to_record() for t in plain.trials()]


def test_buckets_are_reported_with_their_structural_values(small_data):
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1), hidden=vt.Choice([(8,), (16,)]))
  events = []
  vt.tune(vt.models.MLP(), small_data, space, population=4, rounds=1, epochs=1,
          batch_size=32, confirm="off", progress=events.append)
  segments = [e for e in events if e["event"] == "segment"]
  assert [(e["bucket"], e["buckets"], e["values"], e["lanes"]) for e in segments] == [
      (0, 2, {"hidden": (8,)}, 2), (1, 2, {"hidden": (16,)}, 2)]
  assert [e["lane_epochs"] for e in segments] == [2, 4]  # Summed over the round's buckets.


def test_the_live_line_redraws_in_place_and_clears_itself(small_data, tiny_mlp, capsys,
                                                          monkeypatch):
  monkeypatch.setenv("COLUMNS", "120")  # The bar's width follows the terminal's.
  stream = io.StringIO()
  vt.tune(tiny_mlp, small_data, SAFE, population=8, rounds=2, epochs=2, batch_size=32,
          confirm="off", progress=vt.reporting.progress.Bar(stream), verbose=True)
  drawn = stream.getvalue()
  assert "\n" not in drawn
  frames = [f for f in drawn.split("\r") if f]
  cleared = [i for i, f in enumerate(frames) if not f.strip()]
  assert len(cleared) == 2 and cleared[-1] == len(frames) - 1  # Once per round end, last.
  frames = [f.rstrip() for f in frames if f.strip()]
  assert frames[0] == "round 1/2 starting ..."
  assert re.match(r"round 1/2:  50%\|[#0-9]+ +\| 1/2 epochs \[", frames[1])
  assert "lanes 8/8 alive, " in frames[1] and " trials/s, best -]" in frames[1]
  assert re.match(r"round 1/2: 100%\|#+\| 2/2 epochs \[", frames[2])
  assert frames[2].endswith("best -]")
  # The evaluation after the last epoch brings the round's best.
  assert re.match(r"round 1/2: 100%\|#+\| 2/2 epochs \[", frames[3])
  assert " trials/s, best 0." in frames[3]
  assert frames[4] == "round 2/2 starting ..."
  assert "round 2/2: 8 configurations" in capsys.readouterr().out


def test_no_progress_prints_nothing(small_data, tiny_mlp, capsys):
  # The settings of the live line's run: its programs, loaded from the session's cache.
  vt.tune(tiny_mlp, small_data, SAFE, population=8, rounds=1, epochs=2, batch_size=32,
          progress="none")
  assert capsys.readouterr() == ("", "")
  resolve = vt.reporting.progress.resolve
  assert resolve(None) is None and resolve(False) is None


@pytest.mark.parametrize("progress, message", [
    ("loud", "progress='loud'; expected one of \\['bar', 'json', 'none'\\]"),
    (3, "progress=3; expected one of"),
])
def test_a_bad_progress_is_refused_before_compiling(progress, message, small_data, tiny_mlp,
                                                    refused_before_compiling):
  refused_before_compiling(SettingsError, message, model=tiny_mlp, data=small_data,
                           space=SAFE, population=4, progress=progress)


@pytest.mark.parametrize("kwargs, message", [
    (dict(every=0), "every=0; expected 'auto', a whole number of epochs >= 1, or None"),
    (dict(every="fast"), "every='fast'; expected 'auto'"),
    (dict(interval_s=0), "interval_s=0; expected a number of seconds > 0"),
])
def test_progress_settings_are_checked(kwargs, message):
  with pytest.raises(ValueError, match=message):
    vt.reporting.progress.JsonLines(**kwargs)


@pytest.mark.slow  # A run of a command; test_cli.py's default experiment is the fast one.
def test_the_command_logs_json_lines_and_nothing_else(tmp_path, capsys):
  out = tmp_path / "run"
  assert main(["run", DEFAULT, "--no-cache", "--log-format", "json", "--set",
               "population=4", "rounds=2", "epochs=1", "--out", str(out)]) == 0
  captured = capsys.readouterr()
  events = [json.loads(line) for line in captured.out.splitlines()]  # Every line is JSON.
  assert [e["event"] for e in events] == (
      ["run_start"] + ["round_start", "segment", "evaluation", "round_end"] * 2
      + ["run_end", "final_fit"])
  final = events[-1]
  assert final["out"] == str(out) and 0 < final["test_accuracy"] <= 1
  summary = json.loads((out / "summary.json").read_text())
  assert final["config"] == summary["chosen"]["hparams"]


def test_quiet_and_json_together_are_refused(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main(["run", DEFAULT, "--quiet", "--log-format", "json"])
  assert exit_info.value.code == 2
  assert "choose one" in capsys.readouterr().err


@pytest.mark.slow  # A run of a command; test_cli.py's default experiment is the fast one.
def test_quiet_prints_only_the_final_result(tmp_path, capsys):
  assert main(["run", DEFAULT, "--no-cache", "--quiet", "--set", "population=4", "rounds=1",
               "epochs=1", "--out", str(tmp_path / "run")]) == 0
  captured = capsys.readouterr()
  assert captured.err == "" and "\r" not in captured.out
  assert captured.out.startswith("chosen config") and "round 1/1:" not in captured.out


@pytest.mark.slow  # A subprocess.
def test_the_command_draws_a_live_line_on_a_terminal(tmp_path):
  """Standard output on a pseudo-terminal: the live line is the default. The rounds' line
  is the subject: no confirmation stage (a run with one imports scikit-learn as it starts)."""
  leader, follower = pty.openpty()
  command = ("import sys; from vmaptune.cli import main; sys.exit(main(['run', "
             f"{DEFAULT!r}, '--set', 'population=4', 'rounds=1', 'epochs=2', 'confirm=off', "
             f"'--out', {str(tmp_path / 'run')!r}]))")
  process = subprocess.Popen([sys.executable, "-c", command], cwd=ROOT, stdout=follower,
                             stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
  os.close(follower)
  chunks = []
  while True:
    try:
      chunk = os.read(leader, 4096)
    except OSError:  # The child closed the terminal.
      break
    if not chunk:
      break
    chunks.append(chunk)
  os.close(leader)
  assert process.wait(timeout=120) == 0, process.stderr.read()
  shown = b"".join(chunks).decode()
  # On a terminal tqdm draws with block characters.
  assert re.search(r"\rround 1/1:  50%\|[^|]+\| 1/2 epochs \[", shown), shown
  assert "lanes 4/4 alive" in shown
  assert re.search(r"\r +\rround 1/1: 4 configurations", shown)  # Cleared, then the summary.
  assert "chosen config" in shown


def test_a_minimised_metric_reports_its_lowest_value_as_the_best():
  """A Reporter for regression: scores are mse, named so, and "best" is the lowest."""
  from types import SimpleNamespace

  import numpy as np

  from vmaptune.objectives import parse

  events = []
  reporter = vt.reporting.progress.Reporter(vt.reporting.progress.Callback(events.append),
                                  scoring=parse("regression").scoring)
  reporter.run_start(rounds=1, population=3, epochs=1, seeds=1, strategy="random",
                     sampler="random", space=SAFE, restored=[])
  reporter.round_start(0, SAFE, 1)
  reporter.trained(first_epoch=0, epoch=1, lanes=3, alive=2, seconds=0.1)
  reporter.evaluated(np.array([2.0, 0.5, np.nan]), np.array([False, False, True]))
  reporter.evaluated(np.array([1.0, 3.0, 4.0]), np.zeros(3, bool))  # Worse: best stays.
  result = SimpleNamespace(index=0, completed=np.array([True, True, False]), best_score=0.5,
                           configurations=3, num_trials=3, num_diverged=1, kept=[1],
                           lane_epochs=3, wall_s=0.1, trials_per_s=1.0, next_space=SAFE)
  reporter.round_end(result)
  chosen = SimpleNamespace(score=0.5, to_record=lambda: {"hparams": {"learning_rate": 0.01}})
  reporter.run_end(SimpleNamespace(best=chosen, rounds=[result], wall_s=0.2))
  segment, first, second, end, last = events[2:]
  assert segment["best_val_mse"] is None and "best_val_accuracy" not in segment
  assert (first["val_mse"], first["best_val_mse"]) == (0.5, 0.5)
  assert (second["val_mse"], second["best_val_mse"]) == (1.0, 0.5)
  assert (end["val_mse"], end["best_val_mse"]) == (0.5, 0.5)
  assert last["best_val_mse"] == 0.5 and not any("accuracy" in key for key in last)
  assert vt.reporting.progress.Bar(io.StringIO()).postfix(second).endswith("best 0.5000")


def test_a_regression_run_reports_its_mse():
  import numpy as np

  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  data = vt.data.from_arrays(x, (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32))
  events = []
  result = vt.tune(vt.models.MLP(hidden=(8,), num_classes=1), data, SAFE, objective="regression",
                   population=4, rounds=2, epochs=1, batch_size=32, confirm="off",
                   progress=events.append)
  ends = [e for e in events if e["event"] == "round_end"]
  assert [e["val_mse"] for e in ends] == [r.best_score for r in result.rounds]
  assert ends[-1]["best_val_mse"] == min(r.best_score for r in result.rounds)
  assert events[-1]["best_val_mse"] == result.best.score == ends[-1]["best_val_mse"]
  assert not any("val_accuracy" in e or "best_val_accuracy" in e for e in events)
