"""The built-in partitioners, registered through the same hook as any plugin."""

from __future__ import annotations

from dnnpart.plugins._hookspecs import hookimpl


@hookimpl
def register_partitioners(register):
    from dnnpart.partitioners.kl import KLPartitioner
    from dnnpart.partitioners.metis import MetisPartitioner
    from dnnpart.partitioners.munkres import MunkresPartitioner
    from dnnpart.partitioners.pipeline import PipelinePartitioner
    from dnnpart.partitioners.spectral import SpectralPartitioner
    from dnnpart.partitioners.vertical import VerticalPartitioner

    for cls in (
        VerticalPartitioner,
        MetisPartitioner,
        KLPartitioner,
        MunkresPartitioner,
        SpectralPartitioner,
        PipelinePartitioner,
    ):
        register(cls)
