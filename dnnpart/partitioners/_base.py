"""The base class every partitioner (built-in or plugin) derives from, and its parameters.

As in scikit-learn, the signature of ``__init__`` is the one declaration of a
partitioner's parameters: ``__init__`` stores each under its own name, :meth:`get_params`
reads them back by that signature (so fitted attributes never reach a plan), and
:meth:`Partitioner.checked_params` validates the values, in one place, against the
class's ``constraints`` when the partitioner runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from dnnpart.errors import UsageError
from dnnpart.problem._problem import Problem

__all__ = [
    "Partitioner",
    "Choice",
    "Integer",
    "Interval",
    "Boolean",
    "params_of",
    "instantiate",
    "options_for",
    "with_params_of",
]


class Choice:
    """One of ``values``."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def __call__(self, name: str, value: Any) -> None:
        if value not in self.values:
            raise UsageError(f"{name} must be one of {self.values}, got {value!r}")


class Integer:
    """An integer ``>= low`` (any integer if ``low`` is None; never a bool); ``None`` too
    when ``optional``."""

    def __init__(self, low: int | None, optional: bool = False) -> None:
        self.low, self.optional = low, optional

    def __call__(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        low = self.low
        if isinstance(value, bool) or not isinstance(value, Integral) or value < (low or 0):
            if low is None and isinstance(value, Integral) and not isinstance(value, bool):
                return
            what = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}
            what = what.get(low, f"an integer >= {low}")
            raise UsageError(f"{name} must be {what}, got {value!r}")


class Interval:
    """A real number in the open interval ``(low, high)``."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, name: str, value: Any) -> None:
        ok = isinstance(value, Real) and not isinstance(value, bool)
        if not (ok and self.low < value < self.high):
            raise UsageError(f"{name} must be in ({self.low:g}, {self.high:g}), got {value!r}")


def Boolean(name: str, value: Any) -> None:  # noqa: N802 - used like the classes above
    """``True`` or ``False``."""
    if not isinstance(value, bool | np.bool_):
        raise UsageError(f"{name} must be true or false, got {value!r}")


def params_of(cls: type) -> list[inspect.Parameter]:
    """The parameters of ``cls.__init__`` (keyword-capable ones, in order)."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p for p in sig.parameters.values() if p.kind not in skip]


def options_for(cls: type, options: dict[str, Any] | None) -> dict[str, Any]:
    """The options meant for ``cls``: ``name=value`` where ``cls`` takes ``name``, and
    ``<partitioner>.name=value`` for its own registry name (``metis.ncuts=4``; it wins)."""
    names = {p.name for p in params_of(cls)}
    prefix = f"{getattr(cls, 'name', '')}."
    options = options or {}
    out = {key: value for key, value in options.items() if "." not in key and key in names}
    # a qualified option wins over the same name given to every partitioner
    out.update({k[len(prefix) :]: v for k, v in options.items() if k.startswith(prefix)})
    return out


def instantiate(cls: type, options: dict[str, Any] | None = None) -> Any:
    """``cls(**options)`` (keys as :func:`options_for`), with a :class:`UsageError` naming
    the parameters it takes when an option is not one of them."""
    options = dict(options or {})
    mine = options_for(cls, options)
    names = [p.name for p in params_of(cls)]
    prefix = f"{getattr(cls, 'name', '')}."
    stray = [key for key in options if key not in mine and not key.startswith(prefix)]
    stray += [key for key in mine if key not in names]
    if stray:
        who = getattr(cls, "name", "") or cls.__name__
        takes = ", ".join(names) if names else "none"
        raise UsageError(f"partitioner {who!r} has no parameter {stray[0]!r} (it takes: {takes})")
    return cls(**mine)


class Partitioner:
    """Cut a :class:`Problem` into ``problem.k`` parts.

    Subclasses set ``name`` (unique, shown everywhere) and ``granularities`` (what they
    can partition), declare their parameters as the keyword arguments of ``__init__`` and
    store each under its own name (validated when used, as in scikit-learn: list checks
    in ``constraints`` and call :meth:`checked_params`), and implement :meth:`partition`,
    which returns one device index per vertex. Partitioners never score themselves: the
    host validates and scores the answer. Notes for the user (a fallback to a cheaper
    search, ...) go through :func:`dnnpart._notes.note`; they reach the plan and stderr.
    """

    name: ClassVar[str] = ""
    granularities: ClassVar[tuple[str, ...]] = ("neuron", "layer")
    # False for partitioners whose objective is not per-layer balance (e.g. pipeline
    # placement minimises the time per sample); conformance checks then skip balance.
    balances: ClassVar[bool] = True
    # Parameter name -> check(name, value) raising UsageError (Choice, Integer, ...).
    constraints: ClassVar[dict[str, Callable[[str, Any], None]]] = {}

    def partition(self, problem: Problem) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def get_params(self) -> dict:
        """The parameters of ``__init__`` and their values (for plans and reports)."""
        return {p.name: getattr(self, p.name, p.default) for p in params_of(type(self))}

    def checked_params(self) -> dict:
        """:meth:`get_params`, each value checked against ``constraints``."""
        params = self.get_params()
        for name, check in self.constraints.items():
            check(name, params[name])
        return params


def with_params_of(cls: type, exclude: tuple[str, ...] = ()):
    """Show ``cls``' parameters as the keyword-only signature of a ``f(problem, ...,
    **params)`` function running ``cls(**params)`` (for ``help()``; one declaration)."""

    def wrap(fn):
        sig = inspect.signature(fn)
        head = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in params_of(cls)
            if p.name not in exclude
        ]
        fn.__signature__ = sig.replace(parameters=head + own)
        return fn

    return wrap
