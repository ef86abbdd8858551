"""The run directory read as untrusted input (vmaptune/rundir/reading.py): a value nested
deeper, a line longer or a file larger than any run writes is damage named by file and
line, found without holding the whole of it in memory; ``vmaptune show`` says so without
a traceback."""

import json
import os
import re
import tracemalloc

import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.errors import DamagedRunError
from vmaptune.rundir.reading import MAX_DEPTH, MAX_FILE_BYTES, MAX_LINE_BYTES, parse_json

NESTED = b"[" * 100_000 + b"]" * 100_000  # Python's JSON parser overflows its stack on it.


def _peak_bytes(function, *args) -> tuple[Exception, int]:
  """The error ``function(*args)`` raises, and the most memory Python held meanwhile."""
  tracemalloc.start()
  try:
    with pytest.raises(Exception) as error:
      function(*args)
    peak = tracemalloc.get_traced_memory()[1]
    print(f"{getattr(function, '__name__', function)}: peak {peak / 2**20:.2f} MiB")  # -s shows it.
    return error.value, peak
  finally:
    tracemalloc.stop()


def _replace_line(path: str, number: int, line: bytes) -> None:
  trials = os.path.join(path, "trials.jsonl")
  with open(trials, "rb") as f:
    lines = f.readlines()
  lines[number - 1] = line
  with open(trials, "wb") as f:
    f.writelines(lines)


def _refused_by_every_reader(path: str, file: str, what: str, capsys) -> None:
  """``load_run`` and ``vmaptune show`` refuse ``path``, naming ``file`` and ``what``."""
  with pytest.raises(DamagedRunError) as error:
    vt.load_run(path)
  assert error.value.file == os.path.join(path, file)
  assert f"{os.path.join(path, file)}{what}" in str(error.value), str(error.value)
  assert main(["show", path]) == 2
  err = capsys.readouterr().err
  assert err.startswith("vmaptune: error: ") and what in err and "Traceback" not in err


def test_values_nested_deeper_than_any_run_writes_are_damage_naming_file_and_line(
    synthetic_run, capsys):
  # Each raised RecursionError before: a traceback from `vmaptune show`.
  deep = ": line 3 is nested deeper than 64 levels, deeper than anything a run writes"
  _replace_line(synthetic_run, 3, NESTED + b"\n")
  _refused_by_every_reader(synthetic_run, "trials.jsonl", deep, capsys)
  with pytest.raises(DamagedRunError, match=deep):
    vt.read_trials(synthetic_run)
  summary = os.path.join(synthetic_run, "summary.json")
  with open(summary, "wb") as f:
    f.write(b'{"rounds": ' + NESTED + b"}")
  _refused_by_every_reader(synthetic_run, "summary.json", " is nested deeper than 64 levels",
                           capsys)
  with open(os.path.join(synthetic_run, "config.json"), "wb") as f:
    f.write(NESTED)
  with pytest.raises(DamagedRunError, match="config.json is nested deeper than 64 levels"):
    vt.load_run(synthetic_run)


def test_the_depth_bound_is_exact_and_walked_without_recursion():
  nested = lambda depth: "[" * depth + "]" * depth
  assert parse_json(nested(MAX_DEPTH).encode()) == (json.loads(nested(MAX_DEPTH)), None)
  assert parse_json(nested(MAX_DEPTH + 1).encode())[1].startswith("is nested deeper than 64")
  objects = '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
  assert parse_json(objects.encode())[1].startswith("is nested deeper")
  # Deep enough to parse, too deep to walk recursively: refused all the same.
  assert parse_json(nested(900).encode())[1].startswith("is nested deeper")


def test_a_line_longer_than_any_record_is_refused_naming_it_without_being_read_whole(
    synthetic_run):
  # Line 5 is 96 MiB of zeros (a sparse file: nothing written to disk). Read whole, as
  # readlines() did, it cost 96 MiB and more; refused, it costs the 64 MiB cap.
  trials = os.path.join(synthetic_run, "trials.jsonl")
  with open(trials, "rb") as f:
    lines = f.readlines()
  with open(trials, "wb") as f:
    f.writelines(lines[:4])
    f.truncate(f.tell() + (96 << 20))
    f.seek(0, os.SEEK_END)
    f.writelines([b"\n", *lines[5:]])
  long = ": line 5 is longer than 64 MiB, longer than any record (it was not read whole)"
  error, peak = _peak_bytes(vt.load_run, synthetic_run)
  assert isinstance(error, DamagedRunError) and long in str(error)
  assert peak < MAX_LINE_BYTES + (4 << 20), peak
  with pytest.raises(DamagedRunError, match=re.escape(long)):
    vt.read_trials(synthetic_run)


def test_a_summary_larger_than_any_run_writes_is_refused_unread(synthetic_run):
  summary = os.path.join(synthetic_run, "summary.json")
  os.truncate(summary, MAX_FILE_BYTES + 1)  # Sparse: a summary padded with zeros.
  error, peak = _peak_bytes(vt.load_run, synthetic_run)
  assert isinstance(error, DamagedRunError) and error.file == summary
  assert f"{summary} is larger than 256 MiB, larger than any run writes (it was not read " \
      "whole)" in str(error)
  assert peak < 4 << 20, peak


def test_parameters_that_are_not_the_ones_pointed_to_are_refused_without_being_held(
    synthetic_run):
  summary = os.path.join(synthetic_run, "summary.json")
  with open(summary) as f:
    value = json.load(f)
  value["best_params"] = {"from": "search", "round": 0, "trial": 0, "hparams": {},
                          "sha256": "0" * 64}
  with open(summary, "w") as f:
    json.dump(value, f)
  params = os.path.join(synthetic_run, "best_params.msgpack")
  with open(params, "wb") as f:
    f.truncate(128 << 20)  # Sparse: 128 MiB of zeros, not what the summary points to.
  run = vt.load_run(synthetic_run)
  error, peak = _peak_bytes(run.best_params)
  assert isinstance(error, DamagedRunError)
  assert "best_params.msgpack is not the file summary.json points to" in str(error)
  assert peak < 4 << 20, peak


@pytest.mark.parametrize("field, value", [("space", 5), ("wall_s", "1.0"), ("error", 3),
                                          ("lane_epochs", 1.5), ("settings", [])])
def test_every_field_of_the_summary_is_checked_before_the_run_is_read(synthetic_run, field,
                                                                      value, capsys):
  # Found by the fuzzer: load_run accepted these, then Run.summary_record (vmaptune show,
  # params_trial, best_params) raised a RecordError.
  summary = os.path.join(synthetic_run, "summary.json")
  with open(summary) as f:
    content = json.load(f)
  with open(summary, "w") as f:
    json.dump({**content, field: value}, f)
  _refused_by_every_reader(synthetic_run, "summary.json", f" is damaged: {field!r} is ", capsys)
