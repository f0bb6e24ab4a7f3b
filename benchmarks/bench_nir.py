"""NIR agreement: a compressed model exported to NIR and run in snnTorch and SpikingJelly, against our PyTorch model.

For each ``T`` (the same weights rebuilt at ``T`` steps) the model is written with
:func:`~albsnn_compress.formats.nir.write.export_nir`, read back by snnTorch's
``import_from_nir`` and SpikingJelly's ``nir_exchange.import_from_nir``, and run on the test
split; :func:`~albsnn_compress.formats.nir.check.compare` counts identical predictions, the
largest logit difference, and traces every image whose logits differ by more than 1e-4 to
its first spike flip (a tie when our membrane is within 1e-4 of the threshold there). The
result also records each runtime's test accuracy, the file sizes, which layers the NIR file
holds as binary up to a scale, whether ``read_nir`` gives back the folded model exactly, and
the versions of the frameworks.

Run from the repository root (the model: ``albsnn-compress benchmarks/checkpoints/fmnist-vgg-T1.pt
--budget 1.0 --data-root ../shared/datasets --seed 0 -o /work/runs/nir-b1``)::

    python -m benchmarks.bench_nir --model /work/runs/nir-b1/fmnist-vgg-T1.albsnn \\
        --dataset fashion-mnist --data-root ../shared/datasets --timesteps 1,4
    python -m benchmarks.bench_nir --quick      # a random digits-small net, 100 digits, T=1

snnTorch runs one image at a time (its importer maps NIR's ``Flatten`` to ``nn.Flatten(0)``,
which would flatten a batch), so it takes minutes on the 10,000 FashionMNIST test images.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers
from albsnn_compress.data import load_split
from albsnn_compress.formats.nir.check import compare, model_runner, snntorch_runner, spikingjelly_runner
from albsnn_compress.formats.nir.read import read_nir
from albsnn_compress.formats.nir.write import export_nir, fold_batch_norm
from albsnn_compress.model_file import load_model_file
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from benchmarks.machine import write_result

RUNNERS = {"spikingjelly": spikingjelly_runner, "snntorch": snntorch_runner}


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "nir", "nirtorch", "snntorch", "spikingjelly", "h5py"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(dim=1) == labels).float().mean())


def _exact_round_trip(model: SpikingNet, path: Path, images: torch.Tensor) -> bool:
    """``read_nir`` of the file is the folded model: same spec, same tensors, equal outputs."""
    back, (folded, _) = read_nir(path), fold_batch_norm(model)
    if back.spec != folded.spec or binarized_layers(back) != binarized_layers(folded):
        return False
    mine, theirs = back.state_dict(), folded.state_dict()
    if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
        return False
    with torch.inference_mode():
        return torch.equal(back(images), folded(images))


def run(
    model: SpikingNet, images: torch.Tensor, labels: torch.Tensor, timesteps: list[int], frameworks: list[str]
) -> dict[str, Any]:
    """Export at each T, run every framework, compare; returns the result's payload."""
    torch.set_num_threads(1)
    rows, files = [], {}
    trained_steps = model.timesteps
    with tempfile.TemporaryDirectory() as folder:
        for steps in timesteps:
            model.timesteps = steps
            info = export_nir(model, Path(folder) / f"model-T{steps}.nir")
            files[str(steps)] = {"bytes": info.file_bytes, "nodes": list(info.nodes)}
            started = time.perf_counter()
            reference = torch.cat([model_runner(model)(batch, False).logits for batch in images.split(256)])
            ours_seconds = time.perf_counter() - started
            exact = _exact_round_trip(model, info.path, images[:256])
            for name in frameworks:
                started = time.perf_counter()
                runner = RUNNERS[name](info.path, steps)
                theirs = torch.cat([runner(batch, False).logits for batch in images.split(256)])
                seconds = time.perf_counter() - started
                agreement = compare(model, runner, images, reference=reference, logits=theirs)
                rows.append(
                    {
                        "timesteps": steps,
                        "framework": name,
                        **agreement.to_dict(),
                        "accuracy_ours": _accuracy(reference, labels),
                        "accuracy_theirs": _accuracy(theirs, labels),
                        "ok": agreement.ok(),
                        "seconds": seconds,
                        "seconds_ours": ours_seconds,
                        "read_nir_exact": exact,
                    }
                )
                print(
                    f"T={steps} {name}: {agreement.identical_predictions}/{agreement.images} identical predictions, "
                    f"max |logit diff| {agreement.max_logit_diff:.3g} ({agreement.max_logit_diff_untied:.3g} untied), "
                    f"{len(agreement.ties)} ties, {len(agreement.unexplained)} unexplained, {seconds:.0f} s",
                    flush=True,
                )
    model.timesteps = trained_steps
    return {
        "runs": rows,
        "nir_files": files,
        "binary_layers": list(info.binary_layers),
        "folded_batch_norms": info.folded_batch_norms,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help=".albsnn container or model.pt checkpoint")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--timesteps", default="1,4", help="comma-separated T to rebuild the weights at")
    parser.add_argument("--frameworks", default="spikingjelly,snntorch")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--name", default=None, help="result file name (default nir-<dataset>-<model stem>)")
    parser.add_argument("--quick", action="store_true", help="a random binarized digits-small net on 100 digits, T=1")
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.limit, args.timesteps, args.name = "digits", 100, "1", args.name or "nir-quick"
        torch.manual_seed(0)
        model = SpikingNet(resolve_architecture("digits-small", "digits"), 1)
        binarize_(model, candidate_layers(model))
        source = "random digits-small"
    else:
        if args.model is None:
            parser.error("--model is required (or --quick)")
        model = load_model_file(args.model).model
        source = str(args.model)
    model.eval()
    test = load_split(args.dataset, args.data_root, "test")
    count = len(test) if args.limit is None else min(args.limit, len(test))
    images, labels = test.as_float()[:count], test.labels[:count].long()
    payload = run(model, images, labels, [int(t) for t in args.timesteps.split(",")], args.frameworks.split(","))
    payload.update(
        {
            "model": source,
            "dataset": args.dataset,
            "images": count,
            "binarized": binarized_layers(model),
            "model_file_bytes": args.model.stat().st_size if args.model else None,
            "versions": _versions(),
        }
    )
    name = args.name or f"nir-{args.dataset}-{Path(source).stem}"
    print(write_result(name, payload, module="benchmarks.bench_nir", argv=argv))


if __name__ == "__main__":
    main()
