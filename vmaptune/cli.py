"""The ``vmaptune`` command: a thin shell over :mod:`vmaptune.config` and the tuner.

    vmaptune run experiments/digits_mlp.py
    vmaptune run experiments/digits_mlp.py --set population=512 rounds=5 --out runs/digits
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys

from vmaptune.compilation import persistent_cache
from vmaptune.config import SETTABLE, ConfigError, load_experiment, override
from vmaptune.data import DataError
from vmaptune.space import SpaceError
from vmaptune.tuner import AllDivergedError, SettingsError

USER_ERRORS = (ConfigError, SettingsError, SpaceError, DataError, FileExistsError)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="vmaptune", description="Tune JAX/Flax models as one vmapped population.")
  commands = parser.add_subparsers(dest="command", required=True)
  run = commands.add_parser("run", help="run an experiment config (a .py file with get_config())")
  run.add_argument("config", help="path to the experiment config file")
  run.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=f"override settings; keys: {', '.join(SETTABLE)}")
  run.add_argument("--out", help="run directory (default: runs/<name>/<timestamp>)")
  run.add_argument("--quiet", action="store_true", help="print only the final result")
  run.add_argument("--cache-dir", help="persistent compilation cache (default: "
                   "$VMAPTUNE_CACHE_DIR or ~/.cache/vmaptune/jax)")
  run.add_argument("--no-cache", action="store_true",
                   help="compile everything afresh; write no compilation cache")
  return parser


def _default_out(name: str) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", name, stamp)


def run(args: argparse.Namespace) -> int:
  experiment = override(load_experiment(args.config), args.set)
  out = args.out or _default_out(experiment.name)
  if not args.quiet:
    batch = ("searched" if "batch_size" in experiment.space.structural_names
             else experiment.batch_size)
    print(f"vmaptune: {experiment.name}: population {experiment.population}, "
          f"{experiment.rounds} rounds of {experiment.epochs} epochs, "
          f"batch {batch}, keep {experiment.keep:g}", flush=True)
  with contextlib.ExitStack() as stack:
    if not args.no_cache:
      cache = stack.enter_context(persistent_cache(args.cache_dir))
      if not args.quiet:
        print(f"compilation cache: {cache}", flush=True)
    result = experiment.tune(out=out, verbose=not args.quiet)
    result.final_fit()
  print(result.describe())
  return 0


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    return run(args)
  except USER_ERRORS as e:
    print(f"vmaptune: error: {e}", file=sys.stderr)
    return 2
  except AllDivergedError as e:
    print(f"vmaptune: error: {e}", file=sys.stderr)
    if e.partial.rounds and e.partial.out_dir:
      print(f"vmaptune: the {len(e.partial.rounds)} rounds before it are recorded in "
            f"{e.partial.out_dir}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
