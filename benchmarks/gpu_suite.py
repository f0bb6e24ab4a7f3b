"""Every GPU check and long benchmark as one time-boxed run (for a lent GPU machine).

A GPU lease is short (minutes) and a machine starts bare, so this runs, in
order of importance, each within its own share of ``--deadline`` seconds:

1. ``data``: unpack the CIFAR-10 JPEG copy and rewrite it in the binary layout
   (:mod:`benchmarks.cifar_binary`: decoded once instead of once per run).
2. ``gpu-tests``: the tests marked ``gpu`` (CUDA training and compression,
   device-independent container/ONNX bytes).
3. ``cifar10-train``: ``albsnn-compress train`` of the CIFAR preset at T=1 for
   as many epochs as the stage's share affords (one real epoch is trained and
   timed first, and kept as the model if the long run cannot finish).
4. ``cifar10-paper``: :mod:`benchmarks.bench_paper` at budgets 0, 0.2, 1.0.
5. ``timesteps``: :mod:`benchmarks.bench_timesteps` (FashionMNIST preset,
   T = 1, 2, 4, trained on the GPU, latencies timed on the CPU).
6. ``cifar10-search``: :mod:`benchmarks.bench_search`: oracle, adaptive and
   all on the CIFAR model (search cost, estimator fidelity on a second
   architecture).

A stage that runs out of its share is stopped and the next one runs. Results
are JSON files in ``--out`` plus ``suite.json`` (each stage's status and
seconds) and ``artifacts.tar`` (containers, reports, the FashionMNIST
checkpoints). ``--quick`` runs the same stages on the bundled digits at toy
size, on the CPU, to check the orchestration before spending GPU time.

Run from the repository root (``--data`` has the layout of ``../shared/datasets``)::

    python -m benchmarks.gpu_suite --data ../shared/datasets --out /tmp/gpu-out --deadline 540
    python -m benchmarks.gpu_suite --quick --out /tmp/gpu-quick
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.cifar_binary import convert
from benchmarks.machine import write_result

__all__ = ["main", "Plan", "affordable_epochs"]


@dataclass
class Plan:
    """Datasets, presets and each stage's share of the deadline (fractions)."""

    image_dataset: str = "cifar10"
    image_arch: str = "cifar-vgg"
    timesteps_dataset: str = "fashion-mnist"
    timesteps_arch: str = "fmnist-vgg"
    device: str = "cuda"
    min_epochs: float = 1.0
    finetune: tuple[str, ...] = ()
    shares: dict[str, float] = field(
        default_factory=lambda: {
            "data": 0.04,
            "gpu-tests": 0.12,
            "cifar10-train": 0.27,
            "cifar10-paper": 0.25,
            "timesteps": 0.18,
            "cifar10-search": 0.14,
        }
    )


STAGES = tuple(Plan().shares)
QUICK = Plan(
    image_dataset="digits",
    image_arch="digits-small",
    timesteps_dataset="digits",
    timesteps_arch="digits-small",
    device="cpu",
    min_epochs=0.5,
    finetune=("--epochs", "0.2", "--trial-epochs", "0.2"),
)


def log(start: float, message: str) -> None:
    print(f"[suite {time.perf_counter() - start:6.1f}s] {message}", flush=True)


def affordable_epochs(seconds: float, epoch_seconds: float, minimum: float, safety: float = 1.25) -> float:
    """Whole epochs that fit in ``seconds`` when one takes ``epoch_seconds`` times ``safety``; at least ``minimum``."""
    return max(minimum, float(math.floor(seconds / (epoch_seconds * safety))))


class Suite:
    """Runs the stages in order, each bounded by its share of what is left."""

    def __init__(self, args: argparse.Namespace, plan: Plan, argv: list[str] | None = None) -> None:
        self.args, self.plan, self.argv = args, plan, argv
        self.start = time.perf_counter()
        self.out: Path = args.out
        self.work: Path = args.work
        self.status: dict[str, dict[str, object]] = {}
        self.started_with: dict[str, float] = {}
        self.image_root: str | None = None
        self.checkpoint = self.work / f"{plan.image_dataset}-{plan.image_arch}-T1.pt"

    def remaining(self) -> float:
        return self.args.deadline - (time.perf_counter() - self.start)

    def share(self, stage: str) -> float:
        """This stage's seconds: its share of what is left, split among the stages not yet finished.

        Time a stage leaves unused flows to the later ones; never more than what is left less 10 s.
        """
        pending = [name for name in self.plan.shares if name not in self.status or name == stage]
        fraction = self.plan.shares[stage] / sum(self.plan.shares[name] for name in pending)
        return max(1.0, min(fraction * self.stage_budget(stage), self.remaining() - 10.0))

    def stage_budget(self, stage: str) -> float:
        """Seconds left when ``stage`` started (a stage's share must not shrink while it runs)."""
        return self.started_with.setdefault(stage, self.remaining())

    def command(self, stage: str, argv: list[str], log_file: Path | None = None, limit: float | None = None) -> None:
        """Run ``argv`` within ``limit`` seconds (the stage's share); raise if it fails or runs out of time."""
        limit = min(limit, self.share(stage)) if limit is not None else self.share(stage)
        log(self.start, f"{stage}: {' '.join(argv)}  (limit {limit:.0f} s)")
        with open(log_file or "/dev/null", "w") as sink:
            process = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=limit, check=False
            )
            sink.write(process.stdout)
        print(process.stdout[-6000:], flush=True)
        if process.returncode != 0:
            raise RuntimeError(f"exit status {process.returncode}")

    def run_stage(self, stage: str, body: Callable[[], None]) -> None:
        started = time.perf_counter()
        if self.remaining() < 20:
            self.status[stage] = {"status": "skipped: deadline", "seconds": 0.0}
            return
        try:
            body()
            status = "ok"
        except subprocess.TimeoutExpired:
            status = "stopped: ran out of its time share"
        except Exception as exc:  # a broken stage must not cost the others their GPU time
            status = f"failed: {exc}"
        self.status[stage] = {"status": status, "seconds": round(time.perf_counter() - started, 1)}
        log(self.start, f"{stage}: {status}")
        self.write_status()

    def write_status(self) -> None:
        write_result(
            "suite",
            {"plan": self.plan.__dict__, "stages": self.status},
            self.out,
            module="benchmarks.gpu_suite",
            argv=self.argv,
        )

    # -- stages -----------------------------------------------------------------------------
    def data(self) -> None:
        if self.plan.image_dataset == "digits":
            return
        jpeg = self.work / "cifar10-jpeg"
        jpeg.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.args.data / "cifar10-jpeg" / "cifar10-jpeg.tar.gz") as archive:
            archive.extractall(jpeg, filter="data")
        self.image_root = str(convert("cifar10", jpeg, self.work / "cifar10-bin").parent)

    def gpu_tests(self) -> None:
        marker = "gpu" if self.plan.device != "cpu" else "not gpu and not slow"
        target = "tests/test_distributed.py" if self.plan.device != "cpu" else "tests/test_binarize.py"
        self.command(
            "gpu-tests",
            [sys.executable, "-m", "pytest", "-m", marker, "-q", "-ra", "-p", "no:cacheprovider", target],
            self.out / "gpu-tests.log",
        )

    def train(
        self, stage: str, dataset: str, arch: str, epochs: float, output: Path, limit: float | None = None
    ) -> None:
        """``albsnn-compress train`` at T=1 on the plan's device; raise unless it wrote ``output``."""
        root = (
            []
            if dataset == "digits"
            else ["--data-root", self.image_root if dataset == self.plan.image_dataset else str(self.args.data)]
        )
        self.command(
            stage,
            [
                sys.executable,
                "-m",
                "albsnn_compress.cli.main",
                "train",
                "--dataset",
                dataset,
                *root,
                "--arch",
                arch,
                "--timesteps",
                "1",
                "--epochs",
                f"{epochs:g}",
                "--seed",
                "0",
                "--device",
                self.plan.device,
                "--quiet",
                "-o",
                str(output),
            ],
            limit=limit,
        )
        if not output.is_file():
            raise RuntimeError(f"training wrote no {output}")

    def epoch_seconds(self, stage: str, dataset: str, arch: str, output: Path) -> float:
        """Train one real epoch (the fallback model); return its seconds, start, data loading and evaluation included.

        Timed around the command (checkpoints hold no wall time, so the same seed gives the same bytes).
        """
        started = time.perf_counter()
        self.train(stage, dataset, arch, 1.0, output, limit=0.5 * self.share(stage))
        return time.perf_counter() - started

    def image_train(self) -> None:
        plan, started = self.plan, time.perf_counter()
        probe = self.work / "probe-1-epoch.pt"
        if self.args.image_epochs:
            epochs = self.args.image_epochs
        else:
            one_epoch = self.epoch_seconds("cifar10-train", plan.image_dataset, plan.image_arch, probe)
            budget = self.share("cifar10-train") - (time.perf_counter() - started) - 20.0
            epochs = affordable_epochs(budget, one_epoch, plan.min_epochs)
            log(self.start, f"one epoch took {one_epoch:.1f} s -> {epochs:g} epochs")
        try:
            self.train(
                "cifar10-train",
                plan.image_dataset,
                plan.image_arch,
                epochs,
                self.checkpoint,
                limit=self.share("cifar10-train") - (time.perf_counter() - started),
            )
        except (subprocess.TimeoutExpired, RuntimeError):
            if probe.is_file():
                shutil.copyfile(probe, self.checkpoint)  # later stages still get a trained model, named by its metadata
            raise

    def _data_root(self) -> list[str]:
        return ["--data-root", self.image_root] if self.image_root else []

    def image_paper(self) -> None:
        self.command(
            "cifar10-paper",
            [
                sys.executable,
                "-m",
                "benchmarks.bench_paper",
                "--checkpoint",
                str(self.checkpoint),
                *self._data_root(),
                "--budgets",
                "0",
                "0.2",
                "1.0",
                "--device",
                self.plan.device,
                "--outdir",
                str(self.work / "paper"),
                "--results",
                str(self.out),
                *self.plan.finetune,
            ],
        )

    def timesteps(self) -> None:
        plan, budget = self.plan, self.share("timesteps")
        data_root = None if plan.timesteps_dataset == "digits" else str(self.args.data)
        started = time.perf_counter()
        one_epoch = self.epoch_seconds(
            "timesteps", plan.timesteps_dataset, plan.timesteps_arch, self.work / "probe-timesteps.pt"
        )
        # training cost grows about linearly with T: 1 + 2 + 4 = 7 T=1 epochs per epoch of each; 40 s for the timing
        epochs = affordable_epochs((budget - (time.perf_counter() - started) - 40.0) / 7.0, one_epoch, plan.min_epochs)
        log(self.start, f"one T=1 epoch took {one_epoch:.1f} s -> {epochs:g} epochs per T")
        root = ["--data-root", data_root] if data_root else []
        self.command(
            "timesteps",
            [
                sys.executable,
                "-m",
                "benchmarks.bench_timesteps",
                "--arch",
                plan.timesteps_arch,
                "--dataset",
                plan.timesteps_dataset,
                *root,
                "--epochs",
                f"{epochs:g}",
                "--seconds",
                "1",
                "--device",
                plan.device,
                "--save",
                str(self.work / "timesteps"),
                "--results",
                str(self.out),
            ],
        )

    def image_search(self) -> None:
        self.command(
            "cifar10-search",
            [
                sys.executable,
                "-m",
                "benchmarks.bench_search",
                "--checkpoint",
                str(self.checkpoint),
                *self._data_root(),
                "--budgets",
                "0.2",
                "1.0",
                "--estimators",
                "best",
                "--device",
                self.plan.device,
                "--name",
                self.plan.image_dataset,
                "--results",
                str(self.out),
                *self.plan.finetune,
            ],
        )

    def artifacts(self, largest: int = 2 << 20) -> None:
        """Reports, containers and checkpoints up to ``largest`` bytes each, in one tar (what comes back is capped)."""
        with tarfile.open(self.out / "artifacts.tar", "w") as archive:
            for folder in ("paper", "timesteps"):
                for path in sorted((self.work / folder).rglob("*")) if (self.work / folder).exists() else []:
                    if path.is_file() and path.stat().st_size <= largest:
                        archive.add(path, arcname=str(path.relative_to(self.work)))

    def run(self) -> None:
        log(
            self.start,
            f"device {self.plan.device}: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'}",
        )
        for stage, body in (
            ("data", self.data),
            ("gpu-tests", self.gpu_tests),
            ("cifar10-train", self.image_train),
            ("cifar10-paper", self.image_paper),
            ("timesteps", self.timesteps),
            ("cifar10-search", self.image_search),
        ):
            if stage in self.plan.shares:
                self.run_stage(stage, body)
        self.artifacts()
        self.write_status()
        log(self.start, "done: " + ", ".join(f"{k} {v['status']}" for k, v in self.status.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/datasets"), help="datasets folder (layout of ../shared/datasets)"
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder (JSON, logs, artifacts.tar)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/albsnn-gpu-suite"), help="scratch folder")
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds for the whole suite")
    parser.add_argument("--quick", action="store_true", help="digits on the CPU at toy size (checks the orchestration)")
    parser.add_argument(
        "--stages", nargs="+", choices=list(STAGES), default=None, help="run only these stages (default: all)"
    )
    parser.add_argument(
        "--share", nargs="+", default=[], metavar="STAGE=FRACTION", help="override a stage's share of the deadline"
    )
    parser.add_argument(
        "--image-epochs", type=float, default=None, help="train the CIFAR model this many epochs (no probe)"
    )
    args = parser.parse_args(argv)
    for folder in (args.out, args.work):
        folder.mkdir(parents=True, exist_ok=True)
    plan = copy.deepcopy(QUICK if args.quick else Plan())
    for item in args.share:
        stage, _, fraction = item.partition("=")
        if stage not in STAGES:
            parser.error(f"--share {item!r}: unknown stage; choose from {', '.join(STAGES)}")
        plan.shares[stage] = float(fraction)
    plan.shares = {stage: share for stage, share in plan.shares.items() if args.stages is None or stage in args.stages}
    Suite(args, plan, argv).run()


if __name__ == "__main__":
    main()
