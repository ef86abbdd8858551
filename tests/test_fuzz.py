"""Fuzzed inputs: the IDX and ``.npz`` loaders (compressed ones included), the dataset
checks, config loading, ``--set`` overrides and specs, and the run-directory readers, fed
seeded random and mutated inputs, either succeed or raise vmaptune's own error: no crash,
no hang, no other exception type.

Cases per test (the constants below): ``IDX_CASES`` IDX files, pairs and directories
(random bytes; valid files, plain and gzip, with bits flipped, bytes cut, inserted or
deleted, header dims set to huge values, type codes changed; images and labels of
mismatched counts); ``NPZ_CASES`` ``.npz`` files (both layouts, arrays of the wrong dtype,
shape or values, members renamed or their headers garbled, bytes damaged);
``ARRAY_CASES`` array sets given to :class:`vt.Dataset` and :func:`vt.data.from_arrays`;
``CONFIG_CASES`` config files (a copy of ``experiments/digits_mlp.py`` with characters,
lines or bytes changed); ``OVERRIDE_CASES`` lists of ``key=value`` overrides, each result
checked as a run would check it; ``SPEC_CASES`` sampler, strategy and objective specs in
``--set`` (nested and trailing calls, tuples, unpacking, repeated keys, computed values,
nesting within and beyond the parser's limits), each accepted one checked to keep every
setting it names; ``COMPRESSED_CASES`` gzip IDX files and ``.npz`` archives (stored,
deflate, bzip2, lzma) whose streams hold more or less than declared, bombs of 8 MiB
included, sound ones checked to load as written; ``RUN_CASES`` copies of a real run
directory with one file damaged (JSON values replaced, removed or nested 3,000 deep;
records reordered, repeated, torn; parameters damaged, with and without their digest),
read by ``load_run``, ``read_trials``, ``best_params`` and ``vmaptune show``. Inputs hold
a few dozen values, so most tests take a second or a few; a wall-clock guard turns a hang
into a failure.
"""

import contextlib
import gzip
import hashlib
import io
import json
import os
import signal
import sys
import threading
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import vmaptune as vt
from vmaptune.cli import main
from vmaptune.config import SETTABLE, load_experiment, override

# Thousands of inputs per test: the slow tier.
pytestmark = pytest.mark.slow

IDX_CASES = 3000
NPZ_CASES = 3000
ARRAY_CASES = 3000
CONFIG_CASES = 2000
OVERRIDE_CASES = 3000

# Every fuzz test must finish within this many seconds (a generous bound: each takes ~1 s).
DEADLINE_S = 120


class _Hang(BaseException):
  """Raised by the deadline; a BaseException, so that no handler under test swallows it."""


@contextlib.contextmanager
def _deadline(seconds: float):
  """Fails the test when its body runs longer than ``seconds`` (POSIX main thread only)."""
  if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
    yield
    return

  def expire(signum, frame):
    raise _Hang(f"still running after {seconds} s: a loader hangs")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


class _Tally:
  """Outcomes of one fuzz run: accepted, refused with the allowed error, or escaped (any
  other exception: a bug, listed in the failure)."""

  def __init__(self, *allowed: type[Exception]):
    self.allowed = allowed
    self.accepted = self.refused = 0
    self.escaped: list[str] = []
    self.messages: list[str] = []

  @property
  def tried(self) -> int:
    return self.accepted + self.refused + len(self.escaped)

  def run(self, what: str, function, *args, check=None, names: str = "", **kwargs):
    """``function(*args, **kwargs)``; a result must pass ``check`` (when given), an error
    must be allowed and its message contain ``names`` (e.g. the file)."""
    try:
      result = function(*args, **kwargs)
      if check is not None:
        check(result)
    except self.allowed as e:
      if names not in str(e):
        self.escaped.append(f"{what[:300]}: the message does not name {names}: {e}")
        return None
      self.refused += 1
      self.messages.append(str(e))
      return None
    except Exception as e:  # Recorded, not swallowed: the test fails listing every escape.
      self.escaped.append(f"{what[:300]}: {type(e).__name__}: {str(e)[:200]}")
      return None
    self.accepted += 1
    return result

  def assert_sound(self, cases: int, min_refused: float, min_accepted: float) -> None:
    allowed = " or ".join(error.__name__ for error in self.allowed)
    assert not self.escaped, (f"{len(self.escaped)} of {self.tried} inputs raised another "
                              f"exception than {allowed}:\n"
                              + "\n".join(sorted(set(self.escaped))[:30]))
    assert self.tried == cases
    # The fuzzer must reach the error paths and still feed some inputs that pass.
    assert self.refused >= min_refused * cases, (self.refused, cases)
    assert self.accepted >= min_accepted * cases, (self.accepted, cases)
    assert all(self.messages), "an error without a message"


# Byte-level mutations, shared by the IDX and .npz fuzzers.

def _random_bytes(rng: np.random.Generator, low: int = 0, high: int = 64) -> bytes:
  return rng.integers(0, 256, int(rng.integers(low, high + 1)), dtype=np.uint8).tobytes()


def _mutate_bytes(rng: np.random.Generator, data: bytes) -> bytes:
  """One to three of: bit flips, truncation, insertion, deletion, overwrite."""
  data = bytearray(data)
  for _ in range(int(rng.integers(1, 4))):
    op = rng.integers(5)
    at = int(rng.integers(0, len(data) + 1))
    if op == 0 and data:
      for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(len(data)))
        data[i] ^= 1 << int(rng.integers(8))
    elif op == 1:
      del data[at:]
    elif op == 2:
      data[at:at] = _random_bytes(rng, 1, 16)
    elif op == 3:
      del data[at:at + int(rng.integers(1, 16))]
    else:
      chunk = _random_bytes(rng, 1, 8)
      data[at:at + len(chunk)] = chunk
  return bytes(data)


def _write(path, data: bytes) -> str:
  with contextlib.suppress(FileNotFoundError):
    os.remove(path)  # A new file: truncating one can cost a flush (ext4), 20x the time.
  with open(path, "wb") as f:
    f.write(data)
  return os.fspath(path)


# IDX.

_IDX_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)
_HUGE = (0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x10000, 0)


def _idx_image_array(rng: np.random.Generator, n: int) -> np.ndarray:
  shape = (n, *rng.integers(1, 5, int(rng.choice([2, 3]))))
  if rng.random() < 0.8:
    return rng.integers(0, 256, shape).astype(np.uint8)
  dtype = _IDX_DTYPES[rng.integers(len(_IDX_DTYPES))]
  values = (rng.normal(size=shape) * 100).astype(dtype)
  if values.size and values.dtype.kind == "f" and rng.random() < 0.2:
    values.flat[rng.integers(values.size)] = np.nan
  return values


def _idx_label_array(rng: np.random.Generator, n: int) -> np.ndarray:
  dtype = np.uint8 if rng.random() < 0.8 else _IDX_DTYPES[rng.integers(len(_IDX_DTYPES))]
  labels = rng.integers(-2 if rng.random() < 0.1 else 0, 10, n)
  if rng.random() < 0.05:
    labels = labels.reshape(n, 1)
  return labels.astype(dtype)


def _idx_bytes(rng: np.random.Generator, array: np.ndarray, tmp, damage: float = 0.85) -> bytes:
  """``array`` as IDX bytes (written by write_idx, gzipped or not), damaged with probability
  ``damage``."""
  gz = rng.random() < 0.3
  path = os.path.join(tmp, "array.idx.gz" if gz else "array.idx")
  vt.data.write_idx(path, array)
  with open(path, "rb") as f:
    data = f.read()
  os.remove(path)  # See _write.
  plain = gzip.decompress(data) if gz else data
  kind = int(rng.integers(1, 6)) if rng.random() < damage else 0
  if kind == 0:  # Kept valid.
    return data
  if kind == 1:  # The bytes on disk damaged (for .gz: the compressed stream).
    return _mutate_bytes(rng, data)
  if kind == 2:  # The IDX bytes damaged, then gzipped: a sound archive of a broken file.
    return gzip.compress(_mutate_bytes(rng, plain), mtime=0)
  header = bytearray(plain)
  if kind == 3:  # A dimension set to a huge (or zero) size: nothing that large is allocated.
    dim = int(rng.integers(header[3])) if header[3] else 0
    header[4 + 4 * dim:8 + 4 * dim] = int(rng.choice(_HUGE)).to_bytes(4, "big")
  elif kind == 4:  # Another type code.
    header[2] = int(rng.integers(256)) if rng.random() < 0.5 else int(rng.choice([8, 9, 11,
                                                                                  12, 13, 14]))
  else:  # Another number of dimensions (up to 255; NumPy holds 64 at most).
    header[3] = int(rng.choice([0, 1, 2, 3, 4, 40, 70, 255, int(rng.integers(256))]))
  return gzip.compress(bytes(header), mtime=0) if gz and rng.random() < 0.5 else bytes(header)


def _idx_consistent_header(rng: np.random.Generator) -> bytes:
  """A header whose data size matches what follows but whose dims NumPy cannot hold: more
  axes than it allows, or a zero beside sizes whose product overflows."""
  code = int(rng.choice(list(vt.data.IDX_TYPES)))
  if rng.random() < 0.5:
    dims = [1] * int(rng.integers(1, 256))
  else:
    dims = [int(rng.choice(_HUGE[:3])) for _ in range(int(rng.integers(1, 8)))] + [0]
    rng.shuffle(dims)
  count = int(np.prod(dims, dtype=object))
  return (bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()
          + bytes(count * vt.data.IDX_TYPES[code].itemsize))


def _idx_case(rng: np.random.Generator, tmp, n: int) -> bytes:
  if rng.random() < 0.05:
    return _idx_consistent_header(rng)
  if rng.random() < 0.15:  # Random bytes, sometimes behind a plausible magic number.
    prefix = [b"", b"\x1f\x8b", b"\0\0\x08\x03", b"\0\0\x08\x01", b"\0\0"][rng.integers(5)]
    return prefix + _random_bytes(rng)
  array = _idx_image_array(rng, n) if rng.random() < 0.5 else _idx_label_array(rng, n)
  return _idx_bytes(rng, array, tmp)


def _check_array(array) -> None:
  assert isinstance(array, np.ndarray) and array.dtype.isnative and array.ndim >= 1


def _check_dataset(data) -> None:
  assert isinstance(data, vt.Dataset)
  assert len(data.train) and len(data.val)
  assert data.train.x.dtype == np.float32 and data.train.y.dtype in (np.int32, np.float32, bool)
  assert np.isfinite(data.train.x).all() and np.isfinite(data.train.y).all()
  # Labels a classification run would train on: int32, within the classes, or refused.
  try:
    vt.objectives.Classification().check_data(data)
  except vt.DataError:
    return
  for split in (data.train, data.val):
    assert split.y.dtype == np.int32 and (split.y >= 0).all()
    assert (split.y < data.num_classes).all()


def _idx_files(rng, tmp, names: list[str], counts: list[int]) -> list[str]:
  """Images and labels files (alternating) of ``counts`` examples each, a third damaged."""
  paths = []
  for i, (name, n) in enumerate(zip(names, counts, strict=True)):
    array = _idx_image_array(rng, n) if i % 2 == 0 else _idx_label_array(rng, n)
    paths.append(_write(os.path.join(tmp, name), _idx_bytes(rng, array, tmp, damage=0.3)))
  return paths


def test_idx_loaders_raise_only_data_errors(tmp_path):
  rng = np.random.default_rng(12)
  tally = _Tally(vt.DataError)
  tmp = os.fspath(tmp_path)
  with _deadline(DEADLINE_S):
    for case in range(IDX_CASES):
      kind = case % 10
      if kind < 7:  # One file.
        path = _write(tmp_path / "case-idx", _idx_case(rng, tmp, int(rng.integers(1, 30))))
        tally.run(f"read_idx case {case}", vt.data.read_idx, path, check=_check_array,
                  names=path)
      elif kind < 9:  # A pair, perhaps with test files; counts sometimes mismatched.
        n = int(rng.integers(2, 30))
        counts = [n, n if rng.random() < 0.7 else int(rng.integers(0, 30))]
        with_test = rng.random() < 0.4
        if with_test:
          m = int(rng.integers(0, 12))
          counts += [m, m if rng.random() < 0.7 else int(rng.integers(0, 12))]
        names = ["images", "labels", "test-images.gz", "test-labels"][:len(counts)]
        paths = _idx_files(rng, tmp, names, counts)
        tally.run(f"load_idx case {case}", vt.data.load_idx, *paths, val_fraction=0.25,
                  test_fraction=None if with_test else 0.25, check=_check_dataset)
      else:  # A directory of MNIST's file names, some missing.
        directory = tmp_path / f"dir{case}"
        directory.mkdir()
        n, m = (int(v) for v in rng.integers(1, 30, 2))
        names = [f"{stem}.gz" if rng.random() < 0.5 else stem
                 for stem in vt.data.IDX_FILES.values()]
        paths = _idx_files(rng, os.fspath(directory), names, [n, n, m, m])
        for path in paths:
          if rng.random() < 0.1:
            os.remove(path)
        tally.run(f"load_idx_dir case {case}", vt.data.load_idx_dir, directory,
                  val_fraction=0.25, check=_check_dataset)
  tally.assert_sound(IDX_CASES, min_refused=0.4, min_accepted=0.1)


# .npz.

def _with_first(array: np.ndarray, value) -> np.ndarray:
  """A copy of ``array`` whose first value (if any) is ``value``."""
  array = array.copy()
  array.flat[:1] = value
  return array


def _bad_array(rng: np.random.Generator, array: np.ndarray, labels: bool) -> np.ndarray:
  """``array`` made wrong: a dtype, shape or values the dataset checks must refuse (a few
  are still valid: whole float labels, bool or float16 features, big-endian bytes)."""
  n = len(array)
  options = [
      lambda: np.array([1, "a", None] * max(1, n // 3), dtype=object),  # Stored as a pickle.
      lambda: np.array(["a"] * n),
      lambda: np.array(b"bytes"),
      lambda: np.float32(3.0),  # 0-d.
      lambda: array[:-1],
      lambda: np.concatenate([array, array[:2]]),
      lambda: array[:0],
      lambda: array.astype(np.complex64),
      lambda: array.astype(bool),
      lambda: array.astype(np.float16),
      lambda: array.astype(array.dtype.newbyteorder(">")),
      lambda: np.asfortranarray(array[..., None]),
      lambda: np.zeros(n, "datetime64[s]"),
      lambda: np.zeros(n, "timedelta64[s]"),
      lambda: np.zeros(n, [("a", "<i4"), ("b", "<f4")]),
      lambda: np.zeros((n, 0)),
      lambda: array[:, None],
  ]
  if labels:
    options += [
        lambda: array + 0.5,
        lambda: array.astype(np.float64),
        lambda: _with_first(array, -1),
        lambda: _with_first(array, 2**31),
        lambda: _with_first(array.astype(np.int64), 2**40),
        lambda: _with_first(array.astype(np.uint64), np.iinfo(np.uint64).max),
        lambda: _with_first(array.astype(np.float64), -1e30),
        lambda: _with_first(array.astype(np.float64), np.nan),
        lambda: np.eye(4)[array % 4],
    ]
  else:
    options += [
        lambda: _with_first(array.astype(np.float64), np.nan),
        lambda: _with_first(array, -np.inf),
        lambda: array.astype(np.float64) * 1e300,
        lambda: array.astype(np.float64) * 1e30,  # Beyond float32's range: inf once cast.
        lambda: array.reshape(-1),
    ]
  return options[rng.integers(len(options))]()


def _npz_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The arrays of either layout, now and then one made wrong, missing or extra."""
  n = int(rng.integers(6, 30))
  x = rng.normal(size=(n, *rng.integers(1, 4, int(rng.integers(1, 3))))).astype(np.float32)
  y = rng.integers(0, 4, n)
  if rng.random() < 0.5:
    arrays = {"x": x, "y": y}
  else:
    a, b = sorted(int(v) for v in rng.integers(1, n, 2))
    arrays = {"x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b],
              "x_test": x[b:], "y_test": y[b:]}
    if rng.random() < 0.3:
      del arrays["x_test"], arrays["y_test"]
  roll = rng.random()
  key = list(arrays)[rng.integers(len(arrays))]
  if roll < 0.5:
    arrays[key] = _bad_array(rng, arrays[key], labels=key.startswith("y"))
  elif roll < 0.6:
    del arrays[key]
  elif roll < 0.65:
    arrays["extra"] = np.arange(3)
  return arrays


def _npz_bytes(rng: np.random.Generator, arrays: dict[str, np.ndarray]) -> bytes:
  buffer = io.BytesIO()
  (np.savez_compressed if rng.random() < 0.3 else np.savez)(buffer, **arrays)
  return buffer.getvalue()


def _garble_npy(rng: np.random.Generator, data: bytes) -> bytes:
  """One ``.npy`` member with its header changed, the header length kept consistent: a
  huge, negative or wrong shape, an object or unknown dtype, another version, bad text."""
  if not data.startswith(b"\x93NUMPY") or len(data) < 10:
    return data
  size = 2 if data[6] == 1 else 4
  start = 8 + size
  length = int.from_bytes(data[8:start], "little")
  header, body = data[start:start + length].decode("latin1"), data[start + length:]
  edits = [("'shape': (", "'shape': (10000000000, "), ("'shape': (", "'shape': (-3, "),
           ("'shape': (", "'shape': (0, 4294967295, 4294967295, "), ("'shape': (", "'shape': ("
           + "1, " * 70), ("'shape': (", "'shape': [1], 'x': ("),
           ("'descr': '", "'descr': '|O', 'old': '"), ("'descr': '", "'descr': '<U3', 'o': '"),
           ("'descr': '", "'descr': 'bogus', 'o': '"), ("'descr': '", "'descr': '<V0', 'o': '"),
           ("'descr': '", "'descr': ['a', 'b'], 'o': '"),
           ("'fortran_order': ", "'fortran_order': 1 or "),
           ("{", "["), ("{", "{{" * 150), (": ", " "), ("'", "\"")]
  old, new = edits[rng.integers(len(edits))]
  header = header.replace(old, new, 1)
  version = data[6:8] if rng.random() < 0.9 else bytes([int(rng.integers(4)), 0])
  encoded = header.encode("latin1")
  return (data[:6] + version + len(encoded).to_bytes(size, "little") + encoded + body)


def _rezip(rng: np.random.Generator, data: bytes) -> bytes:
  """The archive rewritten with one member renamed or its ``.npy`` header garbled."""
  with zipfile.ZipFile(io.BytesIO(data)) as source:
    members = [(info.filename, source.read(info)) for info in source.infolist()]
  if not members:
    return data
  i = int(rng.integers(len(members)))
  name, content = members[i]
  if rng.random() < 0.4:
    renames = [name[:-4], name.upper(), "x.npy", "y.npy", "x_val.npy", "../" + name,
               name + ".npy", "a/" + name, "\u00e9" + name]
    name = renames[rng.integers(len(renames))]
    members = [(n, c) for n, c in members if n != name]
    i = min(i, len(members))
    members.insert(i, (name, content))
  else:
    members[i] = (name, _garble_npy(rng, content))
  buffer = io.BytesIO()
  method = zipfile.ZIP_DEFLATED if rng.random() < 0.3 else zipfile.ZIP_STORED
  with zipfile.ZipFile(buffer, "w", method) as target:
    for name, content in members:
      target.writestr(name, content)
  return buffer.getvalue()


def _npz_case(rng: np.random.Generator) -> bytes:
  roll = rng.random()
  if roll < 0.05:  # Random bytes, sometimes behind a zip or .npy magic number.
    return [b"", b"PK\x03\x04", b"\x93NUMPY", b"PK\x05\x06"][rng.integers(4)] + \
        _random_bytes(rng, 0, 200)
  if roll < 0.08:  # One .npy array, not an archive.
    buffer = io.BytesIO()
    np.save(buffer, rng.normal(size=(5, 2)))
    return buffer.getvalue()
  data = _npz_bytes(rng, _npz_arrays(rng))
  if roll < 0.45:
    return data
  if roll < 0.7:
    return _rezip(rng, data)
  return _mutate_bytes(rng, data)


def test_npz_loader_raises_only_data_errors(tmp_path):
  rng = np.random.default_rng(5)
  tally = _Tally(vt.DataError)
  with _deadline(DEADLINE_S):
    for case in range(NPZ_CASES):
      path = _write(tmp_path / "case.npz", _npz_case(rng))
      tally.run(f"load_npz case {case}", vt.data.load_npz, path, check=_check_dataset)
  tally.assert_sound(NPZ_CASES, min_refused=0.5, min_accepted=0.1)


# Arrays given directly.

_NUM_CLASSES = (None, None, None, 4, 10, 2, 1, 0, -3, 2**31, 2**31 + 1, 10**20, 4.0, True,
                "10", np.int64(6), np.uint64(2**64 - 1))


def _random_values(rng: np.random.Generator, good: np.ndarray, labels: bool):
  """``good`` (features ``[n, ...]`` or labels ``[n]``) made wrong, or not an array at all."""
  n = len(good)
  roll = rng.random()
  if roll < 0.6:
    return _bad_array(rng, good, labels)
  if roll < 0.7:
    return good.tolist()
  others = [None, "text", 3, {"a": 1}, object(), [None] * n, [[1, 2], [3]] * n,
            [[1, "a"]] * n, [10**30] * n, [[10**30, 1]] * n, [1.5j] * n, np.array([]),
            [[[]]], (good, good)]
  return others[rng.integers(len(others))]


def _good_arrays(rng: np.random.Generator, n: int, shape) -> list[np.ndarray]:
  return [rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 4, n)]


def test_dataset_checks_raise_only_data_errors():
  rng = np.random.default_rng(7)
  tally = _Tally(vt.DataError)
  with _deadline(DEADLINE_S):
    for case in range(ARRAY_CASES):
      num_classes = (_NUM_CLASSES[rng.integers(len(_NUM_CLASSES))] if rng.random() < 0.2
                     else None)
      shape = rng.integers(1, 4, int(rng.integers(1, 3)))
      sizes = rng.integers(0, 20, 3) if case % 2 else rng.integers(0, 40, 1)
      arrays = [a for n in sizes for a in _good_arrays(rng, int(n), shape)]
      if rng.random() < 0.7:  # One of them made wrong.
        i = int(rng.integers(len(arrays)))
        arrays[i] = _random_values(rng, arrays[i], labels=i % 2 == 1)
      if case % 2:
        splits = [tuple(arrays[i:i + 2]) for i in (0, 2, 4)]
        if rng.random() < 0.05:
          splits[int(rng.integers(3))] = [None, "xy", (1, 2, 3), 5][rng.integers(4)]
        tally.run(f"Dataset case {case}", vt.Dataset, *splits, num_classes=num_classes,
                  check=_check_dataset)
      else:
        fractions = [0.2, 0.0, 0.5, 0.99, 1.0, -0.1, float("nan"), "0.2", None]
        val, test = ((fractions[i] for i in rng.integers(0, len(fractions), 2))
                     if rng.random() < 0.2 else (0.2, 0.2))
        seed = [0, 1, 2**40, -1, 1.5, "0", None][rng.integers(7)] if rng.random() < 0.2 else 0
        tally.run(f"from_arrays case {case}", vt.data.from_arrays, *arrays, val_fraction=val,
                  test_fraction=test, seed=seed, num_classes=num_classes, check=_check_dataset)
  tally.assert_sound(ARRAY_CASES, min_refused=0.5, min_accepted=0.1)


# Config files: the shipped default config, mutated. It holds no loop and calls nothing that
# runs long at import, and mutations of a few characters or lines cannot make one: a power
# needs two characters inserted between digits already there (as in 2**56), so no number they
# write takes long to compute.
_CONFIG = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "experiments", "digits_mlp.py")).read()
assert "population=256" in _CONFIG and "for " not in _CONFIG and "while " not in _CONFIG
_CHARACTERS = "()[]{}=,.:;'\"\\#_ -+*/%<>!?@&|^~0123456789aeiouxyzAEXZ\t\n\x00\x7f\u00e9\u2028"


def _mutate_text(rng: np.random.Generator, text: str) -> str:
  """One to three of: characters replaced, deleted or inserted; lines dropped, duplicated
  or swapped."""
  for _ in range(int(rng.integers(1, 4))):
    op = rng.integers(6)
    at = int(rng.integers(len(text) + 1))
    char = _CHARACTERS[rng.integers(len(_CHARACTERS))]
    if op == 0:
      text = text[:at] + char + text[at + 1:]
    elif op == 1:
      text = text[:at] + text[at + int(rng.integers(1, 6)):]
    elif op == 2:
      text = text[:at] + char + text[at:]
    else:
      lines = text.split("\n")
      i, j = (int(v) for v in rng.integers(len(lines), size=2))
      if op == 3:
        del lines[i]
      elif op == 4:
        lines.insert(i, lines[j])
      else:
        lines[i], lines[j] = lines[j], lines[i]
      text = "\n".join(lines)
  return text


def _mutate_encoded(rng: np.random.Generator, data: bytes) -> bytes:
  """Bytes a text editor would not write: invalid UTF-8, NUL, a BOM, a wrong coding line."""
  inserts = [b"\xff", b"\x80", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\xef\xbb\xbf"]
  roll = rng.random()
  if roll < 0.2:
    return [b"# -*- coding: latin-1 -*-\n", b"# coding: bogus\n", b"\xef\xbb\xbf"][
        rng.integers(3)] + data
  if roll < 0.4:
    return _mutate_bytes(rng, data)
  at = int(rng.integers(len(data) + 1))
  return data[:at] + inserts[rng.integers(len(inserts))] + data[at:]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")
def test_config_loading_raises_only_config_errors(tmp_path, monkeypatch):
  # Bytecode caching on, as for most users: a config loaded from a stale cache would show.
  monkeypatch.setattr(sys, "dont_write_bytecode", False)
  rng = np.random.default_rng(3)
  tally = _Tally(vt.ConfigError)
  path = tmp_path / "digits_mlp.py"
  edited = 0
  with _deadline(DEADLINE_S):
    for case in range(CONFIG_CASES):
      roll = rng.random()
      population = None
      if roll < 0.1:  # A valid edit of the same size: loaded as written, not from a cache.
        population = int(rng.integers(100, 1000))
        data = _CONFIG.replace("population=256", f"population={population}").encode()
      elif roll < 0.8:
        data = _mutate_text(rng, _CONFIG).encode("utf-8", "surrogatepass")
      else:
        data = _mutate_encoded(rng, _CONFIG.encode())
      _write(path, data)

      def check(experiment, population=population):
        assert isinstance(experiment, vt.Experiment)
        assert population is None or experiment.population == population

      experiment = tally.run(f"load_experiment case {case}: {data!r}", load_experiment, path,
                             check=check, names=str(path))
      if population is not None and experiment is not None:
        edited += 1
  tally.assert_sound(CONFIG_CASES, min_refused=0.5, min_accepted=0.15)
  assert edited > 0.05 * CONFIG_CASES


# --set overrides.

_VALUES = [
    "0", "1", "2", "8", "-1", "3", "16", "64", "2**31", str(10**30), "1_000", "0x10", "1.5",
    "nan", "inf", "1e999", "-0.0", "True", "None", "[]", "[1, 2]", "{'a': 1}", "(1,)", "{1}",
    "b'x'", "'adamw'", "adamw", "sgd", "lamb", "cosine", "constant", "auto", "bfloat16", "off",
    "4x2", "0x4", "x", "2x", "10x10", "narrow", "narrow(keep=0.5)", "narrow(keep=[1])",
    "narrow(keep=nan)", "narrow(margin=-1)", "narrow(keep=0.5", "narrow(1)", "narrow(foo=1)",
    "density", "density(good=2)", "density(candidates=0)", "evolution(sigma=-1)",
    "evolution(good='a')", "random", "halving", "halving(eta=4, min_epochs=2)", "halving(eta=0)",
    "halving(eta=1.5)", "hyperband(eta='a')", "hyperband", "pbt", "pbt(interval=0)",
    "pbt(fraction=2)", "pbt(perturb=nan)", "pbt(resample=None)", "bogus(x=1)", "(" * 300,
    "-" * 5000 + "1", "[" * 100 + "]" * 100, "9" * 5000, "\x00", "\udcff", "'\\x00'", "é", "",
    " ", "=", "lambda: 1", "__import__('os')",
]


# Valid values of some keys, so that a good share of override lists pass every check.
_GOOD = {"population": ["8", "16"], "rounds": ["1", "3"], "epochs": ["2", "4"],
         "batch_size": ["16", "32"], "seed": ["0", "7"], "eval_batch_size": ["64"],
         "optimizer": ["sgd", "adamw"], "schedule": ["constant", "cosine"],
         "matmul_precision": ["float32"], "sampler": ["narrow(keep=0.5)", "density"],
         "strategy": ["random", "halving(eta=2)"], "confirm": ["off", "2x2"],
         "max_lanes_per_chunk": ["4"], "memory_budget_bytes": ["1000000"], "name": ["x"]}


def _assignment(rng: np.random.Generator) -> str:
  roll = rng.random()
  keys = (*SETTABLE, "keep", "margin")  # Unknown keys that look like settings.
  key = (keys[rng.integers(len(keys))] if roll < 0.85 else
         ["", " ", "population ", "Population", "model", "data", "space", "x=y",
          _random_bytes(rng, 1, 8).decode("latin1")][rng.integers(9)])
  good = _GOOD.get(key.strip(), [])
  roll = rng.random()
  value = (good[rng.integers(len(good))] if good and roll < 0.5 else
           _VALUES[rng.integers(len(_VALUES))] if roll < 0.9 else
           _random_bytes(rng, 0, 12).decode("latin1"))
  sep = "=" if rng.random() < 0.95 else ["", "==", " = ", ":"][rng.integers(4)]
  return key + sep + value


def _check_override(experiment) -> None:
  """What a run checks before compiling anything; any error must be vmaptune's own."""
  assert isinstance(experiment, vt.Experiment)
  experiment.check(360, experiment.space)
  experiment.to_dict()


def test_overrides_raise_only_vmaptune_errors(tmp_path):
  """A bad value is refused by override (ConfigError) or by the checks a run makes before
  compiling (SettingsError): never another exception, never later."""
  rng = np.random.default_rng(4)
  tally = _Tally(vt.ConfigError, vt.SettingsError)
  base = load_experiment(_write(tmp_path / "digits_mlp.py", _CONFIG.encode()))
  with _deadline(DEADLINE_S):
    for case in range(OVERRIDE_CASES):
      if rng.random() < 0.02:
        assignments = ["population=8", b"rounds=1", None, 3, "population=8"][
            rng.integers(5):][:2]
      else:
        assignments = [_assignment(rng) for _ in range(int(rng.integers(1, 4)))]
      tally.run(f"override case {case}: {assignments!r}", override, base, assignments,
                check=_check_override)
  tally.assert_sound(OVERRIDE_CASES, min_refused=0.5, min_accepted=0.1)


# Run directories: the files of a real run (two rounds, a confirmation and the final fit),
# mutated one file at a time, read back by every reader.

RUN_CASES = 1000
_JSON_VALUES = [None, True, False, 0, -1, 1, 3, 2**31, 2**64, -2**63, 10**400, 0.5, 1e308,
                -1e-308, float("nan"), float("inf"), "", "x", "finished", "search", "\x1b[2J",
                "\udcff", "é" * 3, [], {}, [1, 2], [[]], {"a": 1}, {"round": 0}, [None] * 3,
                "a" * 300]


def _nested(depth: int) -> object:
  value: object = 1
  for i in range(depth):
    value = [value] if i % 2 else {"a": value}
  return value


def _json_nodes(value) -> list[tuple[object, object]]:
  """Every ``(container, key)`` of a parsed JSON value, walked without recursion."""
  nodes, pending = [], [value]
  while pending:
    item = pending.pop()
    keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(
        item, list) else []
    for key in keys:
      nodes.append((item, key))
      pending.append(item[key])
  return nodes


def _mutate_json(rng: np.random.Generator, value):
  """A copy of ``value`` with one to three of: a value replaced (another type, a huge or
  odd number, a control character, nesting 30 or 3,000 deep: :data:`_DEEP`), a key
  removed or added, a list item removed or repeated."""
  value = json.loads(json.dumps(value))
  for _ in range(int(rng.integers(1, 4))):
    nodes = _json_nodes(value)
    if not nodes:
      return _JSON_VALUES[rng.integers(len(_JSON_VALUES))]
    container, key = nodes[rng.integers(len(nodes))]
    op = rng.random()
    if op < 0.6:
      container[key] = (_JSON_VALUES[rng.integers(len(_JSON_VALUES))] if rng.random() < 0.9
                        else _nested(30) if rng.random() < 0.5 else _DEEP)
    elif op < 0.75:
      del container[key]
    elif op < 0.85 and isinstance(container, dict):
      container[["extra", "round", "trial", "hparams", "rounds", ""][rng.integers(6)] + "_"
                * int(rng.integers(2))] = _JSON_VALUES[rng.integers(len(_JSON_VALUES))]
    elif isinstance(container, list):
      container.insert(int(key), container[key])
  return value


# Stands for nesting too deep for json.dumps to write; _json_text writes it as text.
_DEEP = "<3,000 levels deep>"


def _json_text(rng: np.random.Generator, value, indent=None) -> bytes:
  text = json.dumps(value, indent=indent).encode("utf-8", "surrogatepass")
  text = text.replace(json.dumps(_DEEP).encode(), b"[" * 3000 + b"]" * 3000)
  return _mutate_bytes(rng, text) if rng.random() < 0.2 else text


def _mutate_records(rng: np.random.Generator, lines: list[bytes]) -> bytes:
  """``trials.jsonl`` with one line changed, lines reordered, dropped, repeated or torn."""
  lines = list(lines)
  i = int(rng.integers(len(lines)))
  op = rng.integers(7)
  if op == 0:
    lines[i] = _json_text(rng, _mutate_json(rng, json.loads(lines[i]))) + b"\n"
  elif op == 1:
    lines[i] = _mutate_bytes(rng, lines[i])
  elif op == 2:
    j = int(rng.integers(len(lines)))
    lines[i], lines[j] = lines[j], lines[i]
  elif op == 3:
    del lines[i]
  elif op == 4:
    lines.insert(i, lines[i])
  elif op == 5:
    lines.append(lines[i][:int(rng.integers(1, len(lines[i])))])  # A torn round in progress.
  else:
    lines[i] = b"[" * 5000 + b"]" * 5000 + b"\n"
  return b"".join(lines)


@pytest.fixture(scope="module")
def run_files(small_arrays, tmp_path_factory) -> dict[str, bytes]:
  """The files of a two-round run with a 2x2 confirmation and a final fit."""
  out = tmp_path_factory.mktemp("fuzz-run") / "run"
  data = vt.data.from_arrays(*small_arrays, val_fraction=0.2, test_fraction=0.2, seed=0,
                             num_classes=10)
  space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0), weight_decay=vt.LogUniform(1e-6, 1e-2))
  vt.tune(vt.models.MLP(hidden=(8,)), data, space, out=str(out), population=4, rounds=2,
          epochs=2, batch_size=32, seed=0, confirm="2x2").final_fit()
  return {name: (out / name).read_bytes()
          for name in ("config.json", "summary.json", "trials.jsonl", "best_params.msgpack")}


def _damaged_run(rng: np.random.Generator, files: dict[str, bytes]) -> dict[str, bytes]:
  """``files`` with one of them damaged (the summary and the records most often)."""
  files = dict(files)
  roll = rng.random()
  if roll < 0.35:
    files["summary.json"] = _json_text(rng, _mutate_json(rng, json.loads(files["summary.json"])),
                                       indent=2)
  elif roll < 0.7:
    files["trials.jsonl"] = _mutate_records(rng, files["trials.jsonl"].splitlines(keepends=True))
  elif roll < 0.8:
    files["config.json"] = _json_text(rng, _mutate_json(rng, json.loads(files["config.json"])))
  elif roll < 0.95:  # Damaged parameters; half the time the summary points to them.
    files["best_params.msgpack"] = _mutate_bytes(rng, files["best_params.msgpack"])
    if rng.random() < 0.5:
      summary = json.loads(files["summary.json"])
      summary["best_params"]["sha256"] = hashlib.sha256(files["best_params.msgpack"]).hexdigest()
      files["summary.json"] = json.dumps(summary).encode()
  elif roll < 0.97:
    del files[["summary.json", "trials.jsonl", "best_params.msgpack"][rng.integers(3)]]
  return files


def _show(path: str) -> None:
  """``vmaptune show``: it prints the run (status 0) or one error naming it (status 2)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = main(["show", path])
  assert (status, err.getvalue()) == (0, "") or (
      status == 2 and err.getvalue().startswith("vmaptune: error: ")
      and path in err.getvalue()), (status, err.getvalue())


def _best_params(run):
  """The best parameters, where the summary says some were saved."""
  return None if run.params_trial is None else run.best_params()


def _check_run(run) -> None:
  assert len(run.trials) == len(run.records) and run.rounds_completed <= run.settings["rounds"]


def test_run_directory_readers_raise_only_damaged_run_errors(run_files, tmp_path, monkeypatch):
  """Each reader reads a damaged directory or refuses it with DamagedRunError (``vmaptune
  show`` with one line of error): no other exception, no hang. Readers retry a damaged
  directory after a pause (a writer may be cutting it back); the pause is skipped here."""
  monkeypatch.setattr(vt.rundir.reader.time, "sleep", lambda seconds: None)
  rng = np.random.default_rng(22)
  readers = {name: _Tally(vt.DamagedRunError) for name in ("load_run", "read_trials",
                                                           "best_params", "show")}
  with _deadline(DEADLINE_S):
    for case in range(RUN_CASES):
      path = tmp_path / f"run{case}"
      path.mkdir()
      for name, data in _damaged_run(rng, run_files).items():
        (path / name).write_bytes(data)
      what = f"case {case}"
      run = readers["load_run"].run(what, vt.load_run, path, check=_check_run, names=str(path))
      if (path / "trials.jsonl").exists():
        readers["read_trials"].run(what, vt.read_trials, path, names=str(path))
      else:
        readers["read_trials"].accepted += 1  # No file: FileNotFoundError, as open() says.
      if run is not None:
        readers["best_params"].run(what, _best_params, run, names=str(path))
      readers["show"].run(what, _show, str(path))
  for name, tally in readers.items():
    assert not tally.escaped, (name, tally.escaped[:20])
  loaded = readers["load_run"]
  assert loaded.tried == RUN_CASES and loaded.refused >= 0.3 * RUN_CASES
  assert loaded.accepted >= 0.1 * RUN_CASES and readers["best_params"].refused > 0


# Specs in --set: sampler, strategy and objective texts, generated with nested calls,
# trailing calls, tuples, unpacking, repeated keys, computed values and deep nesting.

SPEC_CASES = 3000
_SPEC_KINDS = {"sampler": vt.samplers, "strategy": vt.strategies, "objective": vt.objectives}
_SPEC_NAMES = {"sampler": ["narrow", "density", "evolution", "optuna"],
               "strategy": ["random", "halving", "hyperband", "pbt"],
               "objective": ["classification", "regression", "language_model"]}
_SPEC_KEYS = ["keep", "margin", "good", "explore", "candidates", "sigma", "sampler", "diverged",
              "eta", "min_epochs", "interval", "fraction", "perturb", "resample", "rank_by",
              "study", "x"]
_SPEC_LITERALS = ["0.5", "0.2", "2", "3", "1", "0", "-1", "1e-3", "1e999", "nan", "None",
                  "True", "'mae'", "'loss'", "'tpe'", "'pruned'", "(0.8, 1.2)", "[0.8, 1.2]",
                  "(1,)", "{}", "b'x'", "'\\x1b'", "0.25", "4"]
_SPEC_EXPRESSIONS = ["x", "os.sep", "1 + 1", "lambda: 1", "__import__('os')", "f()", "{1: 2}",
                     "[*()]", "not 1", "0.5 if 1 else 2"]


def _spec_value(rng: np.random.Generator, depth: int) -> str:
  roll = rng.random()
  if depth < 3 and roll < 0.1:
    return _spec(rng, "sampler", depth + 1)  # A call as a value.
  if depth < 3 and roll < 0.2:
    items = ", ".join(_spec_value(rng, depth + 1) for _ in range(int(rng.integers(0, 3))))
    return ["({},)", "[{}]", "({})"][rng.integers(3)].format(items)
  if roll < 0.3:
    return _SPEC_EXPRESSIONS[rng.integers(len(_SPEC_EXPRESSIONS))]
  return _SPEC_LITERALS[rng.integers(len(_SPEC_LITERALS))]


def _spec(rng: np.random.Generator, kind: str, depth: int = 0) -> str:
  """A spec text: mostly one call of a known name, often made wrong."""
  names = _SPEC_NAMES[kind]
  name = names[rng.integers(len(names))] if rng.random() < 0.9 else ["bogus", "os.path", "",
                                                                     "narrow.x"][rng.integers(4)]
  arguments = []
  for _ in range(int(rng.integers(0, 4))):
    roll = rng.random()
    value = _spec_value(rng, depth)
    arguments.append(value if roll < 0.05 else f"**{{'keep': {value}}}" if roll < 0.08
                     else f"{_SPEC_KEYS[rng.integers(len(_SPEC_KEYS))]}={value}")
  if arguments and rng.random() < 0.05:
    arguments.append(arguments[-1])  # A key given twice.
  text = f"{name}({', '.join(arguments)})" if arguments or rng.random() < 0.5 else name
  roll = rng.random()
  if depth == 0 and roll < 0.25:  # After the call: another call, a tuple, an attribute, ...
    text += ["()", "(keep=0.5)", ", (2)", ".keep", "[0]", " + 1", ")", "(", " # x",
             ";1"][rng.integers(10)]
  elif depth == 0 and roll < 0.35:  # Deep nesting, within and beyond the parser's limits.
    n = int(rng.choice([20, 150, 199, 250, 990, 5000]))
    inner = ["(" * n + "0.5" + ")" * n, "[" * n + "]" * n, "-" * n + "1", "not " * n + "1"][
        rng.integers(4)]
    text = f"{name}({_SPEC_KEYS[rng.integers(len(_SPEC_KEYS))]}={inner})"
  return text


def _check_spec(kind: str, text: str):
  """What a run checks of an override, and that an accepted spec kept every setting it
  names (``narrow(keep=0.05)()`` once kept none)."""

  def check(experiment) -> None:
    _check_override(experiment)
    _, settings = vt.validation.parse_spec(text, kind)
    parsed = _SPEC_KINDS[kind].parse(text)
    for key, value in settings.items():
      kept = getattr(parsed, key)
      assert kept == value or (kept != kept and value != value), (text, key, kept, value)

  return check


def test_specs_in_set_raise_only_vmaptune_errors_and_keep_every_setting(tmp_path):
  rng = np.random.default_rng(6)
  tally = _Tally(vt.ConfigError, vt.SettingsError)
  base = load_experiment(_write(tmp_path / "digits_mlp.py", _CONFIG.encode()))
  with _deadline(DEADLINE_S):
    for case in range(SPEC_CASES):
      kind = list(_SPEC_KINDS)[rng.integers(3)]
      text = _spec(rng, kind)
      tally.run(f"spec case {case}: {kind}={text[:200]!r}", override, base, [f"{kind}={text}"],
                check=_check_spec(kind, text))
  tally.assert_sound(SPEC_CASES, min_refused=0.5, min_accepted=0.05)


# Compressed files: gzip IDX files and .npz members (deflate, bzip2, lzma, stored) whose
# streams hold more or less than their headers declare, up to bombs of 8 MiB of zeros.

COMPRESSED_CASES = 1000
_BOMB = 8 << 20  # Bytes a bomb expands to past its declared size.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _compress_gzip(rng: np.random.Generator, parts: list[bytes], extra: int = 0) -> bytes:
  """``parts`` as gzip members (one or several), with ``extra`` zeros after the data."""
  members = []
  for i, part in enumerate(parts):
    compressor = zlib.compressobj(int(rng.integers(1, 10)), zlib.DEFLATED, 31)
    pieces = [compressor.compress(part)]
    if i == len(parts) - 1:
      zeros = bytes(min(extra, 1 << 20))
      for start in range(0, extra, len(zeros) or 1):
        pieces.append(compressor.compress(zeros[:extra - start]))
    members.append(b"".join(pieces) + compressor.flush())
  return b"".join(members)


def _gzip_idx_case(rng: np.random.Generator) -> tuple[bytes, np.ndarray | None, bool]:
  """A gzip IDX file, the array it must read as (``None``: refused), whether it is a bomb."""
  array = _idx_image_array(rng, int(rng.integers(1, 20)))
  plain = _idx_plain(array)
  op = rng.integers(7)
  if op == 0:  # Sound, in one member or split across several.
    cuts = sorted(int(c) for c in rng.integers(0, len(plain), int(rng.integers(0, 3))))
    return _compress_gzip(rng, [plain[a:b] for a, b in zip([0, *cuts], [*cuts, len(plain)],
                                                           strict=True)]), array, False
  if op == 1:  # Expands past its declared size: a few bytes, or a bomb.
    bomb = rng.random() < 0.3
    return _compress_gzip(rng, [plain], _BOMB if bomb else int(rng.integers(1, 64))), None, bomb
  if op == 2:  # Ends before its declared size.
    return _compress_gzip(rng, [plain[:int(rng.integers(0, len(plain)))]]), None, False
  data = bytearray(_compress_gzip(rng, [plain]))
  if op == 3:  # A damaged checksum or length in the trailer.
    data[-int(rng.integers(1, 9))] ^= 1 << int(rng.integers(8))
  elif op == 4:  # Cut short.
    del data[int(rng.integers(2, len(data))):]
  elif op == 5:  # Garbage after the member (zeros are padding gzip allows).
    garbage = bytes(int(rng.integers(1, 16))) if rng.random() < 0.3 else _random_bytes(rng, 1, 16)
    return bytes(data + garbage), array if not garbage.strip(b"\0") else None, False
  else:  # Damaged deflate data.
    data[int(rng.integers(10, len(data) - 8))] ^= 0xFF
  return bytes(data), None, False


def _idx_plain(array: np.ndarray) -> bytes:
  codes = {np.dtype(d): c for c, d in vt.data.IDX_TYPES.items()}
  code = codes[array.dtype.newbyteorder(">")]
  return (bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
          + array.astype(array.dtype.newbyteorder(">")).tobytes())


def _npy(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  np.save(buffer, array)
  return buffer.getvalue()


def _npz_member(rng: np.random.Generator, array: np.ndarray) -> tuple[bytes, str]:
  """A ``.npy`` member for ``array`` and what it is: ``"sound"``, ``"longer"`` or
  ``"shorter"`` than its header declares, or a ``"bomb"``."""
  data = _npy(array)
  op = rng.random()
  if op < 0.4:
    return data, "sound"
  if op < 0.6:
    return data + _random_bytes(rng, 1, 32), "longer"
  if op < 0.8:
    return data[:int(rng.integers(0, len(data)))], "shorter"
  return data + bytes(_BOMB), "bomb"


def _npz_archive(rng: np.random.Generator) -> tuple[bytes, dict | None, bool]:
  """A .npz of x_train, y_train, x_val, y_val, each member compressed its own way; the
  arrays it must load as (``None``: refused), and whether it holds a bomb. A bomb is
  deflated (bzip2 and lzma take seconds to write one), and its archive's other members are
  deflated or stored: lzma and bzip2 decoders hold megabytes of their own, which would
  hide what reading the bomb holds."""
  n = int(rng.integers(4, 20))
  arrays = {"x_train": rng.normal(size=(n, 3)).astype(np.float32),
            "y_train": rng.integers(0, 3, n), "x_val": rng.normal(size=(2, 3)).astype(np.float32),
            "y_val": rng.integers(0, 3, 2)}
  members = {name: _npz_member(rng, array) if rng.random() < 0.3 else (_npy(array), "sound")
             for name, array in arrays.items()}
  kinds = [kind for _, kind in members.values()]
  methods = _ZIP_METHODS[:2] if "bomb" in kinds else _ZIP_METHODS
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for name, (data, kind) in members.items():
      info = zipfile.ZipInfo(f"{name}.npy")
      info.compress_type = (zipfile.ZIP_DEFLATED if kind == "bomb" else
                            methods[rng.integers(len(methods))])
      archive.writestr(info, data, compresslevel=1 if kind == "bomb" else None)
  sound = all(kind == "sound" for kind in kinds)
  return buffer.getvalue(), arrays if sound else None, "bomb" in kinds


def _same_arrays(expected: np.ndarray):
  def check(found) -> None:
    assert found.dtype == expected.dtype and np.array_equal(found, expected, equal_nan=True)
  return check


def _same_dataset(expected: dict):
  def check(data) -> None:
    for split in ("train", "val"):
      np.testing.assert_array_equal(getattr(data, split).x, expected[f"x_{split}"])
      np.testing.assert_array_equal(getattr(data, split).y, expected[f"y_{split}"])
  return check


def test_compressed_loaders_read_no_further_than_declared(tmp_path):
  """Sound files load as written; one whose stream holds more or less than its header
  declares is refused with DataError (a bomb with at most a few MiB held in memory);
  damaged checksums and streams too."""
  rng = np.random.default_rng(9)
  tally = _Tally(vt.DataError)
  peaks = []
  with _deadline(DEADLINE_S):
    for case in range(COMPRESSED_CASES):
      if case % 2:
        data, expected, bomb = _gzip_idx_case(rng)
        path = _write(tmp_path / "case-idx.gz", data)
        load, check = vt.data.read_idx, expected is not None and _same_arrays(expected)
      else:
        data, expected, bomb = _npz_archive(rng)
        path = _write(tmp_path / "case.npz", data)
        load, check = vt.data.load_npz, expected is not None and _same_dataset(expected)
      if bomb:
        tracemalloc.start()
      accepted = tally.accepted
      tally.run(f"{load.__name__} case {case}", load, path, check=check or None, names=path)
      if bomb:
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
      assert (tally.accepted > accepted) == (expected is not None) or tally.escaped, case
  tally.assert_sound(COMPRESSED_CASES, min_refused=0.3, min_accepted=0.3)
  assert len(peaks) > 20 and max(peaks) < 4 << 20, (len(peaks), max(peaks))
