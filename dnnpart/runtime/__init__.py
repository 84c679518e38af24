"""Run models: the local executor of an exported split, ``dnnpart verify``, and
``dnnpart compress`` with its accuracy on the user's data."""

from dnnpart.runtime._compress import CompressReport, compress_model
from dnnpart.runtime._execute import Executor, RunStats
from dnnpart.runtime._verify import VerifyReport, verify

__all__ = ["CompressReport", "Executor", "RunStats", "VerifyReport", "compress_model", "verify"]
