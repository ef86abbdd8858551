"""Reading a JSON record field by field, each check naming the field and what was expected.

The run format's records (:class:`vmaptune.trials.table.Trial` and those of
:mod:`vmaptune.rundir.records`) read their JSON through :func:`take`, so a
damaged file is reported as one :class:`RecordError` naming the field.

>>> take({"epochs": "3"}, "epochs", INT)
Traceback (most recent call last):
...
vmaptune.trials.fields.RecordError: 'epochs' is str, expected int
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

INT = (int,)
BOOL = (bool,)
STR = (str,)
FLOAT = (int, float)
NUMBER = (int, float, type(None))  # None: NaN, or no score (JSON has no NaN).
DICT = (dict,)
LIST = (list,)
_ABSENT = object()


class RecordError(ValueError):
  """A record's field is missing or holds the wrong type.

  Attributes:
    field: the field's path in the record, e.g. ``"epochs"`` or
      ``"confirmation.candidates[1].round"`` (``""``: the record itself).
    problem: what is wrong, without the field's name.
  """

  def __init__(self, field: str, problem: str):
    self.field, self.problem = field, problem
    super().__init__(f"{field!r} {problem}" if field else problem)


def _names(types: tuple[type, ...]) -> str:
  names = ["null" if t is type(None) else "number" if t is float else t.__name__
           for t in types if not (t is int and float in types)]
  return " or ".join(names)


def check(value: Any, types: tuple[type, ...], field: str = "") -> Any:
  """``value`` if it is one of ``types`` (JSON ``true`` is no ``int``), else a
  :class:`RecordError` for ``field``."""
  if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
    found = repr(value) if isinstance(value, bool) else type(value).__name__
    raise RecordError(field, f"is {found}, expected {_names(types)}")
  return value


def obj(value: Any, field: str = "") -> dict[str, Any]:
  """``value`` if it is a JSON object."""
  if not isinstance(value, dict):
    what = f"a JSON {type(value).__name__} where an object was expected"
    raise RecordError(field, f"is {what}" if field else what)
  return value


def take(record: Any, key: str, types: tuple[type, ...], default: Any = _ABSENT) -> Any:
  """``record[key]``, checked to be one of ``types``; ``default`` where it is
  absent (without one, an absent field is an error)."""
  record = obj(record)
  if key not in record:
    if default is not _ABSENT:
      return default
    raise RecordError("", f"no {key!r} field")
  return check(record[key], types, key)


def numbers(record: Any, key: str, default: Any = _ABSENT) -> list[float | None] | None:
  """``record[key]``: a list of numbers (``null`` for NaN), checked element-wise."""
  values = take(record, key, LIST, default)
  if values is None or values is default:
    return values
  for i, value in enumerate(values):
    check(value, NUMBER, f"{key}[{i}]")
  return values


@contextlib.contextmanager
def within(prefix: str) -> Iterator[None]:
  """Names the fields of a nested record from the enclosing one: errors
  inside the block read ``'<prefix>.<field>' ...``."""
  try:
    yield
  except RecordError as e:
    if e.field:
      field = f"{prefix}{'' if e.field.startswith('[') else '.'}{e.field}"
      raise RecordError(field, e.problem) from None
    if e.problem.startswith("no "):  # "no 'x' field" -> "'prefix' has no 'x' field"
      raise RecordError(prefix, f"has {e.problem}") from None
    raise RecordError(prefix, e.problem if e.problem.startswith("is ")
                      else f"is {e.problem}") from None
