"""One writer per run directory: an exclusive lock on its ``.lock`` file.

The lock is ``fcntl.flock`` on an open file, so the operating system releases
it when the holder's process ends in any way (an exception, Ctrl-C,
``kill -9``, a crash): a killed run never leaves a stale lock behind. The
holder writes who it is (host, process id, start time) into the file, so a
refused writer can say who holds the directory. The file is opened without
following a link, and one with other hard links is refused: a planted
``.lock -> ~/.bashrc`` would otherwise be emptied. Readers (``load_run``,
``vmaptune show``, ``vmaptune report``) take no lock: they read only what
complete rounds committed.

On platforms without ``fcntl`` (Windows) the lock is not taken; on a file
system without ``flock`` support the run warns and goes on without it.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import warnings
from typing import Any

from vmaptune.errors import RunDirectoryBusyError
from vmaptune.rundir.files import LOCK_FILE, open_in_place

try:
  import fcntl
except ImportError:  # Windows: no advisory locks of this kind.
  fcntl = None

# flock() errors of file systems that do not lock (Lustre without -o flock, some FUSE mounts).
UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def holder_description(holder: dict[str, Any] | None) -> str:
  """``"process 123 on host-a, started 2026-11-30 04:12:03 UTC"``, or a
  placeholder when the holder has not written itself down yet."""
  if not holder:
    return "another process (it has not written its name into the lock file yet)"
  return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
          f"{holder.get('started', '?')}")


class WriterLock:
  """The exclusive writer lock of one run directory, held until :meth:`release`
  (or until the process ends).

  Raises:
    RunDirectoryBusyError: another process (or another open run in this
      process) holds it; the message names the holder.
    RunDirectoryError: ``.lock`` is a link (symbolic, or a file with other
      hard links) or not a regular file; it is left as it is.
    OSError: the directory cannot be written (read-only, full).
  """

  def __init__(self, directory: str):
    self.path = os.path.join(directory, LOCK_FILE)
    self._fd: int | None = None
    os.makedirs(directory, exist_ok=True)
    # Locked through a read-only descriptor where the file system allows it: the lock
    # then holds no file open for writing, so the file system can still be remounted
    # read-only under a run. NFSv4 takes exclusive locks only on a writable one.
    # Never through a link: a planted `.lock -> ~/.bashrc` would be emptied.
    self._fd = open_in_place(self.path, os.O_RDONLY | os.O_CREAT)
    if fcntl is None:
      return
    try:
      try:
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if e.errno != errno.EBADF:
          raise
        os.close(self._fd)
        self._fd = open_in_place(self.path, os.O_RDWR)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = self._read_holder()
      os.close(self._fd)
      self._fd = None
      raise RunDirectoryBusyError(
          f"{directory} is being written by {holder_description(holder)}: one run directory "
          "takes one writer, so this run was not started and nothing in the directory "
          "changed. Wait for that run to finish (vmaptune show reads its completed rounds "
          "meanwhile), stop it, or choose another --out / out directory",
          holder) from None
    except OSError as e:
      if e.errno not in UNSUPPORTED:
        os.close(self._fd)
        self._fd = None
        raise
      warnings.warn(f"{directory} is on a file system without flock() locks ({e.strerror}): "
                    "the run goes on without its writer lock, so nothing stops a second "
                    "writer; start one run per directory", RuntimeWarning, stacklevel=4)
    holder = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    try:
      self._rewrite(json.dumps(holder) + "\n")
    except OSError:
      self.release()
      raise

  def _rewrite(self, text: str) -> None:
    """Replaces the lock file's content (never through a link)."""
    fd = open_in_place(self.path, os.O_WRONLY)
    try:
      os.ftruncate(fd, 0)
      os.write(fd, text.encode())
    finally:
      os.close(fd)

  def _read_holder(self) -> dict[str, Any] | None:
    try:
      with open(self.path) as f:
        holder = json.loads(f.read() or "null")
    except (OSError, ValueError):
      return None
    return holder if isinstance(holder, dict) else None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    """Clears the holder's name and releases the lock (idempotent)."""
    if self._fd is None:
      return
    try:
      self._rewrite("")
    except OSError:
      pass  # A full or read-only disk: the lock is released all the same.
    os.close(self._fd)  # Closing the descriptor releases the flock.
    self._fd = None

  def __del__(self):
    self.release()
