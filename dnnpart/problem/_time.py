"""The time model: how long a device takes for a piece of work (the one place for the rule).

A vertex's work (a layer placed whole, or the part of a layer a device holds) is bounded by
its arithmetic and by its memory traffic; the device does both at once, so the time is the
longer of the two (the roofline model, S. Williams, A. Waterman and D. Patterson,
"Roofline: an insightful visual performance model for multicore architectures", CACM 2009):

    seconds = max(2 * MACs / speed, bytes / memory_bandwidth)

with ``speed`` in FLOP/s (a MAC is two FLOPs) and ``bytes`` the bytes the work reads and
writes in memory (:attr:`~dnnpart.problem.Problem.memory_traffic`: its input activations,
parameters and outputs, once). So an elementwise, normalisation, pooling or reshape layer,
0 MACs, still takes its bytes' time, and a dense layer at batch 1 (one multiply-add per
weight read) is memory-bound as on real hardware. Profiled graphs (``weight_unit ==
"seconds"``) carry times measured on the fastest device: ``weight * max(speed) / speed``,
no memory term (the measurement includes it).

Scoring (latency, time per sample) and the pipeline cost model both call :func:`seconds`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["seconds"]


def seconds(problem, devices, work, traffic, device) -> np.ndarray:
    """Seconds of ``work`` (in ``problem.weight_unit``) moving ``traffic`` bytes on devices
    ``device`` (indices into ``devices``); the three arrays broadcast together.

    Examples
    --------
    A layer of 1e6 MACs reading and writing 4e5 bytes on a 1e12 FLOP/s, 1e11 B/s device
    takes ``max(2e-6, 4e-6) = 4e-6`` s: memory-bound.
    """
    speeds = devices.speeds
    work = np.asarray(work, dtype=np.float64)
    if problem.weight_unit == "seconds":
        return work * speeds.max() / speeds[device]
    compute = 2.0 * work / speeds[device]
    memory = np.asarray(traffic, dtype=np.float64) / devices.memory_bandwidths[device]
    return np.maximum(compute, memory)
