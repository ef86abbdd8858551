"""The trial table: buckets merged with unique lanes, parents kept inside their round,
records written and read back exactly, lineages and their learning curves."""

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.space.structural import Buckets
from vmaptune.trials.scoring import CLASSIFICATION
from vmaptune.trials.table import TrialTable


def test_merged_trials_keep_lanes_unique_and_parents_inside_their_bucket():
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), hidden=vt.Choice([8, 16]))
  buckets = list(Buckets(vt.models.MLP(), space, population=4, batch_size=32, num_train=360))

  def table(parents):
    count = len(parents)
    ints = lambda values: np.array(values, np.int64)
    return TrialTable(
        hparams={"learning_rate": np.full(count, 0.1, np.float32)}, round=ints([0] * count),
        trial=np.arange(count), lane=ints([0, 1, 0][:count]), bracket=ints([-1] * count),
        start_epoch=ints([0, 0, 1][:count]), epochs=ints([1] * count), parent=ints(parents),
        status=np.array(["exploited", "finished", "finished"][:count], object),
        metrics={"accuracy": np.full(count, 0.5), "loss": np.full(count, 1.0)},
        epoch_loss=np.ones((count, 2), np.float32), scoring=CLASSIFICATION)

  merged = TrialTable.merge_buckets([(buckets[0].values, table([-1, -1, 0])),
                                     (buckets[1].values, table([-1, -1]))], space)
  assert merged.lane.tolist() == [0, 1, 0, 2, 3]
  assert merged.parent.tolist() == [-1, -1, 0, -1, -1]
  assert merged.trial.tolist() == [0, 1, 2, 3, 4]
  assert merged.hparams["hidden"].tolist() == [8, 8, 8, 16, 16]
  assert list(merged.hparams) == ["learning_rate", "hidden"]


def test_learning_curves_come_from_the_records(written_run):
  result, out = written_run
  records = vt.load_run(out)
  for row, record in enumerate(records.records):
    epochs, losses = records.trials.curve(row)
    assert epochs.tolist() == [1, 2]
    assert losses.tolist() == pytest.approx(
        result.rounds[record["round"]].epoch_loss[record["trial"]].tolist(), rel=1e-6)


def _table(parents, starts, statuses, accuracy=None, round_index=0):
  count = len(parents)
  ints = lambda values: np.array(values, np.int64)
  return TrialTable(
      hparams={"learning_rate": np.linspace(0.1, 0.2, count).astype(np.float32)},
      round=ints([round_index] * count), trial=np.arange(count), lane=np.arange(count),
      bracket=ints([-1] * count), start_epoch=ints(starts), epochs=ints([2] * count),
      parent=ints(parents), status=np.array(statuses, object),
      metrics={"accuracy": np.array(accuracy or [0.5] * count, np.float64),
               "loss": np.ones(count)},
      epoch_loss=np.arange(count * 4, dtype=np.float32).reshape(count, 4),
      scoring=CLASSIFICATION)


def test_configurations_are_the_trials_that_started_from_initialisation():
  table = _table([-1, -1, 0, 2], [0, 0, 2, 4], ["exploited", "finished", "exploited", "finished"])
  assert table.is_configuration.tolist() == [True, True, False, False]
  assert table.reached.tolist() == [2, 2, 4, 6] and table.budget == 4
  assert table.lineage(3) == [0, 2, 3] and table.lineage(1) == [1]
  epochs, losses = table.curve(3)  # Its ancestors' epochs up to each child's start.
  assert epochs.tolist() == [1, 2, 3, 4, 5, 6]
  assert losses[:4].tolist() == [0.0, 1.0, 10.0, 11.0]


def test_reordering_renumbers_trials_and_keeps_every_parent_link():
  table = _table([-1, -1, 0, 2], [0, 0, 2, 4], ["exploited", "finished", "exploited", "finished"])
  moved = table.reordered(np.array([1, 0, 2, 3]))
  assert moved.trial.tolist() == [0, 1, 2, 3]
  assert moved.parent.tolist() == [-1, -1, 1, 2]  # Old trial 0 is now trial 1.
  assert moved.lineage(3) == [1, 2, 3]
  np.testing.assert_array_equal(moved.hparams["learning_rate"],
                                table.hparams["learning_rate"][[1, 0, 2, 3]])


def test_records_are_read_back_into_the_table_they_were_written_from(written_run):
  result, out = written_run
  run = vt.load_run(out)
  table = run.trials
  for r in result.rounds:
    rows = np.flatnonzero(table.round == r.index)
    for name in r.hparams:
      np.testing.assert_array_equal(table.hparams[name][rows], r.hparams[name])
      assert table.hparams[name].dtype == r.hparams[name].dtype
    np.testing.assert_array_equal(table.epoch_loss[rows], r.epoch_loss)
    np.testing.assert_array_equal(table.score[rows], r.score)
  records = [table.trial_at(row, run.space, kept=bool(run.kept[row])).to_record()
             for row in range(len(table))]
  assert records == run.records == vt.read_trials(out)
