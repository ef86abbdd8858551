"""The notebook display of runs and results, drawn by a layer above them.

Jupyter shows an object by the HTML its ``_repr_html_`` returns. The HTML of a
:class:`vmaptune.rundir.Run`, a :class:`vmaptune.RoundResult` and a
:class:`vmaptune.TuneResult` holds their figures and tables, which
:mod:`vmaptune.reporting` draws, a layer above ``rundir`` and ``search``; so their
``_repr_html_`` asks :func:`html`, and :mod:`vmaptune.reporting.notebook` installs
the drawing here (``import vmaptune`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_renderers: list[Callable[[Any], str]] = []


def install(render: Callable[[Any], str]) -> None:
  """Makes ``render(obj)`` the HTML of runs and results (replacing any installed before)."""
  _renderers[:] = [render]


def html(obj: Any) -> str | None:
  """``obj``'s HTML summary; ``None`` when no drawing is installed (Jupyter then
  shows the plain ``repr``)."""
  return _renderers[0](obj) if _renderers else None
