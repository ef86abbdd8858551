"""The final fit: the chosen configuration retrained alone, then scored on the
validation split and, once, on the test split."""

from __future__ import annotations

import dataclasses
from typing import Any

from vmaptune.rundir.records import FinalFitRecord
from vmaptune.trials.table import Trial


@dataclasses.dataclass(frozen=True)
class FinalFit:
  """The chosen configuration retrained alone, then scored on validation and test.

  Attributes:
    trial: the chosen trial from the search.
    schedule: ``[(first_epoch, end_epoch, hparams), ...]`` it was retrained
      with: one entry, or a population-based-training lineage.
    val: ``{metric: value}`` of the retrained model on the validation split
      (equal to the search's figures within float tolerance: same keys, same
      data order).
    test: ``{metric: value}`` on the test split: its only read (NaN without one).
    params: the retrained parameters (no lane axis).
    model: the module ``params`` belong to: the chosen trial's bucket's, when
      the space has structural parameters (``model.apply({"params": params}, x)``).
    batch_size: the training batch size it was retrained with (its bucket's).
    in_lanes: retrained as the first lane of a population laid out as a round's,
      in the round's compiled programs, rather than by one-lane programs compiled
      for it (a budgeted run does so where a round's training costs less than
      that compile); both equal the trial's lane within float rounding.
  """

  trial: Trial
  schedule: list
  val: dict[str, float]
  test: dict[str, float]
  params: Any
  model: Any = None
  batch_size: int | None = None
  in_lanes: bool = False

  def __getattr__(self, name: str) -> Any:
    # Only for names the class lacks: ``val_<metric>`` and ``test_<metric>``.
    if name.startswith("_") or "val" not in self.__dict__:
      raise AttributeError(name)
    return self.trial.scoring.value_of(name, self.val, test=self.test)

  @property
  def val_score(self) -> float:
    """The ranking metric on the validation split, refit alone."""
    return self.val[self.trial.scoring.rank_by]

  @property
  def test_score(self) -> float:
    """The ranking metric on the test split."""
    return self.test[self.trial.scoring.rank_by]

  def summary(self) -> dict[str, Any]:
    """As the run directory's summary holds it: ``val_<metric>`` and
    ``test_<metric>`` for every metric (classification: ``val_accuracy``,
    ``val_loss``, ``test_accuracy``, ``test_loss``)."""
    return self.record().to_json()

  def record(self) -> FinalFitRecord:
    """The summary's ``final_fit`` entry, as a record."""
    scoring = self.trial.scoring
    return FinalFitRecord(
        config=self.trial.hparams_json(), round=self.trial.round, trial=self.trial.trial,
        lane=self.trial.lane, schedule=tuple(tuple(step) for step in self.schedule),
        batch_size=self.batch_size, search=self.trial.score,
        val={name: self.val[name] for name in scoring.names},
        test={name: self.test[name] for name in scoring.names},
        trained_in="lanes" if self.in_lanes else "alone", scoring=scoring)
