"""Compilation: XLA options and matmul precision, counting programs, and the
persistent compilation cache.

:class:`CompileCounter` listens to JAX's monitoring events; the tuner uses it to
report compile time per round, and the tests to prove that rounds after the
first obtain no new program. :func:`persistent_cache` points JAX at an on-disk
cache so that a second run of the same experiment loads its programs instead
of compiling them (``tune`` and the CLI turn it on by default).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import jax
import jax.monitoring
from jax.experimental.compilation_cache import compilation_cache

# Recorded for every program obtained, whether XLA compiled it or the cache had it.
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_STAGING = ("/jax/core/compile/jaxpr_trace_duration",
            "/jax/core/compile/jaxpr_to_mlir_module_duration")

# Settings -> jax.default_matmul_precision values. "bfloat16" names the dot
# algorithm (bf16 inputs, fp32 accumulation), which plain "bfloat16" precision
# does not force on GPUs.
MATMUL_PRECISIONS = {"default": None, "bfloat16": "BF16_BF16_F32", "float32": "float32"}


def compiler_options(platform: str) -> dict[str, Any] | None:
  """XLA options for programs on ``platform``.

  On CPU, LLVM's level-1 optimisation compiled the digits MLP and CNN
  population programs ~30% faster than the default with the same run time.
  """
  return {"xla_backend_optimization_level": 1} if platform == "cpu" else None

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "vmaptune", "jax")


class CompileCounter:
  """Context manager counting the XLA programs a block obtains, and the time spent.

  Attributes:
    compiles: programs the block needed: compiled by XLA, or loaded from the
      persistent compilation cache.
    cache_hits: how many of them were loaded from the cache.
    compile_seconds: time in XLA compilation (or cache loading).
    trace_seconds: time JAX spent tracing Python and lowering it for XLA,
      which no cache saves.

  >>> import jax, numpy as np
  >>> triple = jax.jit(lambda x: x * 3)
  >>> with CompileCounter() as counter:
  ...   _ = triple(np.arange(7.0)), triple(np.arange(7.0) + 1)
  >>> counter.compiles  # Same shape twice: compiled once.
  1
  """

  def __init__(self):
    self.compiles = 0
    self.cache_hits = 0
    self.compile_seconds = 0.0
    self.trace_seconds = 0.0
    self._lock = threading.Lock()

  def _on_duration(self, event: str, duration: float, **_) -> None:
    with self._lock:
      if event == _BACKEND_COMPILE:
        self.compiles += 1
        self.compile_seconds += duration
      elif event in _STAGING:
        self.trace_seconds += duration

  def _on_event(self, event: str, **_) -> None:
    if event == _CACHE_HIT:
      with self._lock:
        self.cache_hits += 1

  def __enter__(self) -> CompileCounter:
    jax.monitoring.register_event_duration_secs_listener(self._on_duration)
    jax.monitoring.register_event_listener(self._on_event)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._on_duration)
    jax.monitoring.unregister_event_listener(self._on_event)


def resolve_cache_dir(path: str | None = None) -> str:
  """``path``, else ``$VMAPTUNE_CACHE_DIR``, else ``~/.cache/vmaptune/jax``; absolute."""
  path = path or os.environ.get("VMAPTUNE_CACHE_DIR") or DEFAULT_CACHE_DIR
  return os.path.abspath(os.path.expanduser(path))


@contextlib.contextmanager
def persistent_cache(path: str | None = None) -> Iterator[str]:
  """Compiles through an on-disk cache at ``path`` (see :func:`resolve_cache_dir`)
  inside the block, and restores the previous setting after it.

  Every program is cached, however fast it compiled. Only trust a cache
  directory you own: JAX runs what it loads from it.

  Yields:
    The absolute cache directory.
  """
  path = resolve_cache_dir(path)
  os.makedirs(path, exist_ok=True)
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  compilation_cache.set_cache_dir(path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  compilation_cache.reset_cache()  # JAX decides once per process whether to use it.
  try:
    yield path
  finally:
    compilation_cache.set_cache_dir(previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    compilation_cache.reset_cache()


@contextlib.contextmanager
def cache_for_run(cache: bool | str) -> Iterator[str | None]:
  """The persistent cache a run compiles through: ``True`` the default
  directory (:func:`resolve_cache_dir`), a path that directory, ``False`` none.
  A cache the caller already configured (``jax_compilation_cache_dir``) is kept
  when ``cache`` is ``True``.

  Yields:
    The cache directory in use, or ``None``.
  """
  if cache is False:
    yield None
  elif cache is True and jax.config.jax_compilation_cache_dir:
    yield jax.config.jax_compilation_cache_dir
  else:
    with persistent_cache(None if cache is True else cache) as path:
      yield path
