"""Collection settings for the whole tree (the doctests under vmaptune/ included).

Modules that import an optional package (the MLflow and TensorBoard trackers) are left
out of the doctests without it; their tests skip."""

import importlib.util

collect_ignore = [path for path, package in (
    ("vmaptune/reporting/tracking/mlflow_tracker.py", "mlflow"),
    ("vmaptune/reporting/tracking/tensorboard_tracker.py", "tensorboard"))
    if importlib.util.find_spec(package) is None]
