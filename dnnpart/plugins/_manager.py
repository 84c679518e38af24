"""Load plugins (entry-point group ``dnnpart``) and collect their partitioners.

Built-ins are registered through the same hook as third-party plugins. Each entry point
is loaded in its own try/except, so one broken plugin is reported (``dnnpart plugins``)
and every other command still works; ``DNNPART_STRICT_PLUGINS=1`` re-raises instead.
``DNNPART_LOAD_PLUGINS`` (comma-separated names; empty for none) chooses which
third-party plugins load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from dnnpart.errors import DnnpartError, UsageError
from dnnpart.plugins._hookspecs import DnnpartSpec

__all__ = ["PluginInfo", "PluginConflictError", "Registry", "get_registry", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "dnnpart"
BUILTIN = "dnnpart"


class PluginConflictError(UsageError):
    """Two plugins register partitioners with the same name."""


@dataclass
class PluginInfo:
    name: str
    version: str | None
    package: str | None
    partitioners: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "package": self.package,
            "partitioners": list(self.partitioners),
            "error": self.error,
        }


@dataclass
class Registry:
    plugins: list[PluginInfo]
    partitioners: dict[str, type]  # name -> class
    owner: dict[str, str]  # partitioner name -> plugin name

    def get(self, name: str) -> type:
        if name not in self.partitioners:
            known = ", ".join(sorted(self.partitioners))
            raise UsageError(f"unknown partitioner {name!r} (known: {known})")
        return self.partitioners[name]


_cache: dict[tuple, Registry] = {}


def _strict() -> bool:
    return os.environ.get("DNNPART_STRICT_PLUGINS", "") not in ("", "0")


def get_registry(load_plugins: bool = True) -> Registry:
    """Plugins and partitioners, loaded once per process (per environment setting)."""
    wanted = os.environ.get("DNNPART_LOAD_PLUGINS")
    key = (load_plugins, wanted, _strict())
    if key not in _cache:
        _cache[key] = _load(load_plugins, wanted)
    return _cache[key]


def _load(load_plugins: bool, wanted: str | None) -> Registry:
    from dnnpart.partitioners import _builtin

    pm = pluggy.PluginManager("dnnpart")
    pm.add_hookspecs(DnnpartSpec)
    infos: dict[str, PluginInfo] = {}
    pm.register(_builtin, name=BUILTIN)
    infos[BUILTIN] = PluginInfo(BUILTIN, _version("dnnpart"), "dnnpart")
    if load_plugins:
        names = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if names is not None and ep.name not in names:
                continue
            package = ep.dist.name if ep.dist is not None else None
            info = PluginInfo(ep.name, ep.dist.version if ep.dist else None, package)
            infos[ep.name] = info
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break dnnpart
                if _strict():
                    raise
                info.error = f"{type(exc).__name__}: {exc}"
    partitioners: dict[str, type] = {}
    owner: dict[str, str] = {}
    for impl in reversed(pm.hook.register_partitioners.get_hookimpls()):
        info = infos[impl.plugin_name]

        def register(cls, _info=info):
            name = getattr(cls, "name", "")
            if not isinstance(name, str) or not name:
                raise DnnpartError(f"plugin {_info.name!r} registered {cls!r} without a name")
            if name in partitioners:
                first = infos[owner[name]]
                raise PluginConflictError(
                    f"partitioner {name!r} is registered by both {first.package or first.name!r} "
                    f"and {_info.package or _info.name!r}"
                )
            partitioners[name] = cls
            owner[name] = _info.name
            _info.partitioners.append(name)

        try:
            impl.function(register=register)
        except PluginConflictError:
            raise
        except Exception as exc:  # noqa: BLE001
            if _strict() or impl.plugin_name == BUILTIN:
                raise
            info.error = f"{type(exc).__name__}: {exc}"
    return Registry(list(infos.values()), partitioners, owner)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
