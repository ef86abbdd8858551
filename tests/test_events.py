"""Training cut into reported pieces: sized from the last piece's speed, or fixed."""

from vmaptune.lanes.events import Pieces


def test_auto_pieces_aim_at_the_interval_from_the_last_pieces_speed():
  pieces = Pieces("auto", interval_s=0.5)
  assert pieces.next(lanes=8, left=20) == 1  # Nothing measured yet.
  pieces.measured(seconds=0.01, lane_epochs=8)  # 10 ms per epoch of 8 lanes: 50 in 0.5 s.
  assert pieces.next(lanes=8, left=20) == 20
  assert pieces.next(lanes=64, left=20) == 6  # 80 ms per epoch of 64 lanes.
  pieces.measured(seconds=8.0, lane_epochs=8)  # Slower than the interval: one epoch at a time.
  assert pieces.next(lanes=8, left=20) == 1
  assert [Pieces(3).next(8, left) for left in (20, 2)] == [3, 2]
  assert Pieces(None).next(8, 17) == 17
