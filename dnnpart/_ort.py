"""The onnxruntime session options of dnnpart, in one place.

``dnnpart profile`` measures layer times in a session built here, and every session that
runs a split (``verify``'s executor, ``run``'s device actors, the whole-model reference)
is built here too, so that a plan made from measured times is planned on the kernels the
split will really run: all of onnxruntime's graph optimisations on (constant folding,
Conv + BatchNormalization + activation fusion, the NCHWc layout of the CPU provider), a
fixed number of intra-op threads, one inter-op thread, nodes run one after the other.
The profile maps the fused kernels' times back to the original layers
(:mod:`dnnpart.importers._ort_fused`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["session_options", "option_values"]

# the fields that decide how a session computes (compared by the tests, recorded in a profile)
_FIELDS = (
    "graph_optimization_level",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "execution_mode",
    "enable_mem_pattern",
    "enable_cpu_mem_arena",
)


def session_options(
    threads: int | None = 1,
    *,
    profile_prefix: str | None = None,
    optimized_model: str | None = None,
):
    """onnxruntime ``SessionOptions`` for a dnnpart session.

    Parameters
    ----------
    threads : int or None
        Intra-op threads (with one inter-op thread); None leaves onnxruntime's defaults.
    profile_prefix : str, optional
        Turn node profiling on, the trace file starting with this path.
    optimized_model : str, optional
        Also save the optimised graph there (to map fused kernels back to the model's
        nodes); it does not change how the session runs.

    Returns
    -------
    onnxruntime.SessionOptions
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if optimized_model is not None:
        opts.optimized_model_filepath = optimized_model
    return opts


def option_values(opts) -> dict[str, Any]:
    """The fields of ``opts`` that decide how a session computes, as plain values."""
    return {f: str(getattr(opts, f)) for f in _FIELDS}
