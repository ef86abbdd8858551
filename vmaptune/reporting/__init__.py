"""Reporting: what a run shows while it runs and after.

- ``progress``: progress sinks (a bar, JSON lines, a function);
- ``importance``: hyperparameter importance;
- ``figures``: the report's figures;
- ``report``: ``vmaptune show`` and ``vmaptune report``;
- ``page``: the report's one HTML page;
- ``tracking``: trackers (MLflow, TensorBoard), exporting a run and live logging.
"""
