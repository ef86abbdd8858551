"""The rounds loop: no recompiles, narrowing, test-split discipline, divergence, records."""

import json
import os

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

import vmaptune as vt
from vmaptune.lanes.compilation import CompileCounter, persistent_cache
from vmaptune.rundir import SUMMARY_FILE


@pytest.fixture(scope="module")
def search(tmp_path_factory, small_arrays):
  """One 3-round search, shared by the tests that only inspect its outcome."""
  x, y = small_arrays
  data = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0, num_classes=10)
  out = str(tmp_path_factory.mktemp("run") / "digits")
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e0),
                   weight_decay=vt.LogUniform(1e-6, 1e-2))
  result = vt.tune(vt.models.MLP(hidden=(16,)), data, space, out=out,
                   population=8, rounds=3, epochs=2, batch_size=32,
                   sampler="narrow(keep=0.25)", seed=0)
  return result, data, out


def test_rounds_after_the_first_compile_nothing(search):
  result, _, _ = search
  first, *later = result.rounds
  assert first.compiles >= 2  # The population's train and evaluate programs.
  assert [r.compiles for r in later] == [0] * len(later)
  # The ranges did change between rounds, so "no recompiles" is not vacuous.
  assert later[0].space != first.space


def test_each_round_samples_the_narrowed_space_of_the_one_before(search):
  result, _, _ = search
  for before, after in zip(result.rounds, result.rounds[1:], strict=False):
    assert after.space == before.next_space
  widths = [r.space["learning_rate"].width() for r in result.rounds]
  assert widths[-1] < widths[0]
  for r in result.rounds:
    assert len(r.kept) == 2  # keep=0.25 of 8 lanes.
    # The kept lanes are the best two, and the next range spans their values.
    np.testing.assert_array_equal(np.sort(r.val_accuracy[r.kept]), np.sort(r.val_accuracy)[-2:])
    for name, dist in r.next_space.items():
      kept_values = r.hparams[name][r.kept]
      assert dist.low <= kept_values.min() and kept_values.max() <= dist.high
      assert result.space[name].low <= dist.low and dist.high <= result.space[name].high


def test_the_search_never_reads_the_test_split_and_final_fit_reads_it_once(search, small_arrays):
  result, data, _ = search
  assert data.test_reads == 0
  # Garbage test labels and features: the search result must not change at all.
  x, y = small_arrays
  clean = vt.data.from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=0,
                              num_classes=10)
  test = clean.read_test()
  garbage = vt.Dataset(train=clean.train, val=clean.val,
                       test=(np.ones_like(test.x), (test.y + 3) % 10), num_classes=10)
  again = vt.tune(vt.models.MLP(hidden=(16,)), garbage, result.space,
                  population=8, rounds=3, epochs=2, batch_size=32,
                  sampler="narrow(keep=0.25)", seed=0)
  for a, b in zip(result.rounds, again.rounds, strict=True):
    np.testing.assert_array_equal(a.val_accuracy, b.val_accuracy)
    np.testing.assert_array_equal(a.hparams["learning_rate"], b.hparams["learning_rate"])
  assert again.best == result.best and garbage.test_reads == 0

  final = result.final_fit()
  assert data.test_reads == 1
  assert result.final_fit() is final and data.test_reads == 1  # Cached, not re-read.
  # The refit alone reproduces the chosen lane's validation score.
  assert abs(final.val_accuracy - result.best.val_accuracy) <= 1 / len(data.val)
  assert 0.5 < final.test_accuracy <= 1.0


def test_records_hold_every_trial_and_a_summary(search):
  result, _, out = search
  records = vt.read_trials(out)
  assert len(records) == 8 * 3
  assert {(r["round"], r["lane"]) for r in records} == {(k, i) for k in range(3) for i in range(8)}
  first = records[0]
  assert set(first) == {"round", "trial", "lane", "bracket", "hparams", "start_epoch", "epochs",
                        "val_accuracy", "val_loss", "status", "parent", "kept", "epoch_loss"}
  assert all(len(r["epoch_loss"]) == r["epochs"] for r in records)
  assert all(r["epochs"] == 2 and r["start_epoch"] == 0 and r["parent"] == -1 for r in records)
  assert set(first["hparams"]) == {"learning_rate", "weight_decay"}
  assert sum(r["kept"] for r in records) == 2 * 3
  assert all(r["status"] == "finished" for r in records)
  result.final_fit()
  with open(os.path.join(out, SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert summary["chosen"] == result.best.to_record()
  assert summary["final_fit"]["test_accuracy"] == result.final_fit().test_accuracy
  assert [r["space"] for r in summary["rounds"]] == [r.space.to_dict() for r in result.rounds]
  assert summary["compile_s"] > 0 and summary["wall_s"] >= summary["compile_s"]


def test_a_run_directory_is_never_overwritten(search, small_data, tiny_mlp, lr_space):
  _, _, out = search
  with CompileCounter() as compiled, pytest.raises(FileExistsError, match="already holds"):
    vt.tune(tiny_mlp, small_data, lr_space, out=out, population=2, rounds=1, epochs=1)
  assert compiled.compiles == 0
  assert len(vt.read_trials(out)) == 8 * 3


def test_diverged_lanes_are_scored_worst_and_left_out_of_narrowing(small_data, tiny_mlp, tmp_path):
  space = vt.Space(learning_rate=vt.LogUniform(1e-2, 1e8))  # Adam diverges above ~1e5 here.
  result = vt.tune(tiny_mlp, small_data, space, out=str(tmp_path / "run"),
                   population=8, rounds=2, epochs=1, batch_size=32,
                   sampler="narrow(keep=0.5)", seed=0)
  first = result.rounds[0]
  assert 0 < first.num_diverged < 8
  assert np.isnan(first.val_accuracy[first.diverged]).all()
  assert not set(np.flatnonzero(first.diverged)) & set(first.kept.tolist())
  assert first.next_space["learning_rate"].high < 1e8
  records = [r for r in vt.read_trials(tmp_path / "run") if r["status"] == "diverged"]
  assert len(records) >= first.num_diverged
  assert all(r["val_accuracy"] is None and not r["kept"] for r in records)
  assert result.best.status == "finished"


def test_when_every_lane_diverges_the_error_says_so_and_suggests_a_range(
    small_data, tiny_mlp, tmp_path):
  space = vt.Space(learning_rate=vt.LogUniform(1e6, 1e8))
  with pytest.raises(vt.AllDivergedError) as info:
    vt.tune(tiny_mlp, small_data, space, out=str(tmp_path / "run"),
            population=4, rounds=2, epochs=1, batch_size=32)
  message = str(info.value)
  assert "no trial trained round 1/2's full budget without diverging (4 of 4" in message
  assert "learning_rate=LogUniform(1e+03, 1e+05)" in message
  partial = info.value.partial
  assert partial.rounds == [] and partial.best is None
  records = vt.read_trials(tmp_path / "run")
  assert [r["status"] for r in records] == ["diverged"] * 4
  with open(tmp_path / "run" / SUMMARY_FILE) as f:
    summary = json.load(f)
  assert summary["error"] == message and summary["chosen"] is None


def test_a_second_run_loads_its_programs_from_the_persistent_cache(small_data, tiny_mlp,
                                                                   lr_space, tmp_path):
  settings = dict(population=4, rounds=2, epochs=1, batch_size=32)
  with persistent_cache(str(tmp_path / "cache")):
    with CompileCounter() as first:
      vt.tune(tiny_mlp, small_data, lr_space, **settings)
    with CompileCounter() as second:  # A new tuner: JAX's in-memory caches cannot help.
      again = vt.tune(tiny_mlp, small_data, lr_space, **settings)
  assert first.compiles >= 3 and first.cache_hits == 0
  # Every program the second run needs is loaded (init, training, evaluation; the
  # small key programs JAX keeps in memory within a process are not asked for again).
  assert second.cache_hits == second.compiles >= 3
  assert [r.compiles for r in again.rounds[1:]] == [0]


def test_tune_compiles_through_the_default_cache_unless_told_not_to(small_data, tiny_mlp,
                                                                   lr_space, tmp_path,
                                                                   monkeypatch):
  default = tmp_path / "default"
  monkeypatch.setenv("VMAPTUNE_CACHE_DIR", str(default))
  settings = dict(population=4, rounds=1, epochs=1, batch_size=32, confirm="off")
  session = jax.config.jax_compilation_cache_dir
  compilation_cache.set_cache_dir(None)  # As in a fresh process: no cache configured.
  compilation_cache.reset_cache()
  try:
    vt.tune(tiny_mlp, small_data, lr_space, cache=False, **settings)
    assert not default.exists()
    vt.tune(tiny_mlp, small_data, lr_space, **settings)
    assert len(list(default.iterdir())) >= 2  # Its programs, for the next run to load.
    assert jax.config.jax_compilation_cache_dir is None  # Restored after the run.
  finally:
    compilation_cache.set_cache_dir(session)
    compilation_cache.reset_cache()


def test_a_bad_cache_setting_names_the_value(small_data, tiny_mlp, lr_space,
                                             refused_before_compiling):
  refused_before_compiling(vt.SettingsError, r"cache=3; expected True, False or a directory",
                           model=tiny_mlp, data=small_data, space=lr_space, population=4,
                           rounds=1, epochs=1, cache=3)
