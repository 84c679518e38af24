"""Load plugins (entry-point group ``dnnpart``) and collect their partitioners.

Built-ins are registered through the same hook as third-party plugins. Each entry point
is loaded in its own try/except, so one broken plugin is reported (``dnnpart plugins``)
and every other command still works; ``DNNPART_STRICT_PLUGINS=1`` raises
:class:`PluginLoadError` instead. ``DNNPART_LOAD_PLUGINS`` (comma-separated entry-point
or package names; empty for none; unset for all) chooses which third-party plugins load,
and ``dnnpart --no-plugins`` sets it to empty for the command (and the processes it
starts). Two partitioners with one name are a :class:`PluginConflictError` naming both
packages.

Third-party partitioners are handed out *guarded*: a subclass whose ``partition`` turns
any exception into :class:`PartitionerFailedError` and checks the answer with
:meth:`Problem.validate`, so a faulty plugin fails its run with a typed error naming the
plugin, never with an anonymous traceback. ``cls.__wrapped__`` is the plugin's own class.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from dnnpart.errors import DnnpartError, PartitionerAnswerError, UsageError
from dnnpart.plugins._hookspecs import PROJECT, DnnpartSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "PartitionerFailedError",
    "PluginConflictError",
    "PluginInfo",
    "PluginLoadError",
    "Registry",
    "clear_cache",
    "get_registry",
    "no_plugins",
]

ENTRY_POINT_GROUP = "dnnpart"
BUILTIN = "dnnpart"
LOAD_ENV = "DNNPART_LOAD_PLUGINS"
STRICT_ENV = "DNNPART_STRICT_PLUGINS"


class PluginConflictError(UsageError):
    """Two plugins register partitioners with the same name."""


class PluginLoadError(DnnpartError):
    """A plugin failed to load or register (raised only in strict mode).

    Exit code 2: the installation does not match what the user asked for (strict
    plugins); not a bug of dnnpart, which exit code 1 would report.
    """

    exit_code = 2


class PartitionerFailedError(PartitionerAnswerError):
    """A plugin's ``partition()`` raised instead of answering."""


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``dnnpart plugins`` shows it."""

    name: str
    version: str | None
    package: str | None
    partitioners: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        """How messages name the plugin: its package (with version), else its name."""
        who = self.package or self.name
        return f"{who} {self.version}" if self.version else who

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
    """Loaded plugins and their partitioners (name -> class, name -> plugin name)."""

    plugins: list[PluginInfo]
    partitioners: dict[str, type]
    owner: dict[str, str]

    def get(self, name: str) -> type:
        if name not in self.partitioners:
            known = ", ".join(sorted(self.partitioners))
            raise UsageError(f"unknown partitioner {name!r} (known: {known})")
        return self.partitioners[name]

    @property
    def errors(self) -> dict[str, str]:
        """Plugin name -> error, for the plugins that failed."""
        return {p.name: p.error for p in self.plugins if p.error}

    def describe(self) -> list[dict]:
        """One row per partitioner: name, plugin, granularities, parameters, description."""
        rows = []
        for name, cls in sorted(self.partitioners.items()):
            own = getattr(cls, "__wrapped__", cls)
            doc = inspect.getdoc(own) or ""
            rows.append(
                {
                    "name": name,
                    "plugin": self.owner[name],
                    "granularities": list(getattr(cls, "granularities", ())),
                    "parameters": parameters_of(own),
                    "description": _summary(doc),
                }
            )
        return rows


def _summary(doc: str) -> str:
    """First paragraph of a docstring, on one line, without Sphinx roles."""
    text = doc.split("\n\n")[0].replace("\n", " ")
    return re.sub(r":\w+:`~?([^`]*)`", r"\1", text)


def parameters_of(cls: type) -> dict[str, Any]:
    """Keyword parameters of ``cls.__init__`` with their defaults (JSON-safe; repr if not)."""
    from dnnpart.partitioners._base import params_of

    out = {}
    for p in params_of(cls):
        value = None if p.default is p.empty else p.default
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[p.name] = value
    return out


_cache: dict[tuple, Registry] = {}
_guarded: dict[str, type] = {}


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def get_registry(load_plugins: bool = True) -> Registry:
    """Plugins and partitioners, loaded once per process (per environment setting).

    Parameters
    ----------
    load_plugins : bool
        False loads the built-ins only. True loads the third-party plugins that
        ``DNNPART_LOAD_PLUGINS`` names (all when it is unset, none when it is empty).

    Raises
    ------
    PluginConflictError
        Two partitioners share a name (the message names both packages).
    PluginLoadError
        In strict mode (``DNNPART_STRICT_PLUGINS=1``), a plugin failed to load.
    """
    wanted = os.environ.get(LOAD_ENV)
    key = (load_plugins, wanted, _strict())
    if key not in _cache:
        _cache[key] = _load(load_plugins, wanted)
    return _cache[key]


def clear_cache() -> None:
    """Forget loaded registries and the import system's caches (after installing a plugin)."""
    _cache.clear()
    importlib.invalidate_caches()


@contextlib.contextmanager
def no_plugins():
    """Load no third-party plugin inside the block (nor in processes started from it)."""
    old = os.environ.get(LOAD_ENV)
    os.environ[LOAD_ENV] = ""
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(LOAD_ENV, None)
        else:
            os.environ[LOAD_ENV] = old


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _failed(info: PluginInfo, exc: BaseException, what: str) -> None:
    """Record a plugin's failure, or raise it in strict mode."""
    info.error = f"{type(exc).__name__}: {exc}"
    if _strict():
        raise PluginLoadError(
            f"plugin {info.name!r} ({info.label}) failed to {what}: {info.error}"
        ) from exc


def _load(load_plugins: bool, wanted: str | None) -> Registry:
    from dnnpart.plugins import _builtin

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(DnnpartSpec)
    infos: dict[str, PluginInfo] = {}
    pm.register(_builtin, name=BUILTIN)
    infos[BUILTIN] = PluginInfo(BUILTIN, _version("dnnpart"), "dnnpart")
    if load_plugins:
        _load_entry_points(pm, infos, wanted)
    partitioners: dict[str, type] = {}
    owner: dict[str, str] = {}
    # Registration order: built-ins first, then plugins by entry-point name, so that a
    # clash always blames the later plugin and the result does not depend on pluggy.
    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        impls = [i for i in pm.hook.register_partitioners.get_hookimpls() if i.plugin_name == name]
        if plugin is None or info.error:
            continue
        if not impls:
            exc = PluginLoadError("no @dnnpart.plugins.hookimpl register_partitioners found")
            _failed(info, exc, "register")
            continue

        def register(cls, _info=info):
            pname = _check_class(cls)
            if pname in partitioners:
                first = infos[owner[pname]]
                raise PluginConflictError(
                    f"partitioner {pname!r} is registered by both {first.package or first.name!r}"
                    f" and {_info.package or _info.name!r}; uninstall one, or choose with "
                    f"{LOAD_ENV}"
                )
            partitioners[pname] = cls if _info.name == BUILTIN else _guard(cls, _info)
            owner[pname] = _info.name
            _info.partitioners.append(pname)

        for impl in impls:
            try:
                impl.function(register=register)
            except PluginConflictError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break dnnpart
                if name == BUILTIN:
                    raise
                # A plugin that failed half-way contributes nothing.
                for pname in info.partitioners:
                    del partitioners[pname], owner[pname]
                info.partitioners.clear()
                _failed(info, exc, "register its partitioners")
                break
    return Registry(list(infos.values()), partitioners, owner)


def _load_entry_points(pm: pluggy.PluginManager, infos: dict, wanted: str | None) -> None:
    names = None if wanted is None else {_norm(n.strip()) for n in wanted.split(",") if n.strip()}
    found: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist is not None else None
        if names is not None:
            hit = names & {_norm(ep.name), _norm(package or ep.name)}
            if not hit:
                continue
            found |= hit
        pname = ep.name if ep.name not in infos else f"{package}:{ep.name}"
        info = PluginInfo(pname, dist.version if dist is not None else None, package)
        infos[pname] = info
        try:
            pm.register(ep.load(), name=pname)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - ImportError, SyntaxError, ...
            _failed(info, exc, "load")
    for missing in sorted((names or set()) - found - {BUILTIN}):
        info = PluginInfo(missing, None, None)
        infos[missing] = info
        _failed(info, LookupError(f"no installed plugin of this name (in {LOAD_ENV})"), "load")


def _check_class(cls: Any) -> str:
    """The partitioner's name, after checking the class offers what the host relies on."""
    from dnnpart.problem._problem import GRANULARITIES

    name = getattr(cls, "name", "")
    if not isinstance(cls, type) or not callable(getattr(cls, "partition", None)):
        raise PluginLoadError(f"{cls!r} is not a class with a partition(problem) method")
    if not isinstance(name, str) or not name.strip():
        raise PluginLoadError(f"{cls.__qualname__} has no name")
    gran = getattr(cls, "granularities", None)
    if not isinstance(gran, tuple | list) or not gran or not set(gran) <= set(GRANULARITIES):
        raise PluginLoadError(
            f"{cls.__qualname__}.granularities must be a non-empty subset of {GRANULARITIES}, "
            f"got {gran!r}"
        )
    return name


def _guard(cls: type, info: PluginInfo) -> type:
    """A subclass of a plugin's partitioner whose failures are typed and name the plugin."""
    original = cls.partition
    who = f"partitioner {cls.name!r} (plugin {info.label})"

    def partition(self, problem):
        try:
            labels = original(self, problem)
        except (DnnpartError, MemoryError):
            raise  # already typed, or a resource limit the CLI reports as such
        except Exception as exc:  # noqa: BLE001 - foreign code
            raise PartitionerFailedError(f"{who} raised {type(exc).__name__}: {exc}") from exc
        return problem.validate(labels, who=who)

    # Pickled by name through this module's __getattr__, so that a guarded class (or an
    # instance) can be sent to a worker process that loads the same registry.
    key = "_guarded_" + re.sub(r"[^0-9A-Za-z_]", "_", f"{info.name}__{cls.name}")
    ns = {
        "partition": partition,
        "__module__": __name__,
        "__qualname__": key,
        "__doc__": cls.__doc__,
        "__wrapped__": cls,
        "plugin": info.name,
    }
    try:
        guarded = type(cls.__name__, (cls,), ns)
    except TypeError:  # a class that refuses subclassing: hand it out as it is
        return cls
    _guarded[key] = guarded
    return guarded


def __getattr__(attr: str):
    if attr.startswith("_guarded_"):
        if attr not in _guarded:
            get_registry()
        if attr in _guarded:
            return _guarded[attr]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
