"""Run directories: what they hold, loading the best model back, and resuming a run
killed at any moment into the records and choice of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.rundir import data_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Summary fields that measure time or compilation, which a resumed run repeats.
TIMING = ("wall_s", "compile_s", "trace_s", "compiles", "trials_per_s")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("compilation-cache"))


@pytest.fixture(autouse=True)
def compilation_cache(cache_dir):
  """Runs of the same config share compiled programs (the uninterrupted, the stopped
  and the resumed one): the same programs, compiled once."""
  with vt.lanes.compilation.persistent_cache(cache_dir):
    yield


class _Sha256:
  def __eq__(self, other):
    return isinstance(other, str) and len(other) == 64


ANY_SHA = _Sha256()


def _files(path) -> dict[str, bytes]:
  """The run's files (the writer lock, which names its last holder, aside)."""
  return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))
          if name != vt.rundir.LOCK_FILE}


def _summary(path) -> dict:
  return json.loads((path / "summary.json").read_text())


def _untimed(summary: dict) -> dict:
  """A summary without its timings, and without what the final fit adds."""
  rounds = [{k: v for k, v in r.items() if k not in TIMING} for r in summary["rounds"]]
  untimed = {**{k: v for k, v in summary.items() if k not in TIMING + ("programs_compiled",)},
             "rounds": rounds}
  if summary.get("confirmation"):
    untimed["confirmation"] = {k: v for k, v in summary["confirmation"].items() if k != "wall_s"}
  return untimed


def test_a_run_directory_holds_the_run_and_gives_the_best_model_back(
    small_arrays, small_data, tiny_mlp, lr_space, fast_settings, tmp_path):
  out = tmp_path / "run"
  result = vt.tune(tiny_mlp, small_data, lr_space, out=str(out), **fast_settings)
  config = json.loads((out / "config.json").read_text())
  assert config["settings"]["population"] == 8 and config["settings"]["strategy"] == "random"
  assert vt.Space.from_dict(config["space"]) == lr_space
  assert config["data"]["fingerprint"] == data_fingerprint(small_data)
  assert config["model"]["parameters"] == [64 * 16 + 16 + 16 * 10 + 10]
  # Before the final fit: the best trial's parameters as it trained in the search,
  # saved with the round that found it (an interrupted run has a model to load).
  searched = vt.load_run(out)
  best = result.best
  assert searched.params_trial == {"from": "search", "round": best.round, "trial": best.trial,
                                   "hparams": best.to_record()["hparams"], "sha256": ANY_SHA}
  logits = tiny_mlp.apply({"params": vt.load_best_params(out, tiny_mlp)}, small_data.val.x)
  assert float((np.argmax(logits, -1) == small_data.val.y).mean()) == \
      pytest.approx(best.val_accuracy, abs=1e-6)

  final = result.final_fit()
  run = vt.load_run(out)
  assert run.complete and run.rounds_completed == 3 and run.space == lr_space
  assert run.records == vt.read_trials(out) and len(run.records) == 8 * 3
  assert run.chosen == result.best.to_record()
  assert run.final_fit["test_accuracy"] == final.test_accuracy
  assert run.params_trial["from"] == "final_fit" and run.params_trial["trial"] == best.trial
  assert run.top(1)[0] == result.best.to_record()
  params = vt.load_best_params(out, tiny_mlp)
  logits = tiny_mlp.apply({"params": params}, small_data.val.x)
  np.testing.assert_array_equal(logits, tiny_mlp.apply({"params": final.params},
                                                       small_data.val.x))
  accuracy = float((np.argmax(logits, -1) == small_data.val.y).mean())
  assert accuracy == pytest.approx(final.val_accuracy, abs=1e-6)
  with pytest.raises(ValueError, match=r"'Dense_0'\]\['bias'\] has shape \(16,\) in the file, "
                     r"\(32,\) in the model"):
    vt.load_best_params(out, vt.models.MLP(hidden=(32,)))
  with pytest.raises(FileNotFoundError, match="holds no vmaptune run"):
    vt.load_run(tmp_path)

  # The same run again: restored as it finished, final fit included; nothing trains,
  # the test split is not read again, no file changes.
  before = _files(out)
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  with CompileCounter() as compiled:
    again = vt.tune(tiny_mlp, data, lr_space, out=str(out), **fast_settings)
    restored = again.final_fit()
  assert compiled.compiles == 0 and data.test_reads == 0
  assert again.best == result.best and _untimed(again.summary()) == _untimed(result.summary())
  assert (restored.val_accuracy, restored.test_accuracy) == (final.val_accuracy,
                                                             final.test_accuracy)
  assert restored.schedule == final.schedule
  assert _files(out) == before


def test_a_different_config_is_refused_naming_what_differs_and_nothing_changes(
    small_data, tiny_mlp, lr_space, fast_settings, tmp_path):
  out = tmp_path / "run"
  vt.tune(tiny_mlp, small_data, lr_space, out=str(out), **{**fast_settings, "rounds": 2})
  before = _files(out)
  other = vt.data.from_arrays(small_data.train.x[::-1], small_data.train.y[::-1],
                              val_fraction=0.25, test_fraction=0.0, seed=0, num_classes=10)
  narrower = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1),
                      weight_decay=vt.LogUniform(1e-6, 1e-2))
  cases = [
      (dict(population=4), "settings.population: 8 in the run directory, 4 now"),
      (dict(space=narrower), "space.learning_rate.high: 1.0 in the run directory, 0.1 now"),
      (dict(data=other), "data.fingerprint: "),
      (dict(model=vt.models.MLP(hidden=(8,))),
       "model.parameters: [1210] in the run directory, [610] now"),
      (dict(strategy="halving(eta=2)"),
       "settings.strategy: 'random' in the run directory, 'halving(eta=2"),
      (dict(rounds=1), "holds 2 completed rounds; rounds=1 cannot resume it"),
      (dict(resume=False), "already holds a run"),
  ]
  for change, message in cases:
    args = {"model": tiny_mlp, "data": small_data, "space": lr_space, **fast_settings,
            "rounds": 2, **change}
    with CompileCounter() as compiled, pytest.raises(FileExistsError) as error:
      vt.tune(args.pop("model"), args.pop("data"), args.pop("space"), out=str(out), **args)
    assert message in str(error.value), (change, str(error.value))
    assert compiled.compiles == 0
    assert _files(out) == before


class _Stop(Exception):
  pass


def _stop_after(index: int):
  def on_round(result):
    if result.index == index:
      raise _Stop
  return on_round


STRUCTURAL = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                      hidden=vt.Choice([(8,), (8, 8)]), depth=vt.IntUniform(1, 1, structural=True))


def _mlp(hidden, depth):
  return vt.models.MLP(hidden=hidden * depth)


@pytest.mark.parametrize("case, stop", [
    ("structural", "killed mid-append"),  # Choice of tuples, structural ints, narrowing.
    # A finished 1-round run given a second round (slow: the other cases resume in the fast tier).
    pytest.param("halving", "extended", marks=pytest.mark.slow),
    ("pbt", "killed mid-append"),         # Records with parents, lineage replayed.
    # Records with per-seed accuracies (slow: test_strategies.py checks them fast).
    pytest.param("seeds", "stopped between rounds", marks=pytest.mark.slow),
])
def test_a_resumed_run_equals_the_uninterrupted_run(case, stop, small_data, tiny_mlp, lr_space,
                                                    tmp_path):
  model, space = tiny_mlp, lr_space
  settings = dict(population=6, rounds=2, epochs=2, batch_size=32, seed=3)
  if case == "structural":
    model, space = _mlp, STRUCTURAL
    settings.update(population=2, sampler="narrow(keep=0.5)")
  elif case == "halving":
    settings.update(strategy="halving(eta=2)")
  elif case == "pbt":
    settings.update(strategy="pbt(interval=1, fraction=0.34)")
  else:
    settings.update(seeds=2, population=4)
  tune = lambda out, **extra: vt.tune(model, small_data, space, out=str(out),
                                      **{**settings, **extra})
  whole = tune(tmp_path / "whole")
  out = tmp_path / "resumed"
  if stop == "extended":
    tune(out, rounds=1)
  else:
    with pytest.raises(_Stop):
      tune(out, on_round=_stop_after(0))
    if stop == "killed mid-append":  # Part of round 1's records, the last line torn.
      lines = (tmp_path / "whole" / "trials.jsonl").read_text().splitlines(keepends=True)
      later = [line for line in lines if json.loads(line)["round"] == 1]
      with open(out / "trials.jsonl", "a") as f:
        f.writelines(later[:len(later) // 2])
        f.write(later[len(later) // 2][:17])
  resumed = tune(out)

  assert (out / "trials.jsonl").read_text() == (tmp_path / "whole" / "trials.jsonl").read_text()
  assert resumed.best == whole.best
  assert [r.next_space for r in resumed.rounds] == [r.next_space for r in whole.rounds]
  assert _untimed(_summary(out)) == _untimed(_summary(tmp_path / "whole"))
  for a, b in zip(resumed.rounds[:1], whole.rounds[:1], strict=True):  # Restored from records.
    np.testing.assert_array_equal(a.epoch_loss, b.epoch_loss)
    np.testing.assert_array_equal(a.kept, b.kept)
    for name in space:
      np.testing.assert_array_equal(a.hparams[name], b.hparams[name])
      assert a.hparams[name].dtype == b.hparams[name].dtype
  if case == "pbt":
    assert any(r["parent"] >= 0 for r in vt.read_trials(out))
  if case == "structural":  # Narrowed to one category, a tuple: rebuilt from JSON lists.
    assert len(resumed.rounds[0].next_space["hidden"].values) == 1


# Runs the config; once round 1's records are on disk (and before the summary lists the
# round), it says so and waits to be killed: the worst moment, deterministically.
KILLED_SCRIPT = textwrap.dedent("""
    import sys, time
    import vmaptune as vt
    from vmaptune.rundir import RunDirectory

    append_round = RunDirectory.append_round

    def append_then_wait(self, trials):
      append_round(self, trials)
      if trials[0].round == 1:
        open(sys.argv[3], "w").close()
        time.sleep(600)

    RunDirectory.append_round = append_then_wait
    vt.override(vt.load_experiment(sys.argv[1]), ["rounds=3", "confirm=off"]).tune(out=sys.argv[2])
""")


@pytest.mark.slow  # A subprocess.
def test_a_run_killed_mid_round_resumes_into_the_uninterrupted_run(experiment_file, tmp_path):
  (tmp_path / "killed_script.py").write_text(KILLED_SCRIPT)
  out, marker = tmp_path / "run", tmp_path / "round-1-appended"
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
  child = subprocess.Popen([sys.executable, str(tmp_path / "killed_script.py"),
                            experiment_file, str(out), str(marker)],
                           env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=open(tmp_path / "stderr.txt", "w"))
  # No confirmation stage (it has tests of its own): the rounds' records are the subject.
  experiment = vt.override(vt.load_experiment(experiment_file), ["rounds=3", "confirm=off"])
  try:
    whole = experiment.tune(out=str(tmp_path / "whole"))  # Meanwhile, the uninterrupted run.
    deadline = time.monotonic() + 240
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
    assert marker.exists(), (tmp_path / "stderr.txt").read_text()[-3000:]
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  assert child.returncode == -signal.SIGKILL
  # On disk: round 1's records, but a summary that lists round 0 alone.
  assert {r["round"] for r in vt.read_trials(out)} == {0, 1}
  assert len(json.loads((out / "summary.json").read_text())["rounds"]) == 1

  resumed = experiment.tune(out=str(out))
  assert (out / "trials.jsonl").read_text() == (tmp_path / "whole" / "trials.jsonl").read_text()
  assert resumed.best == whole.best
  assert _untimed(_summary(out)) == _untimed(_summary(tmp_path / "whole"))


CLI_SHRUNK = ["population=4", "rounds=2", "epochs=1"]


@pytest.mark.slow  # A command's runs of the full digits set.
def test_the_command_resumes_refuses_and_shows_a_run(tmp_path, capsys):
  config = os.path.join(ROOT, "experiments", "digits_mlp.py")
  out = tmp_path / "run"
  run = ["run", config, "--no-cache", "--out", str(out), "--set", *CLI_SHRUNK]
  assert main([*run, "--quiet"]) == 0
  first = capsys.readouterr().out
  with open(config) as f:
    assert (out / "config.py").read_text() == f.read()
  assert (out / "best_params.msgpack").exists()
  before = _files(out)

  assert main(run) == 0  # Finished: restored, final fit included.
  again = capsys.readouterr().out
  assert f"resuming {out}: 2 of 2 rounds restored from its records" in again
  chosen = lambda printed: printed.split("chosen config")[1].split("search wall time")[0]
  assert chosen(again) == chosen(first) and "test accuracy" in chosen(first)
  assert _files(out) == before

  assert main([*run, "population=8"]) == 2
  error = capsys.readouterr().err
  assert "already holds a run of a different config" in error
  assert "settings.population: 4 in the run directory, 8 now" in error
  assert main([*run, "--no-resume"]) == 2
  assert "already holds a run" in capsys.readouterr().err
  assert _files(out) == before

  assert main(["show", str(out), "--top", "3"]) == 0
  shown = capsys.readouterr().out
  for expected in ("2 of 2 rounds, complete", "chosen config", "test accuracy",
                   "best parameters:", "top 3 of 8 trials:"):
    assert expected in shown, expected
  assert main(["show", str(tmp_path)]) == 2
  assert "holds no vmaptune run" in capsys.readouterr().err


FORMAT1 = os.path.join(ROOT, "tests", "data", "format1")


def mlp(hidden):
  """The model function the format-1 structural run was written with (same name)."""
  return vt.models.MLP(hidden=(hidden,))


def test_a_run_directory_of_the_previous_format_resumes_shows_and_reports(
    small_data, tiny_mlp, tmp_path, capsys):
  """Directories written before the sampler existed (``keep``/``margin`` settings) are read
  as their sampler equivalent, resume into the records an uninterrupted run writes now,
  and show and report as before; the committed originals are never written."""
  import shutil
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                   weight_decay=vt.LogUniform(1e-6, 1e-2))
  # As they were written: they predate the confirmation stage.
  settings = dict(population=4, epochs=2, batch_size=32, seed=0, sampler="narrow(keep=0.5)",
                  confirm="off")
  old = tmp_path / "narrow"
  shutil.copytree(os.path.join(FORMAT1, "narrow"), old)
  before = _files(old)
  run = vt.load_run(old)
  assert run.settings["sampler"] == "narrow(keep=0.5, margin=0.1)" and run.complete
  assert run.final_fit is not None and run.top(1)[0] == run.chosen
  # Finished: restored with its final fit; nothing trains, the test split stays unread.
  with CompileCounter() as compiled:
    restored = vt.tune(tiny_mlp, small_data, space, out=str(old), rounds=2, **settings)
    final = restored.final_fit()
  assert compiled.compiles == 0 and small_data.test_reads == 0
  assert final.test_accuracy == run.final_fit["test_accuracy"]
  after = _files(old)  # Only config.json changed: rewritten in the current format.
  assert {k: v for k, v in after.items() if k != "config.json"} == \
      {k: v for k, v in before.items() if k != "config.json"}
  assert json.loads(after["config.json"]) == vt.rundir.upgrade(json.loads(before["config.json"]))
  assert main(["show", str(old)]) == 0 and "2 of 2 rounds, complete" in capsys.readouterr().out
  found = vt.report(old, out=tmp_path / "figures", quiet=True)
  assert [i.name for i in found.importance][0] in space
  # Extended by a round: its rounds kept as written, the round added the one an
  # uninterrupted run of today's vmaptune trains (the fixture was written by an older
  # XLA, whose losses differ in their last bits: equal within float tolerance).
  vt.tune(tiny_mlp, small_data, space, out=str(old), rounds=3, **settings)
  whole = tmp_path / "whole"
  vt.tune(tiny_mlp, small_data, space, out=str(whole), rounds=3, **settings)
  with open(os.path.join(FORMAT1, "narrow", "trials.jsonl")) as f:
    assert (old / "trials.jsonl").read_text().startswith(f.read())
  lines = lambda path: [json.loads(line) for line in path.read_text().splitlines()]
  extended, uninterrupted = lines(old / "trials.jsonl"), lines(whole / "trials.jsonl")
  assert len(extended) == len(uninterrupted)
  for a, b in zip(extended, uninterrupted, strict=True):
    assert [a[k] for k in ("round", "trial", "lane", "status")] == \
        [b[k] for k in ("round", "trial", "lane", "status")]
    np.testing.assert_allclose(list(a["hparams"].values()), list(b["hparams"].values()),
                               rtol=1e-5)
    np.testing.assert_allclose(a["epoch_loss"], b["epoch_loss"], rtol=1e-4)
  assert json.loads((old / "config.json").read_text())["format"] == 2
  # A one-round structural run with halving: read, shown, reported.
  stopped = tmp_path / "halving_structural"
  shutil.copytree(os.path.join(FORMAT1, "halving_structural"), stopped)
  run = vt.load_run(stopped)
  assert run.settings["sampler"] == "narrow(keep=0.5, margin=0.1)"
  assert run.settings["strategy"] == "halving(eta=2, min_epochs=1)" and run.complete
  assert {r["status"] for r in run.records} == {"finished", "halved"}
  assert run.best_model(mlp).hidden == (run.chosen["hparams"]["hidden"],)
  assert main(["show", str(stopped)]) == 0 and "1 of 1 rounds" in capsys.readouterr().out
