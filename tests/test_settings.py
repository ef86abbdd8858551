"""Settings: checked in one place, NumPy scalars accepted, described for records."""

import dataclasses

import numpy as np
import optax
import pytest

import vmaptune as vt
from vmaptune.samplers import Narrow
from vmaptune.search.settings import Settings


def test_numpy_scalars_are_accepted_and_user_factories_are_not_rescheduled():
  Settings(sampler=Narrow(keep=np.float32(0.5), margin=np.float64(0.1)),
           population=np.int64(4)).check(100, vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)))
  factory = lambda hparams: optax.sgd(hparams["learning_rate"])
  assert vt.models.optimizers.scheduled(factory, "auto", 100) is factory
  builtin = vt.models.optimizers.BUILTIN["adamw"]
  assert vt.models.optimizers.scheduled(builtin, "auto", 100) is not builtin


def test_settings_are_described_for_records_with_the_sampler_and_strategy_spelled_out():
  described = Settings(sampler=Narrow(keep=0.5), strategy="halving").to_dict()
  assert described["sampler"] == "narrow(keep=0.5, margin=0.1)"
  assert described["strategy"] == "halving(eta=3, min_epochs=1)"
  # Every setting, but no budget key for a run without one (its records stay as they were).
  assert described["optimizer"] == "adamw" and set(described) == {
      f.name for f in dataclasses.fields(Settings)} - {"budget"}
  assert Settings(budget="5m").to_dict()["budget"] == "5m"
  with pytest.raises(vt.SettingsError, match=r"unknown settings \['keep'\]; expected some of"):
    Settings.from_kwargs({"keep": 0.5})


@pytest.mark.parametrize("change, message", [
    (dict(sampler="bogus"),
     r"sampler='bogus' is unknown; expected one of \['density', 'evolution', 'narrow', 'optuna'\]"),
    (dict(sampler="narrow(keep=2)"), r"keep=2; expected a fraction in \(0, 1\]"),
    (dict(strategy="pbt(fraction=0.9)"), r"fraction=0.9; expected a fraction in \(0, 0.5\]"),
    (dict(seeds=2, strategy="halving"), "seeds=2 needs strategy='random'"),
    (dict(matmul_precision="fp8"), r"matmul_precision='fp8'; expected one of"),
])
def test_bad_settings_are_named_with_what_was_expected(change, message):
  with pytest.raises(vt.SettingsError, match=message):
    Settings(population=4, epochs=4, **change).check(
        100, vt.Space(learning_rate=vt.LogUniform(1e-3, 1.0)))
