"""What every tracker shares: the :class:`Tracker` interface and exporting a run directory.

A tracker sends a run where researchers already look (MLflow, TensorBoard). It
is told a run in three steps, the same whether the run is live (``tune(...,
loggers=[...])``, ``vmaptune run --log-to``) or already written
(``vmaptune export RUN_DIR --to``, :func:`export`):

1. :meth:`Tracker.start` with the run's config (``config.json``'s content:
   ``settings``, ``space``, ``scoring``, ``model``, ``data``,
   ``environment``; ``scoring`` names the objective's metrics, which
   trackers log as ``val_<metric>``, and is absent from runs written before
   objectives: classification's) and a key naming the run (the run
   directory's absolute path, or ``None`` for a run without one);
2. :meth:`Tracker.log_round` once per completed round, with the round's
   summary entry (``summary.json``'s ``rounds[i]``) and its trial records
   (``trials.jsonl`` lines);
3. :meth:`Tracker.finish` with the summary (chosen trial, confirmation,
   final fit, ``best_params``) and the files to attach (figures, the best
   parameters), once at the end and again after the final fit.

Trackers must be idempotent: a round or a trial told twice (an export run
again, a resumed run) is recorded once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any


class Tracker:
  """Receives a run as it completes (see the module). Subclasses implement the three steps."""

  name = "tracker"

  def start(self, config: Mapping[str, Any], key: str | None = None) -> None:
    """The run begins (or is resumed, or exported): its config."""
    raise NotImplementedError

  def log_round(self, entry: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> None:
    """A completed round: its summary entry and its trials' records."""
    raise NotImplementedError

  def finish(self, summary: Mapping[str, Any], files: Mapping[str, str] | None = None) -> None:
    """The run's summary so far (chosen trial, confirmation, final fit) and
    ``{name: path}`` files to attach; may be called again after the final fit."""
    raise NotImplementedError

  def stop(self, status: str) -> None:
    """The run stopped before its end: ``"FAILED"`` (an error) or ``"KILLED"`` (Ctrl-C)."""

  def close(self) -> None:
    """Flushes and releases what the tracker holds."""


def run_files(run: Any) -> dict[str, str]:
  """The files of a run directory worth attaching: the best parameters, the
  config's copy, the report's figures and page (when ``vmaptune report``
  wrote them). Only regular files inside the run directory are attached:
  symbolic links, and files reached through a linked folder, are skipped
  with a warning naming them (an export must not upload what a link points
  to, a credentials file, say).

  Returns:
    ``{name to attach as: path}``.
  """
  candidates = [(name, os.path.join(run.path, name))
                for name in ("best_params.msgpack", "config.py")]
  figures = os.path.join(run.path, "report")
  if os.path.isdir(figures):
    candidates += [(f"report/{name}", os.path.join(figures, name))
                   for name in sorted(os.listdir(figures)) if name.endswith((".png", ".html"))]
  root = os.path.realpath(run.path)
  files, skipped = {}, []
  for name, path in candidates:
    if not os.path.lexists(path):
      continue
    why = _not_attachable(path, root)
    if why is None:
      files[name] = path
    else:
      skipped.append(f"{path} ({why})")
  if skipped:
    warnings.warn(f"not attached (nothing outside the run directory is sent): "
                  f"{'; '.join(skipped)}", RuntimeWarning, stacklevel=2)
  return files


def _not_attachable(path: str, root: str) -> str | None:
  """Why ``path`` must not be sent (a link, outside ``root``, not a file), or ``None``."""
  if os.path.islink(path):
    return f"a symbolic link to {os.readlink(path)}"
  real = os.path.realpath(path)
  if os.path.commonpath([real, root]) != root:
    return f"its real path, {real}, is outside the run directory"
  if not os.path.isfile(real):
    return "not a regular file"
  return None


def export(run: Any, tracker: Tracker) -> None:
  """Tells ``tracker`` a run directory's completed rounds, as a live run would
  have (see the module): a finished run or one still running.

  Args:
    run: a :class:`vmaptune.rundir.Run` (``vmaptune.load_run(path)``).
    tracker: where to send it.
  """
  tracker.start(run.config, key=os.path.abspath(run.path))
  for index in range(run.rounds_completed):
    entry = run.round_entry(index)
    tracker.log_round(entry, [r for r in run.records if r["round"] == index])
  if run.summary:
    tracker.finish(run.summary, run_files(run))
  tracker.close()
