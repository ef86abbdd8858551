"""A denoised estimate of each trial's expected validation score, from its neighbours.

One trial's validation score is one draw: seeds alone move it by a point of
accuracy or more on a small validation split, so the best raw score of a
round of hundreds is mostly the luckiest draw near the top. Its neighbours
were drawn with other seeds' luck, and near the top there are many of them.
:func:`estimate` fits a Gaussian process with a noise term to the scores,
over the traced parameters in the unit cube (each axis a parameter's range
in its own scale, log for :class:`~vmaptune.space.LogUniform`: see
:meth:`~vmaptune.space.space.Space.to_unit`), and gives each trial the
posterior mean of the noise-free score at its configuration and that mean's
standard error.

What is fitted together (a *group*): the configurations (trials started from
initialisation, see :attr:`TrialTable.is_configuration`) that share every
structural value and stopped at the same epoch. Each combination of
structural values is its own model, so its own function of the traced
parameters; a trial stopped at an early rung scores at another epoch, so on
another function too. Traced integers are numbers like the others (their
cells' centres in the unit cube); a :class:`~vmaptune.space.Choice` is always
structural, so there are no categorical traced parameters to encode. Diverged
trials (or NaN / infinite scores) and population-based-training children
(their weights come from a parent, not from their configuration alone) get no
estimate (NaN).

The model: ``ConstantKernel * RBF(a length scale per parameter) +
WhiteKernel`` on each group's scores standardised, its hyperparameters (the
noise's level among them) by maximum marginal likelihood with scikit-learn's
:class:`~sklearn.gaussian_process.GaussianProcessRegressor`, on at most
``fit_size`` of the group's trials; the estimates are the posterior given at
most ``condition_size`` of them, and each trial's own score. Where a group
has more trials than that, the rows are those nearest (in the unit cube) to
its best raw scores and an even sample of the rest (:func:`fit_rows`). The
marginal likelihood's optimisation is what costs; the posterior is one
Cholesky factor. Linear algebra runs on one thread: the matrices are small,
and on a busy machine many threads made the fit many times slower. A group
of fewer than ``MIN_FIT`` trials keeps its raw scores, with the spread of
every estimated trial's score as their standard error.

Measured with ``python experiments/bench_estimate.py`` (2026-12-07, a shared
2-core CPU; ``experiments/results/estimate-cpu.json``): one call took 0.1-0.2 s
for 200 trials, 0.4-0.6 s for 1000 and 1.0-1.5 s for 4000 (2 and 6 traced
parameters, one group). On its synthetic searches of 300 trials (20 seeds
each), choosing by the estimate lost 0.00-0.34 points of accuracy to the best
trial where choosing by the raw score lost 0.21-1.15, and 48-68% of the true
values lay within one standard error of the estimate (68% if the standard
errors were exact: read them as somewhat optimistic). The same script's
Nadaraya-Watson kernel average (one bandwidth by leave-one-out) chose worse
than the Gaussian process in every setting.

>>> from vmaptune.space import LogUniform, Space
>>> from vmaptune.trials import TrialLog
>>> from vmaptune.trials.scoring import CLASSIFICATION
>>> space = Space(learning_rate=LogUniform(1e-4, 1.0))
>>> log = TrialLog(["learning_rate"], budget=1, round_index=0, scoring=CLASSIFICATION)
>>> rng = np.random.default_rng(0)
>>> for lane, lr in enumerate(np.geomspace(1e-4, 1.0, 61)):  # Best at 1e-2: lane 30.
...   accuracy = 0.9 - 0.05 * (np.log10(lr) + 2) ** 2 + 0.01 * rng.standard_normal()
...   trial = log.open(lane, {"learning_rate": lr}, start_epoch=0)
...   log.close(trial, 1, {"accuracy": accuracy, "loss": 0.0}, "finished")
>>> found = estimate(log.table(), space)
>>> int(np.argmax(log.table().score)), int(order_by(found)[0]), int(order_by(found, "lcb")[0])
(33, 31, 31)
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from vmaptune.errors import SettingsError
from vmaptune.space.space import Space
from vmaptune.trials import fields
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import Trial, TrialTable
from vmaptune.validation import whole_number

if TYPE_CHECKING:  # scikit-learn and SciPy load when a first estimate is made: they
  # take seconds to import, which every `import vmaptune` (and each process) would pay.
  from sklearn.gaussian_process.kernels import Kernel

MIN_FIT = 4  # A group of fewer trials keeps its raw scores.
FIT_SIZE = 300  # The most trials of a group the kernel's hyperparameters are fitted on ...
CONDITION_SIZE = 2000  # ... and the estimates are conditioned on.
NEAR_SHARE = 0.5  # The share of those nearest the group's best raw scores ...
ANCHORS = 5  # ... that is, nearest to any of these many best.
LCB_K = 1.0  # The lower confidence bound's standard errors below the estimate.
RULES = ("estimate", "lcb")


@dataclasses.dataclass(frozen=True)
class GroupFit:
  """The trials estimated together, and what their fit found.

  Attributes:
    values: the structural values they share, ``{name: value}`` (empty without any).
    reached: the epoch they stopped at.
    rows: int ``[n]``, their rows in the table.
    fitted: how many of them the kernel's hyperparameters were fitted on; 0
      when the group is smaller than ``MIN_FIT`` or its scores are all equal
      (the estimates are the raw scores).
    conditioned: how many of them the estimates are conditioned on (every
      trial's estimate also takes in its own score).
    noise_sd: the fitted noise's standard deviation, in the metric's units
      (the spread of one trial's score around its expected score); NaN when
      not fitted.
    kernel: the fitted kernel (scikit-learn's) over the unit cube, on the
      group's scores standardised (less their mean, over their standard
      deviation); ``None`` when not fitted. ``str(kernel)`` describes it.
  """

  values: dict[str, Any]
  reached: int
  rows: np.ndarray
  fitted: int
  conditioned: int
  noise_sd: float
  kernel: Kernel | None


@dataclasses.dataclass(frozen=True)
class Estimates:
  """Each trial's estimated expected validation score, and its standard error.

  Attributes:
    mean: float64 ``[T]``, the ranking metric's estimated expected value (in
      its own units); NaN for a trial left out (diverged, a non-finite score,
      a population-based-training child).
    stderr: float64 ``[T]``, the standard error of ``mean`` (NaN where it is;
      infinite where a lone trial's group and the table give no spread to
      judge it by).
    groups: the groups, in the order their first trial appears.
    scoring: the metrics' directions; the estimate is of ``scoring.rank_by``.
  """

  mean: np.ndarray
  stderr: np.ndarray
  groups: tuple[GroupFit, ...]
  scoring: Scoring

  def bound(self, k: float = LCB_K) -> np.ndarray:
    """float64 ``[T]``: the pessimistic end of ``mean ± k * stderr``:
    ``mean - k * stderr`` for a maximised metric, ``mean + k * stderr`` for a
    minimised one (the lower confidence bound of the score turned so that
    higher is better)."""
    return self.mean - k * self.stderr if self.scoring.maximize else self.mean + k * self.stderr

  def by(self, rule: str, k: float = LCB_K) -> np.ndarray:
    """float64 ``[T]``: what ``rule`` ranks by, in the metric's units:
    ``"estimate"`` the mean, ``"lcb"`` :meth:`bound` (``k`` standard errors)."""
    _check_rule(rule, k)
    return self.mean if rule == "estimate" else self.bound(k)


def order_by(estimates: Estimates, rule: str = "estimate", k: float = LCB_K) -> np.ndarray:
  """The rows that have an estimate, best first by ``rule`` (see
  :meth:`Estimates.by`) in the ranking metric's direction, ties by row.

  ``"estimate"`` chooses the best expected score; ``"lcb"`` the best score
  one can count on, passing over a configuration whose estimate rests on few
  or scattered neighbours (the confirmation stage's rule when seeds disagree widely).

  Returns:
    int ``[R]``, R the trials with a finite value.

  Raises:
    SettingsError: an unknown rule, or ``k`` not a finite number >= 0.
  """
  values = estimates.scoring.oriented(estimates.by(rule, k))
  rows = np.flatnonzero(np.isfinite(values))
  return rows[np.lexsort((rows, -values[rows]))]


def _check_rule(rule: str, k: float) -> None:
  if rule not in RULES:
    raise SettingsError(f"rule={rule!r}; expected one of {list(RULES)}")
  if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k < 0:
    raise SettingsError(f"k={k!r}; expected a finite number of standard errors >= 0")


def prepare() -> None:
  """Starts importing what a first estimate needs (scikit-learn's Gaussian
  process, SciPy's linear algebra: 1.5 to 2 s on a small CPU) in a thread of its
  own, rather than at that estimate.

  A run with a confirmation stage calls it as it starts: the import runs while
  the first round compiles, which leaves the interpreter free most of the time,
  instead of being met at the end (unplanned, under a wall-time budget). An
  estimate started before it finishes waits for it (Python's imports lock each
  module while it loads)."""
  threading.Thread(target=_import, name="vmaptune-estimate-import").start()


def _import() -> None:
  import scipy.linalg  # noqa: F401
  import sklearn.gaussian_process  # noqa: F401


def estimate(trials: TrialTable | Sequence[Trial | Mapping[str, Any]], space: Space,
             scoring: Scoring | None = None, *, fit_size: int = FIT_SIZE,
             condition_size: int = CONDITION_SIZE) -> Estimates:
  """Each trial's expected validation score, estimated from its group's trials.

  Args:
    trials: a search's trials, every round's: a :class:`TrialTable` (e.g.
      ``TrialTable.concat(result.rounds)``), or their records (:class:`Trial`
      objects, or ``trials.jsonl`` lines as dicts).
    space: the search's space, as it started (every trial's traced values lie
      in its ranges; a later round's narrowed space would not hold the
      earlier rounds' trials).
    scoring: the metrics' directions and the ranking one; by default the
      table's (or the records' own); dict records need it.
    fit_size: the most trials of one group the kernel's hyperparameters are
      fitted on (see the module docstring); at least ``MIN_FIT``.
    condition_size: the most trials of one group the estimates are
      conditioned on, besides each trial's own score; at least ``fit_size``.

  Returns:
    :class:`Estimates`, ``[T]`` in the table's (or the records') order.

  Raises:
    SettingsError: the trials disagree with ``space`` or ``scoring`` (a
      parameter missing or extra, a value outside its range), columns of
      different lengths, a bad ``fit_size`` or ``condition_size``; before
      anything is fitted.
    RecordError: a dict record lacks a field or holds the wrong type.
  """
  fit_size = whole_number("fit_size", fit_size, MIN_FIT)
  condition_size = whole_number("condition_size", condition_size, fit_size,
                                why=" (fit_size, the trials the kernel is fitted on)")
  table = _as_table(trials, space, scoring)
  _check_table(table, space)
  score = np.asarray(table.score, np.float64)
  usable = table.is_configuration & ~table.diverged & np.isfinite(score)
  # A lone trial's standard error: the spread of every estimated trial's score.
  spread = float(score[usable].std()) if usable.sum() >= 2 else math.inf
  unit = space.to_unit(table.hparams)
  mean, stderr = np.full(len(table), np.nan), np.full(len(table), np.nan)
  groups = []
  for values, reached, rows in _groups(table, space, usable):
    fit = _fit_group(unit[rows], score[rows], table.scoring, fit_size, condition_size, spread)
    mean[rows], stderr[rows] = fit.mean, fit.stderr
    groups.append(GroupFit(values, reached, rows, *fit[2:]))
  return Estimates(mean, stderr, tuple(groups), table.scoring)


@dataclasses.dataclass(frozen=True)
class Surface:
  """The fitted expected score over two traced parameters (see :func:`surface`).

  Attributes:
    x, y: the two parameters' names.
    x_values: float64 ``[G]``, ``x`` at the grid's columns (even steps in its own
      scale: log for a log-uniform range); y_values: ``[G]``, ``y`` at its rows.
    mean: float64 ``[G, G]``, the estimated expected score at each grid point,
      ``mean[i, j]`` at ``(x_values[j], y_values[i])``, in the metric's units.
    at: the other parameters' values the surface is a slice at (``{name: value}``).
    group: the :class:`GroupFit` of the configurations it is fitted to.
  """

  x: str
  y: str
  x_values: np.ndarray
  y_values: np.ndarray
  mean: np.ndarray
  at: dict[str, Any]
  group: GroupFit


def surface(trials: TrialTable, space: Space, x: str, y: str, at: Mapping[str, Any],
            size: int = 40, *, fit_size: int = FIT_SIZE,
            condition_size: int = CONDITION_SIZE) -> Surface | None:
  """The estimated expected score as a function of traced parameters ``x`` and
  ``y``, with every other parameter at its value in ``at`` (e.g. the chosen
  configuration's hparams): the Gaussian process of :func:`estimate` fitted to the
  group of ``at``'s structural values that trained the most epochs, its posterior
  mean on a ``size`` x ``size`` grid over the two parameters' ranges.

  Returns:
    :class:`Surface`, or ``None`` where the group is too small to fit (fewer
    than ``MIN_FIT`` trials, or all scores equal).

  Raises:
    SettingsError: ``x`` or ``y`` is not a traced parameter of ``space`` (or both
      are the same), ``at`` lacks a parameter, no configuration has ``at``'s
      structural values, or ``size`` is below 2.
  """
  size = whole_number("size", size, 2)
  traced = space.traced()
  for name in (x, y):
    if name not in traced:
      raise SettingsError(f"surface over {name!r}: expected a traced parameter of the space "
                          f"({list(traced)})")
  if x == y:
    raise SettingsError(f"surface over {x!r} and {y!r}: expected two different parameters")
  _check_names(at, space, "at")
  table = _as_table(trials, space, None)
  _check_table(table, space)
  score = np.asarray(table.score, np.float64)
  usable = table.is_configuration & ~table.diverged & np.isfinite(score)
  values = {name: at[name] for name in space.structural_names}
  matching = [g for g in _groups(table, space, usable) if g[0] == values]
  if not matching:
    raise SettingsError(f"no configuration with the structural values {values} to fit a "
                        "surface to")
  values, reached, rows = max(matching, key=lambda group: group[1])
  unit, score = space.to_unit(table.hparams)[rows], score[rows]
  if len(score) < MIN_FIT or np.ptp(score) == 0:
    return None
  centre, scale = float(score.mean()), float(score.std())
  z = (score - centre) / scale
  grid = np.linspace(0.0, 1.0, size)
  names = list(traced)
  query = np.repeat(space.to_unit({n: np.array([at[n]]) for n in names}), size * size, axis=0)
  query[:, names.index(x)] = np.tile(grid, size)
  query[:, names.index(y)] = np.repeat(grid, size)
  with threadpool_limits(limits=1, user_api="blas"):
    kernel, given = _kernel(unit, z, table.scoring.oriented(score), fit_size, condition_size)
    _, alpha = _solve(kernel, unit[given], z[given])
    mean = kernel.k1(query, unit[given]) @ alpha  # The noise-free score's posterior mean.
  group = GroupFit(values, reached, rows, min(len(score), fit_size), len(given),
                   scale * math.sqrt(kernel.k2.noise_level), kernel)
  axis = lambda name: traced[name].from_unit(grid).astype(np.float64)
  return Surface(x, y, axis(x), axis(y), (centre + scale * mean).reshape(size, size),
                 {n: at[n] for n in space if n not in (x, y)}, group)


def _as_table(trials: Any, space: Space, scoring: Scoring | None) -> TrialTable:
  """``trials`` as a table, with ``scoring`` (the one it carries if ``None``)."""
  if isinstance(trials, TrialTable):
    if scoring is not None and scoring != trials.scoring:
      raise SettingsError(f"scoring={scoring!r} differs from the trials' own "
                          f"{trials.scoring!r}; pass the search's scoring or none")
    return trials
  if isinstance(trials, (str, bytes)) or not isinstance(trials, Sequence):
    raise SettingsError(f"trials={trials!r:.80}; expected a TrialTable or a list of trial "
                        "records (Trial objects or trials.jsonl lines)")
  if scoring is None:
    scoring = next((t.scoring for t in trials if isinstance(t, Trial)), None)
    if scoring is None:
      raise SettingsError("trial records as dicts need their scoring: pass scoring=, e.g. "
                          "the run's Scoring")
  records = []
  for i, trial in enumerate(trials):
    with fields.within(f"trials[{i}]"):
      records.append(trial.to_json() if isinstance(trial, Trial)
                     else Trial.from_json(trial, scoring).to_json())
    _check_names(records[-1]["hparams"], space, f"trial record {i}")
  budget = max((r["start_epoch"] + r["epochs"] for r in records), default=1)
  return TrialTable.from_records(records, space, budget, scoring)


def _check_names(names: Any, space: Space, where: str) -> None:
  missing = [name for name in space if name not in names]
  extra = [name for name in names if name not in space]
  if missing or extra:
    raise SettingsError(f"{where} has parameters {list(names)}; the space has {list(space)}"
                        f" (missing {missing}, not in the space {extra}): pass the search's "
                        "space")


def _check_table(table: TrialTable, space: Space) -> None:
  """Every column ``[T]``, every parameter of ``space`` there, traced values in range."""
  _check_names(table.hparams, space, "the trial table")
  count = len(table.status)
  columns = {"score": table.score, "start_epoch": table.start_epoch, "epochs": table.epochs,
             "parent": table.parent, **{f"hparams[{n!r}]": v for n, v in table.hparams.items()}}
  for name, column in columns.items():
    if np.shape(column) != (count,):
      raise SettingsError(f"the trial table's {name} has shape {np.shape(column)}; expected "
                          f"({count},), one value per trial (status has {count})")
  for name, dist in space.traced().items():
    values = np.asarray(table.hparams[name], np.float32)
    # Sampled values are float32 roundings of values in [low, high]; rounding keeps order.
    outside = ~((values >= np.float32(dist.low)) & (values <= np.float32(dist.high)))
    if outside.any():
      raise SettingsError(
          f"parameter {name!r}: trial row {int(np.argmax(outside))} has "
          f"{float(values[outside][0])!r}, outside the space's {dist.describe()}; pass the "
          "search's space as it started (a narrowed round's space leaves earlier trials out)")


def _groups(table: TrialTable, space: Space,
            usable: np.ndarray) -> list[tuple[dict[str, Any], int, np.ndarray]]:
  """``(structural values, epoch reached, rows)`` of each group of the
  ``usable`` rows, in the order their first row appears."""
  names = space.structural_names
  found: dict[tuple[tuple, int], list[int]] = {}
  for row in np.flatnonzero(usable):
    values = tuple(space[name].value(table.hparams[name][row]) for name in names)
    found.setdefault((values, int(table.reached[row])), []).append(int(row))
  return [(dict(zip(names, values, strict=True)), reached, np.array(rows))
          for (values, reached), rows in found.items()]


class _Fit(NamedTuple):
  mean: np.ndarray  # [n]
  stderr: np.ndarray  # [n]
  fitted: int
  conditioned: int
  noise_sd: float
  kernel: Kernel | None


def _fit_group(unit: np.ndarray, score: np.ndarray, scoring: Scoring, fit_size: int,
               condition_size: int, spread: float) -> _Fit:
  """One group's estimates from its points ``unit [n, D]`` and finite scores ``[n]``;
  ``spread`` is the standard error of a group too small to fit."""
  centre, scale = float(score.mean()), float(score.std())
  if len(score) < MIN_FIT or np.ptp(score) == 0:  # Nothing to learn a smooth function from.
    stderr = spread if len(score) < MIN_FIT else 0.0
    return _Fit(score.copy(), np.full(len(score), stderr), 0, 0, math.nan, None)
  z = (score - centre) / scale
  with threadpool_limits(limits=1, user_api="blas"):
    kernel, rows = _kernel(unit, z, scoring.oriented(score), fit_size, condition_size)
    mean, latent = _posterior(kernel, unit, z, rows)
  fitted = min(len(score), fit_size)
  return _Fit(centre + scale * mean, scale * np.sqrt(latent), fitted, len(rows),
              scale * math.sqrt(kernel.k2.noise_level), kernel)


def _kernel(unit: np.ndarray, z: np.ndarray, oriented: np.ndarray, fit_size: int,
            condition_size: int) -> tuple[Kernel, np.ndarray]:
  """A group's fitted kernel (on at most ``fit_size`` of its points ``unit [n, D]``
  with standardised scores ``z [n]``, ``oriented [n]`` higher better) and the
  rows ``[m]`` its estimates are conditioned on (at most ``condition_size``)."""
  kernel = _hyperparameters(unit, z, fit_rows(unit, oriented, fit_size))
  return kernel, fit_rows(unit, oriented, condition_size)


def _solve(kernel: Kernel, given: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(L, alpha)``: the lower Cholesky factor ``[m, m]`` of the kernel (noise
  included) at points ``given [m, D]``, and ``alpha = (K + s I)^-1 z`` ``[m]``."""
  import scipy.linalg

  factor = scipy.linalg.cholesky(kernel(given) + 1e-10 * np.eye(len(given)), lower=True)
  return factor, scipy.linalg.cho_solve((factor, True), z)


def _hyperparameters(unit: np.ndarray, z: np.ndarray, rows: np.ndarray) -> Kernel:
  """The kernel of greatest marginal likelihood for the standardised scores
  ``z [n]`` of ``rows``: ``amplitude * RBF(a length scale per axis) + noise``."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.gaussian_process import GaussianProcessRegressor
  from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

  dimensions = unit.shape[1]
  kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.full(dimensions, 0.3), (1e-2, 1e2))
            + WhiteKernel(0.1, (1e-6, 1.0)))
  regressor = GaussianProcessRegressor(kernel, n_restarts_optimizer=0, copy_X_train=False)
  with warnings.catch_warnings():
    # A length scale at its upper bound is expected: a parameter that does not matter.
    warnings.simplefilter("ignore", ConvergenceWarning)
    regressor.fit(unit[rows], z[rows])
  return regressor.kernel_


def _posterior(kernel: Kernel, unit: np.ndarray, z: np.ndarray,
               rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The posterior mean and variance ``[n]`` of the noise-free score at every
  point, given the scores of ``rows``, and for a point outside them its own score too.

  With ``K`` the noise-free kernel of ``rows``, ``s`` the noise variance and
  ``A = (K + s I)^-1``, at those rows the mean is ``z - s A z`` and the variance
  ``s (1 - s diag(A))``: one Cholesky factor and its inverse, no ``[n, n]`` solve.
  """
  import scipy.linalg

  noise = kernel.k2.noise_level
  given = unit[rows]
  factor, alpha = _solve(kernel, given, z[rows])
  inverse, _ = scipy.linalg.lapack.dtrtri(factor, lower=1)
  mean, variance = np.empty(len(z)), np.empty(len(z))
  mean[rows] = z[rows] - noise * alpha
  variance[rows] = noise * (1 - noise * (inverse**2).sum(axis=0))
  other = np.setdiff1d(np.arange(len(z)), rows)
  if len(other):
    cross = kernel.k1(unit[other], given)  # [o, m], noise-free
    prior = cross @ alpha
    prior_variance = np.maximum(
        kernel.k1.diag(unit[other]) - ((inverse @ cross.T) ** 2).sum(axis=0), 0.0)
    # Its own score, a draw independent of theirs, joins them.
    weight = prior_variance / (prior_variance + noise)
    mean[other] = prior + weight * (z[other] - prior)
    variance[other] = prior_variance * (1 - weight)
  return mean, np.maximum(variance, 0.0)


def fit_rows(unit: np.ndarray, oriented: np.ndarray, size: int) -> np.ndarray:
  """The rows a group's kernel is fitted on (``size`` is ``fit_size``), or its
  estimates are conditioned on (``condition_size``): every row if there are
  at most ``size``; else the ``NEAR_SHARE * size`` nearest (in the unit cube)
  to any of the ``ANCHORS`` best raw scores, and an even sample of the rest
  (a fixed seed: the same rows for the same trials).

  Chosen by place, not score, the near rows hold the good region's bad draws
  as well as its lucky ones, so its estimates are not lifted.

  Args:
    unit: ``[n, D]`` points in the unit cube.
    oriented: ``[n]`` finite scores, higher better.
    size: the most rows.

  Returns:
    int ``[min(n, size)]``, sorted.
  """
  count = len(oriented)
  if count <= size:
    return np.arange(count)
  anchors = np.argsort(-oriented, kind="stable")[:ANCHORS]
  distance = np.linalg.norm(unit[:, None, :] - unit[None, anchors, :], axis=-1).min(axis=1)
  near = np.argsort(distance, kind="stable")[:int(NEAR_SHARE * size)]
  rest = np.setdiff1d(np.arange(count), near)
  sample = np.random.default_rng(0).choice(rest, size - len(near), replace=False)
  return np.sort(np.concatenate([near, sample]))
