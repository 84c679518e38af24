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
def main() -> None:
    """Split trained deep neural networks across devices.

    \b
    dnnpart import model.onnx          the model as a partitioning problem
    """


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
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def _print_import(doc) -> None:
    from rich.console import Console
    from rich.table import Table

    from dnnpart._format import si, size

    out = Console()
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_row("model", str(doc["model"]))
    head.add_row("layers", str(doc["layers"]))
    head.add_row("params", f"{si(doc['params'])} ({size(doc['param_bytes'])})")
    head.add_row("MACs", si(doc["macs"]))
    head.add_row("activations", size(doc["activation_bytes"]))
    head.add_row("ops", ", ".join(f"{op} {n}" for op, n in doc["ops"].items()))
    for t in doc["inputs"]:
        head.add_row("input", f"{t['name']} {t['shape']} {t['dtype']}")
    out.print(head)
    if doc["splittable"]:
        table = Table(title="splittable layers")
        for col in ("layer", "op", "neurons", "synapses", "density"):
            table.add_column(col, justify="left" if col in ("layer", "op") else "right")
        for s in doc["splittable"]:
            syn = s.get("synapses")
            table.add_row(
                s["name"],
                s["op"],
                str(s["neurons"]),
                si(syn) if syn is not None else "-",
                f"{s['density']:.3f}" if "density" in s else "-",
            )
        out.print(table)
