"""What training reports as it goes: the listener interface, and training cut
into reported pieces.

Training runs as compiled segments over ranges of epochs (see
:meth:`vmaptune.lanes.population.Population.advance`), so it can only be reported
from the host between them. With a listener, :func:`advance` cuts a
strategy's segment into :class:`Pieces` and tells the listener after each:
the same computation, bit for bit (training epochs ``[0, a)`` then ``[a, b)``
equals ``[0, b)``, see :func:`vmaptune.lanes.train.make_segment`), at the cost of
one program launch and one read of the lanes' divergence flags per piece.
Without one, nothing is cut or read back. The listener only listens: what
it does with the news (a live line, JSON lines, a callback) is
:mod:`vmaptune.reporting.progress`'s business.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from vmaptune.lanes.devices import to_host
from vmaptune.lanes.population import Lanes, Population
from vmaptune.validation import greater_than, whole_number

# Epoch-loss records of consecutive pieces hold NaN outside their own epochs.
_merge_losses = jax.jit(jnp.fmax)


class Listener:
  """Hears training as it goes; both methods do nothing unless overridden.
  Training calls :meth:`trained` after each piece and :meth:`evaluated` after
  each validation pass. A run's observers
  (:class:`vmaptune.search.observer.Observer`) extend it.
  """

  def trained(self, *, first_epoch: int, epoch: int, lanes: int, alive: int,
              seconds: float) -> None:
    """After a piece of training: epochs ``[first_epoch, epoch)`` of ``lanes``
    lanes, ``alive`` of them not diverged, in ``seconds``."""

  def evaluated(self, scores: np.ndarray, diverged: np.ndarray) -> None:
    """After a validation pass: ``scores``, the ranking metric of each lane (the
    objective's: validation accuracy for classification; lower is better for a
    minimised one), and ``diverged``, both ``[lanes]`` (NaN scores where diverged)."""


class Pieces:
  """How a segment of training is cut into reported pieces.

  Args:
    every: ``"auto"`` (pieces of about ``interval_s`` seconds, sized from the
      speed of the piece before; the first piece of a run is one epoch), a
      whole number of epochs, or ``None`` (one piece per segment).
    interval_s: the seconds of training an ``"auto"`` piece aims at.
  """

  def __init__(self, every: int | str | None = "auto", interval_s: float = 0.5):
    if every not in (None, "auto"):
      whole_number("every", every, 1, what="'auto', a whole number of epochs",
                   why=", or None (one report per segment)", error=ValueError)
    greater_than("interval_s", interval_s, 0, what="a number of seconds", error=ValueError)
    self.every = every
    self.interval_s = float(interval_s)
    self._lane_epoch_s: float | None = None  # Measured by the latest piece.

  def next(self, lanes: int, left: int) -> int:
    """Epochs of the next piece of ``lanes`` lanes, at most ``left``."""
    if self.every is None:
      return left
    if self.every != "auto":
      return min(self.every, left)
    if self._lane_epoch_s is None:
      return 1
    return min(max(1, int(self.interval_s / (self._lane_epoch_s * lanes))), left)

  def measured(self, seconds: float, lane_epochs: int) -> None:
    """Records how long the last piece took."""
    self._lane_epoch_s = seconds / lane_epochs


def advance(pop: Population, lanes: Lanes, data_key: jax.Array, first_epoch: int,
            num_epochs: int, pieces: Pieces, listener: Listener) -> tuple[Lanes, jax.Array]:
  """:meth:`Population.advance` over epochs ``[first_epoch, first_epoch +
  num_epochs)`` in pieces, each reported to ``listener``; returns what one
  call would (the lanes, and ``epoch_loss [L, budget]``)."""
  losses, start, end = None, first_epoch, first_epoch + num_epochs
  while start < end:
    count = pieces.next(lanes.count, end - start)
    began = time.perf_counter()
    lanes, piece = pop.advance(lanes, data_key, start, count)
    losses = piece if losses is None else _merge_losses(losses, piece)
    # Reading the flags waits for the piece, so the time below is real.
    diverged = to_host(lanes.state.diverged)[:lanes.count]
    seconds = time.perf_counter() - began
    pieces.measured(seconds, lanes.count * count)
    listener.trained(first_epoch=start, epoch=start + count, lanes=lanes.count,
                     alive=int((~diverged).sum()), seconds=seconds)
    start += count
  return lanes, losses
