"""Run models: the local executor of an exported split, ``dnnpart verify``,
``dnnpart compress`` with its accuracy on the user's data, and ``dnnpart run`` on Ray."""

from dnnpart.runtime._compress import CompressReport, compress_model
from dnnpart.runtime._execute import Executor, RunStats
from dnnpart.runtime._run import RunReport, run
from dnnpart.runtime._session import RunSession
from dnnpart.runtime._verify import VerifyReport, verify

__all__ = [
    "CompressReport",
    "Executor",
    "RunReport",
    "RunSession",
    "RunStats",
    "VerifyReport",
    "compress_model",
    "run",
    "verify",
]
