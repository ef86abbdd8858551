"""The checks every module shares: whole numbers, fractions, choices, and
``name(key=value, ...)`` specs of samplers and strategies.

Each check names the bad value and what was expected, and raises the error
type its caller asks for (:class:`~vmaptune.errors.SettingsError` by default).

>>> whole_number("population", 8, 1)
8
>>> parse_spec("halving(eta=4)", "strategy")
('halving', {'eta': 4})
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from vmaptune.errors import SettingsError


def is_whole(value: Any) -> bool:
  """Whether ``value`` is an integer (a bool is not)."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def whole_number(name: str, value: Any, minimum: int, maximum: int | None = None, *,
                 what: str = "a whole number", why: str = "",
                 error: type[Exception] = SettingsError) -> int:
  """``value`` as an int, if it is a whole number in ``[minimum, maximum]``.

  Args:
    name: the setting, for the message.
    value: what was given.
    minimum, maximum: the bounds (``maximum=None``: no upper bound).
    what: how the expected value is described, e.g. ``"a whole number of epochs"``.
    why: appended to the message, e.g. ``" (the training split has 360 examples)"``.
    error: the exception type raised.

  Raises:
    error: ``"{name}={value!r}; expected {what} >= {minimum}{why}"`` (or
      ``in [minimum, maximum]``).
  """
  if not is_whole(value) or value < minimum or (maximum is not None and value > maximum):
    bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise error(f"{name}={value!r}; expected {what} {bound}{why}")
  return int(value)


def optional_whole_number(name: str, value: Any, minimum: int, *,
                          error: type[Exception] = SettingsError) -> int | None:
  """:func:`whole_number`, or ``None`` (automatic)."""
  if value is None:
    return None
  return whole_number(name, value, minimum, why=" or None (automatic)", error=error)


def real_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False, expected: str = "a number in",
                error: type[Exception] = SettingsError) -> float:
  """``value`` as a float, if it is a finite number in the interval.

  Args:
    name: the setting, for the message.
    value: what was given.
    low, high: the interval's ends; ``low_open`` / ``high_open`` exclude them.
    expected: what the interval is preceded by in the message, e.g. ``"a
      fraction in"`` gives ``"expected a fraction in (0, 1]"``.
    error: the exception type raised.
  """
  inside = (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high))
  if not inside:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise error(f"{name}={value!r}; expected {expected} {interval}")
  return float(value)


def greater_than(name: str, value: Any, bound: float, *, what: str = "a number",
                 error: type[Exception] = SettingsError) -> float:
  """``value`` as a float, if it is a finite number above ``bound``."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)) or not math.isfinite(value) \
      or not value > bound:
    raise error(f"{name}={value!r}; expected {what} > {bound:g}")
  return float(value)


def fraction(name: str, value: Any, *, low_open: bool = False, high_open: bool = False,
             error: type[Exception] = SettingsError) -> float:
  """:func:`real_number` in ``[0, 1]`` (ends excluded as asked), called a fraction."""
  return real_number(name, value, 0.0, 1.0, low_open=low_open, high_open=high_open,
                     expected="a fraction in", error=error)


def one_of(name: str, value: Any, options: Iterable[Any], *,
           error: type[Exception] = SettingsError) -> Any:
  """``value`` if it is one of ``options``, else ``error`` listing them."""
  options = list(options)
  if isinstance(value, (list, dict, set)) or value not in options:
    raise error(f"{name}={value!r}; expected one of {options}")
  return value


# The longest spec a setting takes is under 100 characters; a longer text is refused unparsed.
SPEC_LENGTH = 1000


def _shown(value: Any, limit: int = 120) -> str:
  """``value`` as a message quotes it: its repr, cut in the middle when long."""
  shown = repr(value)
  if len(shown) <= limit:
    return shown
  size = f" ({len(value)} characters)" if isinstance(value, str) else ""
  return f"{shown[:limit // 2]}...{shown[-limit // 2:]}{size}"


def parse_spec(spec: str, kind: str, example: str = "") -> tuple[str, dict[str, Any]]:
  """Splits ``"name"`` or ``"name(key=value, ...)"`` into the name and its settings.

  The text must be a name alone, or exactly one call of a name with keyword
  arguments whose values are Python literals (numbers, strings, tuples, lists,
  ``None``, ``True``), each key once; anything else is refused unevaluated.

  Args:
    spec: the text, e.g. ``"halving(eta=4)"``.
    kind: what it names (``"strategy"``, ``"sampler"``), for messages.
    example: a valid spec the message shows, e.g. ``"halving(eta=3)"``.

  Raises:
    SettingsError: what the text is instead (a second call, positional or
      computed values, a repeated key, nesting or length beyond any spec),
      naming the text and what is expected.
  """
  text = spec.strip()
  if "(" not in text and ")" not in text:
    return text, {}
  expected = ("expected name(key=value, ...): one call with literal values"
              + (f", e.g. {example!r}" if example else ""))
  if len(text) > SPEC_LENGTH:
    raise SettingsError(f"{kind}={_shown(spec)} is longer than any {kind} "
                        f"({SPEC_LENGTH} characters at most); {expected}")
  try:
    call = ast.parse(text, mode="eval").body
    settings = _call_settings(call, text)
  except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as e:
    why = "nested too deeply" if isinstance(e, RecursionError | MemoryError) else str(e)
    raise SettingsError(f"{kind}={_shown(spec)}: {why}; {expected}") from None
  return call.func.id, settings


def _call_settings(call: ast.AST, text: str) -> dict[str, Any]:
  """The keyword values of ``name(key=value, ...)`` (``call``, parsed from ``text``);
  ``ValueError`` saying what else it is."""
  if not isinstance(call, ast.Call):
    name = type(call).__name__.lower()
    raise ValueError(f"{'an' if name[0] in 'aeiou' else 'a'} {name} expression, not a call")
  if not isinstance(call.func, ast.Name):
    raise ValueError("a call after a call" if isinstance(call.func, ast.Call) else
                     "a call of something other than a name")
  if call.args:
    raise ValueError("positional values")
  keys = [kw.arg for kw in call.keywords]
  if None in keys:
    raise ValueError("** unpacking")
  repeated = sorted({key for key in keys if keys.count(key) > 1})
  if repeated:
    raise ValueError(f"{', '.join(repeated)} given more than once")
  settings = {}
  for kw in call.keywords:
    try:
      settings[kw.arg] = ast.literal_eval(kw.value)
    except ValueError:
      raise ValueError(f"{kw.arg}={ast.get_source_segment(text, kw.value)} is not a literal "
                       "value") from None
  return settings


def from_spec(spec: Any, registry: dict[str, type], kind: str, example: str) -> Any:
  """An instance of a registered dataclass from its name, or ``"name(key=value, ...)"``.

  Args:
    spec: the text, or already an instance of one of ``registry``'s classes.
    registry: ``{name: class}``; each class a dataclass whose fields are its settings.
    kind: what is named (``"strategy"``, ``"sampler"``), for messages.
    example: a spec shown in the message for an unknown name.

  Raises:
    SettingsError: an unknown name, malformed text (see :func:`parse_spec`), or
      an unknown setting.
  """
  if isinstance(spec, tuple(registry.values())):
    return spec
  if not isinstance(spec, str):
    raise SettingsError(f"{kind}={_shown(spec)}; expected one of "
                        f"{sorted(registry)} or a {kind} object")
  name, settings = parse_spec(spec, kind, example)
  if name not in registry:
    raise SettingsError(f"{kind}={_shown(spec)} is unknown; expected one of "
                        f"{sorted(registry)}, optionally with settings, e.g. {example!r}")
  cls = registry[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(settings) - fields)
  if unknown:
    raise SettingsError(f"{kind} {name!r} has no setting {unknown}; it takes "
                        f"{sorted(fields) or 'none'}")
  return cls(**settings)


def to_spec(obj: Any) -> str:
  """``name(key=value, ...)`` of a registered dataclass instance (the name alone
  without fields): the text :func:`from_spec` reads back."""
  fields = ", ".join(f"{f.name}={getattr(obj, f.name)!r}" for f in dataclasses.fields(obj)
                     if f.repr)
  return f"{obj.name}({fields})" if fields else obj.name
