"""Run an exported split: the local executor and ``dnnpart verify``."""

from dnnpart.runtime._execute import Executor, RunStats
from dnnpart.runtime._verify import VerifyReport, verify

__all__ = ["Executor", "RunStats", "VerifyReport", "verify"]
