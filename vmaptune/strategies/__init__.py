"""Strategies: how a round trains the configurations its sampler proposes.

* :class:`RandomSearch` (``"random"``, the default): every configuration
  trains the full budget.
* :class:`SuccessiveHalving` (``"halving"``): all train a first rung of
  epochs, the best ``1/eta`` continue, and so on up to the full budget.
* :class:`Hyperband` (``"hyperband"``): brackets of successive halving that
  start with fewer, longer-trained lanes.
* :class:`PopulationBasedTraining` (``"pbt"``): every ``interval`` epochs the
  worst lanes copy good ones and explore.

Choose one by name, with settings, in a script, a config or on the command
line: ``strategy="halving(eta=4)"``, ``--set 'strategy=pbt(interval=4)'``.
A new strategy is a small :class:`Strategy` subclass in its own file (see
:mod:`vmaptune.strategies.base`).
"""

from __future__ import annotations

from typing import Any

from vmaptune.strategies.base import RoundContext, Strategy
from vmaptune.strategies.halving import SuccessiveHalving
from vmaptune.strategies.hyperband import Hyperband
from vmaptune.strategies.pbt import PopulationBasedTraining
from vmaptune.strategies.random import RandomSearch
from vmaptune.validation import from_spec

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomSearch, SuccessiveHalving, Hyperband,
                              PopulationBasedTraining)}


def parse(spec: Any) -> Strategy:
  """A :class:`Strategy` from itself, a name, or ``"name(key=value, ...)"``.

  >>> parse("halving(eta=4)")
  SuccessiveHalving(eta=4, min_epochs=1)

  Raises:
    SettingsError: an unknown name, malformed text, or an unknown setting.
  """
  if isinstance(spec, Strategy):
    return spec
  return from_spec(spec, STRATEGIES, "strategy", "halving(eta=3)")


__all__ = ["STRATEGIES", "Hyperband", "PopulationBasedTraining", "RandomSearch", "RoundContext",
           "Strategy", "SuccessiveHalving", "parse"]
