"""Flax NNX models in the vmapped trainer, through a functional split/merge.

The trainer calls models the Linen way, ``init(key, x) -> {"params": p}`` and
``apply({"params": p}, x, ...)``, inside ``jit(vmap(...))``. :class:`NNXModel`
gives an NNX module that interface: its ``params`` are the module's
``nnx.Param`` state as a plain nested dict (``nnx.split``), and every call
rebuilds the module from that state (``nnx.merge(graphdef, state)(x)``), so
the lanes' weights stay ordinary arrays with a leading lane axis and nothing
NNX holds is mutated across the vmap.

Initial weights, per lane:

* from a *constructor* ``build(rngs) -> nnx.Module`` (a function taking
  ``rngs``, or an ``nnx.Module`` class): ``init(key, ...)`` builds the module
  under ``nnx.Rngs(k)``, with ``k`` derived from ``key`` as Linen derives a
  parameter's key. Like a Linen module, each round (and each seed replica)
  draws its own initial weights from its key, and a lane trained alone from
  the same key starts from the same weights;
* from a module *instance*: its current weights, copied when wrapped, are the
  initial weights of every lane of every round (e.g. a pretrained model to
  fine-tune); seed replicas then differ only in data order.

Structural hyperparameters (other than ``batch_size``) are keyword arguments
of the constructor: ``vt.tune(lambda rngs, hidden: MLP(hidden, rngs=rngs),
data, vt.Space(..., hidden=vt.Choice([32, 64])))``.

Only stateless modules are supported: every variable must be an
``nnx.Param`` (no ``BatchStat`` of a BatchNorm, no random stream stored in a
layer, such as ``nnx.Dropout(rate, rngs=rngs)``); anything else is refused
with the variables named. A searched ``dropout_rate`` reaches the module as
``module(x, dropout_rate=rate, rngs=nnx.Rngs(dropout=key))``; drop with
:func:`dropout`, whose rate may be traced (``nnx.Dropout``'s is a Python float).

>>> import jax, jax.numpy as jnp
>>> from flax import nnx
>>> class Net(nnx.Module):
...   def __init__(self, hidden=16, *, rngs):
...     self.hidden = nnx.Linear(64, hidden, rngs=rngs)
...     self.out = nnx.Linear(hidden, 10, rngs=rngs)
...   def __call__(self, x):
...     return self.out(nnx.relu(self.hidden(x.reshape((x.shape[0], -1)))))
>>> model = NNXModel(Net)
>>> params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
>>> params["nnx"]["hidden"]["kernel"].shape
(64, 16)
>>> model.apply({"params": params}, jnp.zeros((4, 8, 8, 1))).shape
(4, 10)
>>> type(model.merge(params)).__name__  # Trained weights back as an NNX module.
'Net'
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vmaptune.errors import NNXStateError
from vmaptune.models import reference as models

# The one entry of an NNXModel's ``params``: the module's Param state.
STATE = "nnx"

Constructor = Callable[..., nnx.Module]


def _name(build: Any) -> str:
  """What a constructor is called in messages and reprs, without addresses."""
  if isinstance(build, _Weights):
    return f"{build.name} weights"
  if isinstance(build, functools.partial):
    args = ", ".join(f"{k}={v!r}" for k, v in build.keywords.items())
    return f"{_name(build.func)}({args})"
  return getattr(build, "__qualname__", type(build).__name__)


def _pure_dict(state: nnx.State) -> dict:
  """``state`` as a nested dict of arrays (``nnx.to_pure_dict`` is flax 0.12's name)."""
  to_pure_dict = getattr(nnx, "to_pure_dict", None)
  return to_pure_dict(state) if to_pure_dict else state.to_pure_dict()


def _refuse_other_state(name: str, rest: nnx.State) -> None:
  flat = list(nnx.to_flat_state(rest) if hasattr(nnx, "to_flat_state") else rest.flat_state())
  if not flat:
    return
  found: dict[str, list[str]] = {}
  for path, variable in flat:
    found.setdefault(type(variable).__name__, []).append("/".join(map(str, path)))
  listed = "; ".join(f"{kind} at {', '.join(paths)}" for kind, paths in found.items())
  raise NNXStateError(
      f"NNX module {name} holds state besides nnx.Param ({listed}); only stateless models "
      "are supported: no BatchNorm statistics (use LayerNorm, or no normalisation) and no "
      "random streams kept in layers (to search a dropout rate, take dropout_rate and rngs "
      "in __call__ and drop with vmaptune.models.nnx.dropout)")


def _params(name: str, module: Any) -> tuple[nnx.GraphDef, dict]:
  """``(graphdef, Param state as a nested dict)`` of ``module``."""
  if not isinstance(module, nnx.Module):
    raise NNXStateError(f"NNX constructor {name} returned {type(module).__name__}; expected "
                        "an nnx.Module")
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  _refuse_other_state(name, rest)
  return graphdef, _pure_dict(params)


@functools.lru_cache(maxsize=64)
def _abstract(build: Constructor) -> tuple[nnx.GraphDef, dict]:
  """The graph definition and parameter shapes ``build`` makes (nothing computed)."""
  module = nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0)))
  return _params(_name(build), module)


class _Weights:
  """A constructor that ignores its key: a copy of a module's weights at wrap time."""

  def __init__(self, module: nnx.Module):
    self.name = type(module).__name__
    self.graphdef, params = _params(self.name, module)
    self.params = jax.tree.map(np.array, params)  # A host copy: later updates do not leak in.

  def __call__(self, rngs: nnx.Rngs) -> nnx.Module:
    return nnx.merge(self.graphdef, jax.tree.map(jnp.asarray, self.params))


class NNXModel(nn.Module):
  """A Flax NNX module behind the Linen ``init``/``apply`` interface the trainer uses.

  Attributes:
    build: ``build(rngs=nnx.Rngs(...)) -> nnx.Module``: a function or an
      ``nnx.Module`` class. :func:`model_spec` also wraps module instances.

  ``init(key, x)`` returns ``{"params": {"nnx": state}}`` where ``state`` is
  the module's ``nnx.Param`` state as a nested dict; ``apply`` merges it back
  into the module and calls it on ``x [B, ...]``, giving its output (logits
  ``[B, C]`` for the trainer). Refuses (:class:`NNXStateError`, on
  construction) modules with variables other than ``nnx.Param``.
  """

  build: Constructor

  def __post_init__(self):
    super().__post_init__()
    _abstract(self.build)  # Refuses non-Param state now, before anything is traced.

  @nn.compact
  def __call__(self, x: jax.Array, dropout_rate: jax.Array | float | None = None) -> jax.Array:
    """The module's output on ``x [B, ...]``; ``dropout_rate`` (a scalar, ``None``
    for none) is passed on with a ``"dropout"`` stream drawn from Linen's."""
    graphdef, _ = _abstract(self.build)
    state = self.param(STATE, self._initial_state)
    module = nnx.merge(graphdef, state)
    if dropout_rate is None:
      return module(x)
    try:
      accepted = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
      accepted = None
    if accepted is not None and not {"dropout_rate", "rngs"} <= set(accepted) and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
      raise TypeError(f"NNX module {type(module).__name__} does not take dropout_rate and rngs "
                      "call arguments, which a searched dropout_rate needs: give its __call__ "
                      "dropout_rate=None and rngs=None and drop with "
                      "vmaptune.models.nnx.dropout(x, dropout_rate, rngs)")
    return module(x, dropout_rate=dropout_rate, rngs=nnx.Rngs(dropout=self.make_rng("dropout")))

  @nn.nowrap
  def _initial_state(self, key: jax.Array) -> dict:
    return _params(_name(self.build), self.build(rngs=nnx.Rngs(key)))[1]

  @nn.nowrap
  def merge(self, params: Mapping[str, Any]) -> nnx.Module:
    """The NNX module holding ``params`` (e.g. a final fit's, without a lane axis)."""
    graphdef, _ = _abstract(self.build)
    return nnx.merge(graphdef, params[STATE])

  def __repr__(self) -> str:
    return f"NNXModel({_name(self.build)})"


def is_constructor(model: Any) -> bool:
  """Whether ``model`` builds an NNX module: an ``nnx.Module`` class, or a
  function (not a Linen module) with an ``rngs`` parameter."""
  if isinstance(model, type):
    return issubclass(model, nnx.Module)
  if isinstance(model, (nn.Module, nnx.Module)) or not callable(model):
    return False
  try:
    return "rngs" in inspect.signature(model).parameters
  except (TypeError, ValueError):
    return False


def model_spec(model: Any) -> Any:
  """``model`` as :func:`vmaptune.tune` and the structural buckets take it.

  * an ``nnx.Module`` instance: an :class:`NNXModel` starting every lane from
    a copy of its weights;
  * an NNX constructor (:func:`is_constructor`): a function of the
    constructor's other arguments (the structural values) returning an
    :class:`NNXModel`, with the constructor's name and signature (less
    ``rngs``), so structural names are checked against it;
  * anything else (a Linen module, a function returning one): unchanged.

  Raises:
    NNXStateError: a module instance holds variables other than ``nnx.Param``.
  """
  if isinstance(model, nnx.Module):
    return NNXModel(_Weights(model))
  if not is_constructor(model):
    return model
  signature = inspect.signature(model)
  kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
  taken = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
           if p.name != "rngs" and p.kind in kinds]
  taken += [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
  if all(p.default is not inspect.Parameter.empty for p in taken
         if p.kind is inspect.Parameter.KEYWORD_ONLY):
    NNXModel(model)  # Buildable from rngs alone: refuse non-Param state now.

  def build(**values: Any) -> NNXModel:
    return NNXModel(functools.partial(model, **values) if values else model)

  build.__signature__ = inspect.Signature(taken)
  build.__qualname__ = build.__name__ = _name(model)
  return build


def dropout(x: jax.Array, rate: jax.Array | float | None, rngs: nnx.Rngs | None) -> jax.Array:
  """Dropout for NNX modules, with a rate that may be traced (one per lane).

  Args:
    x: ``[...]``.
    rate: a scalar; ``None`` (evaluation) or a Python 0 returns ``x`` unchanged.
    rngs: the call's ``nnx.Rngs``; the mask is drawn from its ``dropout`` stream.

  Returns:
    ``x`` with each entry zeroed with probability ``rate`` and the rest scaled
    by ``1 / (1 - rate)``, as :class:`vmaptune.models.reference.Dropout` does.
  """
  if models.dropout_off(rate):
    return x
  if rngs is None:
    raise ValueError("dropout with a rate needs rngs with a 'dropout' stream")
  return models.dropout(x, rate, rngs.dropout())
