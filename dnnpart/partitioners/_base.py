"""The base class every partitioner (built-in or plugin) derives from."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dnnpart.problem._problem import Problem

__all__ = ["Partitioner"]


class Partitioner:
    """Cut a :class:`Problem` into ``problem.k`` parts.

    Subclasses set ``name`` (unique, shown everywhere) and ``granularities`` (what they
    can partition), store their parameters in ``__init__`` (validated when used, as in
    scikit-learn) and implement :meth:`partition`, which returns one device index per
    vertex. Partitioners never score themselves: the host validates and scores the answer.
    A partitioner may leave notes for the user in ``self.messages_`` (a list of str), e.g.
    that it fell back to a cheaper search; they are shown as warnings and kept in the plan.
    """

    name: ClassVar[str] = ""
    granularities: ClassVar[tuple[str, ...]] = ("neuron", "layer")
    # False for partitioners whose objective is not per-layer balance (e.g. pipeline
    # placement minimises the time per sample); conformance checks then skip balance.
    balances: ClassVar[bool] = True

    def partition(self, problem: Problem) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def get_params(self) -> dict:
        """Parameters given to ``__init__`` (for plans and reports): not private names, nor
        what the run left behind (scikit-learn's trailing underscore, e.g. ``messages_``)."""
        return {
            k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")
        }
