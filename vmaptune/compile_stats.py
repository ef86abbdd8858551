"""Counting XLA compilations, through JAX's monitoring events.

Used by the tuner to report compile time per round, and by the tests to prove
that rounds after the first compile nothing new.
"""

from __future__ import annotations

import threading

import jax.monitoring

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
# Tracing and lowering are part of the price of a new program too.
_COMPILE_PHASES = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    _BACKEND_COMPILE,
)


class CompileCounter:
  """Context manager counting backend compilations and compile seconds.

  >>> import jax, numpy as np
  >>> triple = jax.jit(lambda x: x * 3)
  >>> with CompileCounter() as counter:
  ...   _ = triple(np.arange(7.0)), triple(np.arange(7.0) + 1)
  >>> counter.compiles  # Same shape twice: compiled once.
  1
  """

  def __init__(self):
    self.compiles = 0
    self.seconds = 0.0
    self._lock = threading.Lock()

  def _listen(self, event: str, duration: float, **_) -> None:
    if event in _COMPILE_PHASES:
      with self._lock:
        self.seconds += duration
        self.compiles += event == _BACKEND_COMPILE

  def __enter__(self) -> CompileCounter:
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listen)
