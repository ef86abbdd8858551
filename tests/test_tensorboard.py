"""The TensorBoard tracker: a run exported, then read back from its event files as
TensorBoard reads them (event accumulator, the HParams plugin's own handlers)."""

import importlib.util
import os
import re
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

import vmaptune as vt
from vmaptune.errors import SettingsError
from vmaptune.reporting.tracking import export, make

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="the tensorboard extra is not installed")
SPACE = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0), weight_decay=vt.LogUniform(1e-6, 1e-2))


def tracker(logdir):
  from vmaptune.reporting.tracking.tensorboard_tracker import TensorBoardTracker

  return TensorBoardTracker(logdir=str(logdir))


def read(directory):
  """Every event of one TensorBoard run directory (its subdirectories are other runs)."""
  from tensorboard.backend.event_processing import event_accumulator as ea

  accumulator = ea.EventAccumulator(str(directory), size_guidance={
      ea.SCALARS: 0, ea.TENSORS: 0, ea.IMAGES: 0})
  return accumulator.Reload()


def hparams_content(accumulator, parse):
  from tensorboard.plugins.hparams import metadata

  tag = {"experiment": metadata.EXPERIMENT_TAG, "start": metadata.SESSION_START_INFO_TAG,
         "end": metadata.SESSION_END_INFO_TAG}[parse]
  content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[tag]
  return {"experiment": metadata.parse_experiment_plugin_data,
          "start": metadata.parse_session_start_info_plugin_data,
          "end": metadata.parse_session_end_info_plugin_data}[parse](content)


def session_hparams(accumulator):
  """``{name: value}`` of a session's start: floats and strings."""
  start = hparams_content(accumulator, "start")
  return {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def scalars(accumulator, tag):
  return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def snapshot(directory):
  """Every file under ``directory`` with its size and modification time."""
  found = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      found[os.path.relpath(path, directory)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
  return found


@pytest.fixture(scope="module")
def exported(small_arrays, tmp_path_factory):
  """A small real run (confirmed and fitted) exported: ``(run, run_dir of TensorBoard)``."""
  pytest.importorskip("tensorboard")
  out = tmp_path_factory.mktemp("tb") / "digits"
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  vt.tune(vt.models.MLP(hidden=(16,)), data, SPACE, out=str(out), population=8, rounds=2,
          epochs=2, batch_size=32, seed=0, confirm="2x2").final_fit()
  run = vt.load_run(out)
  logdir = out.parent / "logdir"
  export(run, tracker(logdir))
  (run_dir,) = logdir.iterdir()
  return run, run_dir


@needs_tensorboard
def test_one_session_per_trial_holds_its_record(exported):
  from tensorboard.plugins.hparams import api_pb2

  run, run_dir = exported
  sessions = {p.name for p in run_dir.iterdir() if p.is_dir()}
  assert sessions == {f"r{r['round'] + 1}-t{r['trial']}" for r in run.records}
  assert len(sessions) == len(run.records) == 16
  for record in run.records:
    name = f"r{record['round'] + 1}-t{record['trial']}"
    session = read(run_dir / name)
    assert session_hparams(session) == pytest.approx(
        {k: float(v) for k, v in record["hparams"].items()}, rel=1e-12)
    assert hparams_content(session, "start").group_name == name  # Its own row.
    assert hparams_content(session, "end").status == api_pb2.STATUS_SUCCESS
    last = record["start_epoch"] + record["epochs"] - 1
    for tag in ("val_accuracy", "val_loss"):
      assert scalars(session, tag) == [(last, pytest.approx(record[tag], rel=1e-6))]
    assert scalars(session, "train/epoch_loss") == [
        (record["start_epoch"] + i, pytest.approx(loss, rel=1e-6))
        for i, loss in enumerate(record["epoch_loss"])]


@needs_tensorboard
def test_the_experiment_lists_hparams_metrics_rounds_and_the_final_fit(exported):
  run, run_dir = exported
  top = read(run_dir)
  experiment = hparams_content(top, "experiment")
  domains = {info.name: (info.domain_interval.min_value, info.domain_interval.max_value)
             for info in experiment.hparam_infos}
  space = run.config["space"]
  assert domains == {name: (spec["low"], spec["high"]) for name, spec in space.items()}
  assert {"val_accuracy", "val_loss"} <= {info.name.tag for info in experiment.metric_infos}
  for key in ("best_val_accuracy", "median_val_accuracy"):
    assert scalars(top, f"round/{key}") == [
        (i, pytest.approx(run.round_entry(i)[key], rel=1e-6)) for i in range(2)]
  final, confirmation = run.summary["final_fit"], run.summary["confirmation"]
  # At step = the rounds completed when they were told (a later choice comes after).
  assert scalars(top, "final/test_accuracy") == [(2, pytest.approx(final["test_accuracy"]))]
  assert scalars(top, "confirmation/mean") == [(2, pytest.approx(confirmation["mean"]))]
  assert scalars(top, "chosen/val_accuracy") == [
      (2, pytest.approx(run.summary["chosen"]["val_accuracy"]))]
  assert "run/config" in top.Tags()["tensors"]


@needs_tensorboard
def test_exporting_or_logging_again_adds_nothing(exported):
  run, run_dir = exported
  before = snapshot(run_dir)
  export(run, tracker(run_dir.parent))
  assert snapshot(run_dir) == before
  # A resumed live run tells its rounds again, and finish comes twice (before and after the
  # final fit).
  live = tracker(run_dir.parent)
  live.start(run.config, key=os.path.abspath(run.path))
  for _ in range(2):
    live.log_round(run.round_entry(0), [r for r in run.records if r["round"] == 0])
    live.finish(run.summary)
  live.close()
  assert snapshot(run_dir) == before


@needs_tensorboard
def test_tensorboards_hparams_plugin_reads_every_session(exported):
  from tensorboard import context
  from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

  run, run_dir = exported
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(run_dir))
  multiplexer.Reload()
  plugin = backend_context.Context(base_plugin.TBContext(
      logdir=str(run_dir), multiplexer=multiplexer,
      data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(run_dir))))
  request = api_pb2.ListSessionGroupsRequest(
      start_index=0, slice_size=100, aggregation_type=api_pb2.AGGREGATION_AVG,
      allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE])
  response = list_session_groups.Handler(context.RequestContext(), plugin, "", request).run()
  assert response.total_size == len(run.records)
  groups = {group.name: group for group in response.session_groups}
  for record in run.records:
    group = groups[f"r{record['round'] + 1}-t{record['trial']}"]
    metrics = {m.name.tag: m.value for m in group.metric_values}
    assert metrics["val_accuracy"] == pytest.approx(record["val_accuracy"], rel=1e-6)
    assert metrics["val_loss"] == pytest.approx(record["val_loss"], rel=1e-6)
    assert group.hparams["learning_rate"].number_value == pytest.approx(
        record["hparams"]["learning_rate"])


@needs_tensorboard
def test_choices_are_strings_structural_numbers_floats_and_diverged_trials_fail(
    synthetic_run, tmp_path):
  from tensorboard.plugins.hparams import api_pb2

  run = vt.load_run(synthetic_run)
  export(run, tracker(tmp_path / "logdir"))
  (run_dir,) = (tmp_path / "logdir").iterdir()
  infos = {i.name: i for i in hparams_content(read(run_dir), "experiment").hparam_infos}
  assert [v.string_value for v in infos["activation"].domain_discrete.values] == ["relu", "tanh"]
  assert infos["activation"].type == api_pb2.DATA_TYPE_STRING
  assert (infos["depth"].domain_interval.min_value, infos["depth"].domain_interval.max_value) == (
      1, 3)
  first = read(run_dir / "r1-t0")
  assert session_hparams(first) == pytest.approx(
      {**run.records[0]["hparams"], "activation": "relu", "depth": 1.0})
  diverged = read(run_dir / "r1-t39")
  assert hparams_content(diverged, "end").status == api_pb2.STATUS_FAILURE
  assert diverged.Tags()["scalars"] == []  # No accuracy, loss or epoch loss to draw.
  assert diverged.Tensors("trial/status")[0].tensor_proto.string_val[0].startswith(b"diverged")


@needs_tensorboard
def test_run_names_come_from_the_run_directory_or_the_time(tmp_path):
  from vmaptune.reporting.tracking.tensorboard_tracker import default_run_name

  named = default_run_name(str(tmp_path / "a" / "digits"), str(tmp_path))
  assert re.fullmatch(r"digits-[0-9a-f]{8}", named)
  assert default_run_name(str(tmp_path / "b" / "digits"), str(tmp_path)) != named
  live = tracker(tmp_path)
  live.start({"space": SPACE.to_dict()}, key=None)
  assert re.fullmatch(r"run-\d{8}-\d{6}(-\d+)?", os.path.basename(live.run_dir))
  assert os.path.isdir(live.run_dir)
  assert default_run_name(None, str(tmp_path)) != os.path.basename(live.run_dir)  # Taken.


def png(width: int, height: int) -> bytes:
  """A grey PNG of ``width`` x ``height`` pixels."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

  rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
  header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey.
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
          + chunk(b"IEND", b""))


@needs_tensorboard
def test_finish_attaches_figures_as_images_once(tmp_path):
  figure, params = tmp_path / "scatter.png", tmp_path / "best_params.msgpack"
  figure.write_bytes(png(3, 2))
  params.write_bytes(b"\x80")
  live = tracker(tmp_path / "logdir")
  live.start({"space": SPACE.to_dict()}, key=str(tmp_path / "run"))
  files = {"report/scatter.png": str(figure), "best_params.msgpack": str(params)}
  live.finish({"final_fit": {"test_accuracy": 0.75}}, files)
  before = snapshot(live.run_dir)
  live.finish({"final_fit": {"test_accuracy": 0.75}}, files)
  assert snapshot(live.run_dir) == before
  top = read(live.run_dir)
  (shown,) = top.Images("files/report/scatter.png")
  assert (shown.width, shown.height, shown.encoded_image_string) == (3, 2, figure.read_bytes())
  path = top.Tensors("files/best_params.msgpack")[0].tensor_proto.string_val[0]
  assert path.decode() == str(params)
  assert scalars(top, "final/test_accuracy") == [(0, 0.75)]


def test_without_tensorboard_naming_it_says_what_to_install(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *args: None if name == "tensorboard" else find_spec(name, *args))
  with pytest.raises(SettingsError, match=re.escape("pip install 'vmaptune[tensorboard]'")):
    make("tensorboard")


@needs_tensorboard
@pytest.mark.slow
def test_exports_without_tensorflow(synthetic_run, tmp_path):
  script = textwrap.dedent("""
      import sys
      sys.modules["tensorflow"] = None  # Importing TensorFlow now fails.
      import vmaptune as vt
      from vmaptune.reporting.tracking import export, make
      export(vt.load_run(sys.argv[1]), make("tensorboard", logdir=sys.argv[2]))
  """)
  logdir = tmp_path / "logdir"
  subprocess.run([sys.executable, "-c", script, synthetic_run, str(logdir)], check=True)
  (run_dir,) = logdir.iterdir()
  assert len([p for p in run_dir.iterdir() if p.is_dir()]) == 40


@needs_tensorboard
@pytest.mark.slow
def test_a_1024_trial_run_exports_in_seconds(handwritten_run, tmp_path):
  rows = [{"hparams": {"learning_rate": 10 ** (-4 + 4 * i / 1023)},
           "acc": None if i % 100 == 99 else i / 1024} for i in range(1024)]
  handwritten_run(str(tmp_path / "big"), {"learning_rate": SPACE.to_dict()["learning_rate"]},
                  rows, epochs=4)
  run = vt.load_run(tmp_path / "big")
  started = time.perf_counter()
  export(run, tracker(tmp_path / "logdir"))
  assert time.perf_counter() - started < 30  # About 0.3 s on a 2-core CPU.
  (run_dir,) = (tmp_path / "logdir").iterdir()
  assert len([p for p in run_dir.iterdir() if p.is_dir()]) == 1024


@needs_tensorboard
def test_a_later_choice_is_written_beside_the_earlier_one(tmp_path):
  """An export of a run still going, then again after it went on: the new choice too."""
  live = tracker(tmp_path / "logdir")
  live.start({"space": SPACE.to_dict()}, key=str(tmp_path / "run"))
  first = {"chosen": {"round": 0, "trial": 6, "val_accuracy": 0.5, "val_loss": 1.0,
                      "hparams": {"learning_rate": 0.01}}, "rounds": [{}]}
  later = {"chosen": {"round": 1, "trial": 5, "val_accuracy": 0.75, "val_loss": 0.5,
                      "hparams": {"learning_rate": 0.02}}, "rounds": [{}, {}]}
  live.finish(first)
  live.finish(first)  # The same choice: nothing new.
  live.finish(later)
  top = read(live.run_dir)
  assert scalars(top, "chosen/val_accuracy") == [(1, 0.5), (2, 0.75)]


@needs_tensorboard
def test_a_regression_run_lists_its_metrics_and_the_lowest_mse(tmp_path):
  import numpy as np

  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 4)).astype(np.float32)
  data = vt.data.from_arrays(x, (x @ np.array([1.0, -2.0, 0.5, 0.0])).astype(np.float32),
                             val_fraction=0.2, test_fraction=0.2, seed=0)
  out, logdir = tmp_path / "run", tmp_path / "logdir"
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  result = vt.tune(vt.models.MLP(hidden=(8,), num_classes=1), data, space,
                   objective="regression", population=4, rounds=2, epochs=1, batch_size=32,
                   confirm="off", out=str(out), loggers=[tracker(logdir)])
  final = result.final_fit()
  run = vt.load_run(out)
  (run_dir,) = logdir.iterdir()
  top = read(run_dir)
  experiment = hparams_content(top, "experiment")
  assert [info.name.tag for info in experiment.metric_infos] == [
      "val_mse", "val_mae", "train/epoch_loss"]
  assert [info.display_name for info in experiment.metric_infos][:2] == [
      "validation mse", "validation mae"]
  assert scalars(top, "round/best_val_mse") == [
      (r.index, pytest.approx(r.best_score, rel=1e-6)) for r in result.rounds]
  assert len(scalars(top, "round/median_val_mse")) == 2
  assert scalars(top, "chosen/val_mse") == [(2, pytest.approx(result.best.score, rel=1e-6))]
  assert result.best.score == min(r["val_mse"] for r in run.records)  # The lowest mse.
  for key, value in (("test_mse", final.test["mse"]), ("test_mae", final.test["mae"]),
                     ("val_mae", final.val["mae"])):
    assert scalars(top, f"final/{key}") == [(2, pytest.approx(value, rel=1e-6))]
  assert not [tag for tag in top.Tags()["scalars"] if "accuracy" in tag]
  record = run.records[0]
  session = read(run_dir / f"r1-t{record['trial']}")
  for tag in ("val_mse", "val_mae"):
    assert scalars(session, tag) == [(0, pytest.approx(record[tag], rel=1e-6))]


@needs_tensorboard
def test_event_files_go_through_temporary_files_of_their_own(tmp_path):
  """The temporary file had a fixed name: a link planted there was written through."""
  victim = tmp_path / "bashrc"
  victim.write_text("precious\n")
  live = tracker(tmp_path / "logdir")
  run_dir = tmp_path / "logdir" / "planted"
  run_dir.mkdir(parents=True)
  os.symlink(victim, run_dir / ".experiment.writing")  # The old fixed name.
  live.run_name = "planted"
  live.start({"space": SPACE.to_dict()})
  assert victim.read_bytes() == b"precious\n"
  events = [p for p in run_dir.iterdir() if "tfevents" in p.name]
  assert [p.name.split(".vmaptune.")[1] for p in events] == ["experiment"]
  assert not events[0].is_symlink() and events[0].stat().st_nlink == 1
  assert hparams_content(read(run_dir), "experiment").hparam_infos
  assert sorted(p.name for p in run_dir.iterdir() if p not in events) == [".experiment.writing"]


@needs_tensorboard
def test_an_export_attaches_no_file_a_link_points_to(handwritten_run, tmp_path):
  """A link in a run directory to a credentials file, or a report folder that is a link,
  must not carry files from elsewhere to a shared tracking server."""
  secret = png(5, 5)  # A PNG, which TensorBoard would embed whole.
  (tmp_path / "credentials.png").write_bytes(secret)
  (tmp_path / "credentials").write_text("aws_secret_access_key = hunter2\n")
  space = {"learning_rate": SPACE.to_dict()["learning_rate"]}
  rows = [{"hparams": {"learning_rate": 0.01}, "acc": 0.5},
          {"hparams": {"learning_rate": 0.1}, "acc": 0.75}]
  run_dir = tmp_path / "run"
  handwritten_run(str(run_dir), space, rows)
  (run_dir / "report").mkdir()
  (run_dir / "report" / "scatter.png").write_bytes(png(3, 2))
  os.symlink(tmp_path / "credentials.png", run_dir / "report" / "leak.png")
  os.symlink(tmp_path / "credentials", run_dir / "config.py")
  with pytest.warns(RuntimeWarning, match="not attached") as warned:
    export(vt.load_run(run_dir), tracker(tmp_path / "logdir"))
  message = str(warned[0].message)
  assert f"{run_dir / 'config.py'} (a symbolic link to {tmp_path / 'credentials'})" in message
  assert str(run_dir / "report" / "leak.png") in message
  (exported,) = (tmp_path / "logdir").iterdir()
  top = read(exported)
  assert top.Tags()["images"] == ["files/report/scatter.png"]
  assert not [tag for tag in top.Tags()["tensors"] if tag.startswith("files/")]
  assert not any(secret in path.read_bytes() for path in exported.iterdir() if path.is_file())
  # A report folder that is itself a link: its files' real paths are elsewhere.
  other = tmp_path / "other"
  handwritten_run(str(other), space, rows)
  os.symlink(run_dir / "report", other / "report")
  with pytest.warns(RuntimeWarning, match="is outside the run directory"):
    assert vt.reporting.tracking.run_files(vt.load_run(other)) == {}
