"""A run directory that a second writer, a damaged file, a failing disk, Ctrl-C or
``kill -9`` cannot corrupt: each is refused or survived, and a resumed run writes
exactly what an uninterrupted run writes (docs/reliability.md)."""

import errno
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.errors import (
  DamagedRunError,
  RunDirectoryBusyError,
  RunDirectoryError,
  RunDirectoryWriteError,
)
from vmaptune.lanes.compilation import CompileCounter
from vmaptune.rundir import interrupts_deferred, write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = dict(population=8, rounds=3, epochs=2, batch_size=32, seed=0, confirm="off")
# Summary fields that measure time, which a resumed run repeats differently.
TIMING = ("wall_s", "compile_s", "trace_s", "compiles", "trials_per_s", "programs_compiled")


def _untimed(summary: dict) -> dict:
  rounds = [{k: v for k, v in r.items() if k not in TIMING} for r in summary["rounds"]]
  untimed = {**{k: v for k, v in summary.items() if k not in TIMING}, "rounds": rounds}
  if summary.get("confirmation"):
    untimed["confirmation"] = {k: v for k, v in summary["confirmation"].items() if k != "wall_s"}
  return untimed


def _summary(path) -> dict:
  return json.loads((path / "summary.json").read_text())


def _files(path) -> dict[str, bytes]:
  """Every file under ``path`` (the writer lock, which names its last holder, aside)."""
  found = {}
  for directory, _, names in os.walk(path):
    for name in names:
      if name != vt.rundir.LOCK_FILE:
        full = os.path.join(directory, name)
        found[os.path.relpath(full, path)] = open(full, "rb").read()
  return found


def _env() -> dict:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
  return {**env, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
  return str(tmp_path_factory.mktemp("compilation-cache"))


@pytest.fixture(autouse=True)
def compilation_cache(cache_dir):
  """Runs of the same config share compiled programs (in this process and in children)."""
  with vt.lanes.compilation.persistent_cache(cache_dir):
    yield


@pytest.fixture(scope="module")
def whole(small_arrays, tmp_path_factory):
  """An uninterrupted 3-round run: the records every damaged, failed or resumed run
  must end up with."""
  out = tmp_path_factory.mktemp("whole") / "run"
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  vt.tune(vt.models.MLP(hidden=(16,)), data, _space(), out=str(out), **SETTINGS)
  return out


def _space() -> vt.Space:
  return vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                  weight_decay=vt.LogUniform(1e-6, 1e-2))


def _tune(out, data, **extra):
  return vt.tune(vt.models.MLP(hidden=(16,)), data, _space(), out=str(out),
                 **{**SETTINGS, **extra})


def _same_as_whole(out, whole, aside: tuple[str, ...] = ()) -> None:
  assert (out / "trials.jsonl").read_bytes() == (whole / "trials.jsonl").read_bytes()
  untimed = lambda path: {k: v for k, v in _untimed(_summary(path)).items() if k not in aside}
  assert untimed(out) == untimed(whole)


# --- Damaged files ---------------------------------------------------------------------------

def _lines(path) -> list[bytes]:
  return (path / "trials.jsonl").read_bytes().splitlines(keepends=True)


def _set_lines(path, lines) -> None:
  (path / "trials.jsonl").write_bytes(b"".join(lines))


def _garbage_line(path):
  lines = _lines(path)
  lines[11] = bytes(random.Random(0).randrange(256) for _ in range(60)) + b"\n"
  _set_lines(path, lines)


def _reorder(path):
  lines = _lines(path)
  random.Random(1).shuffle(lines)
  _set_lines(path, lines)


def _swap_within_round(path):
  lines = _lines(path)
  lines[9], lines[10] = lines[10], lines[9]
  _set_lines(path, lines)


def _rescore(path):
  """Valid JSON, the right counts and order: only replaying the round shows the damage."""
  lines = _lines(path)
  records = [json.loads(line) for line in lines[:8]]
  worst = min(range(8), key=lambda i: records[i]["val_accuracy"] or 0.0)
  records[worst]["val_accuracy"] = 1.0
  lines[worst] = (json.dumps(records[worst]) + "\n").encode()
  _set_lines(path, lines)


def _rescore_with_leftovers(path):
  """A changed score, and what a killed writer leaves: a torn record, new parameters."""
  _rescore(path)
  with open(path / "trials.jsonl", "ab") as f:
    f.write(b'{"round": 3, "tri')
  (path / "best_params.next.msgpack").write_bytes(b"a round that never completed")


def _chosen(path):
  (path / "summary.json").write_text(json.dumps({**_summary(path), "chosen": {"round": "1"}}))


def _summary_entry(path):
  summary = _summary(path)
  summary["rounds"][1]["space"] = 5
  (path / "summary.json").write_text(json.dumps(summary))


def _nested_line(path):
  """Line 12 (round 2) nested 100,000 deep: Python's JSON parser overflows its stack."""
  lines = _lines(path)
  lines[11] = b"[" * 100_000 + b"]" * 100_000 + b"\n"
  _set_lines(path, lines)


DAMAGES = {  # name: (damage, the file named, intact rounds)
    "summary not JSON": (lambda p: (p / "summary.json").write_bytes(b'{"rounds": [{"ro'),
                         "summary.json", 0),
    "summary truncated": (lambda p: (p / "summary.json").write_bytes(
        (p / "summary.json").read_bytes()[:300]), "summary.json", 0),
    "summary entry damaged": (_summary_entry, "summary.json", 1),
    "trials cut to a third": (lambda p: (p / "trials.jsonl").write_bytes(
        (p / "trials.jsonl").read_bytes()[:len((p / "trials.jsonl").read_bytes()) // 3]),
        "trials.jsonl", 1),  # A third of 3 rounds' records: round 1's and a torn line.
    "trials garbage line": (_garbage_line, "trials.jsonl", 1),
    "trials reordered": (_reorder, "trials.jsonl", 0),
    "trials swapped in a round": (_swap_within_round, "trials.jsonl", 1),
    "a score changed": (_rescore_with_leftovers, "trials.jsonl", 0),
    "chosen damaged": (_chosen, "summary.json", 3),
    "params garbage": (lambda p: (p / "best_params.msgpack").write_bytes(b"\x93garbage"),
                       "best_params.msgpack", 3),
    "summary nested deeply": (lambda p: (p / "summary.json").write_bytes(
        b'{"rounds": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "summary.json", 0),
    "trials line nested deeply": (_nested_line, "trials.jsonl", 1),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_a_damaged_file_is_named_and_resume_from_intact_moves_it_aside(
    case, whole, small_data, tmp_path, capsys):
  damage, name, intact = DAMAGES[case]
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  damage(out)
  damaged = _files(out)

  # Resuming is refused: one error naming the file, how many rounds are intact, and
  # what to do; nothing compiles and nothing changes.
  with CompileCounter() as compiled, pytest.raises(DamagedRunError) as error:
    _tune(out, small_data)
  message = str(error.value)
  assert os.path.join(str(out), name) in message and "--resume-from-intact" in message, message
  assert error.value.intact_rounds == intact and error.value.file.endswith(name)
  assert (f"rounds 1-{intact} of 3 are intact" if intact else "no round is intact") in \
      message.lower()
  assert compiled.compiles == 0 and _files(out) == damaged

  # Readers: a clear error (the replay-only damage and the parameters aside, which a
  # reader does not replay or load), never a traceback.
  if case not in ("a score changed", "params garbage"):
    with pytest.raises(DamagedRunError, match=name):
      vt.load_run(out)
    assert main(["show", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmaptune: error: ") and name in err and "Traceback" not in err
  else:
    assert vt.load_run(out).rounds_completed == 3
  assert _files(out) == damaged

  # Resumed from the intact rounds: the damaged files are kept aside, byte for byte,
  # and the run ends with the records of the uninterrupted run.
  with pytest.warns(RuntimeWarning, match=f"from its {intact} intact rounds"):
    resumed = _tune(out, small_data, resume_from_intact=True)
  if case == "params garbage":  # Every round restored: nothing trained that could save them.
    assert _summary(out)["best_params"] is None
    _same_as_whole(out, whole, aside=("best_params",))
  else:
    _same_as_whole(out, whole)
  aside = [d for d in os.listdir(out / "damaged")]
  assert len(aside) == 1
  kept = _files(out / "damaged" / aside[0])
  assert kept[name] == damaged[name]
  assert resumed.best.to_record() == vt.load_run(whole).chosen
  resumed.final_fit()
  assert vt.load_run(out).params_trial["from"] == "final_fit"


def test_a_damaged_config_is_refused_even_with_resume_from_intact(whole, small_data, tmp_path):
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  (out / "config.json").write_text('{"format": 2, "settings": [')
  damaged = _files(out)
  for flag in (False, True):
    with pytest.raises(DamagedRunError, match="config.json is not valid JSON") as error:
      _tune(out, small_data, resume_from_intact=flag)
    assert "restore it from a copy" in str(error.value)
  with pytest.raises(DamagedRunError, match="config.json"):
    vt.load_run(out)
  assert _files(out) == damaged


# --- One writer ------------------------------------------------------------------------------

# Runs the config into a directory, says so once round 1 is committed, then waits:
# meanwhile the directory is read, and a second writer tries it.
PAUSED_SCRIPT = textwrap.dedent("""
    import sys, time
    import vmaptune as vt

    def on_round(result):
      if result.index == 0:
        open(sys.argv[3], "w").close()
        time.sleep(600)

    vt.override(vt.load_experiment(sys.argv[1]), ["rounds=3", "confirm=off"]).tune(
        out=sys.argv[2], on_round=on_round)
""")


@pytest.mark.slow  # A subprocess.
def test_while_a_run_writes_readers_see_its_completed_rounds_and_a_second_writer_is_refused(
    experiment_file, tmp_path, capsys):
  (tmp_path / "paused.py").write_text(PAUSED_SCRIPT)
  out, marker = tmp_path / "run", tmp_path / "round-1-committed"
  child = subprocess.Popen([sys.executable, str(tmp_path / "paused.py"), experiment_file,
                            str(out), str(marker)], env=_env(), cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "err.txt", "w"))
  experiment = vt.override(vt.load_experiment(experiment_file), ["rounds=3", "confirm=off"])
  try:
    deadline = time.monotonic() + 240
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
    assert marker.exists(), (tmp_path / "err.txt").read_text()[-3000:]
    # A reader: the completed round only, while the writer holds the lock.
    run = vt.load_run(out)
    assert run.rounds_completed == 1 and len(run.records) == 8 and not run.complete
    assert vt.load_best_params(out) is not None  # The best model so far is on disk.
    assert main(["show", str(out)]) == 0 and "1 of 3 rounds" in capsys.readouterr().out
    # A second writer: refused at once, naming the holder; nothing changes.
    before = _files(out)
    holder = f"process {child.pid} on {socket.gethostname()}"
    with CompileCounter() as compiled, pytest.raises(RunDirectoryBusyError) as error:
      experiment.tune(out=str(out))
    assert holder in str(error.value) and compiled.compiles == 0
    assert error.value.holder["pid"] == child.pid
    assert main(["run", experiment_file, "--no-cache", "--out", str(out), "--set", "rounds=3",
                 "confirm=off"]) == 2
    assert holder in capsys.readouterr().err
    assert _files(out) == before
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  # The operating system released the lock with the process: the run resumes.
  resumed = experiment.tune(out=str(out))
  assert len(resumed.rounds) == 3 and len(vt.load_run(out).records) == 24


@pytest.mark.slow  # Two subprocesses.
def test_two_commands_on_one_directory_one_runs_the_other_is_refused(experiment_file, tmp_path):
  """The everyday mistake: the same job started twice, a second apart."""
  out = tmp_path / "run"
  command = [sys.executable, "-m", "vmaptune.cli", "run", experiment_file, "--out", str(out),
             "--quiet", "--no-cache", "--set", "rounds=3", "epochs=10", "confirm=off"]
  first = subprocess.Popen(command, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  # The second starts once the first holds the lock (its name in .lock), and the first is
  # held still (SIGSTOP) until the second has tried: whatever the machine's load, neither
  # starting first nor finishing first decides the outcome.
  lock = out / ".lock"
  deadline = time.monotonic() + 120
  while not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
    assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
    time.sleep(0.05)
  first.send_signal(signal.SIGSTOP)
  try:
    second = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=240)
  finally:
    first.send_signal(signal.SIGCONT)
  first_out, first_err = first.communicate(timeout=240)
  assert first.returncode == 0, first_err[-3000:]
  assert second.returncode == 2, second.stderr[-3000:]
  assert f"is being written by process {first.pid} on " in second.stderr
  assert "Traceback" not in second.stderr
  run = vt.load_run(out)
  assert run.complete and len(vt.read_trials(out)) == 3 * 8  # Every trial once.
  assert [r["trial"] for r in run.records] == list(range(8)) * 3


def test_a_final_fit_holds_the_directory_and_refuses_one_another_run_changed(
    whole, small_data, tmp_path):
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  stale = _tune(out, small_data)  # The finished search, restored.
  extended = _tune(out, small_data, rounds=4)  # Meanwhile, another run extends it.
  before = _files(out)
  with CompileCounter() as compiled, pytest.raises(vt.RunDirectoryError,
                                                   match="changed since this search ended"):
    stale.final_fit()
  assert compiled.compiles == 0 and _files(out) == before  # Nothing trained, nothing written.
  # While a final fit trains and saves, the directory is held.
  seen = {}
  engine = extended._search.engine
  refit = engine.refit

  def refit_and_try(trial, schedule, **how):
    with pytest.raises(RunDirectoryBusyError) as busy:
      _tune(out, small_data, rounds=4)
    seen["holder"] = busy.value.holder
    return refit(trial, schedule, **how)

  engine.refit = refit_and_try
  extended.final_fit()
  assert seen["holder"]["pid"] == os.getpid()
  assert vt.load_run(out).params_trial["from"] == "final_fit"


def test_a_reader_of_an_earlier_moment_still_loads_the_best_parameters(
    whole, small_data, tmp_path):
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  earlier = vt.load_run(out)
  result = _tune(out, small_data)
  result.final_fit()  # Replaces the parameters the earlier view's summary points to.
  params = earlier.best_params(vt.models.MLP(hidden=(16,)))  # Read again, not refused.
  saved = vt.load_best_params(out)
  assert jax_equal(params, saved)


def jax_equal(a, b) -> bool:
  import jax
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                  strict=True))


def test_the_lock_takes_a_writable_descriptor_where_needed_and_runs_without_one_where_none(
    tmp_path, monkeypatch):
  from vmaptune.rundir import lock as lock_module
  real_flock = lock_module.fcntl.flock
  calls = []

  def nfs_flock(fd, operation):  # NFSv4: exclusive locks only on files open for writing.
    calls.append(_writable(fd))
    if not _writable(fd):
      raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    return real_flock(fd, operation)

  monkeypatch.setattr(lock_module.fcntl, "flock", nfs_flock)
  held = vt.rundir.WriterLock(str(tmp_path / "nfs"))
  assert held.held and calls == [False, True]
  with pytest.raises(RunDirectoryBusyError):
    vt.rundir.WriterLock(str(tmp_path / "nfs"))
  assert calls == [False, True, False, True]
  held.release()

  def no_locks(fd, operation):  # Lustre without -o flock, some FUSE mounts.
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

  monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
  with pytest.warns(RuntimeWarning, match="without flock"):
    unlocked = vt.rundir.WriterLock(str(tmp_path / "lustre"))
  unlocked.release()


def _writable(fd: int) -> bool:
  import fcntl
  return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY


def test_temporary_files_have_names_of_their_own_and_a_killed_writers_are_removed(
    whole, small_data, tmp_path):
  target = tmp_path / "file.json"
  seen = set()
  real_replace = os.replace

  def replace(src, dst):
    seen.add(os.path.basename(src))
    real_replace(src, dst)

  os.replace = replace
  try:
    for _ in range(3):
      write_atomic(target, b"{}")
  finally:
    os.replace = real_replace
  assert len(seen) == 3 and all(f".file.json.{os.getpid()}." in name for name in seen)
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  (out / ".summary.json.123.deadbeef.tmp").write_text("{torn")
  (out / "best_params.next.msgpack").write_bytes(b"a round that never completed")
  _tune(out, small_data)  # Resumes the finished run: the leftovers are gone.
  assert not (out / ".summary.json.123.deadbeef.tmp").exists()
  assert not (out / "best_params.next.msgpack").exists()
  assert _files(out) == _files(whole)


# --- Links and folders that are not run directories -----------------------------------------

def _plant_link(kind: str, target, link) -> None:
  """``link`` as a symbolic link to ``target``, or as another hard link of it."""
  if kind == "symbolic":
    os.symlink(target, link)
  else:
    os.link(target, link)


@pytest.mark.parametrize("kind", ["symbolic", "hard"])
def test_a_planted_lock_link_is_refused_and_what_it_points_to_is_untouched(
    kind, small_data, tmp_path):
  """The issue's case: ``.lock -> ~/.bashrc`` was opened, emptied and rewritten."""
  victim = tmp_path / "bashrc"
  victim.write_text("export PATH=precious\n")
  out = tmp_path / "run"
  out.mkdir()
  _plant_link(kind, victim, out / ".lock")
  with CompileCounter() as compiled, pytest.raises(RunDirectoryError) as error:
    _tune(out, small_data)
  message = str(error.value)
  what = "is a symbolic link" if kind == "symbolic" else "has 2 hard links"
  assert f"{out / '.lock'} {what}" in message and "nothing was written" in message, message
  assert compiled.compiles == 0
  assert victim.read_text() == "export PATH=precious\n"
  assert sorted(os.listdir(out)) == [".lock"]


@pytest.mark.parametrize("kind", ["hard (cp -al)", "symbolic"])
def test_records_shared_through_a_link_are_refused_before_anything_changes(
    kind, whole, small_data, tmp_path):
  """A copy made with ``cp -al`` shares ``trials.jsonl`` with the original: resuming the
  copy appended to (and cut back) the original's records."""
  original, copy = tmp_path / "original", tmp_path / "copy"
  shutil.copytree(whole, original)
  if kind.startswith("hard"):
    shutil.copytree(original, copy, copy_function=os.link)  # What cp -al makes.
  else:
    shutil.copytree(original, copy)
    (copy / "trials.jsonl").unlink()
    os.symlink(original / "trials.jsonl", copy / "trials.jsonl")
  before = _files(original)
  # The lock is shared too (its holder's name is written in place): named first. Without
  # it (removed, as someone might to get past it), the records are.
  named = [".lock", "trials.jsonl"] if kind.startswith("hard") else ["trials.jsonl"]
  for name in named:
    with CompileCounter() as compiled, pytest.raises(RunDirectoryError) as error:
      _tune(copy, small_data, rounds=4)  # One more round: its records would be appended.
    message = str(error.value)
    assert message.startswith(str(copy / name)) and "cp -al" in message, message
    assert compiled.compiles == 0 and _files(original) == before
    if name == ".lock":
      (copy / ".lock").unlink()


def test_a_link_planted_while_a_run_writes_is_not_appended_through(small_data, tmp_path):
  out, victim = tmp_path / "run", tmp_path / "elsewhere.jsonl"

  def plant(result):  # After round 1's commit: its records swapped for a link.
    if result.index == 0:
      shutil.copy(out / "trials.jsonl", victim)
      (out / "trials.jsonl").unlink()
      os.symlink(victim, out / "trials.jsonl")

  with pytest.raises(RunDirectoryError, match="trials.jsonl is a symbolic link"):
    _tune(out, small_data, rounds=2, on_round=plant)
  assert len(victim.read_bytes().splitlines()) == 8  # Round 1's records only.


def test_a_folder_that_holds_other_files_but_no_run_is_refused_untouched(small_data, tmp_path):
  """The issue's case: ``--out .`` in a project replaced its config.py and removed its
  ``.*.tmp`` files. The command's own case is in test_cli.py."""
  project = tmp_path / "project"
  (project / "data").mkdir(parents=True)
  for name in ("config.py", ".draft.tmp", "a.txt", "b.txt", "c.txt", "d.txt"):
    (project / name).write_text(name)
  before = _files(project)
  with CompileCounter() as compiled, pytest.raises(RunDirectoryError) as error:
    _tune(project, small_data)
  assert str(error.value).startswith(
      f"{os.path.abspath(project)} is not empty and holds no run (it holds .draft.tmp, "
      "a.txt, b.txt, c.txt, config.py and 2 more)"), error.value
  assert compiled.compiles == 0 and _files(project) == before
  assert sorted(os.listdir(project)) == sorted(before) + ["data"]  # No lock file made.
  # Empty, or holding only what a writer killed before its first write left: a new run.
  for leftovers in ([], [".lock", ".config.json.123.deadbeef.tmp"]):
    fresh = tmp_path / f"fresh{len(leftovers)}"
    fresh.mkdir()
    for name in leftovers:
      (fresh / name).write_text("")
    run_dir, restored = vt.rundir.open_run(str(fresh), {"settings": {}})
    run_dir.release()
    assert restored is None and sorted(os.listdir(fresh)) == [".lock", "config.json"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names descriptors by /proc")
def test_damaged_files_copied_aside_are_on_disk_before_they_are_rewritten(
    whole, small_data, tmp_path, monkeypatch):
  """``--resume-from-intact``: after a power cut at any moment the damaged files are
  still on disk, aside or in place (every fsync is recorded with what it forced)."""
  out = tmp_path / "run"
  shutil.copytree(whole, out)
  _garbage_line(out)  # Round 2's records damaged: round 1 is intact.
  synced, real_fsync = [], os.fsync

  def fsync(fd):
    synced.append(os.readlink(f"/proc/self/fd/{fd}"))
    return real_fsync(fd)

  monkeypatch.setattr(os, "fsync", fsync)
  with pytest.warns(RuntimeWarning, match="from its 1 intact rounds"):
    _tune(out, small_data, resume_from_intact=True)
  (aside,) = (out / "damaged").iterdir()
  rewrite = next(i for i, path in enumerate(synced)
                 if os.path.basename(path).startswith(".trials.jsonl."))
  forced = set(synced[:rewrite])
  for needed in (aside / "trials.jsonl", aside / "summary.json", aside, out / "damaged", out):
    assert str(needed) in forced, (needed, synced[:rewrite + 1])


# --- Faults ----------------------------------------------------------------------------------

@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_failing_write_stops_the_run_and_keeps_every_completed_round(
    failing, whole, small_data, tmp_path, monkeypatch):
  """The ``failing``-th file forced to disk after round 1 fails with ENOSPC (the
  records' append, the parameters or the summary, whichever comes then)."""
  out = tmp_path / "run"
  calls = {"count": None}
  real_fsync = os.fsync

  def fsync(fd):
    if calls["count"] is not None and stat.S_ISREG(os.fstat(fd).st_mode):
      calls["count"] += 1
      if calls["count"] == failing:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

  def on_round(result):
    if result.index == 0:
      calls["count"] = 0

  monkeypatch.setattr(os, "fsync", fsync)
  with pytest.raises(RunDirectoryWriteError) as error:
    _tune(out, small_data, on_round=on_round)
  message = str(error.value)
  on_disk = len(error.value.partial.rounds)
  assert "No space left on device" in message and f"rounds 1-{on_disk} are on disk" in message
  assert f"could not write {out}" in message and on_disk in (1, 2)
  monkeypatch.setattr(os, "fsync", real_fsync)
  run = vt.load_run(out)  # Consistent: the committed rounds (a torn append cut back).
  assert run.rounds_completed == on_disk and len(run.records) == 8 * on_disk
  assert vt.load_best_params(out) is not None
  _tune(out, small_data)
  _same_as_whole(out, whole)


def _mount_tmpfs(path) -> bool:
  os.makedirs(path, exist_ok=True)
  if shutil.which("mount") is None:
    return False
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)],
                        capture_output=True)
  return done.returncode == 0


@pytest.mark.parametrize("fault", ["full disk", "read-only"])
def test_a_real_full_or_read_only_file_system_stops_the_run_with_rounds_kept(
    fault, whole, small_data, tmp_path):
  """A tmpfs of its own, filled up or remounted read-only after round 1 (needs the
  right to mount: root, as in this project's CI; skipped elsewhere)."""
  mount = tmp_path / "disk"
  if not _mount_tmpfs(mount):
    pytest.skip("cannot mount a tmpfs here (not root)")
  try:
    out = mount / "run"

    def on_round(result):
      if result.index != 0:
        return
      if fault == "full disk":
        with open(mount / "filler", "wb") as f:
          try:
            while True:
              f.write(b"\0" * 65536)
              f.flush()
          except OSError:
            pass
      else:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)

    with pytest.raises(RunDirectoryWriteError) as error:
      _tune(out, small_data, on_round=on_round)
    code = errno.ENOSPC if fault == "full disk" else errno.EROFS
    assert f"(errno {code})" in str(error.value) and "rounds 1-1 are on disk" in str(error.value)
    assert vt.load_run(out).rounds_completed == 1
    if fault == "full disk":
      os.unlink(mount / "filler")
    else:
      subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)
    _tune(out, small_data)
    _same_as_whole(out, whole)
  finally:
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_directory_that_cannot_be_written_is_refused_before_compiling(small_data, tmp_path):
  (tmp_path / "a-file").write_text("")
  with CompileCounter() as compiled, pytest.raises(RunDirectoryWriteError,
                                                   match="cannot write the run directory"):
    _tune(tmp_path / "a-file" / "run", small_data)
  assert compiled.compiles == 0


# --- Ctrl-C ----------------------------------------------------------------------------------

# The command, with SIGINT raising KeyboardInterrupt as in an interactive shell: a background
# job (CI started with `&`) inherits SIGINT ignored, and Python then installs no handler.
_CLI_WITH_SIGINT = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "from vmaptune.cli import main; sys.exit(main(sys.argv[1:]))")


def test_ctrl_c_waits_for_the_write_in_progress():
  done = []
  before = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(KeyboardInterrupt):
      with interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("written")  # Reached: the interrupt waited for the block.
    assert done == ["written"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, before)


@pytest.mark.slow  # A subprocess.
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(experiment_file, tmp_path):
  out = tmp_path / "run"
  sets = ["rounds=4", "epochs=20", "confirm=off"]  # Rounds long enough to be stopped in.
  child = subprocess.Popen([sys.executable, "-c", _CLI_WITH_SIGINT, "run", experiment_file,
                            "--out", str(out), "--quiet", "--set", *sets], env=_env(),
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
  deadline = time.monotonic() + 240
  while child.poll() is None and time.monotonic() < deadline:
    if (out / "summary.json").exists() and _summary(out)["rounds"]:
      break
    time.sleep(0.005)
  child.send_signal(signal.SIGINT)
  _, err = child.communicate(timeout=120)
  assert child.returncode == 130, err[-3000:]
  experiment = vt.override(vt.load_experiment(experiment_file), sets)
  whole = experiment.tune(out=str(tmp_path / "whole"))  # The uninterrupted run.
  assert "Traceback" not in err
  done = vt.load_run(out).rounds_completed
  assert 1 <= done < 4
  assert f"vmaptune: interrupted: rounds 1-{done} of 4 are recorded in {out}" in err
  resume = err.split("Resume with:\n  ")[1].strip()
  assert resume == f"vmaptune run {experiment_file} --out {out} --set {' '.join(sets)}"
  assert main(resume.split()[1:] + ["--quiet", "--no-cache"]) == 0
  assert (out / "trials.jsonl").read_bytes() == (tmp_path / "whole" / "trials.jsonl").read_bytes()
  assert vt.load_run(out).chosen == whole.best.to_record()


# --- kill -9 at random moments ---------------------------------------------------------------

def kill_at_random_moments(experiment_file, tmp_path, kills: int, seed: int = 0,
                           epochs: int = 30) -> dict:
  """Starts the command again and again, killing it with SIGKILL at a random moment
  of a run's duration (half of them while its rounds are committed) ``kills`` times, and
  checks the directory after each kill (it reads back; the best parameters so far
  load). When a run finishes, its directory must equal the uninterrupted run's, and
  the next kills go to a new one. Returns what happened."""
  rng = np.random.default_rng(seed)
  sets = ["rounds=6", f"epochs={epochs}", "confirm=2x2"]
  cache = str(tmp_path / "cache")
  command = lambda out: [sys.executable, "-m", "vmaptune.cli", "run", experiment_file,
                         "--out", str(out), "--quiet", "--cache-dir", cache, "--set", *sets]

  def run(out, timeout: float | None = None) -> bool:
    """Runs the command into ``out``; kills it after ``timeout`` s. Whether it was killed."""
    child = subprocess.Popen(command(out), env=_env(), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
      child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      child.send_signal(signal.SIGKILL)
      child.wait()
      return True
    assert child.returncode == 0, child.stderr.read()[-3000:]
    return False

  def same_as_whole(out) -> None:  # Exactly what the uninterrupted run wrote.
    assert (out / "trials.jsonl").read_bytes() == (whole / "trials.jsonl").read_bytes()
    assert _untimed(_summary(out)) == _untimed(_summary(whole))
    assert (out / "best_params.msgpack").read_bytes() == \
        (whole / "best_params.msgpack").read_bytes()

  whole = tmp_path / "whole"
  run(whole)  # The uninterrupted run (it also fills the compilation cache).
  # A run with its programs cached, as the resumed ones: when its rounds start to be
  # committed, when the last is, and when it ends.
  warm, start = tmp_path / "warm", time.monotonic()
  child = subprocess.Popen(command(warm), env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  first_s = last_s = None
  while child.poll() is None:
    if last_s is None and (warm / "summary.json").exists():
      first_s = first_s or time.monotonic() - start
      if len(_summary(warm)["rounds"]) == 6:  # Replaced whole (atomically): never half read.
        last_s = time.monotonic() - start
    time.sleep(0.005)
  whole_s = time.monotonic() - start
  first_s = min(first_s or whole_s, whole_s)
  last_s = min(max(last_s or whole_s, first_s), whole_s)
  happened, runs, finished = [], 0, 0
  out = tmp_path / "run-0"
  while len(happened) < kills:
    # Half while rounds are committed, a quarter in the confirmation and the final fit
    # after them, a quarter anywhere (start-up included).
    draw = rng.random()
    low, high = ((0.0, whole_s) if draw < 0.25 else (max(first_s - 0.3, 0.0), last_s)
                 if draw < 0.75 else (last_s, whole_s))
    if run(out, timeout=float(rng.uniform(low, high))):
      state = -1  # Killed before it wrote its config.
      if (out / "config.json").exists():
        done = vt.load_run(out)  # Never damaged, whatever the moment.
        state = done.rounds_completed + bool(done.summary and done.summary.get(
            "confirmation")) + (done.final_fit is not None)
        if done.rounds_completed:
          assert vt.load_best_params(out) is not None  # The best model so far is never lost.
      happened.append(state)
      continue
    finished += 1
    same_as_whole(out)
    runs += 1
    out = tmp_path / f"run-{runs}"
  run(out)  # The last one, killed or not begun, resumed to its end too.
  same_as_whole(out)
  finished += 1
  return {"stages_done_at_each_kill": happened, "runs_resumed_to_the_end": finished,
          "whole_run_s": round(whole_s, 2), "first_round_committed_s": round(first_s, 2),
          "last_round_committed_s": round(last_s, 2)}


@pytest.mark.slow  # Subprocesses.
def test_kill_9_at_random_moments_resumes_into_the_uninterrupted_run(experiment_file, tmp_path):
  happened = kill_at_random_moments(experiment_file, tmp_path, kills=3)
  assert len(happened["stages_done_at_each_kill"]) == 3
  assert happened["runs_resumed_to_the_end"] >= 1


@pytest.mark.soak  # 20 kills, minutes: python -m pytest -m soak
def test_kill_9_twenty_times_resumes_into_the_uninterrupted_run(experiment_file, tmp_path):
  # Rounds of 200 epochs (about 0.3 s each here), so that kills land between them too.
  happened = kill_at_random_moments(experiment_file, tmp_path, kills=20, seed=1, epochs=200)
  print(json.dumps(happened))
  stages = happened["stages_done_at_each_kill"]
  assert len(stages) == 20 and len(set(stages)) >= 4  # Kills at several stages of a run.
  assert sum(1 <= s <= 5 for s in stages) >= 3  # Some between rounds.
  assert happened["runs_resumed_to_the_end"] >= 1
