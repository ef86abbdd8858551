"""Collection settings for the whole tree (the doctests under vmaptune/ included)."""

try:
  import optuna  # noqa: F401
except ImportError:  # Optional: without it, its tests skip and its module's doctests are left out.
  collect_ignore = ["vmaptune/optuna_bridge.py"]
