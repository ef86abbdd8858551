"""Bounded reads of byte streams: a compressed file is read piece by piece and
never past the size its header declares, so a small archive that expands to
gigabytes (a decompression bomb) costs no more memory than the data it should hold.
"""

from __future__ import annotations

from typing import IO

CHUNK = 1 << 20  # Bytes read at a time: memory grows with the data actually found.


def read_at_most(stream: IO[bytes], limit: int) -> bytes | bytearray:
  """At most ``limit`` bytes of ``stream``, fewer where it ends first.

  Reads in pieces of :data:`CHUNK` bytes, so that memory follows what the
  stream holds, not ``limit`` (a declared size may be absurd). Ask for one byte
  more than expected to learn whether a stream is longer than it should be.
  The result is not copied once read (``np.frombuffer`` takes either type).
  """
  if limit <= CHUNK:
    return stream.read(limit)
  found = bytearray()
  while len(found) < limit:
    piece = stream.read(min(CHUNK, limit - len(found)))
    if not piece:
      break
    found += piece
  return found
