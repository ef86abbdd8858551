"""The search space: distributions, the :class:`Space` of named ones, structural
parameters and the buckets they make.

- ``distributions``: continuous distributions (:class:`LogUniform`, :class:`Uniform`),
  their ranges and narrowing in their own scale;
- ``discrete``: integers and choices (:class:`IntUniform`, :class:`Choice`);
- ``space``: :class:`Space`, sampling by seed, the unit cube of traced values;
- ``structural``: buckets, one model and batch size per combination of structural values.
"""

from vmaptune.space.discrete import Choice, IntUniform
from vmaptune.space.distributions import Distribution, LogUniform, Uniform
from vmaptune.space.space import Space

__all__ = ["Choice", "Distribution", "IntUniform", "LogUniform", "Space", "Uniform"]
