"""Datasets: the embedded digits, splitting, loaders (arrays, .npz, IDX), and clear errors on
bad arrays and files."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

import vmaptune as vt


def test_digits_is_embedded_split_deterministically_and_disjoint(digits):
  assert digits.feature_shape == (8, 8, 1) and digits.num_classes == 10
  assert sum(digits.sizes.values()) == 1797
  assert digits.sizes["val"] == digits.sizes["test"] == round(0.2 * 1797)
  assert 0.0 <= digits.train.x.min() and digits.train.x.max() <= 1.0
  again = vt.data.digits()
  np.testing.assert_array_equal(digits.train.x, again.train.x)
  other = vt.data.digits(seed=1)
  assert not np.array_equal(digits.train.y, other.train.y)
  rows = {r.tobytes() for r in digits.train.x} & {r.tobytes() for r in digits.val.x}
  assert len(rows) < 5  # Disjoint up to the few duplicate images in the set itself.


def test_digits_are_scikit_learns_read_without_importing_it_or_through_it(monkeypatch):
  """The loader reads the file scikit-learn ships (importing scikit-learn costs seconds);
  where that file is not, it asks load_digits: the same arrays either way."""
  import importlib.util

  from sklearn.datasets import load_digits

  from vmaptune.data import loaders

  raw = load_digits()
  images, labels = loaders.digits_arrays()
  np.testing.assert_array_equal(images, raw.images)
  np.testing.assert_array_equal(labels, raw.target)
  first = loaders.digits_arrays(500)
  np.testing.assert_array_equal(first[0], raw.images[:500])
  np.testing.assert_array_equal(first[1], raw.target[:500])
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  images, labels = loaders.digits_arrays()
  np.testing.assert_array_equal(images, raw.images)
  np.testing.assert_array_equal(labels, raw.target)
  assert loaders.digits_arrays(500)[0].shape == (500, 8, 8)


def test_test_split_is_sealed_and_counted(small_data):
  assert small_data.test_reads == 0
  assert not hasattr(small_data, "test")
  assert len(small_data.read_test()) == 120
  assert small_data.test_reads == 1


def _arrays(n=40, d=3, classes=4):
  rng = np.random.default_rng(0)
  return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


def test_mismatched_lengths_are_refused():
  x, y = _arrays()
  with pytest.raises(vt.DataError, match="40 rows but y has 39"):
    vt.data.from_arrays(x, y[:-1])
  with pytest.raises(vt.DataError, match="train split has 40 feature rows but 39 targets"):
    vt.Dataset(train=(x, y[:-1]), val=(x, y), test=(x, y))


@pytest.mark.parametrize("bad_label", [4, -1])
def test_labels_outside_the_classes_are_refused(bad_label):
  x, y = _arrays()
  y = y.copy()
  y[7] = bad_label
  with pytest.raises(vt.DataError, match=rf"labels must lie in \[0, 4\).*{bad_label}"):
    vt.Dataset(train=(x, y), val=(x, y), test=(x, y), num_classes=4)


def test_num_classes_is_inferred_without_looking_at_the_test_split():
  x, y = _arrays(classes=3)
  data = vt.Dataset(train=(x, y), val=(x, y), test=(x, y))
  assert data.num_classes == 3 and data.test_reads == 0
  y_test = y.copy()
  y_test[0] = 7
  data = vt.Dataset(train=(x, y), val=(x, y), test=(x, y_test))
  # Without num_classes a pair may hold any targets: a classification run checks its labels.
  with pytest.raises(vt.DataError, match=r"test labels must lie in \[0, 3\)"):
    vt.objectives.Classification().check_data(data)
  assert data.test_reads == 0


def test_fractional_labels_and_non_finite_features_are_refused():
  x, y = _arrays()
  with pytest.raises(vt.DataError, match="whole numbers"):
    vt.Dataset(train=(x, y + 0.5), val=(x, y), test=(x, y), num_classes=4)
  with pytest.raises(vt.DataError, match="whole numbers"):  # Checked when a run starts.
    vt.tune(vt.models.MLP(hidden=(4,), num_classes=4),
            vt.Dataset(train=(x, y + 0.5), val=(x, y), test=(x, y)),
            vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)), population=2, rounds=1,
            epochs=1, batch_size=8)
  x_bad = x.copy()
  x_bad[5, 1] = np.nan
  x_bad[9, 0] = np.inf
  with pytest.raises(vt.DataError, match="val features contain 2 NaN/inf values.*row 5"):
    vt.Dataset(train=(x, y), val=(x_bad, y), test=(x, y))


def test_empty_validation_split_is_refused():
  x, y = _arrays()
  with pytest.raises(vt.DataError, match="validation split is empty"):
    vt.Dataset(train=(x, y), val=(x[:0], y[:0]), test=(x, y))
  with pytest.raises(vt.DataError, match="val_fraction=0 .*empty validation split"):
    vt.data.from_arrays(x, y, val_fraction=0.0)
  with pytest.raises(vt.DataError, match="leaves no training data"):
    vt.data.from_arrays(x, y, val_fraction=0.5, test_fraction=0.5)


def test_npz_files_load_in_both_layouts(tmp_path):
  x, y = _arrays(n=50)
  whole = tmp_path / "whole.npz"
  np.savez(whole, x=x, y=y)
  data = vt.data.load_npz(whole, val_fraction=0.2, test_fraction=0.2, seed=0)
  assert data.sizes == {"train": 30, "val": 10, "test": 10} and data.name == "whole"
  split = tmp_path / "split.npz"
  np.savez(split, x_train=x[:30], y_train=y[:30], x_val=x[30:40], y_val=y[30:40])
  data = vt.data.load_npz(split, num_classes=4)
  assert data.sizes == {"train": 30, "val": 10, "test": 0}
  np.testing.assert_array_equal(data.val.y, y[30:40])
  bad = tmp_path / "bad.npz"
  np.savez(bad, features=x)
  with pytest.raises(vt.DataError, match="expected x, y or"):
    vt.data.load_npz(bad)


def test_an_npz_member_that_expands_past_its_header_is_refused_without_reading_it(tmp_path):
  # x declares 3 float32 values and expands to 64 MiB: read whole, it took 141 MiB.
  header = io.BytesIO()
  np.save(header, np.zeros(3, np.float32))
  labels = io.BytesIO()
  np.save(labels, np.zeros(3, np.int64))
  bomb = tmp_path / "bomb.npz"
  with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
    with archive.open("x.npy", "w", force_zip64=True) as member:
      member.write(header.getvalue())
      for _ in range(64):
        member.write(bytes(1 << 20))
    archive.writestr("y.npy", labels.getvalue())
  assert bomb.stat().st_size < 100_000
  tracemalloc.start()
  try:
    with pytest.raises(vt.DataError) as error:
      vt.data.load_npz(bomb)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  print(f"load_npz of a bomb: peak {peak / 2**20:.2f} MiB")  # -s shows it.
  assert str(error.value) == (f"{bomb}: array 'x' is too long: its header declares shape (3,) "
                              "of float32, 12 bytes of data, but it holds more (reading "
                              "stopped after 13)")
  assert peak < 4 << 20, peak
  # Members larger than one piece read, compressed or not.
  x, y = np.arange(600_000, dtype=np.float32).reshape(300_000, 2), np.arange(300_000) % 3
  for save in (np.savez, np.savez_compressed):
    save(tmp_path / "big.npz", x=x, y=y)
    data = vt.data.load_npz(tmp_path / "big.npz", val_fraction=0.5, test_fraction=0.0)
    assert np.array_equal(np.sort(np.concatenate([data.train.y, data.val.y])), np.sort(y))


def test_teacher_makes_a_learnable_synthetic_task_of_the_asked_size():
  data = vt.data.teacher(n=400, features=8, classes=3, label_noise=0.2, seed=1)
  assert data.sizes == {"train": 400, "val": 50, "test": 50} and data.num_classes == 3
  again = vt.data.teacher(n=400, features=8, classes=3, label_noise=0.2, seed=1)
  np.testing.assert_array_equal(data.train.y, again.train.y)
  assert len(np.unique(data.train.y)) == 3
  with pytest.raises(vt.DataError, match="label_noise=1.5"):
    vt.data.teacher(label_noise=1.5)


def test_channel_layouts_convert_explicitly_and_wrong_ranks_are_named():
  x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
  nhwc = vt.data.as_images(x, "NCHW")
  assert nhwc.shape == (2, 4, 5, 3) and nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]
  assert vt.data.as_images(x[:, 0], "NHW").shape == (2, 4, 5, 1)
  assert vt.data.as_images(x, "NHWC") is x
  with pytest.raises(vt.DataError, match=r"shape \(2, 4, 5\), 3 axes; layout 'NCHW' expects 4"):
    vt.data.as_images(x[:, 0], "NCHW")
  with pytest.raises(vt.DataError, match=r"layout='CHW'; expected one of"):
    vt.data.as_images(x, "CHW")


@pytest.mark.parametrize("labels, message", [
    (np.zeros((40, 1), int), r"labels have shape \(40, 1\); expected \[N\].*reshape\(-1\)"),
    (np.eye(4)[np.arange(40) % 4], r"shape \(40, 4\); expected \[N\].*argmax\(axis=1\)"),
    (np.array(["a", "b"] * 20), r"train targets have dtype <U1; expected real numbers"),
])
def test_labels_of_the_wrong_shape_or_type_are_refused_with_a_hint(labels, message):
  x, _ = _arrays()
  with pytest.raises(vt.DataError, match=message):
    vt.Dataset(train=(x, labels), val=(x, labels), test=(x, labels), num_classes=4)


def test_features_without_values_or_of_complex_type_are_refused():
  x, y = _arrays()
  with pytest.raises(vt.DataError, match=r"train features have shape \(24, 0\): no values per"):
    vt.data.from_arrays(x[:, :0], y)
  with pytest.raises(vt.DataError, match="dtype complex64; expected real numbers"):
    vt.data.from_arrays(x.astype(np.complex64), y)
  with pytest.raises(vt.DataError, match=r"x has shape \(\) and y \(40,\)"):
    vt.data.from_arrays(np.float32(1), y)
