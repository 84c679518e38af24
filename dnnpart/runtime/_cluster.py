"""Ray for ``dnnpart run``: joining a cluster (or starting one here) and placing one actor
per device.

With no address, :func:`connect` starts a local Ray the way an embedded engine should:
no dashboard, an object store sized for the model rather than a share of the machine's
memory, logs kept off the terminal, and Ray's own token authentication left as Ray sets
it (on by default for local clusters since Ray 2.59). Ray 2.60 cannot be held to
127.0.0.1: it replaces a loopback node address with the machine's reachable one
(``ray._private.services.resolve_ip_for_localhost``), so its ports listen there, behind
that token. Runs across machines join an existing cluster
(``address="HOST:PORT"``); traffic between its nodes is then as safe as the cluster's
setup: enable Ray's TLS there (``RAY_USE_TLS=1`` with ``RAY_TLS_SERVER_CERT``,
``RAY_TLS_SERVER_KEY`` and ``RAY_TLS_CA_CERT`` on every node and on this driver) and token
authentication (``RAY_AUTH_MODE=token``).

A local Ray also passes activations *inline*: objects up to :data:`INLINE_BYTES` travel
in Ray's task messages instead of its shared-memory object store (Ray's default cut is
100 KiB). On one machine the store costs more CPU than it saves -- each object is
created, sealed, pinned, fetched and freed through the raylet -- and that CPU is taken
from the devices, which share the same cores: on a 2-device ResNet-50 split (1 MB moved
per sample) Ray's own processes went from 4.25 to 0.85 ms of CPU per sample and the
driver from 3.90 to 4.45 (``bench/run_cpu.py``). A joined cluster keeps its own
settings: across machines the object store moves data node to node, not via the driver.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from dnnpart.errors import InvalidModelError, ResourceLimitError, UsageError
from dnnpart.runtime._execute import _check_external

__all__ = ["import_ray", "connect", "start_actors", "ACTOR_FAILURES", "INLINE_BYTES"]

INLINE_BYTES = 16 << 20  # objects a local Ray passes inline (module docstring)

ACTOR_FAILURES: tuple[type[BaseException], ...] = ()  # set by import_ray


def import_ray():
    """The ``ray`` module, or a usage error saying how to install it."""
    global ACTOR_FAILURES
    try:
        import ray
    except ImportError:
        raise UsageError(
            'dnnpart run needs Ray: pip install "dnnpart[ray]" (or pip install ray)'
        ) from None
    ex = ray.exceptions
    ACTOR_FAILURES = tuple(
        getattr(ex, name)
        for name in ("RayActorError", "ActorUnavailableError", "ObjectLostError", "OwnerDiedError")
        if hasattr(ex, name)
    )
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast, naming ``address``, when nothing answers there (Ray itself retries for
    a minute or more)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(f"cannot reach Ray at {address}: {exc}") from None


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_bytes: int | None = None,
    timeout: float = 5.0,
) -> bool:
    """Join the Ray cluster at ``address``, or start a local one; True if it was started
    (or joined) here and is to be shut down by the caller. A Ray already initialised in
    this process (a test's, a notebook's) is used as it is."""
    ray = import_ray()
    if address:
        _check_reachable(address, timeout)
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot join Ray at {address}: {str(exc).splitlines()[0]}") from None
        return True
    ray.init(
        num_cpus=max(os.cpu_count() or 1, num_cpus or 1),
        include_dashboard=False,
        object_store_memory=max(80 << 20, int(object_store_bytes or 0)),
        _system_config={
            "max_direct_call_object_size": INLINE_BYTES,
            # a call's inline arguments together (a batch's outboxes, several senders)
            "task_rpc_inlined_bytes_limit": 4 * INLINE_BYTES,
        },
        **common,
    )
    return True


def _actor_options(device: dict[str, Any], threads: int) -> dict[str, Any]:
    resources = {str(k): float(v) for k, v in (device.get("resources") or {}).items()}
    if device.get("node"):
        resources[f"node:{device['node']}"] = 0.001  # Ray's per-node resource
    return {
        "num_cpus": threads,
        "resources": resources,
        "max_restarts": 0,
        "max_task_retries": 0,
        "name": None,
    }


def start_actors(folder: str, manifest: dict[str, Any], *, threads: int | None, timeout: float):
    """One actor per device of ``manifest`` (files read from ``folder``), placed by the
    device file's ``threads``/``node``/``resources``; returns them once all answer."""
    ray = import_ray()
    from dnnpart.runtime._worker import DeviceWorker

    remote = ray.remote(DeviceWorker)
    devices = (manifest.get("devices") or {}).get("device") or []
    actors = []
    for d in range(int(manifest["k"])):
        spec = devices[d] if d < len(devices) else {}
        n = int(spec.get("threads") or threads or 1)
        files = {}
        for s in manifest["stages"]:
            if int(s["device"]) != d:
                continue
            _check_external(folder, s)
            for name in (s["file"], s["data"]):
                if name is not None:
                    with open(os.path.join(folder, name), "rb") as f:
                        files[name] = f.read()
        opts = _actor_options(spec, n)
        actors.append(remote.options(**opts).remote(manifest, d, files, n))
    pings = [a.ping.remote() for a in actors]
    ready, _ = ray.wait(pings, num_returns=len(pings), timeout=timeout)
    names = [
        str((devices[d] if d < len(devices) else {}).get("name", d)) for d in range(len(actors))
    ]
    for d, ref in enumerate(pings):
        if ref not in ready:
            for a in actors:
                ray.kill(a)
            raise ResourceLimitError(
                f"device {names[d]}: no Ray node could take its actor within {timeout:g} s "
                f"(asks for {_actor_options(devices[d] if d < len(devices) else {}, 1)})"
            )
        try:
            ray.get(ref)
        except ACTOR_FAILURES as exc:
            for a in actors:
                ray.kill(a)
            raise InvalidModelError(
                f"device {names[d]}: its actor failed to start ({_first_line(exc)})"
            ) from None
    return actors


def _first_line(exc: BaseException) -> str:
    lines = [x for x in str(exc).splitlines() if x.strip()]
    for x in lines:  # Ray wraps the cause: show the dnnpart error's own line if there is one
        if "Error:" in x and "ray" not in x.split("Error:")[0].lower():
            return x.strip()[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]
