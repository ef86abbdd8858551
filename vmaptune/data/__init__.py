"""Data: train / validation / sealed test splits, their checks, and the loaders.

Every loader returns a :class:`Dataset`; nothing is downloaded. See
:mod:`vmaptune.data.dataset` (splits and their checks),
:mod:`vmaptune.data.loaders` (arrays, ``.npz``, the embedded digits, a
synthetic teacher task, image layouts) and :mod:`vmaptune.data.idx`
(MNIST-format files).
"""

from vmaptune.data.dataset import Dataset, Split
from vmaptune.data.idx import IDX_FILES, IDX_TYPES, load_idx, load_idx_dir, read_idx, write_idx
from vmaptune.data.loaders import as_images, digits, from_arrays, load_npz, split_indices, teacher
from vmaptune.errors import DataError

__all__ = ["IDX_FILES", "IDX_TYPES", "DataError", "Dataset", "Split", "as_images", "digits",
           "from_arrays", "load_idx", "load_idx_dir", "load_npz", "read_idx", "split_indices",
           "teacher", "write_idx"]
