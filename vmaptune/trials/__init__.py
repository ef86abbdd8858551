"""Trials: what a round trained, in one typed table, and the one way to rank them.

- ``scoring``: a trial's metrics, their directions and the ranking one;
- ``table``: :class:`Trial` (one record) and :class:`TrialTable` (columns, one row per trial);
- ``log``: :class:`TrialLog`, what a strategy fills as it opens and closes trials;
- ``ranking``: the one ordering of trials and of lanes;
- ``estimate``: each trial's expected score, denoised by its neighbours' (a Gaussian process).
"""

from vmaptune.trials.log import TrialLog
from vmaptune.trials.scoring import Scoring
from vmaptune.trials.table import Trial, TrialTable

__all__ = ["Scoring", "Trial", "TrialLog", "TrialTable"]
