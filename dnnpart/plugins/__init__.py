"""The plugin core: one hook, ``register_partitioners(register)``, loaded with pluggy."""

from dnnpart.plugins._hookspecs import hookimpl
from dnnpart.plugins._manager import PluginConflictError, PluginInfo, Registry, get_registry

__all__ = ["hookimpl", "get_registry", "PluginConflictError", "PluginInfo", "Registry"]
