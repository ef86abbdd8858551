"""MLflow: a run directory exported, and a run logged live, read back with MlflowClient; once
against a real ``mlflow server`` on localhost."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.errors import SettingsError
from vmaptune.reporting import tracking

mlflow = pytest.importorskip("mlflow", reason="the MLflow tests need the mlflow extra")
from mlflow import MlflowClient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::FutureWarning", "ignore::UserWarning")


def _uri(folder, empty_store=None) -> str:
  """A SQLite store in ``folder``: a copy of ``empty_store`` (see below) when given."""
  if empty_store is not None:
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(empty_store, folder / "mlflow.db")
  return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
  """The file of a new MLflow SQLite store, made once. MLflow creates a store's tables
  (its schema migrations) when a client first uses it: 2.5 to 6 s of CPU per store,
  measured 2026-12-07, about as much as the rest of a test here. The slow tests copy this
  file, so each starts from a store as new as MLflow makes it; the live test (the fast
  one) and the export benchmark let MLflow make theirs."""
  path = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
  MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
  return path


def _read(uri: str, key: str) -> tuple:
  """The parent run of run directory ``key`` and its nested runs."""
  client = MlflowClient(tracking_uri=uri)
  experiment = client.get_experiment_by_name("vmaptune")
  digest = hashlib.sha256(os.path.abspath(key).encode()).hexdigest()
  parents = client.search_runs([experiment.experiment_id], f"tags.`vmaptune.run_key` = '{digest}'")
  assert len(parents) == 1
  parent = parents[0]
  children = client.search_runs([experiment.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                max_results=5000)
  return client, parent, {(int(c.data.tags["vmaptune.round"]) - 1,
                           int(c.data.tags["vmaptune.trial"])): c for c in children}


def _check_trials(client, children: dict, records: list[dict]) -> None:
  """Every record is one nested run, with its hyperparameters, scores and curve."""
  assert sorted(children) == sorted((r["round"], r["trial"]) for r in records)
  for record in records:
    child = children[(record["round"], record["trial"])]
    assert child.data.params == {k: str(v) for k, v in record["hparams"].items()}
    assert child.data.tags["status"] == record["status"]
    assert child.data.tags["lane"] == str(record["lane"])
    assert child.info.status == "FINISHED"
    if record["val_accuracy"] is None:
      assert "val_accuracy" not in child.data.metrics
    else:
      assert child.data.metrics["val_accuracy"] == pytest.approx(record["val_accuracy"])
      assert child.data.metrics["val_loss"] == pytest.approx(record["val_loss"])
    history = client.get_metric_history(child.info.run_id, "epoch_loss")
    curve = {m.step: m.value for m in history}
    expected = {record["start_epoch"] + i: v for i, v in enumerate(record["epoch_loss"])
                if v is not None}
    assert curve.keys() == expected.keys()
    np.testing.assert_allclose([curve[k] for k in sorted(curve)],
                               [expected[k] for k in sorted(expected)], rtol=1e-6)


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_a_run_directory_exports_to_mlflow_once_however_often(written_run, tmp_path,
                                                             empty_store):
  result, out = written_run
  uri, run = _uri(tmp_path, empty_store), vt.load_run(out)
  tracking.export(run, tracking.make("mlflow", tracking_uri=uri))
  client, parent, children = _read(uri, out)
  _check_trials(client, children, run.records)
  params = parent.data.params
  assert params["settings.population"] == "8" and params["settings.sampler"] == \
      "narrow(keep=0.25, margin=0.1)"
  assert set(vt.load_run(out).space) <= {k[len("space."):] for k in params
                                         if k.startswith("space.")}
  assert parent.data.tags["round_1.ranges"].startswith("learning_rate [0.001, 1] log, ")
  best = client.get_metric_history(parent.info.run_id, "best_val_accuracy")
  assert [m.step for m in best] == [0, 1]
  assert [m.value for m in best] == pytest.approx(
      [run.round_entry(i)["best_val_accuracy"] for i in range(2)])
  chosen = run.chosen
  assert parent.data.tags["chosen.learning_rate"] == str(chosen["hparams"]["learning_rate"])
  artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
  assert {"config.json", "summary.json", "rounds"} <= artifacts
  # Again: nothing recorded twice.
  tracking.export(vt.load_run(out), tracking.make("mlflow", tracking_uri=uri))
  client, again, children_again = _read(uri, out)
  assert again.info.run_id == parent.info.run_id and children_again.keys() == children.keys()
  assert len(client.get_metric_history(parent.info.run_id, "best_val_accuracy")) == 2


def test_a_run_logs_live_to_mlflow_as_the_export_would(small_data, tiny_mlp, lr_space,
                                                       fast_settings, tmp_path):
  out, uri = tmp_path / "run", _uri(tmp_path)
  result = vt.tune(tiny_mlp, small_data, lr_space, out=str(out), loggers=[
      tracking.make("mlflow", tracking_uri=uri)], **{**fast_settings, "confirm": "2x2"})
  client, parent, children = _read(uri, out)
  run = vt.load_run(out)
  _check_trials(client, children, run.records)
  assert parent.data.metrics["confirmation_mean"] == pytest.approx(
      run.summary["confirmation"]["mean"])
  assert "final_test_accuracy" not in parent.data.metrics
  final = result.final_fit()  # Logged too, with the parameters.
  client, parent, _ = _read(uri, out)
  assert parent.data.metrics["final_test_accuracy"] == pytest.approx(final.test["accuracy"])
  assert "best_params.msgpack" in {a.path for a in client.list_artifacts(parent.info.run_id)}
  assert parent.info.status == "FINISHED"


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_the_commands_export_and_log_live(experiment_file, tmp_path, capsys, empty_store):
  uri = _uri(tmp_path, empty_store)
  out = tmp_path / "run"
  assert main(["run", experiment_file, "--no-cache", "--quiet", "--out", str(out),
               "--set", "rounds=1", "confirm=off", "--log-to", "mlflow",
               "--tracking-uri", uri]) == 0
  client, parent, children = _read(uri, out)
  assert len(children) == 8 and "final_test_accuracy" in parent.data.metrics
  other = _uri(tmp_path / "other", empty_store)
  capsys.readouterr()
  assert main(["export", str(out), "--to", "mlflow", "--tracking-uri", other]) == 0
  printed = capsys.readouterr().out
  assert f"exported {out} to mlflow: 1 rounds, 8 trials in " in printed
  _, _, exported = _read(other, out)
  assert exported.keys() == children.keys()


def test_without_mlflow_installed_the_message_says_what_to_install(monkeypatch, tmp_path,
                                                                  capsys, written_run):
  import importlib.util
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "mlflow" else real(name, *a))
  with pytest.raises(SettingsError, match=r"pip install 'vmaptune\[mlflow\]'"):
    tracking.make("mlflow")
  assert main(["export", str(written_run[1]), "--to", "mlflow"]) == 2
  assert "pip install 'vmaptune[mlflow]'" in capsys.readouterr().err
  with pytest.raises(SettingsError, match="expected one of"):
    vt.tune(vt.models.MLP(), vt.data.digits(), vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)),
            loggers=["wandb"])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # Starts a real MLflow server.
def test_an_export_reaches_a_real_mlflow_server(written_run, tmp_path, empty_store):
  port = _free_port()
  # Without MLflow's job execution (its GenAI jobs and periodic tasks: a job runner and 8
  # huey consumers, over 30 s of CPU as the server started, measured 2026-12-07), which
  # the tracking API an export uses does not need.
  server = subprocess.Popen(
      [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
       "--backend-store-uri", _uri(tmp_path, empty_store), "--default-artifact-root",
       str(tmp_path / "artifacts"), "--workers", "1"],
      stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.txt", "w"), cwd=tmp_path,
      env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
  uri = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
      try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
          break
      except OSError:
        time.sleep(0.25)
    assert server.poll() is None, (tmp_path / "server.txt").read_text()[-3000:]
    out = written_run[1]
    run = vt.load_run(out)
    tracking.export(run, tracking.make("mlflow", tracking_uri=uri))
    client, parent, children = _read(uri, out)
    _check_trials(client, children, run.records)
  finally:
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow  # A benchmark script.
def test_the_export_benchmark_runs_and_writes_its_results(tmp_path):
  results = tmp_path / "export.json"
  done = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "bench_export.py"),
                         "--population", "8", "--rounds", "1", "--trackers", "mlflow",
                         "--out", str(results)], capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": ROOT})
  assert done.returncode == 0, done.stderr[-3000:]
  found = json.loads(results.read_text())
  assert found["trials"] == 8 and found["exports"]["mlflow"]["first_s"] > 0
  assert found["exports"]["mlflow"]["again_s"] < found["exports"]["mlflow"]["first_s"]


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_a_run_that_stops_marks_its_parent_and_leaves_no_half_written_trial(
    small_data, tiny_mlp, lr_space, fast_settings, tmp_path, empty_store):
  out, uri = tmp_path / "it's run", _uri(tmp_path, empty_store)  # A quote in the path, too.

  def stop(result):
    if result.index == 1:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    vt.tune(tiny_mlp, small_data, lr_space, out=str(out), on_round=stop,
            loggers=[tracking.make("mlflow", tracking_uri=uri)], **fast_settings)
  client, parent, children = _read(uri, out)
  assert parent.info.status == "KILLED"
  assert {c.info.status for c in children.values()} == {"FINISHED"}
  _check_trials(client, children, vt.load_run(out).records)  # Rounds 1 and 2, all written.
  # An export while it is unfinished keeps it running; once it finished, FINISHED, and the
  # same parent (the quote in the path included) holds every trial once.
  tracking.export(vt.load_run(out), tracking.make("mlflow", tracking_uri=uri))
  assert _read(uri, out)[1].info.status == "RUNNING"
  vt.tune(tiny_mlp, small_data, lr_space, out=str(out), **fast_settings)
  tracking.export(vt.load_run(out), tracking.make("mlflow", tracking_uri=uri))
  client, parent, children = _read(uri, out)
  assert parent.info.status == "FINISHED"
  _check_trials(client, children, vt.load_run(out).records)


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_a_store_that_fails_mid_run_is_dropped_with_a_warning(small_data, tiny_mlp, lr_space,
                                                              fast_settings, tmp_path,
                                                              empty_store):
  failing = tracking.make("mlflow", tracking_uri=_uri(tmp_path, empty_store))
  failing.log_round = lambda entry, records: (_ for _ in ()).throw(ConnectionError("store down"))
  with pytest.warns(RuntimeWarning, match="logging to mlflow stopped: ConnectionError: store "
                    "down; the run goes on"):
    result = vt.tune(tiny_mlp, small_data, lr_space, loggers=[failing], **fast_settings)
  assert len(result.rounds) == 3  # Trained to its end.


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_a_deleted_experiment_is_refused_clearly(tmp_path, empty_store):
  uri = _uri(tmp_path, empty_store)
  client = MlflowClient(tracking_uri=uri)
  client.delete_experiment(client.create_experiment("vmaptune"))
  with pytest.raises(SettingsError, match="'vmaptune' at .* was deleted; restore it"):
    tracking.make("mlflow", tracking_uri=uri).start(
        {"space": vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)).to_dict()}, key=None)


def _regression_data() -> vt.Dataset:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32)
  return vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0)


@pytest.mark.slow  # An MLflow store each (seconds to set up); the live test is the fast one.
def test_a_regression_run_logs_every_metric_under_its_name(lr_space, tmp_path, empty_store):
  out, uri = tmp_path / "run", _uri(tmp_path, empty_store)
  result = vt.tune(vt.models.MLP(hidden=(8,), num_classes=1), _regression_data(), lr_space,
                   objective="regression", population=4, rounds=2, epochs=1, batch_size=32,
                   confirm="off", out=str(out),
                   loggers=[tracking.make("mlflow", tracking_uri=uri)])
  final = result.final_fit()
  client, parent, children = _read(uri, out)
  run = vt.load_run(out)
  for record in run.records:  # Every metric of every trial.
    metrics = children[(record["round"], record["trial"])].data.metrics
    assert metrics.keys() == {"val_mse", "val_mae", "epoch_loss"}
    assert metrics["val_mse"] == pytest.approx(record["val_mse"])
    assert metrics["val_mae"] == pytest.approx(record["val_mae"])
  best = client.get_metric_history(parent.info.run_id, "best_val_mse")
  assert [m.value for m in best] == pytest.approx([r.best_score for r in result.rounds])
  assert len(client.get_metric_history(parent.info.run_id, "median_val_mse")) == 2
  metrics = parent.data.metrics
  assert metrics["chosen_val_mse"] == pytest.approx(result.best.score)
  assert result.best.score == min(r["val_mse"] for r in run.records)  # The lowest mse.
  assert {k: metrics[k] for k in metrics if k.startswith("final_")} == pytest.approx({
      "final_val_mse": final.val["mse"], "final_val_mae": final.val["mae"],
      "final_test_mse": final.test["mse"], "final_test_mae": final.test["mae"]})
  assert not any("accuracy" in k for k in metrics)
