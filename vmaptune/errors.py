"""Every error vmaptune raises on purpose, in one place.

Each is a :class:`VmaptuneError`, so ``except vt.VmaptuneError`` catches what
vmaptune refuses or reports, and each also derives from the built-in error it
refines (``ValueError`` for bad input, ``RuntimeError`` for a run that cannot
go on, ``FileExistsError`` for a run directory that cannot be used as asked,
``OSError`` for one that cannot be written), so code written against those
keeps working. Bad input is refused
before anything compiles, with a message that names the bad value and what
was expected.
"""

from __future__ import annotations

from typing import Any


class VmaptuneError(Exception):
  """Base of the errors vmaptune raises on purpose."""


class SettingsError(VmaptuneError, ValueError):
  """A tuning setting, model or optimizer is out of range or of the wrong type."""


class BudgetError(SettingsError):
  """A wall-time budget cannot hold one round; the message says what would fit.

  Attributes:
    needed_s: the seconds one round, the confirmation and the final fit need.
  """

  def __init__(self, message: str, needed_s: float):
    super().__init__(message)
    self.needed_s = needed_s


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


class RunDirectoryError(VmaptuneError, FileExistsError):
  """A run directory cannot be used as asked: it holds a run of another config,
  another process is writing it, or a file in it is damaged. Nothing was changed."""


class RunDirectoryBusyError(RunDirectoryError):
  """Another process holds the run directory's writer lock; ``holder`` says who
  (``{"host", "pid", "started"}``, as the holder wrote it)."""

  def __init__(self, message: str, holder: dict[str, Any] | None = None):
    super().__init__(message)
    self.holder = holder


class DamagedRunError(RunDirectoryError):
  """A file of a run directory is unreadable or disagrees with the others.

  Attributes:
    file: the damaged file's path.
    intact_rounds: the leading rounds whose records and summary agree, which
      ``resume_from_intact`` (``--resume-from-intact``) resumes from.
  """

  def __init__(self, message: str, file: str = "", intact_rounds: int = 0):
    super().__init__(message)
    self.file = file
    self.intact_rounds = intact_rounds


class RunDirectoryWriteError(VmaptuneError, OSError):
  """Writing the run directory failed (a full disk, a read-only directory).
  Every round completed before it is on disk; :func:`vmaptune.tune` sets
  ``partial`` to those rounds."""

  partial: Any = None
