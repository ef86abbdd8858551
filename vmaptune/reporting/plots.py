"""The report's figures from Python, on a result or a run, as matplotlib figures.

Each function takes a :class:`vmaptune.TuneResult`, a :class:`vmaptune.RoundResult`, a
run read back (:func:`vmaptune.load_run`) or a run directory's path, and returns a
:class:`matplotlib.figure.Figure`: the drawing ``vmaptune report`` saves as a PNG
file (:mod:`vmaptune.reporting.figures`), to show in a notebook (it displays as the
value of a cell), restyle or save (``figure.savefig(path)``). The figures are built
with matplotlib's object API: pyplot's list of open figures is left alone, so
nothing is drawn twice and nothing piles up. Needs matplotlib (the ``notebook`` or
``report`` extra).

>>> import vmaptune as vt
>>> result = vt.tune(vt.models.MLP(hidden=(8,)), vt.data.digits(),
...                  vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1)), population=4, rounds=1,
...                  epochs=1)
>>> figure = vt.plots.importance(result)
>>> [label.get_text() for label in figure.axes[0].get_yticklabels()]
['learning_rate']
"""

from __future__ import annotations

from typing import Any

from vmaptune.reporting.importance import importance as rank_importance
from vmaptune.reporting.source import Source, as_run
from vmaptune.rundir import Run
from vmaptune.search.results import RoundResult
from vmaptune.validation import whole_number


def _figures() -> Any:
  try:
    from vmaptune.reporting import figures
  except ImportError:
    raise ImportError("the figures need matplotlib: pip install 'vmaptune[notebook]' "
                      "(or pip install matplotlib)") from None
  return figures


def _drawable(source: Source) -> Run:
  """``source`` as a run, refused when it holds no trial to draw."""
  run = as_run(source)
  if not run.records:
    raise ValueError(f"{source!r} holds no completed round: nothing to draw")
  return run


def overview(source: Source, *, curves: int = 8) -> Any:
  """One of each figure on a page (the report's ``overview.png``): the first round's
  most important pair of parameters, the best score so far against trials, the
  learning curves of the ``curves`` best trials, the hyperparameters' importance."""
  whole_number("curves", curves, 1, error=ValueError)
  run = _drawable(source)
  return _figures().overview_figure(run, rank_importance(run.trials, run.space), curves)


def pairs(source: Source, round_index: int | None = None) -> Any:
  """One round's trials over every pair of the most important numeric parameters,
  coloured by the ranking metric, the kept trials ringed and the next round's ranges
  boxed (the report's ``pairs_round<k>.png``).

  Args:
    source: see the module docstring; a :class:`RoundResult` draws its own round.
    round_index: the round, 0-based as ``RoundResult.index`` and the records count
      (default: a round result's own, else the last round).

  Raises:
    ValueError: ``round_index`` is not a round of ``source``'s records.
  """
  run = _drawable(source)
  rounds = sorted(set(run.trials.round.tolist()))
  if round_index is None:
    round_index = source.index if isinstance(source, RoundResult) else rounds[-1]
  if round_index not in rounds:
    raise ValueError(f"round_index={round_index!r}; expected one of the rounds recorded "
                     f"(0-based): {rounds}")
  figure, _ = _figures().pairs_figure(run, round_index, rank_importance(run.trials, run.space))
  return figure


def best_so_far(source: Source) -> Any:
  """The best score so far against trials and against the rounds' wall time
  (the report's ``best_so_far.png``)."""
  return _figures().best_so_far_figure(_drawable(source))


def learning_curves(source: Source, count: int = 8) -> Any:
  """Training loss per epoch of the ``count`` best trials (their lineage for
  population-based training; the report's ``learning_curves.png``)."""
  whole_number("count", count, 1, error=ValueError)
  return _figures().curves_figure(_drawable(source), count)


def importance(source: Source) -> Any:
  """Each hyperparameter's importance as a bar, the largest on top (the report's
  ``importance.png``; the numbers: :func:`vmaptune.reporting.importance.importance`)."""
  run = _drawable(source)
  return _figures().importance_figure(run, rank_importance(run.trials, run.space))


def surface(source: Source) -> Any:
  """The estimated expected score over the most important pair of numeric
  parameters, fitted to every configuration (a Gaussian process with a noise term,
  :func:`vmaptune.trials.estimate.surface`), the others at the chosen
  configuration's values; the configurations as dots, the chosen one as a star
  (the report's ``surface.png``). ``None`` where the space has a single traced
  parameter, nothing was chosen yet, or too few configurations finished to fit."""
  run = _drawable(source)
  return _figures().surface_figure(run, rank_importance(run.trials, run.space))
