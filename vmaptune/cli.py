"""The ``vmaptune`` command: a thin shell over :mod:`vmaptune.config` and the tuner.

    vmaptune run experiments/digits_mlp.py
    vmaptune run experiments/digits_mlp.py --set population=512 rounds=5 --out runs/digits
    vmaptune run experiments/digits_mlp.py --out runs/digits   # again: resumes it
    vmaptune run experiments/digits_mlp.py --out runs/digits --resume-from-intact
    vmaptune show runs/digits
    vmaptune run experiments/digits_mlp.py --log-format json > run.jsonl
    vmaptune report runs/digits
    vmaptune export runs/digits --to mlflow           # or --to tensorboard
    vmaptune run experiments/digits_mlp.py --log-to mlflow   # live

Over several processes (hosts), the same command on each, with its own id::

    vmaptune run exp.py --out runs/x --coordinator HOST0:12345 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import secrets
import shlex
import sys
import time

from vmaptune.config import SETTABLE, Experiment, load_experiment, override
from vmaptune.errors import AllDivergedError, DamagedRunError, VmaptuneError
from vmaptune.lanes import devices, distributed
from vmaptune.lanes.compilation import persistent_cache
from vmaptune.lanes.distributed import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID
from vmaptune.reporting import progress as progress_events
from vmaptune.reporting import tracking
from vmaptune.reporting.report import describe_run, printable
from vmaptune.reporting.report import report as write_report
from vmaptune.reporting.tracking import TRACKERS
from vmaptune.rundir import load_run

CONFIG_COPY = "config.py"  # The config file's copy in a new run directory.
USER_ERRORS = (VmaptuneError, FileExistsError, FileNotFoundError)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="vmaptune", description="Tune JAX/Flax models as one vmapped population.")
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser("run", help="run an experiment config (a .py file with get_config())")
  run.add_argument("config", help="path to the experiment config file")
  run.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=f"override settings; keys: {', '.join(SETTABLE)}")
  run.add_argument("--budget", metavar="TIME",
                   help="wall time of the whole run, final fit included, e.g. 90s, 10m, 2h: "
                   "as many rounds as fit (same as --set budget=TIME)")
  run.add_argument("--out", help="run directory (default: a new runs/<name>/<UTC "
                   "time>-<random>); one holding a run of the same config is resumed after its "
                   "last completed round")
  run.add_argument("--no-resume", action="store_true",
                   help="refuse a run directory that holds a run instead of resuming it")
  run.add_argument("--resume-from-intact", action="store_true",
                   help="when a file of the run directory is damaged, resume from the rounds "
                   "whose records and summary agree, copying the damaged files into "
                   "OUT/damaged/<time>/ first (nothing is deleted)")
  run.add_argument("--quiet", action="store_true", help="print only the final result")
  run.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text (default): a summary per round, and a live progress line when "
                   "standard output is a terminal; json: one JSON object per line for each "
                   "event (round start/end, training segments, evaluations, the final fit) "
                   "and nothing else on standard output")
  _tracker_options(run, "--log-to", "send the run live to a tracker as it goes (repeat for "
                   "several)")
  run.add_argument("--cache-dir", help="persistent compilation cache (default: "
                   "$VMAPTUNE_CACHE_DIR or ~/.cache/vmaptune/jax)")
  run.add_argument("--no-cache", action="store_true",
                   help="compile everything afresh; write no compilation cache")
  several = run.add_argument_group(
      "several processes", "one run over several processes or hosts: run the same command in "
      "each, with its own --process-id; only process 0 prints and writes records. Default: "
      f"${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID}, else a SLURM / Open MPI "
      "/ TPU cluster JAX detects, else one process")
  several.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0 and a free port on it")
  several.add_argument("--num-processes", metavar="N", help="processes in the run")
  several.add_argument("--process-id", metavar="I", help="this process's index, 0 to N-1")
  show = commands.add_parser("show", help="print a run directory's progress, chosen config "
                             "and top trials")
  show.add_argument("run_dir", help="the run directory (--out of vmaptune run)")
  show.add_argument("--top", type=int, default=10, metavar="N", help="trials to list (10)")
  report = commands.add_parser(
      "report", help="print a run's top trials and hyperparameter importance; write its "
      "figures (PNG; needs matplotlib: pip install 'vmaptune[report]')")
  report.add_argument("run_dir", help="a run directory (trials.jsonl, summary.json)")
  report.add_argument("--out", help="directory for the figures and report.html (default: "
                      "RUN_DIR/report)")
  report.add_argument("--top", type=int, default=10, help="trials in the table (10)")
  report.add_argument("--curves", type=int, default=8,
                      help="best trials whose learning curves are drawn (8)")
  export = commands.add_parser(
      "export", help="send a run directory (finished or running) to MLflow or TensorBoard")
  export.add_argument("run_dir", help="the run directory")
  _tracker_options(export, "--to", "the tracker to send it to (repeat for several)",
                   required=True)
  return parser


def _tracker_options(parser: argparse.ArgumentParser, flag: str, text: str,
                     required: bool = False) -> None:
  parser.add_argument(flag, dest="trackers", action="append", choices=sorted(TRACKERS),
                      required=required, default=None, help=text)
  parser.add_argument("--tracking-uri", help="MLflow's store (default: $MLFLOW_TRACKING_URI, "
                      "else sqlite:///mlflow.db here: a local file, no server)")
  parser.add_argument("--logdir", help="TensorBoard's log directory (default: runs/tensorboard)")


def _trackers(args: argparse.Namespace) -> list:
  """The trackers named on the command line, built with their options."""
  options = {"mlflow": {"tracking_uri": args.tracking_uri},
             "tensorboard": {"logdir": args.logdir}}
  return [tracking.make(name, **{k: v for k, v in options.get(name, {}).items()
                                 if v is not None}) for name in args.trackers or []]


def export(args: argparse.Namespace) -> int:
  trackers = _trackers(args)
  with _read_back(args.run_dir):
    run = load_run(args.run_dir)
  for tracker in trackers:
    start = time.perf_counter()
    tracking.export(run, tracker)
    print(f"exported {args.run_dir} to {tracker.name}: {run.rounds_completed} rounds, "
          f"{len(run.records)} trials in {time.perf_counter() - start:.1f}s", flush=True)
  return 0


def _default_out(name: str) -> str:
  """A new run directory, ``runs/<name>/<UTC time>-<random>``, made by process 0 and
  named alike on every process. Made exclusively: two runs started in the same
  second (a job array), or after the clock went back, never share one."""
  def make() -> str:
    parent = os.path.join("runs", name)
    os.makedirs(parent, exist_ok=True)
    while True:
      stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
      path = os.path.join(parent, f"{stamp}-{secrets.token_hex(3)}")
      try:
        os.mkdir(path)
      except FileExistsError:
        continue  # Taken: another random part.
      return path

  made = distributed.on_first_process(make)
  # One collective, on every process: process 0's name.
  return distributed.share_from_first_process(made.encode() if made else None).decode()


def run(args: argparse.Namespace) -> int:
  devices.configure_cpu_devices()  # Before anything starts JAX's backend.
  experiment = override(load_experiment(args.config),
                        args.set + ([] if args.budget is None else [f"budget={args.budget}"]))
  flags = {"coordinator": args.coordinator, "num_processes": args.num_processes,
           "process_id": args.process_id}
  experiment = dataclasses.replace(
      experiment, **{k: v for k, v in flags.items() if v is not None})
  # Before anything runs on JAX. Only process 0 prints and writes records.
  processes = experiment.initialize_processes()
  # Chosen alike on every process: training pieces and the reads they report are collective.
  progress = _progress(args, processes.num_processes)
  if not processes.writes:
    args.quiet = True
  chatty = not args.quiet and args.log_format == "text"
  out = args.out or _default_out(experiment.name)
  if processes.num_processes > 1 and chatty:
    print(f"vmaptune: process 0 of {processes.num_processes} (coordinator "
          f"{processes.coordinator}); it alone writes {out}", flush=True)
  if chatty:
    batch = ("searched" if "batch_size" in experiment.space.structural_names
             else experiment.batch_size)
    print(f"vmaptune: {experiment.name}: population {experiment.population}, "
          f"{_rounds(experiment)} of {experiment.epochs} epochs, batch {batch}, "
          f"sampler {experiment.parsed_sampler().describe()}, strategy "
          f"{experiment.parsed_strategy().describe()}", flush=True)
  with contextlib.ExitStack() as stack:
    if not args.no_cache:
      cache = stack.enter_context(persistent_cache(args.cache_dir))
      if chatty:
        print(f"compilation cache: {cache}", flush=True)
    if progress is not None:
      stack.callback(progress.close)  # Clears a live line, also after an error.
    start = time.perf_counter()
    try:
      result = experiment.tune(out=out, verbose=chatty, resume=not args.no_resume,
                               resume_from_intact=args.resume_from_intact,
                               copy_files={CONFIG_COPY: args.config}, progress=progress,
                               cache=not args.no_cache,
                               loggers=_trackers(args) if processes.writes else args.trackers)
      fit = result.final_fit()
    except KeyboardInterrupt:
      distributed.abort_others("interrupted (Ctrl-C)")  # Any process: the others stop too.
      if processes.writes:
        print(_interrupted(args, out, experiment.rounds), file=sys.stderr, flush=True)
      return 130
  if processes.writes and args.log_format == "json":
    print(progress_events.json_line({"event": "final_fit",
                                     "t": round(time.perf_counter() - start, 4),
                                     **fit.summary(), "out": out}), flush=True)
  elif processes.writes:
    print(result.describe())
  return 0


def _rounds(experiment: Experiment) -> str:
  """``"4 rounds"``, or with a budget ``"rounds as fit in 5m"``."""
  if experiment.budget is None:
    return f"{experiment.rounds} rounds"
  cap = "" if experiment.rounds is None else f" (at most {experiment.rounds})"
  return f"rounds as fit in {experiment.budget_seconds():g}s{cap}"


def _interrupted(args: argparse.Namespace, out: str, rounds: int | None) -> str:
  """What Ctrl-C left on disk, and the command that resumes it."""
  try:
    done = load_run(out).rounds_completed
  except (OSError, ValueError):
    done = 0
  recorded = (f"rounds 1-{done}{'' if rounds is None else f' of {rounds}'} are recorded in "
              f"{out}" if done
              else f"no round had completed ({out} holds the run's config)")
  command = ["vmaptune", "run", args.config, "--out", out]
  if args.set:
    command += ["--set", *args.set]
  if args.budget is not None:
    command += ["--budget", args.budget]
  return (f"vmaptune: interrupted: {recorded}; the round in progress is dropped. "
          f"Resume with:\n  {shlex.join(command)}")


@contextlib.contextmanager
def _read_back(run_dir: str):
  """Turns what odd but well-formed values make the readers raise into one error."""
  try:
    yield
  except (KeyError, TypeError, IndexError, AttributeError) as e:
    raise DamagedRunError(f"{run_dir}: its summary.json or trials.jsonl holds a value "
                          f"vmaptune cannot read ({type(e).__name__}: {e}); restore the file "
                          "from a copy, or run the config again into another directory",
                          run_dir) from None


def show(args: argparse.Namespace) -> int:
  with _read_back(args.run_dir):
    print(describe_run(load_run(args.run_dir), top=args.top))
  return 0


def _progress(args: argparse.Namespace,
              num_processes: int) -> progress_events.Progress | None:
  """JSON lines, a live line on a terminal (one process only: terminals differ), or none."""
  if args.quiet:
    return None
  if args.log_format == "json":
    return progress_events.JsonLines(sys.stdout)
  if num_processes == 1 and sys.stdout.isatty():
    return progress_events.Bar(sys.stdout)
  return None


def report(args: argparse.Namespace) -> int:
  with _read_back(args.run_dir):
    write_report(args.run_dir, args.out, top=args.top, curves=args.curves)
  return 0


def _tell_other_processes(error: Exception) -> None:
  """In a run over several processes, tells the others that this one stops with
  ``error``, so that they stop too instead of waiting for it in a collective. Told
  before the error is printed: this process's watchdog then leaves it to end
  with its own message (see :mod:`vmaptune.lanes.watchdog`)."""
  distributed.abort_others(f"{type(error).__name__}: {error}")


def main(argv: list[str] | None = None) -> int:
  try:
    return _main(argv)
  except BrokenPipeError:
    # What read the output left (``vmaptune show DIR | head``): nothing more to tell it.
    # Python flushes stdout as it exits, which would fail again: point it at nothing.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


def _main(argv: list[str] | None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.command == "report":
    try:
      return report(args)
    except (OSError, ValueError) as e:
      print(f"vmaptune: error: {printable(str(e))}", file=sys.stderr)
      return 2
  if args.command == "run" and args.quiet and args.log_format == "json":
    parser.error("--quiet prints only the final result and --log-format json prints every "
                 "event; choose one")
  try:
    if args.command == "export":
      return export(args)
    return show(args) if args.command == "show" else run(args)
  except AllDivergedError as e:
    _tell_other_processes(e)
    print(f"vmaptune: error: {printable(str(e))}", file=sys.stderr)
    if e.partial.rounds and e.partial.out_dir:
      print(f"vmaptune: the {len(e.partial.rounds)} rounds before it are recorded in "
            f"{e.partial.out_dir}", file=sys.stderr)
    return 1
  except USER_ERRORS as e:
    _tell_other_processes(e)
    print(f"vmaptune: error: {printable(str(e))}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
