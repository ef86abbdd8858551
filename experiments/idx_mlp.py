"""Bring your own data: an MLP on MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST).

Point ``VMAPTUNE_IDX_DIR`` at a directory holding the four standard files
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each plain or ``.gz``). The ``t10k`` files become the sealed test
split and a fifth of the training files the validation split. Nothing is downloaded: without
the variable, the run writes scikit-learn's 8x8 digits as IDX files in a temporary directory
and reads them back through the same loader (a stand-in, announced on stderr); with the
variable set, a directory that lacks the files is refused, naming the files it needs.

    VMAPTUNE_IDX_DIR=~/data/mnist vmaptune run experiments/idx_mlp.py
    vmaptune run experiments/idx_mlp.py   # the 8x8 digits, written as IDX files
"""

import os
import sys
import tempfile

import numpy as np

import vmaptune as vt

ENV = "VMAPTUNE_IDX_DIR"


def write_digits_as_idx(directory: str) -> None:
  """Writes scikit-learn's 8x8 digits as MNIST's four gzip files: uint8 pixels ``[N, 8, 8]``
  (0..16 scaled to 0..255) and uint8 labels ``[N]``, a random fifth as the t10k test set."""
  from sklearn.datasets import load_digits

  raw = load_digits()
  pixels = np.round(raw.images * (255 / 16)).astype(np.uint8)
  labels = raw.target.astype(np.uint8)
  order = np.random.default_rng(0).permutation(len(labels))
  test, train = np.split(order, [len(labels) // 5])
  for prefix, rows in (("train", train), ("t10k", test)):
    vt.data.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), pixels[rows])
    vt.data.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels[rows])


def load_data() -> vt.Dataset:
  """The IDX files in ``$VMAPTUNE_IDX_DIR``, else the digits written as IDX files."""
  directory = os.environ.get(ENV)
  if directory:
    return vt.data.load_idx_dir(os.path.expanduser(directory), val_fraction=0.2, seed=0)
  print(f"{ENV} is not set: using scikit-learn's 8x8 digits written as IDX files; set it to "
        "a directory of MNIST-format files to tune on them", file=sys.stderr)
  with tempfile.TemporaryDirectory() as tmp:
    write_digits_as_idx(tmp)
    return vt.data.load_idx_dir(tmp, val_fraction=0.2, seed=0, name="digits-idx")


def get_config() -> vt.Experiment:
  return vt.Experiment(
      name="idx_mlp",
      model=vt.models.MLP(hidden=(128,), num_classes=10),  # Flattens any [H, W, C] images.
      data=load_data,
      space=vt.Space(learning_rate=vt.LogUniform(1e-4, 1e0),
                     weight_decay=vt.LogUniform(1e-8, 1e-1)),
      optimizer="adamw",
      population=64, rounds=3, epochs=5, batch_size=128,
      sampler="narrow(keep=0.2, margin=0.1)", seed=0,
      schedule="cosine",
  )
