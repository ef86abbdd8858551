"""The checks every module shares, and the errors they raise: the bad value named,
what was expected said, in vmaptune's own error types."""

import re

import numpy as np
import pytest

import vmaptune as vt
from vmaptune import errors
from vmaptune.search.settings import Settings
from vmaptune.validation import (
  fraction,
  from_spec,
  one_of,
  optional_whole_number,
  parse_spec,
  real_number,
  to_spec,
  whole_number,
)


def test_whole_numbers_are_ints_not_bools_inside_their_bounds():
  assert whole_number("population", np.int64(8), 1) == 8
  for value, message in [(True, r"population=True; expected a whole number >= 1"),
                         (2.0, r"population=2.0; expected a whole number >= 1"),
                         (0, r"population=0; expected a whole number >= 1")]:
    with pytest.raises(vt.SettingsError, match=message):
      whole_number("population", value, 1)
  with pytest.raises(ValueError, match=r"eta=9; expected a whole number in \[2, 4\] \(why\)"):
    whole_number("eta", 9, 2, 4, why=" (why)", error=ValueError)
  assert optional_whole_number("chunk", None, 1) is None
  with pytest.raises(vt.SettingsError, match="chunk=0; expected a whole number >= 1 or None"):
    optional_whole_number("chunk", 0, 1)


def test_fractions_and_numbers_name_their_interval():
  assert fraction("keep", np.float32(0.5), low_open=True) == 0.5
  for value in (0.0, 1.5, float("nan"), "0.5", True):
    with pytest.raises(vt.SettingsError, match=r"expected a fraction in \(0, 1\]"):
      fraction("keep", value, low_open=True)
  with pytest.raises(vt.DataError, match=r"val_fraction=1; expected a fraction in \[0, 1\)"):
    fraction("val_fraction", 1, high_open=True, error=vt.DataError)
  with pytest.raises(ValueError, match=r"resample=2; expected a probability in \[0, 1\]"):
    real_number("resample", 2, 0, 1, expected="a probability in", error=ValueError)
  assert one_of("schedule", "cosine", ["auto", "cosine"]) == "cosine"
  with pytest.raises(vt.SettingsError, match=r"schedule='linear'; expected one of \['auto'\]"):
    one_of("schedule", "linear", ["auto"])


def test_specs_read_and_write_names_with_settings():
  assert parse_spec(" halving( eta=4, min_epochs=2 ) ", "strategy") == \
      ("halving", {"eta": 4, "min_epochs": 2})
  assert parse_spec("narrow", "sampler") == ("narrow", {})
  for bad in ("halving(3)", "halving(eta=", "halving(eta=os.sep)"):
    with pytest.raises(ValueError, match="expected name"):
      parse_spec(bad, "strategy")
  registry = vt.samplers.SAMPLERS
  narrow = from_spec("narrow(keep=0.5)", registry, "sampler", "narrow")
  assert narrow == vt.samplers.Narrow(keep=0.5) and to_spec(narrow) == \
      "narrow(keep=0.5, margin=0.1)"
  assert from_spec(to_spec(narrow), registry, "sampler", "narrow") == narrow
  with pytest.raises(ValueError, match=r"sampler 'narrow' has no setting \['eta'\]"):
    from_spec("narrow(eta=3)", registry, "sampler", "narrow")
  with pytest.raises(ValueError, match=r"sampler=3; expected one of \['density', 'evolution', "
                                       r"'narrow', 'optuna'\]"):
    from_spec(3, registry, "sampler", "narrow")


@pytest.mark.parametrize("text, why", [
    ("narrow(keep=1), (2)", "a tuple expression, not a call"),  # AttributeError before.
    ("narrow(keep=0.05)()", "a call after a call"),  # The setting was dropped before.
    ("narrow(keep=0.05)(margin=0.2)", "a call after a call"),
    ("narrow(keep=0.5).keep", "an attribute expression, not a call"),
    ("os.narrow(keep=0.5)", "a call of something other than a name"),
    ("narrow(0.5)", "positional values"),
    ("narrow(**{'keep': 0.5})", r"\*\* unpacking"),
    ("narrow(keep=0.5, keep=0.9)", "keep given more than once"),  # The last one won.
    ("narrow(keep=__import__('os'))", r"keep=__import__\('os'\) is not a literal value"),
    ("narrow(keep=" + "-" * 980 + "1)", "(nested too deeply|is not a literal value)"),
    ("narrow(keep=" + "-" * 100_000 + "1)", "is longer than any sampler"),  # MemoryError.
    ("narrow(keep=" + "(" * 5000 + "1" + ")" * 5000 + ")", "is longer than any sampler"),
    ("narrow(keep=" + "[" * 300 + "]" * 300 + ")", "too many nested parentheses"),
])
def test_a_spec_is_one_call_with_literal_keywords_and_anything_else_is_named(text, why):
  with pytest.raises(vt.SettingsError) as error:
    parse_spec(text, "sampler", "narrow(keep=0.2)")
  message = str(error.value)
  shown = repr(text) if len(repr(text)) <= 120 else repr(text)[:60]
  assert message.startswith(f"sampler={shown}"), message
  assert re.search(why, message), message
  assert message.endswith("expected name(key=value, ...): one call with literal values, "
                          "e.g. 'narrow(keep=0.2)'"), message
  # Through the settings a run checks, before anything compiles: the same error.
  with pytest.raises(vt.SettingsError, match=re.escape(message)):
    Settings(sampler=text).check(360, vt.Space(learning_rate=vt.LogUniform(1e-3, 1)))


def test_every_error_is_vmaptunes_own_and_the_builtin_it_refines():
  for kind in (errors.SettingsError, errors.SpaceError, errors.DataError, errors.ConfigError,
               errors.DistributedError, errors.NNXStateError):
    assert issubclass(kind, vt.VmaptuneError) and issubclass(kind, ValueError)
  for kind in (errors.AllDivergedError, errors.OutOfMemoryError):
    assert issubclass(kind, vt.VmaptuneError) and issubclass(kind, RuntimeError)
  assert errors.AllDivergedError("no", partial=[]).partial == []
