"""The hooks a dnnpart plugin may implement."""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl", "hookspec", "DnnpartSpec"]

hookspec = pluggy.HookspecMarker("dnnpart")
hookimpl = pluggy.HookimplMarker("dnnpart")


class DnnpartSpec:
    @hookspec
    def register_partitioners(self, register):
        """Call ``register(PartitionerClass)`` for each partitioner the plugin offers."""
