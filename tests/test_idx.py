"""MNIST-format IDX files: read and written exactly, malformed files refused naming the
file and what was expected."""

import gzip
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

import vmaptune as vt

# IDX files, written here byte by byte (independently of vt.data.write_idx): a big-endian
# magic 0x0000TTNN (type code TT, NN dimensions), NN uint32 sizes, then the values.
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def _idx_bytes(array: np.ndarray) -> bytes:
  header = struct.pack(">HBB", 0, IDX_CODES[array.dtype], array.ndim)
  return header + struct.pack(f">{array.ndim}I", *array.shape) + \
      array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data: bytes) -> str:
  path = str(path)
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if path.endswith(".gz") else data)
  return path


def _mnist_like(n: int, seed: int, size=(5, 4)):
  """uint8 images [n, H, W] whose first pixel is the example's index (so rows can be
  traced through a shuffle), and labels [n] in [0, 10)."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n,) + size).astype(np.uint8)
  images[:, 0, 0] = np.arange(n)
  return images, rng.integers(0, 10, n).astype(np.uint8)


def _bad_file(tmp_path, kind: str) -> str:
  images, _ = _mnist_like(6, seed=0)
  good = _idx_bytes(images)
  bad = {"magic": b"\x08\x03\0\0" + good[4:], "empty": b"",
         "type": good[:2] + b"\x0a" + good[3:],
         "truncated": good[:-5], "long": good + b"\0", "header": good[:9],
         "gzip": gzip.compress(good)[:-12]}[kind]
  path = tmp_path / ("bad.gz" if kind == "gzip" else "bad")
  path.write_bytes(bad)  # As is: a truncated archive must not be compressed again.
  return str(path)


def test_idx_files_round_trip_exactly_and_the_test_files_are_the_sealed_test_split(tmp_path):
  train_x, train_y = _mnist_like(40, seed=0)
  test_x, test_y = _mnist_like(12, seed=1)
  files = {"train-images-idx3-ubyte.gz": train_x, "train-labels-idx1-ubyte": train_y,
           "t10k-images-idx3-ubyte": test_x, "t10k-labels-idx1-ubyte.gz": test_y}
  for file_name, array in files.items():
    _write(tmp_path / file_name, _idx_bytes(array))
  data = vt.data.load_idx_dir(tmp_path, val_fraction=0.25, seed=3)
  assert data.name == tmp_path.name and data.num_classes == 10
  assert data.sizes == {"train": 30, "val": 10, "test": 12}
  assert data.feature_shape == (5, 4, 1) and data.train.x.dtype == np.float32
  # Pixels are bytes / 255, exactly; every training example lands in train or val, once.
  rows = []
  for split in (data.train, data.val):
    index = np.round(split.x[:, 0, 0, 0] * 255).astype(int)
    np.testing.assert_array_equal(split.x[..., 0], train_x[index].astype(np.float32) / 255)
    np.testing.assert_array_equal(split.y, train_y[index])
    rows.extend(index)
  assert sorted(rows) == list(range(40))
  test = data.read_test()
  np.testing.assert_array_equal(test.x[..., 0], test_x.astype(np.float32) / 255)
  np.testing.assert_array_equal(test.y, test_y)
  # The split depends on the seed only, and the explicit-path loader agrees with the directory.
  paths = [tmp_path / name for name in files]
  again = vt.data.load_idx(*paths, val_fraction=0.25, seed=3)
  np.testing.assert_array_equal(again.val.x, data.val.x)
  other = vt.data.load_idx(*paths, val_fraction=0.25, seed=4)
  assert not np.array_equal(other.val.x, data.val.x)
  # Without test files, the training files are split three ways.
  alone = vt.data.load_idx(*paths[:2], val_fraction=0.25, test_fraction=0.2)
  assert alone.sizes == {"train": 22, "val": 10, "test": 8}
  with pytest.raises(vt.DataError, match="test_fraction=0.1 with test files"):
    vt.data.load_idx_dir(tmp_path, test_fraction=0.1)


def test_idx_writer_matches_the_format_byte_for_byte_and_keeps_colour_and_float_images(tmp_path):
  labels = np.array([1, 0, 2], np.uint8)
  vt.data.write_idx(tmp_path / "labels", labels)
  assert (tmp_path / "labels").read_bytes() == _idx_bytes(labels)
  colour = np.random.default_rng(0).random((3, 2, 2, 3)).astype(np.float32)
  _write(tmp_path / "colour.gz", _idx_bytes(colour))
  data = vt.data.load_idx(tmp_path / "colour.gz", tmp_path / "labels", val_fraction=0.34,
                          test_fraction=0.0)
  assert data.feature_shape == (2, 2, 3)
  # Float pixels are kept as stored (not divided by 255).
  np.testing.assert_array_equal(np.sort(np.concatenate([data.train.x, data.val.x]), axis=None),
                                np.sort(colour, axis=None))
  with pytest.raises(vt.DataError, match="cannot write dtype int64 as IDX"):
    vt.data.write_idx(tmp_path / "bad", labels.astype(np.int64))


def test_the_idx_writer_refuses_a_link_and_leaves_what_it_points_to(tmp_path):
  elsewhere = tmp_path / "elsewhere"
  elsewhere.write_bytes(b"kept")
  (tmp_path / "labels").symlink_to(elsewhere)
  with pytest.raises(vt.DataError, match=r"labels is a symbolic link; write_idx writes only"):
    vt.data.write_idx(tmp_path / "labels", np.array([1, 0, 2], np.uint8))
  assert elsewhere.read_bytes() == b"kept"


@pytest.mark.parametrize("kind, message", [
    ("magic", r"bad: magic number 0x08030000; expected IDX's magic number 0x0000TTNN"),
    ("empty", r"bad: empty file; expected IDX's magic number"),
    ("type", r"bad: type code 0x0A in the magic number is unknown; expected one of 0x08"),
    ("truncated", r"bad: truncated: the header declares dims \(6, 5, 4\) of uint8, 120 bytes "
                  r"of data, but the file holds 115"),
    ("long", r"bad: too long: .* 120 bytes of data, but the file holds 121"),
    ("header", r"bad: truncated header: 3 dimension sizes need 16 bytes, the file holds 9"),
    ("gzip", r"bad.gz: a damaged gzip file"),
])
def test_bad_idx_files_are_refused_naming_the_file_and_what_was_expected(tmp_path, kind,
                                                                         message):
  _, labels = _mnist_like(6, seed=0)
  labels_path = _write(tmp_path / "labels", _idx_bytes(labels))
  with pytest.raises(vt.DataError, match=message):
    vt.data.load_idx(_bad_file(tmp_path, kind), labels_path)


def _gzip_of_zeros_after(head: bytes, mebibytes: int) -> bytes:
  """A gzip file of ``head`` then ``mebibytes`` MiB of zeros (about 1 KiB per MiB)."""
  compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container.
  zeros = bytes(1 << 20)
  return b"".join([compressor.compress(head), *(compressor.compress(zeros)
                                                for _ in range(mebibytes)), compressor.flush()])


def test_a_gzip_bomb_is_refused_having_read_one_byte_past_its_declared_size(tmp_path):
  # 6 labels declared, 64 MiB inside a 64 KiB file: decompressed whole, it took 141 MiB.
  bomb = tmp_path / "labels.gz"
  bomb.write_bytes(_gzip_of_zeros_after(struct.pack(">HBBI", 0, 0x08, 1, 6), 64))
  tracemalloc.start()
  try:
    with pytest.raises(vt.DataError) as error:
      vt.data.read_idx(bomb)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  print(f"read_idx of a bomb: peak {peak / 2**20:.2f} MiB")  # -s shows it.
  assert str(error.value) == (f"{bomb}: too long: the header declares dims (6,) of uint8, 6 "
                              "bytes of data, but the file holds more (reading stopped after 7)")
  assert peak < 4 << 20, peak
  # Decompressed piece by piece, a sound archive larger than one piece still reads whole.
  images = np.arange(3 * 1024 * 1024, dtype=np.uint8).reshape(3, 1024, 1024)
  np.testing.assert_array_equal(vt.data.read_idx(_write(tmp_path / "big.gz",
                                                        _idx_bytes(images))), images)


def test_idx_images_and_labels_must_agree_in_count_shape_and_type(tmp_path):
  images, labels = _mnist_like(6, seed=0)
  images_path = _write(tmp_path / "images", _idx_bytes(images))
  short = _write(tmp_path / "short", _idx_bytes(labels[:5]))
  with pytest.raises(vt.DataError, match=r"images holds 6 images but .*short holds 5 labels"):
    vt.data.load_idx(images_path, short)
  with pytest.raises(vt.DataError, match=r"images: labels have dims \(6, 5, 4\); expected \[N\]"):
    vt.data.load_idx(images_path, images_path)
  floats = _write(tmp_path / "floats", _idx_bytes(labels.astype(np.float32)))
  with pytest.raises(vt.DataError, match="floats: labels of type float32; expected integers"):
    vt.data.load_idx(images_path, floats)
  wide = _write(tmp_path / "wide", _idx_bytes(images.astype(np.int32)))
  with pytest.raises(vt.DataError, match="wide: pixels of type int32; expected unsigned bytes"):
    vt.data.load_idx(wide, _write(tmp_path / "labels", _idx_bytes(labels)))
  small = _write(tmp_path / "small", _idx_bytes(images[:, :3]))
  with pytest.raises(vt.DataError, match=r"small holds images of shape \(3, 4, 1\) but "):
    vt.data.load_idx(images_path, tmp_path / "labels", small, tmp_path / "labels")
  with pytest.raises(vt.DataError, match="only one of test_images / test_labels"):
    vt.data.load_idx(images_path, tmp_path / "labels", small)


def test_an_idx_directory_without_the_standard_names_is_refused_listing_them(tmp_path):
  with pytest.raises(vt.DataError, match=r"no such directory: .*nowhere; expected one holding "
                                         r"train-images-idx3-ubyte"):
    vt.data.load_idx_dir(tmp_path / "nowhere")
  images, labels = _mnist_like(6, seed=0)
  _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(images))
  with pytest.raises(vt.DataError, match=r"no train-labels-idx1-ubyte \(or .gz\); found "
                                         r"\['train-images-idx3-ubyte'\]"):
    vt.data.load_idx_dir(tmp_path)
  _write(tmp_path / "train-labels.idx1-ubyte", _idx_bytes(labels))  # A mirror's spelling.
  _write(tmp_path / "t10k-images-idx3-ubyte", _idx_bytes(images))
  with pytest.raises(vt.DataError, match="no t10k-labels-idx1-ubyte"):
    vt.data.load_idx_dir(tmp_path)
  (tmp_path / "t10k-images-idx3-ubyte").unlink()
  assert sum(vt.data.load_idx_dir(tmp_path, val_fraction=0.5).sizes.values()) == 6
