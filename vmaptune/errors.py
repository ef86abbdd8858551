"""Every error vmaptune raises on purpose, in one place.

Each is a :class:`VmaptuneError`, so ``except vt.VmaptuneError`` catches what
vmaptune refuses or reports, and each also derives from the built-in error it
refines (``ValueError`` for bad input, ``RuntimeError`` for a run that cannot
go on), so code written against those keeps working. Bad input is refused
before anything compiles, with a message that names the bad value and what
was expected.
"""

from __future__ import annotations

from typing import Any


class VmaptuneError(Exception):
  """Base of the errors vmaptune raises on purpose."""


class SettingsError(VmaptuneError, ValueError):
  """A tuning setting, model or optimizer is out of range or of the wrong type."""


class SpaceError(VmaptuneError, ValueError):
  """A search space or one of its ranges is invalid."""


class DataError(VmaptuneError, ValueError):
  """A dataset is unusable: wrong shapes, bad labels, non-finite features, a bad file."""


class ConfigError(VmaptuneError, ValueError):
  """A config file or a ``--set`` override is unusable."""


class DistributedError(VmaptuneError, ValueError):
  """A multi-process setting is malformed, incomplete, or comes too late."""


class NNXStateError(SettingsError):
  """A Flax NNX model holds state the functional trainer cannot carry."""


class AllDivergedError(VmaptuneError, RuntimeError):
  """Every lane of a round diverged; ``partial`` holds the rounds before it."""

  def __init__(self, message: str, partial: Any = None):
    super().__init__(message)
    self.partial = partial


class OutOfMemoryError(VmaptuneError, RuntimeError):
  """A population does not fit in device memory, even one lane per chunk.

  :func:`vmaptune.tune` sets ``partial`` to the rounds finished before it.
  """

  partial: Any = None
