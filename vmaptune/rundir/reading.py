"""Reading the run directory's JSON within bounds: a size per file, a length per
line of ``trials.jsonl``, a depth per value.

A run directory may come from anywhere (a copy, an archive, a damaged disk), so
what it holds is read as untrusted: a file or a line larger than any run
writes is refused before it is held in memory whole, and a value nested deeper
than any record is refused instead of exhausting Python's stack. Each refusal
is a sentence (``problem``) that the damage checks (:mod:`vmaptune.rundir.damage`)
turn into the error naming the file and the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import IO, Any

# Bounds far above what a run writes: a record holds one training loss per epoch (about 20
# bytes each: 64 MiB is over three million epochs); a summary a few kilobytes per round.
MAX_LINE_BYTES = 64 << 20
MAX_FILE_BYTES = 256 << 20
_PIECE = 1 << 20  # Read this much at a time: read(n) and readline(n) set n bytes aside.
# A record nests 2 levels of lists and objects, a summary up to 6 (7 with list-valued categories).
MAX_DEPTH = 64


_TOO_DEEP = f"is nested deeper than {MAX_DEPTH} levels, deeper than anything a run writes"


def _size(limit: int) -> str:
  return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def parse_json(raw: bytes) -> tuple[Any, str | None]:
  """The JSON value of ``raw`` (UTF-8), or what makes it unreadable."""
  try:
    value = json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError:
    return None, "is not text (it holds bytes that are not UTF-8)"
  except RecursionError:  # The parser recurses once per nested array or object.
    return None, _TOO_DEEP
  except ValueError as e:
    return None, f"is not valid JSON ({e})"
  if _deeper_than(value, MAX_DEPTH):
    return None, _TOO_DEEP
  return value, None


def _deeper_than(value: Any, limit: int) -> bool:
  """Whether ``value`` (parsed JSON) nests lists and dicts more than ``limit`` deep;
  walked without recursion, so that no depth can exhaust the stack."""
  pending = [(value, 1)]
  while pending:
    item, depth = pending.pop()
    children = item.values() if isinstance(item, dict) else item if isinstance(
        item, list) else ()
    for child in children:
      if isinstance(child, (dict, list)):
        if depth + 1 > limit:
          return True
        pending.append((child, depth + 1))
  return False


def read_json(path: str, limit: int = MAX_FILE_BYTES) -> tuple[Any, str | None]:
  """A JSON file's value, or what makes it unreadable (a file over ``limit`` bytes
  is refused having read no more than that)."""
  too_large = (f"is larger than {_size(limit)}, larger than any run writes (it was not "
               "read whole)")
  try:
    with open(path, "rb") as f:
      if os.fstat(f.fileno()).st_size > limit:  # Known without reading a regular file.
        return None, too_large
      raw = _read_at_most(f, limit)  # Anything else stops here.
  except OSError as e:
    return None, f"cannot be read ({e.strerror or e})"
  if raw is None:
    return None, too_large
  if not raw.strip():
    return None, "is empty"
  return parse_json(raw)


def read_lines(path: str, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, str | None]]:
  """``trials.jsonl``'s lines in order, each with ``None`` or what is wrong with it (a
  sentence to follow "line N"): a line over ``limit`` bytes is refused having held no
  more than that, and ends the lines (what follows it cannot be told apart). No file:
  no lines."""
  if not os.path.exists(path):
    return
  with open(path, "rb") as f:
    while True:
      line = _read_line(f, limit)
      if line is None:
        yield b"", (f"is longer than {_size(limit)}, longer than any record (it was not "
                    "read whole)")
        return
      if not line:
        return
      yield line, None


def _read_line(f: IO[bytes], limit: int) -> bytes | None:
  """The next line (``b""`` at the end), read in pieces; ``None`` past ``limit`` bytes."""
  pieces, length = [], 0
  while True:
    piece = f.readline(min(_PIECE, limit + 1 - length))
    pieces.append(piece)
    length += len(piece)
    if length > limit:
      return None
    if not piece or piece.endswith(b"\n"):
      return b"".join(pieces)


def _read_at_most(f: IO[bytes], limit: int) -> bytes | None:
  """The rest of ``f``, read in pieces (``read(n)`` sets ``n`` bytes aside first);
  ``None`` past ``limit`` bytes."""
  pieces, length = [], 0
  while piece := f.read(min(_PIECE, limit + 1 - length)):
    pieces.append(piece)
    length += len(piece)
    if length > limit:
      return None
  return b"".join(pieces)
