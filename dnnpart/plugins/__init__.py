"""The plugin core: one hook, ``register_partitioners(register)``, loaded with pluggy."""

from dnnpart.plugins._hookspecs import hookimpl
from dnnpart.plugins._manager import (
    PartitionerFailedError,
    PluginConflictError,
    PluginInfo,
    PluginLoadError,
    Registry,
    clear_cache,
    get_registry,
    no_plugins,
)

__all__ = [
    "hookimpl",
    "get_registry",
    "clear_cache",
    "no_plugins",
    "PartitionerFailedError",
    "PluginConflictError",
    "PluginInfo",
    "PluginLoadError",
    "Registry",
]
