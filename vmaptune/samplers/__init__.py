"""Samplers: which configurations each round tries, learning from every finished trial.

* :class:`Narrow` (``"narrow"``, the default): the classic recipe; random
  search whose ranges narrow around the best trials, round by round.
* :class:`Density` (``"density"``): a sampler of the TPE family that proposes
  a whole round at once from good and bad densities of every trial so far,
  kept diverse, with a share of exploration.
* :class:`Evolution` (``"evolution"``): CMA-ES (evosax's, an optional
  dependency) whose generation is the round.
* :class:`Optuna` (``"optuna"``, or ``Optuna(study)``): an Optuna study's
  sampler (TPE by default) proposes the configurations (needs the
  ``optuna`` extra).

Choose one by name, with settings, in a script, a config or on the command
line: ``sampler="narrow(keep=0.3)"``, ``sampler=vt.samplers.Optuna(study)``,
``--set 'sampler=optuna(sampler="cmaes")'``. A strategy (see
:mod:`vmaptune.strategies`) decides how the proposed configurations are
trained. A new sampler is a small :class:`Sampler` subclass in its own file
(see :mod:`vmaptune.samplers.base`).
"""

from __future__ import annotations

from typing import Any

from vmaptune.samplers.base import Sampler, Told
from vmaptune.samplers.density import Density
from vmaptune.samplers.evolution import Evolution
from vmaptune.samplers.narrow import Narrow
from vmaptune.samplers.optuna import Optuna
from vmaptune.validation import from_spec

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (Narrow, Density, Evolution,
                                                                Optuna)}


def parse(spec: Any) -> Sampler:
  """A :class:`Sampler` from itself, a name, or ``"name(key=value, ...)"``.

  >>> parse("narrow(keep=0.5)")
  Narrow(keep=0.5, margin=0.1)

  Raises:
    SettingsError: an unknown name, malformed text, or an unknown setting.
  """
  if isinstance(spec, Sampler):
    return spec
  return from_spec(spec, SAMPLERS, "sampler", "narrow(keep=0.2)")


__all__ = ["SAMPLERS", "Density", "Evolution", "Narrow", "Optuna", "Sampler", "Told", "parse"]
