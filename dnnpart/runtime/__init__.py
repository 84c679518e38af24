"""Run models: the local executor of an exported split, ``dnnpart verify``,
``dnnpart compress`` with its accuracy on the user's data, ``dnnpart run`` on Ray, and the
cost of one of its device calls (``dnnpart profile --runtime-overhead``)."""

from dnnpart.runtime._compress import CompressReport, compress_model
from dnnpart.runtime._execute import Executor, RunStats
from dnnpart.runtime._overhead import CallOverhead, runtime_overhead
from dnnpart.runtime._run import RunReport, run
from dnnpart.runtime._session import RunSession
from dnnpart.runtime._verify import VerifyReport, verify

__all__ = [
    "CallOverhead",
    "CompressReport",
    "Executor",
    "RunReport",
    "RunSession",
    "RunStats",
    "VerifyReport",
    "compress_model",
    "run",
    "runtime_overhead",
    "verify",
]
