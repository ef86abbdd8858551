"""The `vmaptune` command: a shrunk default experiment end to end, and its input errors."""

import datetime
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import vmaptune as vt
from vmaptune import cli
from vmaptune.cli import main
from vmaptune.lanes.compilation import CompileCounter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, "experiments", "digits_mlp.py")
SHRUNK = ["population=8", "rounds=2", "epochs=1"]
# The confirmation stage compiles one more program per run: the default experiment's run keeps it
# (as the command runs it) and the runs that test other things leave it out.
NO_CONFIRMATION = "confirm=off"


def test_the_default_experiment_runs_shrunk_and_reports_everything(tmp_path, capsys):
  out = tmp_path / "run"
  cache = tmp_path / "cache"
  assert main(["run", DEFAULT, "--set", *SHRUNK, "--out", str(out),
               "--cache-dir", str(cache)]) == 0
  printed = capsys.readouterr().out
  assert any(cache.iterdir()), "the compilation cache was not written"
  for expected in (f"compilation cache: {cache}", "round 1/2: 8 configurations",
                   "round 2/2: 8 configurations", "trials/s",
                   "learning_rate  [0.0001, 1] log", "best", "median", "diverged 0/8",
                   "chosen config", "over 2 fresh seeds", "test accuracy", f"records: {out}"):
    assert expected in printed, expected
  assert len(vt.read_trials(out)) == 16
  assert (out / "summary.json").exists()


@pytest.mark.slow  # A run of a command; the default experiment's is the fast one.
def test_the_structural_experiment_runs_shrunk_with_one_population_per_combination(tmp_path,
                                                                                  capsys):
  out = tmp_path / "run"
  config = os.path.join(ROOT, "experiments", "digits_mlp_structural.py")
  assert main(["run", config, "--no-cache", "--set", "population=4", "rounds=2", "epochs=1",
               "sampler=narrow(keep=1)", NO_CONFIRMATION, "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  for expected in ("hidden         {32, 128} choice", "activation     {'relu', 'tanh'} choice",
                   "by bucket:", "hidden=128 activation='tanh': 1 configuration, best",
                   "chosen config", "test accuracy"):
    assert expected in printed, expected
  records = vt.read_trials(out)
  assert [(r["hparams"]["hidden"], r["hparams"]["activation"]) for r in records[:4]] == [
      (32, "relu"), (32, "tanh"), (128, "relu"), (128, "tanh")]
  summary = json.loads((out / "summary.json").read_text())
  assert len(summary["rounds"][0]["buckets"]) == 4
  assert summary["rounds"][1]["compiles"] == 0  # keep=1: the same four buckets recur.
  assert summary["chosen"]["hparams"]["activation"] in ("relu", "tanh")


@pytest.mark.slow  # A subprocess.
def test_the_installed_command_runs_quietly(tmp_path):
  """The `vmaptune` console script that pip installed next to this Python reaches main()."""
  script = os.path.join(os.path.dirname(sys.executable), "vmaptune")
  assert os.path.exists(script), "install the package (pip install -e .) to get the command"
  result = subprocess.run([script, "run", DEFAULT, "--quiet",
                           "--set", "population=4", "rounds=1", "epochs=1", NO_CONFIRMATION,
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "chosen config" in result.stdout and "test accuracy" in result.stdout
  assert "sampled ranges" not in result.stdout  # --quiet: no per-round lines.


@pytest.mark.parametrize("sets, message", [
    (["populaton=8"], "--set populaton: unknown key; settable keys are population"),
    (["population=many"], "--set population=many: expected a whole number"),
    (["keep=0.5"], "--set keep: unknown key; settable keys are population"),
    (["sampler=narrow(keep=high)"], "sampler='narrow(keep=high)': keep=high is not a literal "
                                    "value; expected name(key=value, ...)"),
    (["sampler=bogus"], "sampler='bogus' is unknown; expected one of ['density', 'evolution', "
                        "'narrow', 'optuna']"),
    (["population"], "expected key=value"),
    (["population=0"], "population=0; expected a whole number >= 1"),
])
def test_bad_overrides_are_refused_with_the_key_named(sets, message, tmp_path, capsys):
  assert main(["run", DEFAULT, "--set", *sets, "--out", str(tmp_path / "run")]) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "run" / "trials.jsonl").exists()


def test_a_config_without_get_config_is_refused(tmp_path, capsys):
  config = tmp_path / "broken.py"
  config.write_text("CONFIG = {'population': 8}\n")
  assert main(["run", str(config)]) == 2
  assert "defines no get_config()" in capsys.readouterr().err
  assert main(["run", str(tmp_path / "missing.py")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_an_unknown_setting_in_a_config_or_set_names_it(tmp_path, capsys):
  config = tmp_path / "old.py"
  config.write_text(textwrap.dedent("""
      import vmaptune as vt

      def get_config():
        return vt.Experiment(model=vt.models.MLP(), data=vt.data.digits,
                             space=vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)), keep=0.3)
  """))
  assert main(["run", str(config)]) == 2
  error = capsys.readouterr().err
  assert "get_config() failed" in error and "'keep'" in error
  assert main(["run", DEFAULT, "--set", "margin=0.2"]) == 2
  assert "--set margin: unknown key; settable keys are" in capsys.readouterr().err


def test_get_config_must_return_an_experiment(tmp_path, capsys):
  config = tmp_path / "dict_config.py"
  config.write_text(textwrap.dedent("""
      def get_config():
        return {"population": 8}
  """))
  assert main(["run", str(config)]) == 2
  assert "get_config() returned dict; expected a vmaptune.Experiment" in capsys.readouterr().err


@pytest.mark.slow  # A run of a command; the default experiment's is the fast one.
def test_a_config_imports_modules_beside_it_and_repeated_set_flags_add_up(tmp_path):
  (tmp_path / "my_models.py").write_text(textwrap.dedent("""
      import flax.linen as nn

      class Tiny(nn.Module):
        @nn.compact
        def __call__(self, x):
          return nn.Dense(10)(x.reshape((x.shape[0], -1)))
  """))
  (tmp_path / "mine.py").write_text(textwrap.dedent("""
      import vmaptune as vt
      from my_models import Tiny

      def get_config():
        return vt.Experiment(model=Tiny(), data=vt.data.digits, name="mine",
                             space=vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)))
  """))
  out = tmp_path / "run"
  assert main(["run", str(tmp_path / "mine.py"), "--quiet", "--no-cache", "--set", "population=3",
               "--set", "rounds=1", "epochs=1", "--set", NO_CONFIRMATION, "--out", str(out)]) == 0
  records = vt.read_trials(out)
  assert len(records) == 3 and {r["round"] for r in records} == {0}


@pytest.mark.slow  # A run of a command; the default experiment's is the fast one.
def test_a_strategy_is_chosen_with_set(tmp_path, capsys):
  out = tmp_path / "run"
  assert main(["run", DEFAULT, "--no-cache", "--set", "population=6", "rounds=1", "epochs=4",
               "strategy=pbt(interval=2)", NO_CONFIRMATION, "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "exploited" in printed and "chosen config" in printed
  assert {r["status"] for r in vt.read_trials(out)} >= {"finished", "exploited"}
  summary = (out / "summary.json").read_text()
  assert "pbt(interval=2, fraction=0.25, perturb=1.25, resample=0.25)" in summary


def test_overrides_keep_types_and_the_rest_of_the_experiment():
  experiment = vt.load_experiment(DEFAULT)
  changed = vt.override(experiment, ["population=512", "sampler=narrow(keep=1)",
                                     "optimizer=sgd", "name=lr_sweep"])
  assert (changed.population, changed.sampler, changed.optimizer, changed.name) == \
      (512, "narrow(keep=1)", "sgd", "lr_sweep")
  assert changed.space == experiment.space and changed.model == experiment.model


def test_out_into_a_folder_that_is_not_a_run_is_refused_before_compiling(
    experiment_file, tmp_path, monkeypatch, capsys):
  """The issue's case: ``vmaptune run ... --out .`` in a project replaced its config.py
  and removed its ``.*.tmp`` files."""
  (tmp_path / "config.py").write_text("PROJECT = 'mine'\n")
  (tmp_path / ".build.tmp").write_text("work in progress")
  before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
  monkeypatch.chdir(tmp_path)
  with CompileCounter() as compiled:
    assert main(["run", experiment_file, "--out", ".", "--quiet", "--no-cache"]) == 2
  error = capsys.readouterr().err
  assert (f"vmaptune: error: {tmp_path} is not empty and holds no run (it holds .build.tmp, "
          "config.py, small_digits_exp.py)") in error, error
  assert compiled.compiles == 0
  assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # No lock file either.


def test_default_run_directories_are_new_and_named_in_utc(tmp_path, monkeypatch):
  """A job array starts many runs in one second: each gets a directory of its own, made
  when it is named, so none resumes another's; the time is UTC, whatever the local zone."""
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local time is a day ahead.
  time.tzset()
  try:
    made = [cli._default_out("exp") for _ in range(20)]
  finally:
    monkeypatch.undo()
    time.tzset()
  assert len(set(made)) == 20
  for path in made:
    assert os.path.dirname(path) == os.path.join("runs", "exp")
    assert os.path.isdir(tmp_path / path) and not os.listdir(tmp_path / path)
    stamp = datetime.datetime.strptime(os.path.basename(path).split("-")[0], "%Y%m%dT%H%M%SZ")
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60, (path, now)
