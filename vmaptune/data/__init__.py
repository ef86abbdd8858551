"""Data: train / validation / sealed test splits, their checks, and the loaders.

Every loader returns a :class:`Dataset`; nothing is downloaded. See
:mod:`vmaptune.data.dataset` (splits and their checks),
:mod:`vmaptune.data.loaders` (arrays, ``.npz``, the embedded digits and
diabetes sets, a synthetic teacher task, image layouts),
:mod:`vmaptune.data.text` (a generated corpus and character token sequences)
and :mod:`vmaptune.data.idx` (MNIST-format files); :mod:`vmaptune.data.streams`
reads compressed members no further than their headers declare.
"""

from vmaptune.data.dataset import Dataset, Split
from vmaptune.data.idx import IDX_FILES, IDX_TYPES, load_idx, load_idx_dir, read_idx, write_idx
from vmaptune.data.loaders import (
  as_images,
  diabetes,
  digits,
  digits_arrays,
  from_arrays,
  load_npz,
  split_indices,
  teacher,
)
from vmaptune.data.text import characters, decode, encode, grammar_text, vocabulary
from vmaptune.errors import DataError

__all__ = ["IDX_FILES", "IDX_TYPES", "DataError", "Dataset", "Split", "as_images",
           "characters", "decode", "diabetes", "digits", "digits_arrays", "encode", "from_arrays",
           "grammar_text", "load_idx", "load_idx_dir", "load_npz", "read_idx",
           "split_indices", "teacher", "vocabulary", "write_idx"]
