"""One run over two processes (2 CPU devices each, on localhost) records what one
process with 4 devices records; only process 0 writes. Plus the settings checks
and the single-process behaviour of the multi-process helpers."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import vmaptune as vt
from vmaptune import cli
from vmaptune.lanes import devices, distributed, watchdog
from vmaptune.rundir import RunDirectory, open_run, read_trials

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240
# The runs that fail or are killed before their last round go without the confirmation
# stage: it never runs there, but a run with it imports scikit-learn and SciPy as it starts
# (the confirmation's estimate; seconds of CPU in every process). A round after the failing
# one keeps the other processes busy in a program of all processes, as the confirmation did.
NO_CONFIRMATION = "confirm=off"

# The Python API, settings from the environment: every process prints its result.
SCRIPT = textwrap.dedent("""
    import json, sys
    import vmaptune as vt

    processes = vt.lanes.distributed.initialize()  # VMAPTUNE_* variables, when set.
    experiment = vt.override(vt.load_experiment(sys.argv[1]), sys.argv[3:])
    result = experiment.tune(out=sys.argv[2])
    final = result.final_fit()
    print(json.dumps({"process": [processes.process_id, processes.num_processes],
                      "best": result.best.to_record(), "schedule": final.schedule,
                      "val_accuracy": final.val_accuracy, "test_accuracy": final.test_accuracy,
                      "trials": [t.to_record() for t in result.trials()]}))
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(cpu_devices: int, **extra: str) -> dict:
  """This worktree's vmaptune, ``cpu_devices`` CPU devices, no inherited run settings."""
  drop = ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", distributed.ENV_COORDINATOR,
          distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID)
  env = {k: v for k, v in os.environ.items() if k not in drop}
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
  return {**env, "VMAPTUNE_CPU_DEVICES": str(cpu_devices), "JAX_PLATFORMS": "cpu", **extra}


def _run_together(commands: list[tuple[list[str], dict]], cwd) -> list[tuple[int, str, str]]:
  """Starts every command at once and waits for all (killing all on a timeout)."""
  procs = [subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for cmd, env in commands]
  try:
    outputs = [proc.communicate(timeout=TIMEOUT_S) for proc in procs]
  except subprocess.TimeoutExpired:
    for proc in procs:
      proc.kill()
    for proc in procs:
      proc.communicate()
    pytest.fail(f"the processes did not finish within {TIMEOUT_S}s")
  return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs, strict=True)]


def _start_processes(command: list[str], cwd, count: int = 2, cpu_devices: int = 2) -> list:
  """``command`` as processes 0 to ``count - 1`` of a run (``cpu_devices`` CPU devices
  each), output to files ``out<i>.txt`` and ``err<i>.txt``."""
  port = _free_port()
  procs = []
  for index in range(count):
    env = _env(cpu_devices, VMAPTUNE_COORDINATOR=f"localhost:{port}",
               VMAPTUNE_NUM_PROCESSES=str(count), VMAPTUNE_PROCESS_ID=str(index))
    with open(cwd / f"out{index}.txt", "w") as out, open(cwd / f"err{index}.txt", "w") as err:
      procs.append(subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err))
  return procs


def _exit_times(procs: list, timeout_s: float = TIMEOUT_S) -> list[float]:
  """When each process exited (``time.time()``), killing all after ``timeout_s``."""
  deadline, ended = time.time() + timeout_s, [None] * len(procs)
  while None in ended and time.time() < deadline:
    for i, proc in enumerate(procs):
      if ended[i] is None and proc.poll() is not None:
        ended[i] = time.time()
    time.sleep(0.02)
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert None not in ended, f"a process did not exit within {timeout_s}s"
  return ended


def _assert_same_trials(got: list[dict], want: list[dict]) -> None:
  assert len(got) == len(want) > 0
  for a, b in zip(got, want, strict=True):
    for key in ("val_accuracy", "val_loss"):
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a, b)
    assert a["epoch_loss"] == pytest.approx(b["epoch_loss"], rel=1e-5), (a, b)
    assert a["hparams"] == pytest.approx(b["hparams"], rel=1e-6), (a, b)
    strip = lambda t: {k: v for k, v in t.items() if k not in ("val_accuracy", "val_loss",
                                                                "hparams", "epoch_loss")}
    assert strip(a) == strip(b)


@pytest.mark.slow  # A subprocess.
def test_two_processes_record_what_one_process_records_and_only_process_0_writes(
    tmp_path, experiment_file):
  """Population-based training (init, advance, evaluate and lane copies between
  processes' devices), then the final fit. Process 0 is the command line with
  flags; process 1 the Python API with environment variables: both entry points
  must run the same programs."""
  strategy = "strategy=pbt(interval=1, fraction=0.25)"
  script = tmp_path / "tune_script.py"
  script.write_text(SCRIPT)
  port = _free_port()
  cli_flags = [sys.executable, "-m", "vmaptune.cli", "run", experiment_file,
               "--quiet", "--set", strategy, "--out", "p0", "--coordinator",
               f"localhost:{port}", "--num-processes", "2", "--process-id", "0"]
  api_env = [sys.executable, str(script), experiment_file, "p1", strategy]
  # The single process with 4 devices, and the two processes with 2 each, side by side.
  (code, out, err), (code0, out0, err0), (code1, out1, err1) = _run_together(
      [([sys.executable, str(script), experiment_file, "single", strategy], _env(4)),
       (cli_flags, _env(2)),
       (api_env, _env(2, VMAPTUNE_COORDINATOR=f"localhost:{port}", VMAPTUNE_NUM_PROCESSES="2",
                      VMAPTUNE_PROCESS_ID="1"))], tmp_path)
  assert code == 0, err[-3000:]
  assert code0 == 0, err0[-3000:]
  assert code1 == 0, err1[-3000:]
  single = json.loads(out.strip().splitlines()[-1])
  assert single.pop("process") == [0, 1]
  assert any(t["status"] == "exploited" for t in single["trials"])  # PBT did copy lanes.

  # Process 0 wrote the records, equal to the single process's.
  _assert_same_trials(read_trials(tmp_path / "p0"), single["trials"])
  summary = json.loads((tmp_path / "p0" / "summary.json").read_text())
  assert summary["settings"]["processes"] == 2 and len(summary["settings"]["devices"]) == 4
  assert summary["chosen"]["trial"] == single["best"]["trial"]
  assert summary["chosen"]["hparams"] == pytest.approx(single["best"]["hparams"], rel=1e-6)
  for key in ("val_accuracy", "test_accuracy"):
    assert summary["final_fit"][key] == pytest.approx(single[key], abs=1e-6)
  assert "chosen config" in out0
  # Process 1 wrote nothing but returned the same result.
  assert not (tmp_path / "p1").exists()
  multi = json.loads(out1.strip().splitlines()[-1])
  assert multi.pop("process") == [1, 2]
  _assert_same_trials(multi["trials"], single["trials"])
  assert multi["best"]["trial"] == single["best"]["trial"]
  # The chosen trial's schedule replayed alike (the confirmation may choose a trial of
  # the first generation or a PBT child with a lineage).
  assert multi["schedule"] == single["schedule"]
  for key in ("val_accuracy", "test_accuracy"):
    assert multi[key] == pytest.approx(single[key], abs=1e-6)

  def pair(override: str, out: str) -> list[tuple[list[str], dict]]:
    """Both processes' commands once more, into ``out``, with ``override``."""
    port = _free_port()
    flags = [*cli_flags]
    flags[flags.index("--coordinator") + 1] = f"localhost:{port}"
    flags[flags.index(strategy)] = override
    flags[flags.index("--out") + 1] = out
    return [(flags, _env(2)),
            (api_env[:-1] + [override],
             _env(2, VMAPTUNE_COORDINATOR=f"localhost:{port}", VMAPTUNE_NUM_PROCESSES="2",
                  VMAPTUNE_PROCESS_ID="1"))]

  # Killed after round 0 (the summary lists it alone; round 1's records follow it):
  # both processes resume from what process 0 reads, and finish as the single process did.
  # Meanwhile a different config goes into a copy of the finished run: process 0 refuses
  # it, and so does every process.
  shutil.copytree(tmp_path / "p0", tmp_path / "finished")
  summary_path = tmp_path / "p0" / "summary.json"
  summary_path.write_text(json.dumps({**summary, "rounds": summary["rounds"][:1],
                                      "final_fit": None}))
  (code0, _, err0), (code1, out1, err1), (refused0, _, error0), (refused1, _, error1) = \
      _run_together(pair(strategy, "p0")
                    + pair("strategy=pbt(interval=1, fraction=0.5)", "finished"), tmp_path)
  assert code0 == 0, err0[-3000:]
  assert code1 == 0, err1[-3000:]
  _assert_same_trials(read_trials(tmp_path / "p0"), single["trials"])
  _assert_same_trials(json.loads(out1.strip().splitlines()[-1])["trials"], single["trials"])
  assert json.loads(summary_path.read_text())["chosen"]["trial"] == single["best"]["trial"]
  assert refused0 == 2 and "finished already holds a run of a different config" in error0, \
      error0[-3000:]
  assert "settings.strategy" in error0
  assert refused1 != 0 and "RunDirectoryError" in error1 and "(raised on process 0)" in error1, \
      error1[-3000:]
  assert not (tmp_path / "p1").exists()


# When process 0 fails, the others stop within seconds (not after JAX's 100 s heartbeat
# timeout), and so does process 0.
FAILING_SCRIPT = textwrap.dedent("""
    import sys, time
    import vmaptune as vt
    from vmaptune.rundir import RunDirectory

    processes = vt.lanes.distributed.initialize()
    append_round, appended = RunDirectory.append_round, []

    def failing_append(self, result):
      appended.append(result)
      if processes.process_id == 0 and len(appended) == 2:  # Round 1, on process 0 only.
        with open(sys.argv[3], "w") as f:
          f.write(repr(time.time()))
        raise RuntimeError("disk full (simulated)")
      append_round(self, result)

    RunDirectory.append_round = failing_append
    vt.override(vt.load_experiment(sys.argv[1]), sys.argv[4:]).tune(out=sys.argv[2])
    print("finished")
""")


@pytest.mark.slow  # Subprocesses.
def test_when_process_0_raises_every_process_exits_at_once_naming_the_error(
    tmp_path, experiment_file):
  script = tmp_path / "failing.py"
  script.write_text(FAILING_SCRIPT)
  procs = _start_processes([sys.executable, str(script), experiment_file, "run",
                       str(tmp_path / "failed_at"), "rounds=3", NO_CONFIRMATION], tmp_path)
  ended = _exit_times(procs)
  failed_at = float((tmp_path / "failed_at").read_text())
  err0, err1 = ((tmp_path / f"err{i}.txt").read_text() for i in range(2))
  assert procs[0].returncode == 1, err0[-3000:]  # Python's status for an uncaught exception.
  assert "RuntimeError: disk full (simulated)" in err0
  assert procs[1].returncode == 1, err1[-3000:]
  assert ("vmaptune: process 0 failed: RuntimeError: disk full (simulated); process 1 stops"
          in err1), err1[-3000:]
  assert "finished" not in (tmp_path / "out1.txt").read_text()
  print("exits after the failure (s):", [round(t - failed_at, 2) for t in ended])
  # Measured on 2 busy cores: both exit within about a second.
  assert ended[1] - failed_at < 15, (ended[1] - failed_at, err1[-3000:])
  assert ended[0] - failed_at < 15, (ended[0] - failed_at, err0[-3000:])


# When another process fails, every process stops within seconds: before, process 0 and the
# others waited for it in a collective (it waited at JAX's shutdown barrier) for minutes.
FAILING_ELSEWHERE_SCRIPT = textwrap.dedent("""
    import sys, time
    import vmaptune as vt
    from vmaptune.rundir import RunDirectory

    processes = vt.lanes.distributed.initialize()
    commit_round, commits = RunDirectory.commit_round, []

    def failing_commit(self, *args, **kwargs):  # Every process commits; process 0 writes.
      commits.append(1)
      if processes.process_id == 2 and len(commits) == 2:  # Round 2, on process 2 only.
        with open(sys.argv[3], "w") as f:
          f.write(repr(time.time()))
        raise RuntimeError("out of memory (simulated)")
      return commit_round(self, *args, **kwargs)

    RunDirectory.commit_round = failing_commit
    vt.override(vt.load_experiment(sys.argv[1]), sys.argv[4:]).tune(out=sys.argv[2])
    print("finished")
""")


@pytest.mark.slow  # Subprocesses.
def test_when_another_process_raises_every_process_exits_at_once_naming_it(
    tmp_path, experiment_file):
  script = tmp_path / "failing.py"
  script.write_text(FAILING_ELSEWHERE_SCRIPT)
  procs = _start_processes([sys.executable, str(script), experiment_file, "run",
                            str(tmp_path / "failed_at"), "rounds=6", NO_CONFIRMATION],
                           tmp_path, count=3,
                           cpu_devices=1)
  ended = _exit_times(procs, timeout_s=120)
  failed_at = float((tmp_path / "failed_at").read_text())
  errors = [(tmp_path / f"err{i}.txt").read_text() for i in range(3)]
  assert procs[2].returncode == 1, errors[2][-3000:]  # Python's status for an uncaught exception.
  assert "RuntimeError: out of memory (simulated)" in errors[2]
  for index in (0, 1):
    assert procs[index].returncode == 1, errors[index][-3000:]
    assert (f"vmaptune: process 2 failed: RuntimeError: out of memory (simulated); process "
            f"{index} stops") in errors[index], errors[index][-3000:]
    assert "finished" not in (tmp_path / f"out{index}.txt").read_text()
  # Process 0 wrote round 1 and stopped before round 2 completed everywhere.
  assert vt.load_run(tmp_path / "run").rounds_completed in (1, 2)
  # The others wait FAILURE_GRACE_S (2 s) for their own ends, then stop. Bound as above.
  print("exits after the failure (s):", [round(t - failed_at, 2) for t in ended])
  for index in range(3):
    assert ended[index] - failed_at < 15, (index, ended[index] - failed_at, errors[index][-3000:])


@pytest.mark.slow  # Subprocesses.
def test_when_process_0_is_killed_the_others_exit_at_once(tmp_path, experiment_file):
  script = tmp_path / "tune_script.py"
  script.write_text(SCRIPT)
  # Rounds enough to still be running when process 0 is killed after round 0.
  procs = _start_processes([sys.executable, str(script), experiment_file, "run", "rounds=50",
                            NO_CONFIRMATION], tmp_path)
  summary = tmp_path / "run" / "summary.json"
  deadline = time.time() + TIMEOUT_S
  while not summary.exists() and procs[0].poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert summary.exists(), (tmp_path / "err0.txt").read_text()[-3000:]
  procs[0].send_signal(signal.SIGKILL)
  killed_at = time.time()
  ended = _exit_times(procs)
  err1 = (tmp_path / "err1.txt").read_text()
  assert procs[0].returncode == -signal.SIGKILL
  assert procs[1].returncode != 0, err1[-3000:]
  # The watchdog's word, or JAX's when its own check of the coordinator comes first.
  assert ("vmaptune: lost process 0 (the coordinator)" in err1
          or "JAX distributed service detected fatal errors" in err1), err1[-3000:]
  print("exit after the kill (s):", round(ended[1] - killed_at, 2))
  assert ended[1] - killed_at < 30, (ended[1] - killed_at, err1[-3000:])


class FakeClient:
  """JAX's coordination client, as the watchdog and abort_others use it."""

  def __init__(self, answers=()):
    self.answers, self.set = list(answers), []

  def key_value_set(self, key, value, allow_overwrite=False):
    self.set.append((key, value))
    if key.endswith("/1"):
      raise RuntimeError("UNAVAILABLE: cannot be told")

  def blocking_key_value_get(self, key, timeout_ms):
    answer = self.answers.pop(0)
    if isinstance(answer, Exception):
      raise answer
    return answer


def test_abort_others_tells_every_other_process_once_and_never_raises(monkeypatch):
  distributed.abort_others("nothing to tell")  # One process: nothing happens.
  assert not jax.distributed.is_initialized()
  client = FakeClient()
  monkeypatch.setattr(watchdog, "_watch", watchdog._Watch())
  monkeypatch.setattr(watchdog, "_coordination", lambda: (client, 0, 3))
  distributed.abort_others("disk\n full")
  distributed.abort_others("a second word")
  assert client.set == [("vmaptune/stop/1", "failed:0:disk full"),
                        ("vmaptune/stop/2", "failed:0:disk full")]
  # Any process tells every other one, process 0 included.
  client.set = []
  monkeypatch.setattr(watchdog, "_coordination", lambda: (client, 2, 3))
  monkeypatch.setattr(watchdog, "_watch", watchdog._Watch())
  distributed.abort_others("out of memory")
  assert client.set == [("vmaptune/stop/0", "failed:2:out of memory"),
                        ("vmaptune/stop/1", "failed:2:out of memory")]


@pytest.mark.parametrize("index, answers, ending, stopped", [
    (1, ["done"], False, None),  # A normal end woke the watchdog.
    (1, [RuntimeError("CANCELLED: CANCELLED")], False, None),  # This client shut down.
    (1, [RuntimeError("DEADLINE_EXCEEDED: no key yet"), "failed:0:disk full"], False,
     "process 0 failed: disk full"),
    (0, ["failed:2:out of memory: 3 GiB"], False, "process 2 failed: out of memory: 3 GiB"),
    (1, ["failed:2:out of memory"], True, None),  # This process ends with its own error.
    (1, [RuntimeError("UNAVAILABLE: Socket closed\nmore")], False,
     "lost process 0 (the coordinator): UNAVAILABLE: Socket closed"),
    (0, [RuntimeError("UNAVAILABLE: Socket closed")], False, None),  # Its own service: JAX's.
])
def test_the_watchdog_stops_the_process_only_when_another_failed(monkeypatch, index, answers,
                                                                  ending, stopped):
  seen = []
  monkeypatch.setattr(watchdog, "_watch", watchdog._Watch())
  monkeypatch.setattr(watchdog, "FAILURE_GRACE_S", 0.01)
  monkeypatch.setattr(watchdog, "_stop", lambda index, reason, client: seen.append(reason))
  if ending:
    watchdog._watch.ending.set()
  watchdog._wait_for_others(FakeClient(answers), index)
  assert seen == ([stopped] if stopped else [])


# Settings: where they come from and what is refused. None of these joins a run.

def test_settings_come_from_arguments_then_environment_variables():
  environ = {distributed.ENV_COORDINATOR: "10.0.0.1:1234", distributed.ENV_NUM_PROCESSES: " 4 ",
             distributed.ENV_PROCESS_ID: "3"}
  assert distributed.settings(environ=environ) == {
      "coordinator": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  assert distributed.settings("host:99", "2", 1, environ=environ) == {
      "coordinator": "host:99", "num_processes": 2, "process_id": 1}
  assert distributed.settings(environ={}) == {
      "coordinator": None, "num_processes": None, "process_id": None}
  assert distributed.settings("[::1]:8476", environ={})["coordinator"] == "[::1]:8476"


@pytest.mark.parametrize("kwargs, environ, message", [
    ({"coordinator": "localhost"}, {}, "coordinator='localhost'; expected HOST:PORT"),
    ({"coordinator": "localhost:99999"}, {}, "coordinator='localhost:99999'"),
    ({}, {"VMAPTUNE_COORDINATOR": ":80"}, "VMAPTUNE_COORDINATOR=':80'"),
    ({"num_processes": "two"}, {}, "num_processes='two'; expected a whole number >= 1"),
    ({"num_processes": 0}, {}, "num_processes=0"),
    ({}, {"VMAPTUNE_NUM_PROCESSES": "2.5"}, "VMAPTUNE_NUM_PROCESSES='2.5'"),
    ({"process_id": -1}, {}, "process_id=-1; expected a whole number >= 0"),
    ({"process_id": True}, {}, "process_id=True"),
    ({"num_processes": 2, "process_id": 2}, {}, "process_id=2 with num_processes=2"),
])
def test_bad_settings_are_refused_naming_the_value(kwargs, environ, message):
  with pytest.raises(distributed.DistributedError, match=message.replace("[", r"\[")):
    distributed.settings(**kwargs, environ=environ)


def test_initialize_without_settings_or_for_one_process_changes_nothing(monkeypatch):
  monkeypatch.setattr(distributed, "_detected_cluster", lambda: None)
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
               distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  single = distributed.Processes(num_processes=1, process_id=0, coordinator=None)
  assert distributed.initialize() == single
  assert distributed.initialize(num_processes=1, process_id=0) == single
  assert not jax.distributed.is_initialized() and single.writes


def test_initialize_refuses_incomplete_settings_and_a_late_call(monkeypatch):
  monkeypatch.setattr(distributed, "_detected_cluster", lambda: None)
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
               distributed.ENV_PROCESS_ID):
    monkeypatch.delenv(name, raising=False)
  with pytest.raises(distributed.DistributedError, match="no --num-processes / "
                     "VMAPTUNE_NUM_PROCESSES, --process-id / VMAPTUNE_PROCESS_ID"):
    distributed.initialize(coordinator="localhost:1234")
  monkeypatch.setenv(distributed.ENV_PROCESS_ID, "1")
  with pytest.raises(distributed.DistributedError, match="no --coordinator"):
    distributed.initialize(num_processes=2)
  jax.numpy.ones(1).block_until_ready()  # JAX has run: too late to join a run.
  with pytest.raises(distributed.DistributedError, match="JAX has already run something"):
    distributed.initialize("localhost:1234", 2, 1)
  assert not jax.distributed.is_initialized()


def test_cli_refuses_a_bad_process_setting_before_running(tmp_path, capsys):
  code = cli.main(["run", os.path.join(ROOT, "experiments", "digits_mlp.py"), "--out",
                   str(tmp_path / "run"), "--no-cache", "--num-processes", "2",
                   "--process-id", "5"])
  assert code == 2
  assert "process_id=5 with num_processes=2" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


# The multi-process helpers, in one process: plain transfers, process 0 writes.

def test_host_transfers_in_one_process_are_plain_device_put_and_asarray():
  mesh = devices.lane_mesh()
  lanes = devices.lane_sharding(mesh)
  values = np.arange(4 * mesh.size, dtype=np.float32)
  put = devices.put({"x": values}, lanes)["x"]
  assert put.sharding == lanes and put.is_fully_addressable
  np.testing.assert_array_equal(devices.to_host(put), values)
  host = devices.to_host({"a": put, "b": np.ones(2)})
  assert isinstance(host["a"], np.ndarray) and host["b"].tolist() == [1.0, 1.0]
  key = devices.put(jax.random.key(3), devices.replicated(mesh))
  assert jax.random.key_data(key).tolist() == jax.random.key_data(jax.random.key(3)).tolist()
  first = devices.first_local_device(mesh)
  assert first == mesh.devices.flat[0]
  assert devices.local(put, first).devices() == {first}


def test_only_the_first_process_writes_and_its_errors_reach_every_process(tmp_path):
  assert distributed.is_first_process()
  run_dir, restored = open_run(tmp_path / "run", {"settings": {}}, resume=False)
  assert run_dir.writes and restored is None
  run_dir.write_summary({"ok": True})
  assert (tmp_path / "run" / "summary.json").exists()
  run_dir.release()  # The run ended: its writer lock is free again.
  (tmp_path / "run" / "trials.jsonl").write_text("")
  with pytest.raises(FileExistsError, match="already holds a run"):
    open_run(tmp_path / "run", {"settings": {}}, resume=False)
  assert distributed.on_first_process(lambda: 7) == 7
  # A directory another process holds is never written (as on processes 1, 2, ...).
  other = RunDirectory(tmp_path / "other")
  other.writes = False
  other.write_summary({"ok": True})
  other.append_round(None)
  assert not (tmp_path / "other" / "summary.json").exists()


def test_experiment_fields_reach_initialize(monkeypatch):
  seen = {}

  def initialize(*args):
    seen["args"] = args
    return distributed.Processes()

  monkeypatch.setattr(distributed, "initialize", initialize)
  experiment = vt.Experiment(model=vt.models.MLP(), data=vt.data.digits,
                             space=vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)),
                             coordinator="h:1", num_processes=2, process_id=1)
  experiment.initialize_processes()
  assert seen["args"] == ("h:1", 2, 1)


# Process 1's clock runs a thousand times fast: on its own it would find a one-hour budget
# spent after a round (or refuse it at the first epoch) while process 0 trains on.
FAST_CLOCK = textwrap.dedent("""
    import os, time
    if os.environ.get("VMAPTUNE_PROCESS_ID") == "1":
      real = time.perf_counter
      time.perf_counter = lambda: 1000 * real()
""")


@pytest.mark.slow  # Two subprocesses.
def test_under_a_budget_every_process_follows_process_0s_plan(tmp_path, experiment_file):
  script = tmp_path / "tune_script.py"
  script.write_text(FAST_CLOCK + SCRIPT)
  procs = _start_processes([sys.executable, str(script), experiment_file, "run",
                            "budget='1h'"], tmp_path)
  _exit_times(procs)
  outputs = [(tmp_path / f"out{i}.txt").read_text() for i in range(2)]
  assert [p.returncode for p in procs] == [0, 0], (tmp_path / "err1.txt").read_text()[-3000:]
  first, second = (json.loads(out.strip().splitlines()[-1]) for out in outputs)
  # The same rounds (as many as the config's, which caps the budget) and the same choice.
  assert len(first["trials"]) == len(second["trials"]) == len(read_trials(tmp_path / "run"))
  assert (second["best"]["round"], second["best"]["trial"]) == \
      (first["best"]["round"], first["best"]["trial"])
  assert second["test_accuracy"] == pytest.approx(first["test_accuracy"], abs=1e-6)
