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

    # soft_wrap: a warning is one line in a log file, not cut at 80 columns
    return Console(stderr=True, soft_wrap=True)


class _Busy:
    """A spinner with the elapsed time on stderr (nothing when stderr is not a terminal)."""

    def __init__(self, console, text: str):
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task(escape(text), total=None)

    def __call__(self, text: str) -> None:
        self.progress.update(self.task, description=escape(text))

    def __enter__(self):
        if self.progress.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _fail(message: str, code: int) -> None:
    click.echo(f"dnnpart: error: {message}", err=True)
    sys.exit(code)


_OBJECTIVE_OPTION = click.option(
    "--objective",
    type=click.Choice(["throughput", "latency", "volume"]),
    default="throughput",
    show_default=True,
    help="What layer placement minimises and rows are ranked by: pipelined time per sample, "
    "one sample's makespan, or bytes sent (layer partitioners never do worse than vertical).",
)


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


_OPTION_HELP = (
    "A partitioner parameter, NAME=VALUE (repeatable; VALUE is read as JSON: 4, 0.5, true, "
    "null, else as a string). `dnnpart partitioners` lists them."
)


def _parse_options(values: tuple[str, ...]) -> dict:
    """``-O name=value`` pairs: values as JSON scalars (``4``, ``true``, ``null``), else
    strings."""
    out = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(f"-O {item}: use NAME=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw
        out[name.strip()] = value
    return out


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
    dnnpart show plan.json                       the split per device and layer
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


def _shape_options(func):
    """``--input-shape``, ``--dim`` and ``--inputs``: the concrete input shapes."""
    func = click.option(
        "--inputs",
        "sample",
        type=click.Path(dir_okay=False),
        help="An .npz sample: its arrays' shapes are the input shapes.",
    )(func)
    func = click.option(
        "--dim",
        "dims",
        multiple=True,
        metavar="SYMBOL=VALUE",
        help="Size of a symbolic dimension wherever it appears (repeatable).",
    )(func)
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME=D0,D1,...",
        help="Concrete shape of a model input (repeatable).",
    )(func)


_MEASURE_OPTIONS = (
    click.option(
        "--cross-prune",
        type=click.Choice(["lsq", "dynamic", "greedy"]),
        help="After partitioning, drop cross-device nets of dense layers within "
        "--accuracy-budget: lsq (RePurpose re-fit), dynamic (thesis Alg. 4), greedy (Alg. 5).",
    ),
    click.option(
        "--accuracy-budget",
        type=float,
        help="Largest held-out top-1 drop below the original model (0.01: 1 point) [0.01].",
    ),
    click.option(
        "--data",
        type=click.Path(dir_okay=False),
        help="Calibration .npz (one array per input, labels): also scores accuracy.",
    ),
    click.option(
        "--holdout",
        type=click.Path(dir_okay=False),
        help="Held-out .npz the budget is measured on [a seeded quarter of --data].",
    ),
    click.option("--labels", "label_name", help="Label array of the data (default: y)."),
)
_MEASURE_KEYS = ("cross_prune", "accuracy_budget", "data", "holdout", "label_name")


def _measure_options(func):
    """``--cross-prune``, ``--accuracy-budget``, ``--data``, ``--holdout``, ``--labels``,
    given to the command as one ``measure`` dict of :func:`dnnpart.partition` keywords."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        measure = {key: kwargs.pop(key) for key in _MEASURE_KEYS}
        return func(*args, measure={k: v for k, v in measure.items() if v is not None}, **kwargs)

    for option in reversed(_MEASURE_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def _load_options(input_shapes, dims, sample) -> dict:
    """:func:`dnnpart.load` keyword arguments from the shape options."""
    from dnnpart.importers._input_shapes import parse_dim, parse_input_shape

    out: dict = {}
    if input_shapes:
        out["input_shapes"] = dict(parse_input_shape(t) for t in input_shapes)
    if dims:
        out["dims"] = dict(parse_dim(t) for t in dims)
    if sample:
        out["inputs"] = sample
    return out


@main.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--strict", is_flag=True, help="Fail on unknown ops and custom domains.")
@click.option(
    "--no-synapses",
    is_flag=True,
    help="Skip counting non-zero weights (reads no weight bytes).",
)
@_shape_options
@handle_errors
def import_cmd(
    model: str, as_json: bool, strict: bool, no_synapses: bool, input_shapes, dims, sample
) -> None:
    """Import MODEL (ONNX) and summarise it as a partitioning problem.

    Prints layers, parameters, MACs, activation bytes, the splittable layers with their
    neurons, synapses (non-zero weights) and density, and what was imported only
    approximately (warnings).
    """
    from dnnpart.importers import load

    console = _stderr_console()
    with _Busy(console, f"importing {model}") as status:

        def progress(done: int, total: int, what: str) -> None:
            status(f"importing {model}: {what} {done}/{total}")

        options = _load_options(input_shapes, dims, sample)
        graph = load(model, strict=strict, progress=progress, **options)
        status(f"counting synapses of {model}")
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
@click.option(
    "-p",
    "--partitioner",
    "method",
    default="metis",
    show_default=True,
    help="Partitioner name (see `dnnpart partitioners`).",
)
@click.option(
    "--granularity",
    type=click.Choice(["neuron", "layer"]),
    default=None,
    help="Split neurons of dense/conv layers, or place whole layers "
    "[default: neuron; layer for profiled graphs and layer-only partitioners].",
)
@click.option("--prune", type=float, help="Zero this fraction of smallest weights first.")
@click.option("--refine", is_flag=True, help="Refine with Kernighan-Lin/FM afterwards.")
@_OBJECTIVE_OPTION
@click.option(
    "--profile",
    "profile_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Plan on the layer times `dnnpart profile` measured for MODEL (same shapes).",
)
@click.option(
    "--imbalance",
    type=float,
    default=0.03,
    show_default=True,
    help="Tolerated overload per layer: 0.03 lets a device take 3 % more than its share.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of randomised partitioners."
)
@click.option("-O", "--option", "options", multiple=True, metavar="NAME=VALUE", help=_OPTION_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the plan (JSON).")
@click.option("--force", is_flag=True, help="Replace an existing -o file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_measure_options
@_shape_options
@handle_errors
def partition_cmd(
    model,
    k,
    devices_file,
    method,
    granularity,
    prune,
    refine,
    objective,
    profile_file,
    imbalance,
    seed,
    options,
    output,
    force,
    as_json,
    input_shapes,
    dims,
    sample,
    measure,
):
    """Partition MODEL for K devices and score the split against the vertical baseline.

    Exit code 5 when the split does not fit in the devices' memory (the plan is still
    written and shown).
    """
    from dnnpart import partition
    from dnnpart._output import check_output
    from dnnpart._partition import check_request
    from dnnpart.devices import DeviceSet
    from dnnpart.errors import ResourceLimitError, UsageError
    from dnnpart.importers import load

    devices = DeviceSet.from_toml(devices_file) if devices_file else None
    options = _parse_options(options)
    # everything that does not need the model first: a typo costs no import
    profiled = str(model).lower().endswith(".json")  # the file's own devices
    if k is None and devices is None and not profiled:
        raise UsageError("give -k N or --devices FILE")
    check_request(
        k=k, method=method, devices=devices, granularity=granularity, prune=prune,
        imbalance=imbalance, profiled=profiled,
    )  # fmt: skip
    if output:
        check_output(output, force=force)
    console = _stderr_console()
    with _Busy(console, f"importing {model}") as status:
        graph = load(model, **_load_options(input_shapes, dims, sample))
        if profile_file:
            from dnnpart.importers._ort_profile import read_profile, with_profile

            graph = with_profile(graph, read_profile(profile_file))
        if k is None and devices is None and graph.profile is None:
            raise UsageError("give -k N or --devices FILE")
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
            options=options,
            objective=objective,
            progress=status,
            **measure,
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
            "plan": plan.to_dict(),
            "plan_file": output,
            "input_shapes": plan.input_shapes,
            "messages": plan.messages,
        }
        _emit_json(doc)
    else:
        _print_partition(plan)
    for w in [*graph.warnings, *plan.messages]:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    if output:
        console.print(f"wrote {output}; see it with: dnnpart show {output}", highlight=False)
    if not plan.scores.get("memory_ok", True):
        raise ResourceLimitError(_memory_problem(plan))


def _memory_problem(plan) -> str:
    from dnnpart._format import size
    from dnnpart._show import split_view

    devices = split_view(plan.groups, plan.scores, plan.devices)["devices"]
    over = [d for d in devices if not d["memory_ok"]]
    return "the split does not fit in memory: " + ", ".join(
        f"{d['name']} needs {size(d['memory_bytes'])}, has {size(d['memory'])}" for d in over
    )


_SCORE_ROWS = (
    ("cut", "cut", "si"),
    ("volume (activations)", "volume", "si"),
    ("volume", "volume_bytes", "size"),
    ("imbalance (worst layer)", "imbalance", "ratio"),
    ("imbalance (model)", "imbalance_total", "ratio"),
    ("latency", "latency_s", "time"),
    ("time per sample", "time_per_sample_s", "time"),
    ("host time per sample", "host_time_s", "time"),
    ("max-load (Tarnawski et al.)", "max_load", "ratio"),
    ("accuracy (held out)", "accuracy", "ratio"),
    ("accuracy drop", "accuracy_drop", "ratio"),
)


def _print_partition(plan) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import ratio
    from dnnpart.report._render import format_value

    kinds = {"si": "count", "size": "size", "time": "time", "ratio": "ratio"}
    table = Table(title=escape(f"{plan.method}, k = {plan.k}, {plan.granularity} granularity"))
    for col in ("metric", plan.method, "vertical", "ratio"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for label, key, how in _SCORE_ROWS:
        if key.startswith("accuracy") and key not in plan.scores:
            continue  # measured only with --data
        table.add_row(
            label,
            format_value(plan.scores.get(key), kinds[how]),
            format_value((plan.baseline or {}).get(key), kinds[how]),
            ratio((plan.ratios or {}).get(key)),
        )
    table.add_row("memory (largest device)", _largest(plan.scores), _largest(plan.baseline), "")
    fits = _memory_fits(plan)
    if fits:
        table.add_row("fits in device memory", fits, "", "")
    Console().print(table)


def _largest(scores) -> str:
    from dnnpart._format import size

    memory = (scores or {}).get("memory_bytes")
    if not memory:
        return "-"
    names = scores.get("device_names") or [str(d) for d in range(len(memory))]
    d = max(range(len(memory)), key=memory.__getitem__)
    return f"{size(memory[d])} ({escape(str(names[d]))})"


def _memory_fits(plan) -> str:
    """ "yes", or in red the devices whose memory does not hold their part ("" if unlimited)."""
    from dnnpart._show import split_view

    devices = split_view(plan.groups, plan.scores, plan.devices)["devices"]
    over = [d["name"] for d in devices if not d["memory_ok"]]
    if over:
        shown = ", ".join(over[:3]) + (f" +{len(over) - 3}" if len(over) > 3 else "")
        return f"[red]no: {escape(shown)}[/red]"
    return "yes" if any(d["memory"] is not None for d in devices) else ""


@main.command("profile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--devices",
    "devices_file",
    type=click.Path(dir_okay=False),
    help="Device file (TOML): speeds scale the measured times, links give transfer costs.",
)
@click.option(
    "--reference",
    help="The device of the file this machine stands for [default: the first].",
)
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads.")
@click.option("--runs", type=int, default=10, show_default=True, help="Measured runs (median).")
@click.option("--warmup", type=int, default=2, show_default=True, help="Unmeasured runs first.")
@click.option(
    "--runtime-overhead",
    is_flag=True,
    help="Also measure one Ray actor call of `dnnpart run` (starts a local Ray) and write it "
    "and the CPU it costs this machine per call and per byte, as dnnpart.host: plans for "
    "devices that all run here take at least the time this machine's cores need per sample, "
    "and charge each device used its actor's CPU per call (dnnpart.call_overhead_s; the "
    "round trip where the CPU cannot be read).",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing -o file.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-layer times as JSON.")
@_shape_options
@handle_errors
def profile_cmd(
    model, devices_file, reference, threads, runs, warmup, runtime_overhead, output, force,
    as_json, input_shapes, dims, sample,
):  # fmt: skip
    """Measure each layer of MODEL with onnxruntime and write a profiled graph.

    The output (the profiled-graph JSON of docs/formats.md, times in seconds) is what
    `partition`, `leaderboard` and `pipeline` plan with instead of FLOP counts.
    """
    from dnnpart._output import check_output, write_text
    from dnnpart.devices import DeviceSet
    from dnnpart.importers._ort_profile import profile_layers, profiled_json

    devices = DeviceSet.from_toml(devices_file) if devices_file else None
    check_output(output, force=force)
    console = _stderr_console()
    with _Busy(console, f"profiling {model}"):
        times = profile_layers(
            model, runs=runs, warmup=warmup, threads=threads,
            **_load_options(input_shapes, dims, sample),
        )  # fmt: skip
        call = None
        if runtime_overhead:
            from dnnpart.runtime import runtime_overhead as measure_call

            call = measure_call()
        host = None if call is None else call.host()
        seconds = None if call is None else call.device_call_s()
        doc = profiled_json(times, devices, reference, seconds, host)
    write_text(output, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    layers = [
        {"name": n["name"], "seconds": n["fpgaLatency"], "memory_bytes": n["size"]}
        for n in doc["nodes"]
    ]
    total = float(times.seconds.sum())
    if as_json:
        _emit_json({"layers": layers, "layer_seconds": total, "run_seconds": times.run_seconds,
                    "call_overhead_s": seconds,
                    "call_round_trip_s": None if call is None else call.seconds,
                    "call_actor_cpu_s": None if call is None else call.actor_cpu_s,
                    "call_host_cpu_s": None if call is None else call.host_cpu_s,
                    "call_host_cpu_per_byte_s": None if call is None else call.host_cpu_per_byte_s,
                    "host": None if host is None else host.to_dict(),
                    "output": output})  # fmt: skip
    else:
        for layer in sorted(layers, key=lambda x: -x["seconds"])[:15]:
            click.echo(f"{layer['seconds'] * 1e3:10.3f} ms  {layer['name']}")
        click.echo(
            f"{len(layers)} layers: {total * 1e3:.3f} ms in layers, "
            f"{times.run_seconds * 1e3:.3f} ms per run (median of {runs})"
        )
        if call is not None:
            click.echo(
                f"one Ray actor call: {call.seconds * 1e3:.3f} ms (median of {call.calls}), "
                f"{call.driver_cpu_s * 1e3:.3f} ms of the caller's CPU"
                + (
                    ""
                    if call.host_cpu_s is None
                    else f", {call.host_cpu_s * 1e3:.3f} ms of this machine's with Ray's"
                )
                + (
                    ""
                    if call.actor_cpu_s is None
                    else f" ({call.actor_cpu_s * 1e3:.3f} ms the actor's: what a device pays)"
                )
            )
    console.print(f"wrote {output}; plan with: dnnpart partition {output}", highlight=False)


@main.command("show")
@click.argument("plan", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the split as JSON on stdout.")
@handle_errors
def show_cmd(plan, as_json):
    """Show PLAN's split per device and layer: counts, shares against targets, memory.

    Per layer, how many neurons (channels; whole layers at layer granularity) each device
    holds and its share of the layer's work; per device, its share of the model against
    its target (its speed over the sum of speeds) and its memory against the device's.
    """
    from dnnpart._plan import Plan
    from dnnpart._show import split_view

    p = Plan.load(plan)
    view = split_view(p.groups, p.scores, p.devices, labels=p.labels, offsets=p.offsets)
    if as_json:
        _emit_json({"method": p.method, "k": p.k, "granularity": p.granularity, **view})
        return
    _print_split(p, view)


def _print_split(plan, view) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import si, size
    from dnnpart._show import layer_table

    out = Console()
    unit = "neurons/channels" if plan.granularity == "neuron" else "layers"
    devs = view["devices"]
    table = Table(title=escape(f"{plan.method}, k = {plan.k}: devices"), title_justify="left")
    for col in ("device", "speed", "target", "share", unit.split("/")[0], "memory", "of"):
        table.add_column(col, justify="left" if col == "device" else "right", no_wrap=True)
    for d in devs:
        share = "-" if d["share"] is None else f"{d['share']:.1%}"
        table.add_row(
            escape(d["name"]),
            si(d["speed"], "FLOPS"),
            f"{d['target']:.1%}",
            share,
            str(d["vertices"]),
            size(d["memory_bytes"]) if d["memory_ok"] else f"[red]{size(d['memory_bytes'])}[/red]",
            "unlimited" if d["memory"] is None else size(d["memory"]),
        )
    out.print(table)
    if plan.granularity == "layer":  # which layers: their positions in execution order
        for d in devs:
            where = "; ".join(
                f"{escape(g)} " + ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
                for g, runs in d["positions"].items()
            )
            out.print(f"{escape(d['name'])}: {where or 'nothing'}", highlight=False)
    head, rows = layer_table(view)
    layers = Table(
        title=f"per layer: {unit} per device (share of the layer's work)", title_justify="left"
    )
    for i, col in enumerate(head):
        layers.add_column(escape(col), justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        layers.add_row(*map(escape, row))
    out.print(layers)


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
    for col in ("name", "plugin", "granularities", "parameters (-O NAME=VALUE)", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        params = "\n".join(f"{k}={json.dumps(v)}" for k, v in r["parameters"].items())
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
@_OBJECTIVE_OPTION
@click.option("--imbalance", type=float, default=0.03, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds one run may take before it is killed (per repetition).",
)
@click.option(
    "-O",
    "--option",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help=_OPTION_HELP + " Given to every partitioner that takes NAME; PARTITIONER.NAME=VALUE "
    "for one.",
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
@click.option("--force", is_flag=True, help="Replace existing -o files.")
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} on stdout.')
@_measure_options
@_shape_options
@handle_errors
def leaderboard_cmd(
    models,
    ks,
    partitioners,
    granularity,
    devices_file,
    prune,
    objective,
    imbalance,
    seed,
    timeout,
    options,
    repeat,
    median,
    jobs,
    isolate,
    verify,
    outputs,
    force,
    as_json,
    input_shapes,
    dims,
    sample,
    measure,
) -> None:
    """Run every partitioner on every MODEL and k, each in its own process, and rank them.

    Rows that fit in memory and are balanced come first, ranked by --objective (time
    per sample by default; rows within 1 % share a rank; others are marked), with every
    figure also as a ratio to the vertical baseline; a partitioner that fails, crashes or runs out
    of time fails only its own row. The table goes to stdout (JSON with --json), progress
    to stderr; -o writes a self-contained HTML report, Markdown, JSON or CSV.

    Ctrl-C or SIGTERM stops the runs and still prints and writes the rows that finished
    (exit 130 or 143). When no row ran, the exit code is that of the rows' error (1 when
    they differ; 5 for time-outs).
    """
    from pathlib import Path

    from dnnpart._output import check_output
    from dnnpart.devices import DeviceSet
    from dnnpart.report import (
        FORMATS,
        Interrupted,
        print_table,
        run_leaderboard,
        to_json,
        write_report,
    )

    k_values, models = _leaderboard_ks(ks, models)
    if not models:
        raise click.UsageError("give at least one MODEL")
    for out in outputs:
        if Path(out).suffix.lower() not in FORMATS:
            raise click.UsageError(f"-o {out}: use a .html, .md, .json or .csv file name")
        check_output(out, force=force)  # before the runs, not after
    devices = DeviceSet.from_toml(devices_file) if devices_file else None
    if not k_values and devices is None:
        raise click.UsageError("give -k K... or --devices FILE")
    names = "all" if partitioners.strip() == "all" else partitioners.split(",")
    stopped = None
    try:
        with _sigterm_interrupts() as signalled:
            rows = run_leaderboard(
                models,
                k_values,
                [n.strip() for n in names if n.strip()] if names != "all" else "all",
                granularity=("neuron", "layer") if granularity == "both" else granularity,
                devices=devices,
                prune=prune,
                objective=objective,
                imbalance=imbalance,
                seed=seed,
                timeout=timeout,
                options=_parse_options(options),
                repeat=repeat,
                statistic="median" if median else "best",
                jobs=jobs,
                max_tasks_per_worker=1 if isolate else None,
                verify=verify,
                progress=True,
                measure=measure or None,
                **_load_options(input_shapes, dims, sample),
            )
    except Interrupted as exc:
        rows, stopped = exc.rows, 143 if signalled else 130
    console = _stderr_console()
    meta = {"k": ", ".join(map(str, k_values or [devices.k])), "timeout": f"{timeout:g} s"}
    meta.update({"repeat": f"{repeat} ({'median' if median else 'best'})", "seed": seed})
    meta["devices"] = _devices_line(devices)
    if as_json:
        click.echo(to_json(rows))
    else:
        print_table(rows)
    for out in outputs:
        write_report(rows, out, meta=meta)
        console.print(f"wrote {out}", highlight=False)
    unavailable = "export/verify not available"
    if verify and any((r.verify or {}).get("reason") == unavailable for r in rows):
        console.print("[yellow]warning:[/yellow] export/verify not available", highlight=False)
    bad = [r for r in rows if r.status in ("failed", "timeout")]
    if bad:
        console.print(
            f"[yellow]{len(bad)} of {len(rows)} runs did not finish[/yellow] (see their notes)",
            highlight=False,
        )
    if stopped:
        done = sum(r.status != "interrupted" for r in rows)
        _fail(f"interrupted after {done} of {len(rows)} runs (those are shown above)", stopped)
    if rows and not any(r.status == "ok" for r in rows):
        codes = {r.exit_code or (2 if r.status == "skipped" else 1) for r in rows}
        first = next((r for r in rows if r.reason), rows[0])
        _fail(
            f"no run finished ({len(rows)} {first.status}; first: {first.partitioner}: "
            f"{first.reason})",
            codes.pop() if len(codes) == 1 else 1,
        )


def _devices_line(devices) -> str:
    from dnnpart._format import duration, si, size
    from dnnpart.devices import DEFAULT_LINK, DEFAULT_SPEED

    if devices is None:
        return (
            f"k identical: {si(DEFAULT_SPEED, 'FLOPS')} each, unlimited memory, links "
            f"{si(DEFAULT_LINK.bandwidth * 8, 'bit/s')} and {duration(DEFAULT_LINK.latency)}"
        )
    return "; ".join(
        f"{d.name} {si(d.speed, 'FLOPS')}"
        + (f", {size(d.memory)}" if d.memory != float("inf") else "")
        for d in devices.devices
    )


class _sigterm_interrupts:
    """Inside the block SIGTERM raises KeyboardInterrupt (so workers are stopped and the
    finished rows kept, as for Ctrl-C); the block's value is a list, true once signalled."""

    def __enter__(self):
        import signal

        self.signalled: list[int] = []
        self.old = None
        try:
            self.old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave SIGTERM alone
            pass
        return self.signalled

    def _handle(self, signum, frame):
        self.signalled.append(signum)
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


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

    from dnnpart._format import si

    title = f"{out_dir}: {summary['granularity']} placement, k = {summary['k']}"
    table = Table(title=escape(title + ", in execution order"))
    for col in ("device", "stage", "file", "layers", "MACs"):
        table.add_column(col, justify="right" if col == "MACs" else "left")
    device_names = [d["name"] for d in doc["devices"]["device"]]
    for i in doc["order"]:
        s = doc["stages"][i]
        names = s["layers"]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        table.add_row(
            escape(device_names[s["device"]]),
            str(s["stage"]),
            escape(s["file"]),
            escape(shown),
            si(s["macs"]),
        )
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

    from dnnpart._format import duration, size

    out = Console()
    link = np.asarray(report.link_bytes)
    table = Table(title=f"{report.samples} samples, per sample")
    for col in ("device", "compute", "sent", "received"):
        table.add_column(col, justify="right")
    names = report.device_names or [str(d) for d in range(len(report.compute_s))]
    for d, secs in enumerate(report.compute_s):
        table.add_row(
            escape(names[d]),
            duration(secs),
            size(int(link[d].sum())),
            size(int(link[:, d].sum())),
        )
    out.print(table)
    verdict = "[green]ok[/green]" if report.ok else "[red]MISMATCH[/red]"
    out.print(
        f"{verdict}: max abs error {report.max_abs_err:.3g}; bytes moved "
        f"{report.bytes_measured}, planned {report.bytes_planned}; whole model "
        f"{duration(report.reference_s)}",
        highlight=False,
        soft_wrap=True,
    )
    if report.accuracy is not None:
        out.print(
            f"accuracy {report.accuracy:.4f} (original model {report.reference_accuracy:.4f}; "
            f"{report.accuracy_of})",
            highlight=False,
        )
    if report.bytes_sparse_planned is not None:
        out.print(
            f"zero skipping: {report.bytes_sparse_measured:.1f} bytes per sample as sparse "
            f"messages, planned {report.bytes_sparse_planned:.1f}",
            highlight=False,
        )
    for p in report.problems:
        out.print(f"  {p}", highlight=False, soft_wrap=True)


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
@click.option(
    "--batch",
    type=int,
    default=1,
    show_default=True,
    help="Samples per Ray call (Ray's cost per call shared; keep --in-flight >= 2x).",
)
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
    batch,
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
            batch=batch,
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
    predicted = report.predicted_time_per_sample_s
    if predicted and report.throughput_per_s > 0:
        measured = 1.0 / report.throughput_per_s
        out.print(
            f"time per sample {measured * 1e3:.3f} ms; the plan predicted "
            f"{predicted * 1e3:.3f} ms (measured / predicted {measured / predicted:.2f})",
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
