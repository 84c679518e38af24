"""The hooks a dnnpart plugin may implement.

A plugin is a module (or object) named by an entry point of group ``dnnpart``; dnnpart
loads it with pluggy and calls the functions in it marked with :data:`hookimpl`. Today
there is one hook, :meth:`DnnpartSpec.register_partitioners`. See
``docs/writing-a-plugin.md``.
"""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl", "hookspec", "DnnpartSpec", "PROJECT"]

PROJECT = "dnnpart"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class DnnpartSpec:
    """Hook specifications of dnnpart (pluggy)."""

    @hookspec
    def register_partitioners(self, register):
        """Offer partitioners to dnnpart.

        Parameters
        ----------
        register : callable
            Call ``register(PartitionerClass)`` once for each partitioner the plugin offers.
            The class derives from :class:`dnnpart.partitioners.Partitioner`, sets a unique
            ``name`` and its ``granularities``, takes only keyword parameters with defaults
            in ``__init__`` and returns one device index per vertex from
            ``partition(problem)``. A name already taken (by dnnpart or another plugin) is
            an error naming both packages.
        """
