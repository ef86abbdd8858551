"""The run directory: its files, its one writer, resuming it, and reading it back.

A run directory (``tune(..., out=DIR)``, ``vmaptune run CONFIG --out DIR``) holds:

* ``config.json``: what the run is (:func:`snapshot`: settings, space, model,
  data), written when the run starts and compared when it is resumed;
* ``trials.jsonl``: one JSON object per trial (:class:`vmaptune.trials.table.Trial`),
  appended and forced to disk after each round;
* ``summary.json``: the chosen trial, every round's ranges and timings and,
  after the final fit, the test accuracy; replaced atomically after each
  round, so the rounds it lists are the run's completed rounds;
* ``best_params.msgpack``: the best trial's parameters so far, saved when a
  round improves on it, then the final fit's (``flax.serialization``); the
  summary's ``best_params`` says whose they are and holds their SHA-256;
* ``.lock``: the writer lock, naming the process that holds it.

**One writer** (:mod:`vmaptune.rundir.lock`): the run holds an exclusive lock
on the directory from opening it to its end; a second writer is refused at
once, naming the holder, and the directory is left untouched. The operating
system releases the lock when the process dies, however it dies. Readers take
no lock and see the completed rounds only. A folder that holds other files
but no run is refused as a new run's directory (a new run would overwrite some).

**Links.** Nothing is written through a link: the two files changed in place
(``.lock`` and ``trials.jsonl``) are refused when they are symbolic links or
share their data with another name (hard links, as ``cp -al`` makes), and
every other file is replaced atomically (:func:`write_atomic`).

**Resuming.** Running the same config into a directory that holds a run
continues it: the records past the last completed round (a round in
progress, a torn last line) are cut off, and the completed rounds are handed
back (:class:`Restored`) to be rebuilt and told to the sampler again (see
:mod:`vmaptune.search.rounds`). Everything in ``config.json`` must match, except
``rounds``, which may be raised to extend a run (or lowered, to no fewer
than the rounds completed); the devices may differ (with a warning: results
then match an uninterrupted run only up to float rounding). A different
config is refused naming what differs, and the directory is left untouched.
A format-1 directory (``keep`` and ``margin`` settings, no confirmation) is read
as its format-2 equivalent (:func:`upgrade`).

**Damage** (:mod:`vmaptune.rundir.damage`): a file that is unreadable or
disagrees with the others is refused with one error naming it, what is wrong
and how many rounds are intact (:mod:`vmaptune.rundir.reading` reads the files
as untrusted: sizes, line lengths and nesting are bounded); ``resume_from_intact``
resumes from those, copying the damaged files into ``damaged/<time>/`` first
(forced to disk before anything is rewritten). A write that fails raises
:class:`vmaptune.errors.RunDirectoryWriteError` with every completed round
still on disk.

**Reading back.** :func:`load_run` gives a :class:`Run`: the config, the
summary, and the completed rounds' records and trial table, which
``vmaptune show`` and the reports read; in a notebook it shows as the summary
:mod:`vmaptune.reporting.notebook` draws (installed through :mod:`vmaptune.rundir.display`).

In a run over several processes only process 0 touches the directory.
"""

from vmaptune.rundir.files import (
  CONFIG_FILE,
  FORMAT,
  LOCK_FILE,
  PARAMS_FILE,
  SUMMARY_FILE,
  TRIALS_FILE,
  data_fingerprint,
  differences,
  read_trials,
  snapshot,
  upgrade,
  write_atomic,
  write_json,
)
from vmaptune.rundir.lock import WriterLock
from vmaptune.rundir.opening import Restored, open_run
from vmaptune.rundir.reader import Run, load_best_params, load_run
from vmaptune.rundir.writer import RunDirectory, interrupts_deferred

__all__ = ["CONFIG_FILE", "FORMAT", "LOCK_FILE", "PARAMS_FILE", "SUMMARY_FILE", "TRIALS_FILE",
           "Restored", "Run", "RunDirectory", "WriterLock", "data_fingerprint", "differences",
           "interrupts_deferred", "load_best_params", "load_run", "open_run", "read_trials",
           "snapshot", "upgrade", "write_atomic", "write_json"]
