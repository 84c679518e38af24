"""A fuzz campaign: mutants of real models and of what dnnpart reads, each run through the
CLI in a forked child, outcomes counted, failures kept as reproductions.

For every model the campaign first makes a clean plan (layer and neuron granularity) and
a clean split folder; then each mutant is one of: a structure-aware ONNX mutant, a
byte-level ONNX mutant (``import``, then ``partition`` when it imports, and ``export`` +
``verify`` for some), a plan mutant (``export``), a manifest mutant (``verify``), a device
file (``partition --devices``) or an ``.npz`` of inputs (``verify --inputs``). Every case
lives in its own folder under ``work/cases``; beside them lies ``canary.bin``, which no
run may open or print. A failure (internal error, signal, hang, outside read) is copied
to ``work/repro/<kind>-<n>/`` with the command line (``cmd.txt``) and its stderr.
"""

from __future__ import annotations

import collections
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ._mutators import (
    CANARY,
    device_file,
    mutate_bytes,
    mutate_manifest,
    mutate_model,
    mutate_plan,
    npz_file,
)
from ._runner import Outcome, run_cli, warm

__all__ = ["Campaign", "Report"]

FAMILIES = {
    "model": 0.45,
    "bytes": 0.15,
    "plan": 0.12,
    "manifest": 0.1,
    "devices": 0.08,
    "npz": 0.1,
}


@dataclass
class Report:
    """Counts by outcome kind (and by family, and by how each kind of run ended: exit
    code, signal or limit), the failures, the wall time, and whether Ctrl-C cut it short."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    by_family: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    by_code: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    failures: list = field(default_factory=list)
    runs: int = 0
    mutants: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, family: str, outcome: Outcome) -> None:
        self.runs += 1
        self.counts[outcome.kind] += 1
        self.by_family[family][outcome.kind] += 1
        self.by_code[outcome.kind][outcome.label] += 1

    def summary(self) -> dict:
        return {
            "mutants": self.mutants,
            "runs": self.runs,
            "seconds": round(self.seconds, 1),
            "interrupted": self.interrupted,
            "outcomes": dict(sorted(self.counts.items())),
            "by_code": {k: dict(sorted(v.items())) for k, v in sorted(self.by_code.items())},
            "by_family": {k: dict(sorted(v.items())) for k, v in sorted(self.by_family.items())},
            "failures": self.failures,
        }


@dataclass
class _Seed:
    """A real model and the clean things made from it once."""

    path: Path
    proto: onnx.ModelProto
    plans: dict  # granularity -> plan document
    split: Path | None  # a clean split folder (layer granularity)
    manifest: dict | None
    specs: list


class Campaign:
    """Fuzz ``models`` under ``work`` with a seeded generator.

    Parameters
    ----------
    models : list of paths
        Real ONNX models (their weights inside the file).
    work : path
        An empty folder for cases, canary and reproductions.
    seed : int
    timeout : float
        Wall-clock seconds per CLI run (a run over it is a hang).
    cpu : float, optional
        CPU seconds per CLI run (a run over it is a hang; default: ``timeout`` + 1).
    memory : int
        Address-space limit per run, bytes.
    partition : float
        Fraction of importable model mutants that are also partitioned.
    deep : float
        Fraction of partitioned model mutants that also go through export and verify.
    """

    def __init__(
        self,
        models,
        work,
        *,
        seed=0,
        timeout=60.0,
        cpu=None,
        memory=3 << 30,
        partition=1.0,
        deep=0.2,
        log=None,
    ):
        self.models = [Path(m) for m in models]
        self.work = Path(work)
        self.seed = seed
        self.timeout = timeout
        self.cpu = cpu
        self.memory = memory
        self.partition = partition
        self.deep = deep
        self.log = log
        self.rng = np.random.default_rng(seed)
        self.canary = self.work / "canary.bin"
        self.report = Report()
        self._n = 0

    # -- running -----------------------------------------------------------------------
    def _run(self, family: str, args: list[str], case: Path) -> Outcome:
        out = run_cli(
            args,
            case,
            allowed=[case],
            watched=[self.work],
            canaries=[self.canary, Path("/etc/passwd")],
            timeout=self.timeout,
            cpu=self.cpu,
            memory=self.memory,
        )
        self.report.add(family, out)
        if out.failed:
            self._keep(family, args, case, out)
        return out

    def _keep(self, family: str, args, case: Path, out: Outcome) -> None:
        dest = self.work / "repro" / f"{out.kind}-{len(self.report.failures)}"
        shutil.copytree(case, dest, symlinks=True, dirs_exist_ok=True)
        (dest / "cmd.txt").write_text("cd " + str(dest) + " && dnnpart " + " ".join(args) + "\n")
        self.report.failures.append(
            {
                "kind": out.kind,
                "family": family,
                "args": args,
                "what": (case / "what.txt").read_text() if (case / "what.txt").exists() else "",
                "stderr": out.stderr.strip().splitlines()[-1:] if out.stderr.strip() else [],
                "outside": out.outside,
                "repro": str(dest),
            }
        )

    def _case(self, seed: _Seed, what: str = "") -> Path:
        self._n += 1
        case = self.work / "cases" / f"{self._n:05d}"
        case.mkdir(parents=True)
        (case / "what.txt").write_text(f"{seed.path.parent.name}: {what}\n")
        return case

    # -- setup ------------------------------------------------------------------------
    def _prepare(self, path: Path) -> _Seed:
        from dnnpart.runtime._verify import model_inputs

        base = self.work / "seeds" / path.stem
        base.mkdir(parents=True, exist_ok=True)
        model = base / "model.onnx"
        shutil.copy(path, model)
        proto = onnx.load(str(model))
        plans = {}
        for gran in ("layer", "neuron"):
            out = run_cli(
                [
                    "partition",
                    "model.onnx",
                    "-k",
                    "2",
                    "-p",
                    "vertical",
                    "--granularity",
                    gran,
                    "-o",
                    f"plan-{gran}.json",
                ],
                base,
                allowed=[base],
                timeout=max(self.timeout, 300),
                memory=self.memory,
            )
            if out.kind == "ok":
                plans[gran] = json.loads((base / f"plan-{gran}.json").read_text())
        split, manifest, specs = None, None, []
        if "layer" in plans:
            out = run_cli(
                ["export", "model.onnx", "plan-layer.json", "-o", "split"],
                base,
                allowed=[base],
                timeout=max(self.timeout, 300),
                memory=self.memory,
            )
            if out.kind == "ok":
                split = base / "split"
                manifest = json.loads((split / "manifest.json").read_text())
        import dnnpart

        specs = model_inputs(dnnpart.load(model).model)
        return _Seed(model, proto, plans, split, manifest, specs)

    # -- families ---------------------------------------------------------------------
    def _pipeline(self, family: str, case: Path, seed: _Seed) -> None:
        out = self._run(family, ["import", "model.onnx", "--json"], case)
        if out.kind != "ok" or self.rng.random() >= self.partition:
            return
        gran = "neuron" if self.rng.random() < 0.5 else "layer"
        method = "metis" if self.rng.random() < 0.3 else "vertical"
        out = self._run(
            family,
            [
                "partition",
                "model.onnx",
                "-k",
                "2",
                "-p",
                method,
                "--granularity",
                gran,
                "-o",
                "plan.json",
                "--json",
            ],
            case,
        )
        if out.kind != "ok" or self.rng.random() >= self.deep:
            return
        out = self._run(family, ["export", "model.onnx", "plan.json", "-o", "split"], case)
        if out.kind == "ok":
            self._run(family, ["verify", "split", "--samples", "1", "--json"], case)

    def _model(self, seed: _Seed) -> None:
        case = self._case(seed)
        data, what = mutate_model(self.rng, seed.proto, case, self.canary)
        (case / "what.txt").write_text(f"{seed.path.parent.name}: {what}\n")
        (case / "model.onnx").write_bytes(data)
        self._pipeline("model", case, seed)

    def _bytes(self, seed: _Seed) -> None:
        data, what = mutate_bytes(self.rng, seed.path.read_bytes())
        case = self._case(seed, what)
        (case / "model.onnx").write_bytes(data)
        self._pipeline("bytes", case, seed)

    def _plan(self, seed: _Seed) -> None:
        if not seed.plans:
            return self._model(seed)
        gran = (
            "layer" if "layer" in seed.plans and self.rng.random() < 0.5 else next(iter(seed.plans))
        )
        data, what = mutate_plan(self.rng, seed.plans[gran])
        case = self._case(seed, f"{gran} plan: {what}")
        shutil.copy(seed.path, case / "model.onnx")
        (case / "plan.json").write_bytes(data)
        out = self._run("plan", ["export", "model.onnx", "plan.json", "-o", "split"], case)
        if out.kind == "ok":
            self._run("plan", ["verify", "split", "--samples", "1"], case)

    def _split_case(self, seed: _Seed, what: str) -> Path:
        case = self._case(seed, what)
        shutil.copy(seed.path, case / "model.onnx")
        shutil.copytree(seed.split, case / "split")
        (case / "canary-link.onnx").symlink_to(self.canary)
        return case

    def _manifest(self, seed: _Seed) -> None:
        if seed.manifest is None:
            return self._model(seed)
        data, what = mutate_manifest(self.rng, seed.manifest)
        case = self._split_case(seed, f"manifest: {what}")
        (case / "split" / "manifest.json").write_bytes(data)
        self._run("manifest", ["verify", "split", "--samples", "1"], case)

    def _devices(self, seed: _Seed) -> None:
        data, what = device_file(self.rng)
        case = self._case(seed, f"devices: {what}")
        shutil.copy(seed.path, case / "model.onnx")
        (case / "devices.toml").write_bytes(data)
        self._run(
            "devices",
            [
                "partition",
                "model.onnx",
                "--devices",
                "devices.toml",
                "-p",
                "vertical",
                "--granularity",
                "layer",
            ],
            case,
        )

    def _npz(self, seed: _Seed) -> None:
        if seed.split is None:
            return self._model(seed)
        data, what = npz_file(self.rng, seed.specs)
        case = self._split_case(seed, f"inputs: {what}")
        (case / "x.npz").write_bytes(data)
        self._run("npz", ["verify", "split", "--inputs", "x.npz"], case)

    # -- the campaign -----------------------------------------------------------------
    def run(self, mutants: int, *, seconds: float | None = None) -> Report:
        """Run ``mutants`` mutants (fewer if ``seconds`` of wall time run out first, or
        Ctrl-C comes: the report then says ``interrupted`` and holds what ran)."""
        start = time.monotonic()
        warm()
        self.work.mkdir(parents=True, exist_ok=True)
        self.canary.write_bytes(CANARY)
        names, weights = zip(*FAMILIES.items(), strict=True)
        p = np.asarray(weights) / sum(weights)
        try:
            seeds = [self._prepare(m) for m in self.models]
            for i in range(mutants):
                if seconds is not None and time.monotonic() - start > seconds:
                    break
                seed = seeds[i % len(seeds)]
                family = names[int(self.rng.choice(len(names), p=p))]
                getattr(self, f"_{family}")(seed)
                self.report.mutants += 1
                if self.log is not None and (i + 1) % 25 == 0:
                    print(
                        f"{i + 1}/{mutants} mutants, {self.report.runs} runs, "
                        f"{dict(self.report.counts)}",
                        file=self.log,
                        flush=True,
                    )
        except KeyboardInterrupt:  # run_cli has killed and reaped the running child
            self.report.interrupted = True
        self.report.seconds = time.monotonic() - start
        return self.report


def main_models() -> list[Path]:
    """The five real models of the long run: the example MLP and four of the ONNX
    backend's light models (real architectures, shipped with the onnx package)."""
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    repo = Path(__file__).resolve().parents[2]
    return [repo / "examples" / "mlp" / "mlp.onnx"] + [
        light / f"light_{n}.onnx"
        for n in ("bvlc_alexnet", "squeezenet", "resnet50", "inception_v1")
    ]


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run: python -m tests.fuzz --help")
