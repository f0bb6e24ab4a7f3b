"""The docs/interop.md tutorial: train conv SNNs in snnTorch and in SpikingJelly, import, compress, measure.

Each network is trained with its own framework's usual loop on real FashionMNIST
(a few CPU epochs), then brought in and compressed with the command line::

    python -m benchmarks.interop_tutorial train --framework snntorch --data-root ../shared/datasets \\
        --out ../runs/interop --epochs 3 --train-images 20000
    albsnn-compress import --from snntorch --factory benchmarks/interop_tutorial.py:build_snntorch \\
        --weights ../runs/interop/snntorch/weights.pt --dataset fashion-mnist --timesteps 4 \\
        --mean 0.2860 --std 0.3530 -o ../runs/interop/snntorch/model.pt
    albsnn-compress ../runs/interop/snntorch/model.pt --budget 0.2 --data-root ../shared/datasets --seed 0 \\
        -o ../runs/interop/snntorch/b0.2
    (the same for --budget 1.0, and for spikingjelly / spikingjelly-linear without --mean/--std)
    python -m benchmarks.interop_tutorial measure --data-root ../shared/datasets --out ../runs/interop

``measure`` checks, on 256 FashionMNIST test images, that each imported checkpoint
computes the source network's logits (max difference, prediction agreement),
evaluates both on the whole test split, reads the compression reports and writes
``benchmarks/results/interop-tutorial.json``. ``build_snntorch``,
``build_spikingjelly`` and ``build_spikingjelly_linear`` are the factories
``--factory`` runs: importing this file runs nothing else.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

T = 4
SNNTORCH_MEAN, SNNTORCH_STD = 0.2860, 0.3530  # the snnTorch run trains on normalized images
FRAMEWORKS = ("snntorch", "spikingjelly", "spikingjelly-linear")
"""The networks: snnTorch's, SpikingJelly's with its usual spiking output, and the same SpikingJelly net with a Linear
readout."""


def build_snntorch() -> nn.Sequential:
    """The snnTorch conv net: per-channel learned beta in the first layer, learned scalar betas after, a Linear
    readout."""
    import snntorch as snn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        snn.Leaky(beta=torch.full((16, 1, 1), 0.9), learn_beta=True, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        snn.Leaky(beta=0.9, learn_beta=True, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 10),
    )


def build_spikingjelly(spiking_output: bool = True) -> nn.Sequential:
    """SpikingJelly's CSNN style: multi-step LIF / PLIF layers, a spiking output layer read as firing rates."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    net = nn.Sequential(
        layer.Conv2d(1, 16, 3, padding=1, bias=False),
        layer.BatchNorm2d(16),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True),
        layer.MaxPool2d(2),
        layer.Conv2d(16, 32, 3, padding=1, bias=False),
        layer.BatchNorm2d(32),
        neuron.ParametricLIFNode(init_tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True),
        layer.MaxPool2d(2),
        layer.Conv2d(32, 64, 3, padding=1, bias=False),
        layer.BatchNorm2d(64),
        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(64 * 3 * 3, 10),
        *([neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)] if spiking_output else []),
    )
    functional.set_step_mode(net, "m")
    return net


def build_spikingjelly_linear() -> nn.Sequential:
    """The SpikingJelly net without its spiking output layer: the Linear's values are the logits."""
    return build_spikingjelly(spiking_output=False)


def build(framework: str) -> nn.Sequential:
    """The network of ``framework`` (one of :data:`FRAMEWORKS`)."""
    return {
        "snntorch": build_snntorch,
        "spikingjelly": build_spikingjelly,
        "spikingjelly-linear": build_spikingjelly_linear,
    }[framework]()


def source_logits(framework: str, net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The time-mean output of ``net`` over ``T`` steps of the same images, run as its framework runs it."""
    if framework == "snntorch":
        from snntorch import utils

        utils.reset(net)
        return torch.stack([net((images - SNNTORCH_MEAN) / SNNTORCH_STD) for _ in range(T)]).mean(0)
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    return net(images.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)


def _accuracy(framework: str, net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for batch, target in zip(images.split(500), labels.split(500)):
            correct += int((source_logits(framework, net, batch).argmax(1) == target).sum())
    return 100.0 * correct / len(labels)


def train(
    framework: str,
    data_root: Path,
    out: Path,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    train_images: int | None,
) -> dict[str, Any]:
    """Train with the framework's usual loop (reset, T steps of the same image, loss, step); save the state dict.

    ``train_images`` limits each epoch to a fixed random subset of the training split (CPU time).
    """
    from albsnn_compress.data import load_splits

    torch.manual_seed(seed)
    splits = load_splits("fashion-mnist", data_root)
    subset = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(seed))[:train_images]
    images, labels = splits["train"].as_float(subset), splits["train"].labels[subset]
    net = build(framework)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start, history = time.perf_counter(), []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(labels))
        total = 0.0
        for index in order.split(batch_size):
            x, y = images[index], labels[index]
            output = source_logits(framework, net, x)
            # a Linear readout: cross-entropy on its time-mean; SpikingJelly's example: MSE of firing rates vs one-hot
            rates = framework == "spikingjelly"
            loss = F.mse_loss(output, F.one_hot(y, 10).float()) if rates else F.cross_entropy(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(y)
        val = _accuracy(framework, net, splits["val"].as_float(), splits["val"].labels)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total / len(labels),
                "val_accuracy": val,
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(history[-1]), flush=True)
    folder = out / framework
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "weights.pt")
    test = _accuracy(framework, net, splits["test"].as_float(), splits["test"].labels)
    record = {
        "framework": framework,
        "epochs": epochs,
        "train_images": len(labels),
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "timesteps": T,
        "val_accuracy": history[-1]["val_accuracy"],
        "test_accuracy": test,
        "history": history,
        "train_seconds": time.perf_counter() - start,
    }
    (folder / "source.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"test_accuracy": test}), flush=True)
    return record


def _compressed(folder: Path) -> dict[str, Any] | None:
    """Accuracy, binarized layers, storage and time of one ``albsnn-compress`` run, from its ``report.json``."""
    path = folder / "report.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    computed, disk = report["storage"]["computed"], report["storage"]["on_disk"]
    return {
        "accuracy": report["accuracy"],
        "binarized": report["search"]["binarized"],
        "bytes_before": computed["bytes_before"],
        "bytes_after": computed["bytes_after"],
        "ratio": computed["ratio"],
        "checkpoint_bytes": disk["input_checkpoint"]["bytes"],
        "container_bytes": disk["container"]["bytes"],
        "onnx_bytes": disk["onnx"]["bytes"],
        "seconds": report["timings"]["total"],
    }


def measure(data_root: Path, out: Path, budgets: list[str]) -> dict[str, Any]:
    """Equivalence on 256 test images, whole-test-split accuracies, and the compression reports, per framework."""
    import albsnn_compress as ac
    from albsnn_compress.data import load_split
    from albsnn_compress.training.trainer import evaluate

    test = load_split("fashion-mnist", data_root, "test")
    images = test.as_float()
    subset = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:256]
    results: dict[str, Any] = {}
    for framework in FRAMEWORKS:
        folder = out / framework
        if not (folder / "model.pt").is_file():
            continue
        net = build(framework)
        net.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
        net.eval()
        model = ac.load_checkpoint(folder / "model.pt")
        with torch.no_grad():
            reference = source_logits(framework, net, images[subset])
            logits = model(images[subset])
        results[framework] = {
            "source": json.loads((folder / "source.json").read_text()),
            "source_test_accuracy_remeasured": _accuracy(framework, net, images, test.labels),
            "imported_test_accuracy": evaluate(model, test),
            "equivalence_256": {
                "max_abs_logit_difference": float((reference - logits).abs().max()),
                "prediction_agreement": float((reference.argmax(1) == logits.argmax(1)).float().mean()),
            },
            "compressed": {budget: _compressed(folder / f"b{budget}") for budget in budgets},
            "checkpoint_bytes": (folder / "model.pt").stat().st_size,
            "source_weights_bytes": (folder / "weights.pt").stat().st_size,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    training = sub.add_parser("train", help="train one framework's network")
    training.add_argument("--framework", choices=FRAMEWORKS, required=True)
    training.add_argument("--epochs", type=int, default=4)
    training.add_argument("--batch-size", type=int, default=128)
    training.add_argument("--lr", type=float, default=2e-3)
    training.add_argument("--seed", type=int, default=0)
    training.add_argument(
        "--train-images", type=int, default=None, help="images per epoch (a fixed subset; default all)"
    )
    measuring = sub.add_parser(
        "measure", help="check the imports, gather accuracies and storage, write the result JSON"
    )
    measuring.add_argument("--budgets", nargs="+", default=["0.2", "1.0"])
    for stage in (training, measuring):
        stage.add_argument("--data-root", type=Path, required=True)
        stage.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.stage == "train":
        train(
            args.framework,
            args.data_root,
            args.out,
            args.epochs,
            args.batch_size,
            args.lr,
            args.seed,
            args.train_images,
        )
        return
    from albsnn_compress.interop.chain import package_version
    from benchmarks.machine import write_result

    results = measure(args.data_root, args.out, args.budgets)
    versions = {name: package_version(name) for name in ("torch", "snntorch", "spikingjelly", "nir", "nirtorch")}
    path = write_result(
        "interop-tutorial",
        {"timesteps": T, "frameworks": results, "framework_versions": versions},
        module="benchmarks.interop_tutorial",
        argv=argv,
    )
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
