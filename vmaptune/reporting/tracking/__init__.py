"""Trackers: a run sent where researchers already look (MLflow, TensorBoard).

``vmaptune export RUN_DIR --to mlflow`` sends a written run
(:func:`export`); ``tune(..., loggers=["mlflow"])`` and ``vmaptune run
--log-to mlflow`` send a run live, round by round. Each tracker is an
optional extra (``pip install 'vmaptune[mlflow]'``); without it, naming the
tracker says what to install. See :mod:`vmaptune.reporting.tracking.base` for what a
tracker is told and when.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from vmaptune.errors import SettingsError
from vmaptune.reporting.tracking.base import Tracker, export, run_files

# name: (module of vmaptune, class, the package it needs, the extra that installs it)
TRACKERS = {
    "mlflow": ("vmaptune.reporting.tracking.mlflow_tracker", "MlflowTracker", "mlflow", "mlflow"),
    "tensorboard": ("vmaptune.reporting.tracking.tensorboard_tracker", "TensorBoardTracker",
                    "tensorboard", "tensorboard"),
}


def make(name: str, **options: Any) -> Tracker:
  """The tracker called ``name`` (``"mlflow"``, ``"tensorboard"``), built with ``options``.

  Raises:
    SettingsError: an unknown name (the known ones are listed), or its package
      is not installed (the message says which extra installs it).
  """
  if name not in TRACKERS:
    raise SettingsError(f"tracker {name!r} is unknown; expected one of {sorted(TRACKERS)}")
  module, cls, package, extra = TRACKERS[name]
  if importlib.util.find_spec(package) is None:
    raise SettingsError(f"the {name} tracker needs {package}, which is not installed: "
                        f"pip install 'vmaptune[{extra}]'")
  return getattr(importlib.import_module(module), cls)(**options)


def check(loggers: Sequence[Any] | None) -> list[Tracker]:
  """Checks tracker names without building them (processes other than 0 of a
  run, which log nothing); returns no tracker.

  Raises:
    SettingsError: an unknown name, or anything that is neither a name nor a tracker.
  """
  for logger in [loggers] if isinstance(loggers, str | Tracker) else loggers or []:
    if isinstance(logger, str) and logger not in TRACKERS:
      raise SettingsError(f"tracker {logger!r} is unknown; expected one of {sorted(TRACKERS)}")
    if not isinstance(logger, str | Tracker):
      raise SettingsError(f"loggers holds {logger!r}; expected tracker names "
                          f"({sorted(TRACKERS)}) or vmaptune.reporting.tracking.Tracker instances")
  return []


def resolve(loggers: Sequence[Any] | None) -> list[Tracker]:
  """Trackers from names or :class:`Tracker` instances (``None``: none).

  Raises:
    SettingsError: see :func:`make`; also anything that is neither.
  """
  if loggers is None:
    return []
  if isinstance(loggers, str | Tracker):
    loggers = [loggers]
  trackers = []
  for logger in loggers:
    if isinstance(logger, Tracker):
      trackers.append(logger)
    elif isinstance(logger, str):
      trackers.append(make(logger))
    else:
      raise SettingsError(f"loggers holds {logger!r}; expected tracker names "
                          f"({sorted(TRACKERS)}) or vmaptune.reporting.tracking.Tracker instances")
  return trackers


__all__ = ["TRACKERS", "Tracker", "check", "export", "make", "resolve", "run_files"]
