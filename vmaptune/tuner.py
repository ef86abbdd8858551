"""``tune``: the one entry point. Checks everything, then runs the rounds.

A run is a sampler (which configurations each round tries, see
:mod:`vmaptune.samplers`) and a strategy (how a round trains them, see
:mod:`vmaptune.strategies`) over the rounds loop of :mod:`vmaptune.search.rounds`,
with records in a run directory (:mod:`vmaptune.rundir`) and progress
reported to a listener (:mod:`vmaptune.reporting.progress`). The test split is not
touched until :meth:`vmaptune.TuneResult.final_fit`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from vmaptune import rundir
from vmaptune.data import Dataset
from vmaptune.errors import SettingsError
from vmaptune.lanes.distributed import is_first_process
from vmaptune.reporting import progress as progress_events
from vmaptune.reporting import tracking
from vmaptune.reporting.tracking.live import LiveLogging
from vmaptune.search.engine import Engine
from vmaptune.search.observer import Observers, OnRound, Printer
from vmaptune.search.results import RoundResult, TuneResult
from vmaptune.search.rounds import Search
from vmaptune.search.settings import Settings
from vmaptune.space.space import Space
from vmaptune.space.structural import ModelSpec


def tune(model: ModelSpec, data: Dataset, space: Space, *, out: str | None = None,
         verbose: bool = False, on_round: Callable[[RoundResult], None] | None = None,
         resume: bool = True, resume_from_intact: bool = False,
         copy_files: Mapping[str, str] | None = None, progress: Any = None,
         loggers: Any = None, cache: bool | str = True, **settings: Any) -> TuneResult:
  """Tunes ``model`` on ``data`` over ``space``, ``rounds`` rounds of ``population``
  configurations, each round one compiled population per bucket.

  Every input is checked before anything is compiled. Records are written to
  ``out`` (if given) after every round, so an error in a later round loses
  nothing already computed; running the same call again continues after the
  last completed round.

  Args:
    model: a Linen module mapping a batch's inputs to what the objective
      reads (classification: features ``[B, ...]`` to logits ``[B, C]``).
      Structural parameters of ``space`` (other than ``batch_size``) set its
      fields; or pass a function ``model(**structural_values) -> nn.Module``.
      Flax NNX models work too: a constructor ``f(rngs, **structural_values)``
      (or an ``nnx.Module`` class), or an ``nnx.Module`` instance whose
      weights every lane starts from (see :mod:`vmaptune.models.nnx`).
    data: a :class:`vmaptune.Dataset` (splits: pairs ``(x, y)`` or any pytree
      of arrays); its test split is not read here.
    space: the hyperparameters to search, one value per lane: the names the
      optimizer takes (``"adamw"``: ``learning_rate``, ``weight_decay``,
      ``b1``, ``b2``, ``eps``; ``"sgd"``: ``learning_rate``, ``momentum``,
      ``weight_decay``), the trainer's ``dropout_rate`` and
      ``warmup_epochs``, and the objective's (classification:
      ``label_smoothing``; a custom objective's loss weights); structural parameters
      (:class:`vmaptune.Choice`, ``IntUniform(..., structural=True)``) train
      one population per combination.
    out: run directory for ``config.json``, ``trials.jsonl``, ``summary.json``
      and ``best_params.msgpack`` (the best trial's parameters so far, then
      the final fit's); one writer at a time (see :mod:`vmaptune.rundir`).
    verbose: print a summary of each round (on process 0 of a multi-process run).
    on_round: called with each :class:`RoundResult` as it completes (not
      with the rounds a resumed run restores).
    resume: when ``out`` holds a run of the same config, continue it after its
      last completed round (a finished run returns at once, its saved final
      fit included); ``False`` refuses any existing run. A run of a different
      config is always refused, naming what differs, and left untouched.
    resume_from_intact: when a file of ``out`` is damaged, resume from the
      rounds whose records and summary agree, copying the damaged files into
      ``out/damaged/<time>/`` first (without it, a damaged file is refused,
      naming it and what is wrong).
    copy_files: ``{name: source path}`` copied into a new run directory.
    progress: ``"bar"`` (a live line), ``"json"`` (one JSON object per
      event), a function of one event dict, or a
      :class:`vmaptune.reporting.progress.Progress`; ``None`` (default) reports nothing.
    loggers: trackers told the run as it goes: names (``"mlflow"``,
      ``"tensorboard"``) or :class:`vmaptune.reporting.tracking.Tracker` instances
      (see :mod:`vmaptune.reporting.tracking`).
    cache: compile through a persistent compilation cache, so that a second
      run of the same model and settings loads its programs instead of
      compiling them: ``True`` (default) ``$VMAPTUNE_CACHE_DIR`` or
      ``~/.cache/vmaptune/jax`` (a cache the process already configured is
      kept), a directory, or ``False`` (none). Only use a cache directory you
      own: JAX runs the programs it loads from it.
    **settings: any field of :class:`vmaptune.search.settings.Settings`:
      ``population`` (256), ``rounds`` (4), ``epochs`` (5), ``batch_size``
      (64), ``seed`` (0), ``sampler`` ("narrow"), ``strategy`` ("random"),
      ``seeds`` (1), ``confirm`` ("auto"), ``optimizer`` ("adamw"), ``schedule`` ("auto"),
      ``objective`` ("classification"; see :mod:`vmaptune.objectives`),
      ``eval_batch_size`` (1024), ``matmul_precision`` ("default"),
      ``max_lanes_per_chunk`` and ``memory_budget_bytes`` (None: automatic).

  Returns:
    A :class:`TuneResult`; call ``final_fit()`` on it for the test scores.

  Raises:
    SettingsError, SpaceError, DataError: bad input, before any compilation.
    RunDirectoryError: ``out`` holds another run, is damaged, or another
      process writes it (:class:`~vmaptune.errors.RunDirectoryBusyError`); before
      any compilation, nothing changed.
    RunDirectoryWriteError: writing ``out`` failed; every completed round is on disk.
    AllDivergedError: every lane of a round diverged.

  >>> import vmaptune as vt
  >>> space = vt.Space(learning_rate=vt.LogUniform(1e-3, 1e-1))
  >>> result = vt.tune(vt.models.MLP(hidden=(16,)), vt.data.digits(), space,
  ...                  population=8, rounds=2, epochs=1)
  >>> [r.configurations for r in result.rounds]
  [8, 8]
  """
  started = time.perf_counter()  # A budget holds the whole call, setting up included.
  settings = Settings.from_kwargs(settings)
  if not isinstance(cache, (bool, str)):
    raise SettingsError(f"cache={cache!r}; expected True, False or a directory path")
  try:
    sink = progress_events.resolve(progress)
  except ValueError as e:
    raise SettingsError(str(e)) from None
  trackers = tracking.resolve(loggers) if is_first_process() else tracking.check(loggers)
  engine = Engine(model, data, space, settings)
  config = rundir.snapshot(engine.described_settings(), space, engine.model_name,
                           engine.parameters, data, engine.objective.scoring,
                           engine.example_inputs)
  run_dir, restored = (None, None) if out is None else rundir.open_run(
      out, config, resume=resume, resume_from_intact=resume_from_intact,
      copy_files=copy_files)
  observers = []
  if sink is not None:  # First: it clears a live line before anything prints.
    observers.append(progress_events.Reporter(sink, scoring=engine.objective.scoring))
  if verbose and is_first_process():  # Several processes: process 0 speaks for all.
    observers.append(Printer(settings.rounds, out))
  if trackers:
    observers.append(LiveLogging(trackers, config, out))
  if on_round is not None:
    observers.append(OnRound(on_round))
  search = Search(engine, run_dir=run_dir, restored=restored, observer=Observers(observers),
                  pieces=None if sink is None else progress_events.pieces_for(sink),
                  resume_from_intact=resume_from_intact, cache=cache, started=started)
  return search.run()
