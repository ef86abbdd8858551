"""Reporting: what a run shows while it runs and after.

- ``progress``: progress sinks (a bar, JSON lines, a function);
- ``importance``: hyperparameter importance;
- ``figures``: the report's figures; ``plots``: the same as matplotlib figures, from Python
  (``vt.plots``), drawn from a result or a run as ``source`` views them;
- ``notebook``: the HTML summary a notebook shows for results and runs;
- ``report``: ``vmaptune show`` and ``vmaptune report``;
- ``page``: the report's one HTML page;
- ``tracking``: trackers (MLflow, TensorBoard), exporting a run and live logging.
"""
