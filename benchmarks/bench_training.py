"""Training speed: a spiking net's optimisation step against the same layers as a plain CNN; the data pipeline's share.

Run from the repository root::

    python -m benchmarks.bench_training --compile  # fmnist-vgg, cifar-vgg: T = 1, 2, 4 and an epoch (about 3 min)
    python -m benchmarks.bench_training --quick    # digits-small, T = 1 and 2 (seconds)

Step time: one ``forward + cross-entropy + backward + AdamW step`` on a fixed
random batch already in memory, median over the measured steps after warm-up.
The variants, all of the same preset (random weights: the time does not depend
on the values) in the same run:

* ``cnn``: the same convolutions, batch norms, pooling and GAP head with ReLU for
  every LIF, on ``[B, C, H, W]`` (no time axis): the speed the spiking net aims for;
* ``reference LIF``: the spiking net as it was before issue 17: the LIF of before
  the fast path (``benchmarks/reference_lif.py``, the one the tests compare with),
  every layer run on all T copies of the image;
* ``fast LIF``: the spiking net as the package builds it;
* ``fast LIF, every step`` (T > 1): the same, but with the layers ahead of the first
  neuron run on all T copies again instead of once (what sharing them saves);
* ``fast LIF, channels-last`` and ``cnn, channels-last``: both in
  ``torch.channels_last`` (weights and input), what ``train --channels-last`` does;
* ``fast LIF, compiled`` and ``cnn, compiled`` (``--compile``, T=1, fmnist-vgg
  only): ``torch.compile`` of the model (what ``train --compile`` does); the
  compile time is reported apart.

Each variant runs its steps in several rounds, interleaved with the other
variants, so that a burst of load from other jobs on a shared CPU hits all of
them alike; ratios are against ``cnn`` (and ``fast LIF`` against ``reference
LIF``) at the same preset and batch. The goal (issue 17): spiking / CNN <= 1.1
at T=1 and <= 1.1 T at T > 1.

Epoch: one epoch of :class:`~albsnn_compress.training.trainer.Trainer` (what
``albsnn-compress train`` runs: shuffling, augmentation, progress, loss
read-back) on a subset of the training split, against the bare step loop over
the same images already batched in memory; the difference is the data
pipeline's share of the epoch. Times are wall clock with ``--threads`` torch
threads (default 1: stable on a shared CPU); the result records the load
average before and after.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from albsnn_compress.data.registry import load_split
from albsnn_compress.snn.layers import TimeGlobalAvgPool
from albsnn_compress.snn.neurons import LIF
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from albsnn_compress.training.trainer import TrainConfig, Trainer
from benchmarks.reference_lif import use_reference_lif_

__all__ = ["main", "run_benchmark", "cnn_twin"]

# per preset: the dataset whose shapes it takes, the batch (cifar-vgg is ~30x the compute of fmnist-vgg per
# image) and what it overrides of the step counts; "compile": whether --compile times it (minutes of compilation)
_FULL: dict[str, Any] = {
    "presets": {
        "fmnist-vgg": {"dataset": "fashion-mnist", "batch": 128, "compile": True},
        "cifar-vgg": {"dataset": "cifar10", "batch": 8, "warmup": 1, "steps_per_round": 2, "compile": False},
    },
    "timesteps": [1, 2, 4],
    "warmup": 2,
    "rounds": 3,
    "steps_per_round": 3,
    "epoch": {"dataset": "fashion-mnist", "arch": "fmnist-vgg", "images": 1024, "batch": 128, "rounds": 2},
}
_QUICK: dict[str, Any] = {
    "presets": {"digits-small": {"dataset": "digits", "batch": 32, "compile": True}},
    "timesteps": [1, 2],
    "warmup": 1,
    "rounds": 2,
    "steps_per_round": 2,
    "epoch": {"dataset": "digits", "arch": "digits-small", "images": 256, "batch": 32, "rounds": 1},
}


class _Mean(nn.Module):
    """Global average pooling ``[B, C, H, W] -> [B, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class _Normalized(nn.Module):
    """The CNN twin: the spiking net's input normalization, then its layers on ``[B, C, H, W]``."""

    def __init__(self, net: SpikingNet, layers: nn.Sequential) -> None:
        super().__init__()
        self.register_buffer("input_mean", net.input_mean.clone(), persistent=False)
        self.register_buffer("input_std", net.input_std.clone(), persistent=False)
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.input_mean) / self.input_std)


def cnn_twin(net: SpikingNet) -> nn.Module:
    """The same convolutions, batch norms, pooling and GAP head as ``net``, with ReLU for every LIF, no time axis."""
    layers: list[nn.Module] = []
    for module in net.layers:
        if isinstance(module, LIF):
            layers.append(nn.ReLU())
        elif isinstance(module, TimeGlobalAvgPool):
            layers.append(_Mean())
        elif isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d, nn.MaxPool2d)):
            twin = copy.deepcopy(module)
            twin.__class__ = next(base for base in type(module).__mro__ if base.__module__.startswith("torch.nn"))
            layers.append(twin)
        else:
            raise ValueError(f"cnn_twin: no plain-CNN counterpart for layer {type(module).__name__}; use a VGG preset")
    return _Normalized(net, nn.Sequential(*layers))


def _step_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One optimisation step of ``model`` on the fixed batch (what ``Trainer.run`` does per batch)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _every_step(net: SpikingNet) -> SpikingNet:
    """``net`` running every layer on all T copies of the image.

    That is how every net ran before the layers ahead of the first neuron ran once.
    """
    net.shared_layers = 0
    return net


def _variants(spec: dict[str, Any], steps: int, device: torch.device, compile_models: bool) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    net = SpikingNet(spec, steps)
    variants: dict[str, nn.Module] = {
        "cnn": cnn_twin(net),
        "reference LIF": _every_step(use_reference_lif_(copy.deepcopy(net))),
        "fast LIF": net,
    }
    if steps > 1:
        variants["fast LIF, every step"] = _every_step(copy.deepcopy(net))
    variants["cnn, channels-last"] = cnn_twin(net).to(memory_format=torch.channels_last)
    variants["fast LIF, channels-last"] = copy.deepcopy(net).to(memory_format=torch.channels_last)
    if compile_models and steps == 1:
        variants["cnn, compiled"] = torch.compile(cnn_twin(net))
        variants["fast LIF, compiled"] = torch.compile(copy.deepcopy(net))
    return {name: model.to(device) for name, model in variants.items()}


def measure_steps(
    spec: dict[str, Any], steps: int, batch: int, config: dict[str, Any], device: torch.device, compile_models: bool
) -> dict[str, Any]:
    """Median step time in ms of every variant at ``steps`` time steps, and the ratios."""
    shape = spec["input"]["shape"]
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(batch, *shape, generator=generator).to(device)
    labels = torch.randint(0, spec["num_classes"], (batch,), generator=generator).to(device)
    models = _variants(spec, steps, device, compile_models)
    step_fns, warmup_seconds = {}, {}
    for name, model in models.items():
        inputs = images.contiguous(memory_format=torch.channels_last) if "channels-last" in name else images
        step_fns[name] = _step_fn(model, inputs, labels)
        start = time.perf_counter()
        for _ in range(config["warmup"]):
            step_fns[name]()
        _sync(device)
        warmup_seconds[name] = time.perf_counter() - start
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(config["rounds"]):
        for name, step in step_fns.items():
            for _ in range(config["steps_per_round"]):
                start = time.perf_counter()
                step()
                _sync(device)
                samples[name].append((time.perf_counter() - start) * 1e3)
    median_ms = {name: statistics.median(values) for name, values in samples.items()}
    result: dict[str, Any] = {
        "timesteps": steps,
        "batch": batch,
        "step_ms": median_ms,
        "samples_ms": samples,
        "ratio_to_cnn": {},
    }
    for name, value in median_ms.items():
        base = "cnn, channels-last" if "channels-last" in name else "cnn, compiled" if "compiled" in name else "cnn"
        if not name.startswith("cnn"):
            result["ratio_to_cnn"][name] = value / median_ms[base]
    result["fast_over_reference"] = median_ms["fast LIF"] / median_ms["reference LIF"]
    result["goal_ratio"] = 1.1 * steps
    if compile_models and steps == 1:
        result["compile_and_warmup_seconds"] = {n: s for n, s in warmup_seconds.items() if "compiled" in n}
    return result


def measure_epoch(config: dict[str, Any], data_root: Path | None, device: torch.device) -> dict[str, Any]:
    """One ``Trainer`` epoch on a subset against the bare step loop over the same batches in memory."""
    data = load_split(config["dataset"], data_root, "train")
    data = data.subset(torch.arange(min(config["images"], len(data))))
    spec = resolve_architecture(config["arch"], config["dataset"])
    torch.manual_seed(0)
    model = SpikingNet(spec, 1)
    trainer = Trainer(model, data, TrainConfig(epochs=1000, batch_size=config["batch"]), _context(device))
    steps = trainer.steps_per_epoch
    order = torch.arange(steps * config["batch"]).view(steps, config["batch"])
    batches = [(data.as_float(rows).to(device), data.labels[rows].to(device)) for rows in order]
    bare_model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(bare_model.parameters(), lr=1e-3)

    def bare_epoch() -> None:
        bare_model.train()
        for images, labels in batches:
            loss = F.cross_entropy(bare_model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)

    trainer.run(1)  # warm-up of both, one step each
    bare_model.train()
    F.cross_entropy(bare_model(batches[0][0]), batches[0][1]).backward()
    trainer_seconds, bare_seconds = [], []
    for _ in range(config["rounds"]):
        start = time.perf_counter()
        trainer.run(steps)
        _sync(device)
        trainer_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_epoch()
        bare_seconds.append(time.perf_counter() - start)
    trainer_s, bare_s = statistics.median(trainer_seconds), statistics.median(bare_seconds)
    return {
        **config,
        "steps": steps,
        "augment": trainer.loader.augment,
        "trainer_epoch_seconds": trainer_s,
        "bare_epoch_seconds": bare_s,
        "pipeline_fraction": (trainer_s - bare_s) / trainer_s,
        "trainer_samples_seconds": trainer_seconds,
        "bare_samples_seconds": bare_seconds,
    }


def _context(device: torch.device):
    from albsnn_compress.training.distributed import DistContext

    return DistContext(device=device)


def run_benchmark(
    config: dict[str, Any], device: torch.device, data_root: Path | None, compile_models: bool = False
) -> dict[str, Any]:
    """Every preset's step times at every T, then the epoch; the result's payload."""
    steps_results = []
    for arch, preset in config["presets"].items():
        spec = resolve_architecture(arch, preset["dataset"])
        counts = {**config, **preset}
        for steps in config["timesteps"]:
            row = measure_steps(spec, steps, preset["batch"], counts, device, compile_models and preset["compile"])
            steps_results.append({"arch": arch, "dataset": preset["dataset"], **row})
            Console().print(f"{arch} T={steps}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in row["step_ms"].items()))
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "config": {k: v for k, v in config.items() if k != "epoch"},
        "steps": steps_results,
        "epoch": measure_epoch(config["epoch"], data_root, device),
    }


def print_tables(result: dict[str, Any]) -> None:
    """The step table (ms and ratios per preset and T) and the epoch line."""
    table = Table(
        title=f"training step, {result['device']}, {result['threads']} thread(s): median ms (ratio to the CNN)",
        title_justify="left",
    )
    names = list(dict.fromkeys(name for row in result["steps"] for name in row["step_ms"]))
    for column in ("preset", "T", "batch", *names, "fast / reference"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for row in result["steps"]:
        cells = []
        for name in names:
            value = row["step_ms"].get(name)
            ratio = row["ratio_to_cnn"].get(name)
            cells.append("-" if value is None else f"{value:.1f}" + (f" ({ratio:.2f}x)" if ratio is not None else ""))
        table.add_row(
            row["arch"], str(row["timesteps"]), str(row["batch"]), *cells, f"{row['fast_over_reference']:.2f}"
        )
    console = Console()
    console.print(table)
    epoch = result["epoch"]
    console.print(
        f"epoch of {epoch['arch']} on {epoch['images']} {epoch['dataset']} images ({epoch['steps']} steps, augment "
        f"{epoch['augment']}): Trainer {epoch['trainer_epoch_seconds']:.2f} s, "
        f"bare loop {epoch['bare_epoch_seconds']:.2f} s, "
        f"data pipeline {100 * epoch['pipeline_fraction']:.1f} % of the epoch"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, write ``benchmarks/results/training[-quick].json`` and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits-small, T = 1 and 2, few steps (seconds)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1: stable on a shared CPU)"
    )
    parser.add_argument("--device", default="cpu", help="cpu|cuda|cuda:N (default cpu)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="dataset folder for the epoch (default: ../shared/datasets when present)",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of both models at T=1")
    parser.add_argument(
        "--output", type=Path, default=None, help="result JSON (default benchmarks/results/training[-quick].json)"
    )
    args = parser.parse_args(argv)
    from benchmarks.machine import RESULTS, write_result

    torch.set_num_threads(args.threads)
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    data_root = args.data_root or (shared if shared.is_dir() else None)
    load_before = os.getloadavg()
    result = run_benchmark(dict(_QUICK if args.quick else _FULL), torch.device(args.device), data_root, args.compile)
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    output = args.output or (RESULTS / "quick" / "training-quick.json" if args.quick else RESULTS / "training.json")
    path = write_result(output.stem, result, output.parent, module="benchmarks.bench_training", argv=argv)
    print_tables(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
