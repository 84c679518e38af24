"""Partitioners that misbehave on purpose, for the leaderboard tests.

Not a plugin: the tests hand them to :func:`dnnpart.report.run_leaderboard` as
``extra_partitioners=["lb_faulty_partitioners:Raising", ...]``, and the leaderboard's
worker processes import them by that path (this folder is on ``sys.path`` under pytest,
and spawned workers inherit the parent's ``sys.path``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from dnnpart.partitioners import Partitioner


class Raising(Partitioner):
    name = "lb-raise"

    def partition(self, problem):
        raise ValueError("lb-raise always fails")


class Hanging(Partitioner):
    name = "lb-hang"

    def partition(self, problem):
        while True:  # never answers; only SIGTERM/SIGKILL ends it
            time.sleep(0.05)


class WrongLength(Partitioner):
    name = "lb-short"

    def partition(self, problem):
        return np.zeros(problem.num_vertices - 1, dtype=np.int64)


class Crashing(Partitioner):
    name = "lb-crash"

    def partition(self, problem):
        os._exit(7)  # the interpreter dies without raising, as in a segfault


class Exiting(Partitioner):
    name = "lb-exit"

    def partition(self, problem):
        raise SystemExit(3)


class Stripes(Partitioner):
    """A correct partitioner: vertex i to device i mod k; prints to stdout while working."""

    name = "lb-stripes"

    def partition(self, problem):
        print("lb-stripes chatter on stdout")
        return np.arange(problem.num_vertices) % problem.k


class LayerOnly(Partitioner):
    name = "lb-layer-only"
    granularities = ("layer",)

    def partition(self, problem):
        return np.zeros(problem.num_vertices, dtype=np.int64)


ALL = [Raising, Hanging, WrongLength, Crashing, Exiting, Stripes, LayerOnly]
SPECS = [f"{__name__}:{cls.__name__}" for cls in ALL]


class PidHanging(Partitioner):
    """Writes its process id to the file ``$LB_PIDFILE``, then never answers."""

    name = "lb-pid-hang"

    def partition(self, problem):
        with open(os.environ["LB_PIDFILE"], "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(0.05)
