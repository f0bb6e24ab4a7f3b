"""``albsnn-compress import``: bring a network trained elsewhere (NIR, snnTorch, SpikingJelly) in as a checkpoint.

\b
albsnn-compress import net.nir --dataset fashion-mnist --timesteps 4 -o model.pt
albsnn-compress import --from snntorch --factory my_models.py:build_net --weights w.pt \\
    --input-shape 1,28,28 --dataset fashion-mnist --timesteps 4 -o model.pt
albsnn-compress import --from snntorch --factory tutorial.py:Net --weights w.pt --dataset fashion-mnist -o model.pt

The factory returns an nn.Sequential (looped --timesteps times) or a model class with its own forward(),
whose time loop is traced (docs/interop.md).

The checkpoint is then compressed as usual (``albsnn-compress model.pt --budget 0.2``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.data.registry import DATASETS, dataset_info
from albsnn_compress.errors import InteropError
from albsnn_compress.files.output_paths import check_output_file, writing
from albsnn_compress.snn.spec import SpikingNet

__all__ = ["command", "read_nir_file"]

FRAMEWORKS = ("nir", "snntorch", "spikingjelly")
_READER = "albsnn_compress.formats.nir.read"

_T = TypeVar("_T")


def _numbers(text: str | None, what: str, cast: Callable[[str], _T]) -> list[_T] | None:
    if text is None:
        return None
    try:
        return [cast(part) for part in text.split(",")]
    except ValueError as exc:  # int("x") / float("x"): the option's text, named
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers", param_hint=what) from exc


def read_nir_file(path: Path, timesteps: int | None, mean: list[float] | None, std: list[float] | None) -> SpikingNet:
    """``formats.nir.read.read_nir`` if this build has it, else a one-line refusal.

    Raises:
        InteropError: the NIR reader is not in this build, or the ``nir`` package is missing.
    """
    try:
        from albsnn_compress.formats.nir.read import read_nir
    except ModuleNotFoundError as exc:
        if exc.name is not None and (_READER + ".").startswith(exc.name + "."):  # the reader itself (or its folder)
            raise InteropError("NIR import is not available in this build") from exc
        if exc.name is None or exc.name.startswith("albsnn_compress"):
            raise  # a module of ours that the reader imports is missing: a broken install or a bug, not user input
        raise InteropError(
            f"NIR import needs the {exc.name!r} package: pip install 'albsnn-compress[interop]'"
        ) from exc
    return read_nir(path, timesteps=timesteps, mean=mean, std=std)


def _from_factory(
    framework: str,
    factory: str,
    weights: Path | None,
    shape: tuple[int, ...],
    timesteps: int | None,
    mean: list[float] | None,
    std: list[float] | None,
    num_classes: int,
    trace_batch: int | None,
) -> SpikingNet:
    """Build the factory's network, load ``weights`` into it and import it from ``framework``."""
    from albsnn_compress.interop import from_snntorch, from_spikingjelly
    from albsnn_compress.interop.sources import load_factory_net, load_weights

    net = load_factory_net(factory)
    if weights is not None:
        load_weights(net, weights)
    convert = from_snntorch if framework == "snntorch" else from_spikingjelly
    if trace_batch is not None:
        return convert(net, shape, timesteps, mean=mean, std=std, num_classes=num_classes, trace_batch=trace_batch)
    return convert(net, shape, timesteps, mean=mean, std=std, num_classes=num_classes)


@click.command("import")
@click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--from",
    "framework",
    type=click.Choice(FRAMEWORKS),
    default=None,
    help="Framework the network comes from (default: nir, for a SOURCE file).",
)
@click.option(
    "--factory",
    metavar="FILE.py:FUNCTION",
    default=None,
    help="Python file and function (or class) that build the snnTorch/SpikingJelly network (runs your code).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="State dict loaded into the factory's network (read with torch.load(weights_only=True)).",
)
@click.option("--input-shape", metavar="C,H,W", default=None, help="Input image shape (default: the dataset's).")
@click.option(
    "--dataset", type=click.Choice(sorted(DATASETS)), required=True, help="Dataset the model will be compressed on."
)
@click.option(
    "--timesteps",
    "-T",
    type=click.IntRange(min=1),
    default=None,
    help="Time steps per image of the imported model (required for an nn.Sequential; a model class's forward() "
    "loop and a NIR file may record it).",
)
@click.option(
    "--trace-batch",
    type=click.IntRange(min=1),
    default=None,
    help="Images a model class's forward() is traced on (default 2); the batch size it hard-codes, if it does.",
)
@click.option(
    "--mean",
    default=None,
    metavar="M[,M...]",
    help="Per-channel mean the model subtracts from [0, 1] pixels (default 0).",
)
@click.option("--std", default=None, metavar="S[,S...]", help="Per-channel std the model divides by (default 1).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (model.pt).",
)
def command(
    source: Path | None,
    framework: str | None,
    factory: str | None,
    weights: Path | None,
    input_shape: str | None,
    dataset: str,
    timesteps: int | None,
    mean: str | None,
    std: str | None,
    trace_batch: int | None,
    output: Path,
) -> None:
    """Import a NIR file or an snnTorch/SpikingJelly network as a checkpoint to compress."""
    framework = framework or ("nir" if source is not None else None)
    if framework is None:
        raise click.UsageError("give a NIR file, or --from snntorch|spikingjelly with --factory FILE.py:FUNCTION")
    origin: dict[str, Any]
    if framework == "nir":
        if source is None or factory or weights or trace_batch is not None or input_shape is not None:
            raise click.UsageError(
                "--from nir takes a .nir file as SOURCE and no --factory/--weights/--trace-batch/--input-shape "
                "(the file declares its input shape)"
            )
        check_output_file(output)  # a missing or unwritable folder, a file on the way: refused before the import
        model = read_nir_file(source, timesteps, _numbers(mean, "--mean", float), _numbers(std, "--std", float))
        origin = {"file": source.name}
    else:
        if source is not None or not factory:
            raise click.UsageError(
                f"--from {framework} takes --factory FILE.py:FUNCTION (and --weights), not a SOURCE file"
            )
        check_output_file(output)
        means, stds = _numbers(mean, "--mean", float), _numbers(std, "--std", float)
        shape = tuple(_numbers(input_shape, "--input-shape", int) or dataset_info(dataset).input_shape)
        num_classes = dataset_info(dataset).num_classes
        model = _from_factory(framework, factory, weights, shape, timesteps, means, stds, num_classes, trace_batch)
        origin = {"factory": factory, "weights": weights.name if weights else None}
    from albsnn_compress.interop.sources import import_metadata

    metadata = import_metadata(model, dataset, origin)
    with writing(output):
        save_checkpoint(output, model, metadata)
    layers = model.spec["layers"]
    neurons = sum(layer["type"] == "lif" for layer in layers)
    click.echo(
        f"{framework}: {len(layers)} layers ({neurons} spiking), input {list(model.spec['input']['shape'])}, "
        f"T={model.timesteps} -> {output}"
    )
