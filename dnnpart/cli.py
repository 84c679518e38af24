"""The ``dnnpart`` command line: parse, call the library, print.

Data goes to stdout (tables, or JSON with ``--json``); progress, warnings and errors go to
stderr. Library errors become one-line messages and the exit codes of
:mod:`dnnpart.errors`; a traceback is shown only with ``DNNPART_DEBUG=1``.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import click
from rich.markup import escape

from dnnpart.errors import DnnpartError

__all__ = ["main"]


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _fail(message: str, code: int) -> None:
    click.echo(f"dnnpart: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func):
    """Turn typed library errors into one line on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DnnpartError as exc:
            if os.environ.get("DNNPART_DEBUG"):
                raise
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
        except MemoryError:
            _fail("out of memory", 5)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: say so without a traceback
            if os.environ.get("DNNPART_DEBUG"):
                raise
            _fail(
                f"internal error ({type(exc).__name__}: {str(exc)[:200]}); "
                "rerun with DNNPART_DEBUG=1 for the traceback and report it",
                1,
            )

    return wrapper


def _emit_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dnnpart", prog_name="dnnpart")
@click.option(
    "--no-plugins",
    is_flag=True,
    help="Load no third-party plugin (same as DNNPART_LOAD_PLUGINS=).",
)
@click.pass_context
def main(ctx: click.Context, no_plugins: bool) -> None:
    """Split trained deep neural networks across devices.

    \b
    dnnpart import model.onnx                    the model as a partitioning problem
    dnnpart leaderboard model.onnx -k 2 4 8      which partitioner wins, and by how much
    dnnpart partition model.onnx -k 4 -p metis -o plan.json   a scored split
    dnnpart export model.onnx plan.json -o split/             one ONNX file per device
    dnnpart verify split/                        the split computes what the model did
    dnnpart compress model.onnx --prune 0.9 --share-bits 5 -o small.onnx   Deep Compression
    dnnpart run split/ --compare                 the split on Ray, pipelined, measured
    dnnpart partitioners | plugins               what is available
    """
    if no_plugins:
        from dnnpart.plugins import no_plugins as _no_plugins

        # For the whole command, and the worker processes it starts (they inherit it).
        ctx.with_resource(_no_plugins())


@main.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--strict", is_flag=True, help="Fail on unknown ops and custom domains.")
@click.option(
    "--no-synapses",
    is_flag=True,
    help="Skip counting non-zero weights (reads no weight bytes).",
)
@handle_errors
def import_cmd(model: str, as_json: bool, strict: bool, no_synapses: bool) -> None:
    """Import MODEL (ONNX) and summarise it as a partitioning problem.

    Prints layers, parameters, MACs, activation bytes, the splittable layers with their
    neurons, synapses (non-zero weights) and density, and what was imported only
    approximately (warnings).
    """
    from dnnpart.importers import load

    console = _stderr_console()
    with console.status(f"importing {model}", spinner="dots") as status:

        def progress(done: int, total: int, what: str) -> None:
            status.update(f"importing {model}: {what} {done}/{total}")

        graph = load(model, strict=strict, progress=progress)
        status.update(f"counting synapses of {model}")
        doc = graph.summary(synapses=not no_synapses)
    if as_json:
        _emit_json(doc)
    else:
        _print_import(doc)
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


def _print_import(doc) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import si, size

    out = Console()
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_row("model", escape(str(doc["model"])))
    head.add_row("layers", str(doc["layers"]))
    head.add_row("params", f"{si(doc['params'])} ({size(doc['param_bytes'])})")
    head.add_row("MACs", si(doc["macs"]))
    head.add_row("activations", size(doc["activation_bytes"]))
    head.add_row("ops", escape(", ".join(f"{op} {n}" for op, n in doc["ops"].items())))
    for t in doc["inputs"]:
        head.add_row("input", escape(f"{t['name']} {t['shape']} {t['dtype']}"))
    out.print(head)
    if doc["splittable"]:
        table = Table(title="splittable layers")
        for col in ("layer", "op", "neurons", "synapses", "density"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for s in doc["splittable"]:
            syn = s.get("synapses")
            table.add_row(
                escape(s["name"]),
                escape(s["op"]),
                str(s["neurons"]),
                si(syn) if syn is not None else "-",
                f"{s['density']:.3f}" if "density" in s else "-",
            )
        out.print(table)


@main.command("partition")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-k", "k", type=int, help="Number of identical devices.")
@click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    help="Device file (TOML): names, speeds, memory, links.",
)
@click.option("-p", "--partitioner", "method", default="metis", show_default=True)
@click.option(
    "--granularity",
    type=click.Choice(["neuron", "layer"]),
    default=None,
    help="Split neurons of dense/conv layers, or place whole layers "
    "[default: neuron; layer for profiled graphs and layer-only partitioners].",
)
@click.option("--prune", type=float, help="Zero this fraction of smallest weights first.")
@click.option("--refine", is_flag=True, help="Refine with Kernighan-Lin/FM afterwards.")
@click.option("--imbalance", type=float, default=0.03, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the plan (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def partition_cmd(
    model, k, devices_file, method, granularity, prune, refine, imbalance, seed, output, as_json
):
    """Partition MODEL for K devices and score the split against the vertical baseline."""
    from dnnpart import partition
    from dnnpart.devices import DeviceSet
    from dnnpart.errors import UsageError
    from dnnpart.importers import load

    devices = DeviceSet.from_toml(devices_file) if devices_file else None
    console = _stderr_console()
    with console.status(f"importing {model}", spinner="dots") as status:
        graph = load(model)
        if k is None and devices is None and graph.profile is None:
            raise UsageError("give -k N or --devices FILE")
        status.update(f"partitioning with {method}")
        plan = partition(
            graph,
            k=k,
            method=method,
            devices=devices,
            granularity=granularity,
            prune=prune,
            refine=refine,
            imbalance=imbalance,
            seed=seed,
        )
    if output:
        plan.save(output)
    if as_json:
        doc = {
            "method": plan.method,
            "k": plan.k,
            "granularity": plan.granularity,
            "scores": plan.scores,
            "baseline": plan.baseline,
            "ratios": plan.ratios,
            "seconds": plan.seconds,
            "plan": output,
            "messages": plan.messages,
        }
        _emit_json(doc)
    else:
        _print_partition(plan)
    for w in [*graph.warnings, *plan.messages]:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


_SCORE_ROWS = (
    ("cut", "cut", "si"),
    ("volume (activations)", "volume", "si"),
    ("volume", "volume_bytes", "size"),
    ("imbalance (worst layer)", "imbalance", "ratio"),
    ("imbalance (model)", "imbalance_total", "ratio"),
    ("latency", "latency_s", "time"),
    ("time per sample", "time_per_sample_s", "time"),
    ("max-load (Tarnawski et al.)", "max_load", "ratio"),
)


def _print_partition(plan) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import si, size

    def fmt(value, how):
        if value is None:
            return "-"
        if how == "si":
            return si(value)
        if how == "size":
            return size(value)
        if how == "time":
            return f"{value * 1e3:.3f} ms"
        return f"{value:.3f}"

    table = Table(title=escape(f"{plan.method}, k = {plan.k}, {plan.granularity} granularity"))
    for col in ("metric", plan.method, "vertical", "ratio"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for label, key, how in _SCORE_ROWS:
        ratio = (plan.ratios or {}).get(key)
        table.add_row(
            label,
            fmt(plan.scores.get(key), how),
            fmt((plan.baseline or {}).get(key), how),
            f"{ratio:.3f}" if ratio is not None else "-",
        )
    table.add_row(
        "memory per device", ", ".join(size(m) for m in plan.scores["memory_bytes"]), "", ""
    )
    Console().print(table)


@main.command("partitioners")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON on stdout.")
@handle_errors
def partitioners_cmd(as_json: bool) -> None:
    """List the partitioners available (built-in and from plugins), with their parameters."""
    from dnnpart.plugins import get_registry

    reg = get_registry()
    rows = reg.describe()
    _warn_broken_plugins(reg)
    if as_json:
        _emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("name", "plugin", "granularities", "parameters", "description"):
        table.add_column(col)
    for r in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in r["parameters"].items())
        table.add_row(
            r["name"], r["plugin"], ", ".join(r["granularities"]), params, r["description"]
        )
    Console().print(table)


def _warn_broken_plugins(reg) -> None:
    console = _stderr_console()
    for name, error in reg.errors.items():
        console.print(
            f"[yellow]warning:[/yellow] plugin {name!r} not loaded ({error}); "
            "see `dnnpart plugins`",
            highlight=False,
        )


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON on stdout.")
@handle_errors
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins, their partitioners, and any error loading them.

    A plugin that fails to import is listed with its error and every other command still
    works; DNNPART_STRICT_PLUGINS=1 makes such a failure an error instead.
    """
    from dnnpart.plugins import get_registry

    infos = [p.to_dict() for p in get_registry().plugins]
    if as_json:
        _emit_json(infos)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("name", "package", "version", "partitioners", "error"):
        table.add_column(col)
    for p in infos:
        table.add_row(
            escape(p["name"]),
            escape(p["package"] or "-"),
            escape(p["version"] or "-"),
            escape(", ".join(p["partitioners"])),
            f"[red]{escape(p['error'])}[/red]" if p["error"] else "",
        )
    Console().print(table)


# ---- leaderboard (dnnpart.report) ------------------------------------------------------------
# One block, appended: the `leaderboard` command and its helpers.


def _leaderboard_ks(ks: tuple[str, ...], models: tuple[str, ...]) -> tuple[list[int], list[str]]:
    """k values from ``-k 2,4 -k 8`` and from ``-k 2 4 8`` (click leaves ``4`` and ``8`` among
    the MODEL arguments: a bare integer that is not an existing file is taken as a k)."""
    from pathlib import Path

    from dnnpart.errors import UsageError

    values, rest = [], []
    for token in models:
        if token.isdigit() and not Path(token).exists():
            values.append(token)
        else:
            rest.append(token)
    out = []
    for text in [part for k in ks for part in k.split(",")] + values:
        text = text.strip()
        if not text:
            continue
        try:
            out.append(int(text))
        except ValueError:
            raise UsageError(f"-k takes integers, got {text!r}") from None
    return out, rest


@main.command("leaderboard")
@click.argument("models", nargs=-1, required=True)
@click.option(
    "-k", "ks", multiple=True, help="Device counts: -k 2 4 8, -k 2,4,8 or -k 2 -k 4 -k 8."
)
@click.option(
    "-p",
    "--partitioners",
    "partitioners",
    default="all",
    show_default=True,
    help="'all' or a comma-separated list of names.",
)
@click.option(
    "--granularity",
    type=click.Choice(["neuron", "layer", "both"]),
    default="neuron",
    show_default=True,
)
@click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    help="Device file (TOML); k defaults to its device count.",
)
@click.option("--prune", type=float, help="Zero this fraction of smallest weights first.")
@click.option("--imbalance", type=float, default=0.03, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds one run may take before it is killed (per repetition).",
)
@click.option("--repeat", type=int, default=1, show_default=True, help="Runs per row.")
@click.option("--median", is_flag=True, help="Report the median of --repeat runs, not the best.")
@click.option("-j", "--jobs", type=int, help="Worker processes (default: half the cores).")
@click.option("--isolate", is_flag=True, help="A fresh process for every run (slower).")
@click.option("--verify", is_flag=True, help="Also export and verify each split.")
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Write FILE.html, .md, .json or .csv (repeat for several).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} on stdout.')
@handle_errors
def leaderboard_cmd(
    models,
    ks,
    partitioners,
    granularity,
    devices_file,
    prune,
    imbalance,
    seed,
    timeout,
    repeat,
    median,
    jobs,
    isolate,
    verify,
    outputs,
    as_json,
) -> None:
    """Run every partitioner on every MODEL and k, each in its own process, and rank them.

    Rows are ranked by latency (time per sample at layer granularity) with every figure
    also as a ratio to the vertical baseline; a partitioner that fails, crashes or runs out
    of time fails only its own row. The table goes to stdout (JSON with --json), progress
    to stderr; -o writes a self-contained HTML report, Markdown, JSON or CSV.
    """
    from pathlib import Path

    from dnnpart.devices import DeviceSet
    from dnnpart.report import FORMATS, print_table, run_leaderboard, to_json, write_report

    k_values, models = _leaderboard_ks(ks, models)
    if not models:
        raise click.UsageError("give at least one MODEL")
    for out in outputs:
        if Path(out).suffix.lower() not in FORMATS:
            raise click.UsageError(f"-o {out}: use a .html, .md, .json or .csv file name")
    devices = DeviceSet.from_toml(devices_file) if devices_file else None
    if not k_values and devices is None:
        raise click.UsageError("give -k K... or --devices FILE")
    names = "all" if partitioners.strip() == "all" else partitioners.split(",")
    rows = run_leaderboard(
        models,
        k_values,
        [n.strip() for n in names if n.strip()] if names != "all" else "all",
        granularity=("neuron", "layer") if granularity == "both" else granularity,
        devices=devices,
        prune=prune,
        imbalance=imbalance,
        seed=seed,
        timeout=timeout,
        repeat=repeat,
        statistic="median" if median else "best",
        jobs=jobs,
        max_tasks_per_worker=1 if isolate else None,
        verify=verify,
        progress=True,
    )
    console = _stderr_console()
    meta = {"k": ", ".join(map(str, k_values or [devices.k])), "timeout": f"{timeout:g} s"}
    meta.update({"repeat": f"{repeat} ({'median' if median else 'best'})", "seed": seed})
    for out in outputs:
        write_report(rows, out, meta=meta)
        console.print(f"wrote {out}", highlight=False)
    unavailable = "export/verify not available"
    if verify and any((r.verify or {}).get("reason") == unavailable for r in rows):
        console.print("[yellow]warning:[/yellow] export/verify not available", highlight=False)
    if as_json:
        click.echo(to_json(rows))
    else:
        print_table(rows)
    bad = [r for r in rows if r.status in ("failed", "timeout")]
    if bad:
        console.print(
            f"[yellow]{len(bad)} of {len(rows)} runs did not finish[/yellow] (see their notes)",
            highlight=False,
        )


# -- compress (issue 14: Deep Compression, accuracy on the user's data) --------------------


@main.command("compress")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--prune",
    type=float,
    required=True,
    help="Fraction of each layer's weights zeroed by magnitude, in [0, 1).",
)
@click.option("--share-bits", type=int, help="k-means weight sharing: 2**B values per layer.")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    help="An .npz with one array per model input and labels: accuracy before and after.",
)
@click.option("--labels", help="Label array of --data (default: y when present).")
@click.option("--output", help="Model output whose top-1 is scored (default: the first).")
@click.option("--index-bits", type=int, help="Sparse index bits (default: 8 conv, 5 dense).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The compressed ONNX file (refused if it exists, unless --force).",
)
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def compress_cmd(
    model, prune, share_bits, data, labels, output, index_bits, seed, out, force, as_json
):
    """Deep Compression of MODEL: magnitude pruning, k-means weight sharing per layer, and
    the Huffman-coded size of each layer; the accuracy before and after with --data.

    Writes a valid ONNX model with the pruned (and shared) weights to OUT.
    """
    from dnnpart.runtime import compress_model

    console = _stderr_console()
    with console.status(f"compressing {model}", spinner="dots"):
        report = compress_model(
            model,
            out,
            prune=prune,
            share_bits=share_bits,
            data=data,
            labels=labels,
            output=output,
            index_bits=index_bits,
            seed=seed,
            force=force,
        )
    if as_json:
        _emit_json(report.to_dict())
    else:
        _print_compress(report)


def _print_compress(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import size

    doc = report.to_dict()
    out = Console()
    table = Table(title=f"{report.model} -> {report.out}")
    for col in ("layer", "weights", "kept", "bits", "index bits", "coded", "rate"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in doc["layers"] + [{**doc["total"], "layer": "total"}]:
        table.add_row(
            r["layer"],
            str(r["weights"]),
            f"{100 * r['kept_fraction']:.1f} %",
            str(r.get("bits", "")),
            str(r.get("index_bits", "")),
            size(r["coded_bytes"]),
            f"{100 * r['rate']:.1f} % ({1 / r['rate']:.0f}x)" if r["rate"] else "-",
        )
    out.print(table)
    if report.accuracy is not None:
        out.print(
            f"accuracy {report.accuracy:.4f}, original model {report.reference_accuracy:.4f} "
            f"({report.accuracy_of}, {report.samples} samples)",
            highlight=False,
        )


# -- export and verify (issue 4: per-device sub-models, end-to-end check) -----------------


@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("plan", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (created; refused if it exists, unless --force).",
)
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON on stdout.")
@handle_errors
def export_cmd(model, plan, out_dir, force, as_json):
    """Write PLAN's split of MODEL: one ONNX file per device and stage, and manifest.json.

    Files are written to a temporary folder beside the output and renamed into place, the
    manifest last; the same model, plan and options give byte-identical files.
    """
    from dnnpart.exporters import export

    console = _stderr_console()
    with console.status(f"exporting {model}", spinner="dots"):
        doc = export(model, plan, out_dir, force=force)
    summary = {
        "output": out_dir,
        "granularity": doc["granularity"],
        "k": doc["k"],
        "stages": len(doc["stages"]),
        "files": [s["file"] for s in doc["stages"]]
        + [s["data"] for s in doc["stages"] if s["data"]],
        "transfers": len(doc["transfers"]),
        "transfer_bytes": doc["transfer_bytes"],
        "volume_bytes_planned": doc["volume_bytes_planned"],
    }
    if as_json:
        _emit_json(summary)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{out_dir}: {summary['granularity']} placement, k = {summary['k']}")
    for col in ("device", "stage", "file", "layers", "MACs"):
        table.add_column(col, justify="right" if col == "MACs" else "left")
    for s in doc["stages"]:
        names = s["layers"]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        table.add_row(str(s["device"]), str(s["stage"]), s["file"], shown, str(s["macs"]))
    Console().print(table)
    click.echo(
        f"{summary['transfers']} transfers, {summary['transfer_bytes']} bytes per sample "
        f"(plan: {summary['volume_bytes_planned']})"
    )


def _split_inputs(samples: int):
    """The options that say what a split runs on (verify and run)."""

    def add(func):
        func = click.option("--seed", type=int, default=0, show_default=True)(func)
        func = click.option(
            "--samples", type=int, default=samples, show_default=True, help="Random samples."
        )(func)
        func = click.option(
            "--inputs",
            type=click.Path(dir_okay=False),
            help="An .npz with one array per model input (cut into samples along the batch axis).",
        )(func)
        return click.argument("folder", type=click.Path(file_okay=False))(func)

    return add


@main.command("verify")
@_split_inputs(samples=4)
@click.option("--rtol", type=float, default=1e-5, show_default=True)
@click.option("--atol", type=float, help="Absolute tolerance (default: rtol x max |ref|).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Original model.")
@click.option(
    "--labels",
    help="Label array of the --inputs file (default: y when present); without labels, "
    "accuracy is the agreement with the original model's top-1.",
)
@click.option("--output", help="Output whose top-1 is scored (default: the first).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def verify_cmd(folder, inputs, samples, seed, rtol, atol, model_path, labels, output, as_json):
    """Run the split in FOLDER with onnxruntime and compare it with the whole model.

    Outputs must agree within RTOL and the bytes moved between devices must equal the
    plan's volume_bytes; exit code 7 otherwise. With --inputs, also the top-1 accuracy of
    the split and of the original model (before the plan's pruning).
    """
    from dnnpart.runtime import verify

    console = _stderr_console()
    with console.status(f"verifying {folder}", spinner="dots"):
        report = verify(
            folder,
            inputs=inputs,
            samples=samples,
            seed=seed,
            rtol=rtol,
            atol=atol,
            model=model_path,
            labels=labels,
            output=output,
        )
    _finish(folder, report, as_json, _print_verify)


def _finish(folder, report, as_json: bool, show) -> None:
    """Print a verify or run report (JSON or ``show``); exit 7 if it found a problem."""
    from dnnpart.errors import VerificationError

    if as_json:
        _emit_json(report.to_dict())
    else:
        show(report)
    if not report.ok:
        raise VerificationError(f"{folder}: {report.problems[0]}")


def _print_verify(report) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import size

    out = Console()
    link = np.asarray(report.link_bytes)
    table = Table(title=f"{report.samples} samples, per sample")
    for col in ("device", "compute", "sent", "received"):
        table.add_column(col, justify="right")
    for d, secs in enumerate(report.compute_s):
        table.add_row(
            str(d), f"{secs * 1e3:.3f} ms", size(int(link[d].sum())), size(int(link[:, d].sum()))
        )
    out.print(table)
    verdict = "[green]ok[/green]" if report.ok else "[red]MISMATCH[/red]"
    out.print(
        f"{verdict}: max abs error {report.max_abs_err:.3g}; bytes moved "
        f"{report.bytes_measured}, planned {report.bytes_planned}; whole model "
        f"{report.reference_s * 1e3:.3f} ms",
        highlight=False,
    )
    if report.accuracy is not None:
        out.print(
            f"accuracy {report.accuracy:.4f} (original model {report.reference_accuracy:.4f}; "
            f"{report.accuracy_of})",
            highlight=False,
        )
    for p in report.problems:
        out.print(f"  {p}", highlight=False)


# -- end of export and verify --------------------------------------------------------------


# -- run -----------------------------------------------------------------------------------


def _fail_spec(value: str | None):
    if value is None:
        return None
    dev, sep, after = value.rpartition(":")
    if not sep or not dev or not after.isdigit():
        raise click.BadParameter(
            "expected DEVICE:AFTER, e.g. 1:50 or jetson:50", param_hint="--fail"
        )
    return dev, int(after)


@main.command("run")
@_split_inputs(samples=16)
@click.option("--address", help="A Ray cluster, HOST:PORT (default: start a local Ray here).")
@click.option("--in-flight", type=int, default=4, show_default=True, help="Samples in flight.")
@click.option("--threads", type=int, help="onnxruntime threads per device (default 1).")
@click.option("--compare", is_flag=True, help="Also run the whole model in one session.")
@click.option("--fail", "fail", help="Rehearse a loss: stop DEVICE's actor after AFTER outputs.")
@click.option("--heartbeat", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Original model.")
@click.option("--rtol", type=float, default=1e-5, show_default=True)
@click.option("--atol", type=float, help="Absolute tolerance (default: rtol x max |ref|).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write outputs (.npz).")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@handle_errors
def run_cmd(
    folder,
    inputs,
    samples,
    seed,
    address,
    in_flight,
    threads,
    compare,
    fail,
    heartbeat,
    model_path,
    rtol,
    atol,
    output,
    force,
    as_json,
):
    """Run the split in FOLDER on Ray: one actor per device, samples pipelined.

    With no --address a local Ray starts on this machine. A lost device (its actor dies,
    or --fail) is replaced by re-partitioning over the others; every input still gets one
    output, in order. Exit code 7 when outputs differ (--compare), bytes differ from the
    plan, or every device is lost.
    """
    from rich.progress import Progress

    from dnnpart.errors import OutputConflictError
    from dnnpart.runtime import run
    from dnnpart.runtime._run import save_outputs

    if output and os.path.lexists(output) and not force:
        raise OutputConflictError(f"{output} exists (use --force to replace it)")
    console = _stderr_console()

    def on_event(e):
        who = f" {e['device']}" if e["device"] else ""
        console.print(f"[{e['t']:.2f} s] {e['kind']}{who}: {e['detail']}", highlight=False)

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("running", total=None)
        report = run(
            folder,
            inputs,
            samples=samples,
            seed=seed,
            address=address,
            in_flight=in_flight,
            threads=threads,
            compare=compare,
            fail=_fail_spec(fail),
            model=model_path,
            rtol=rtol,
            atol=atol,
            heartbeat=heartbeat,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            on_event=on_event,
        )
    if output and report.ok:
        save_outputs(output, report.outputs, force=force)
    _finish(folder, report, as_json, _print_run)


def _print_run(report) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import size

    out = Console()
    table = Table(title=f"{report.samples} samples")
    for col in ("device", "busy", "samples"):
        table.add_column(col, justify="right")
    for d in report.devices:
        table.add_row(d["name"], f"{d['busy_s']:.3f} s", str(d["samples"]))
    out.print(table)
    for link in report.links:
        out.print(
            f"  {link['from']} -> {link['to']}: {size(int(link['bytes']))}, "
            f"{link['seconds']:.3f} s from send to the receiver's start",
            highlight=False,
        )
    lat = report.latency_s
    out.print(
        f"throughput {report.throughput_per_s:.1f}/s, latency median "
        f"{lat['median'] * 1e3:.2f} ms, p95 {lat['p95'] * 1e3:.2f} ms; bytes per sample "
        f"{report.bytes_measured}, planned {report.bytes_planned}",
        highlight=False,
    )
    if report.reference_throughput_per_s is not None:
        ref = report.reference_latency_s
        out.print(
            f"whole model, one session: {report.reference_throughput_per_s:.1f}/s, latency "
            f"median {ref['median'] * 1e3:.2f} ms; max abs error {report.max_abs_err:.3g}",
            highlight=False,
        )
    verdict = "[green]ok[/green]" if report.ok else "[red]MISMATCH[/red]"
    out.print(verdict)
    for p in report.problems:
        out.print(f"  {p}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main()
