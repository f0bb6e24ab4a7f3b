"""``albsnn-compress import``: bring a network trained elsewhere (NIR, snnTorch, SpikingJelly) in as a checkpoint.

\b
albsnn-compress import net.nir --dataset fashion-mnist --timesteps 4 -o model.pt
albsnn-compress import --from snntorch --factory my_models.py:build_net --weights w.pt \\
    --input-shape 1,28,28 --dataset fashion-mnist --timesteps 4 -o model.pt

The checkpoint is then compressed as usual (``albsnn-compress model.pt --budget 0.2``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import click

from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.data.registry import DATASETS, dataset_info
from albsnn_compress.errors import InteropError
from albsnn_compress.files.output_paths import check_output_file, writing

__all__ = ["command", "read_nir_file"]

FRAMEWORKS = ("nir", "snntorch", "spikingjelly")


def _numbers(text: str | None, what: str, cast: type) -> list[Any] | None:
    if text is None:
        return None
    try:
        return [cast(part) for part in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers", param_hint=what) from None


def read_nir_file(path: Path, timesteps: int | None, mean: list[float] | None, std: list[float] | None) -> Any:
    """``formats.nir_read.read_nir`` if this build has it, else a one-line refusal."""
    try:
        from albsnn_compress.formats.nir.read import read_nir
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("albsnn_compress"):
            raise InteropError("NIR import is not available in this build") from None
        raise InteropError(
            f"NIR import needs the {exc.name!r} package: pip install 'albsnn-compress[interop]'"
        ) from None
    kwargs = {key: value for key, value in (("mean", mean), ("std", std)) if value is not None}
    unknown = sorted(set(kwargs) - set(inspect.signature(read_nir).parameters))
    if unknown:
        raise InteropError(f"--{'/--'.join(unknown)}: this build's NIR reader does not take them")
    return read_nir(path, timesteps=timesteps, **kwargs)


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
    help="Python file and function that build the snnTorch/SpikingJelly network (runs your code).",
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
    help="Time steps per image of the imported model (required, except for a NIR file that records it).",
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
    output: Path,
) -> None:
    """Import a NIR file or an snnTorch/SpikingJelly network as a checkpoint to compress."""
    framework = framework or ("nir" if source is not None else None)
    if framework is None:
        raise click.UsageError("give a NIR file, or --from snntorch|spikingjelly with --factory FILE.py:FUNCTION")
    if framework == "nir" and (source is None or factory or weights):
        raise click.UsageError("--from nir takes a .nir file as SOURCE and no --factory/--weights")
    if framework != "nir" and (source is not None or not factory):
        raise click.UsageError(
            f"--from {framework} takes --factory FILE.py:FUNCTION (and --weights), not a SOURCE file"
        )
    if framework != "nir" and timesteps is None:
        raise click.UsageError(f"--from {framework} needs --timesteps T (the network has no fixed number of steps)")
    check_output_file(output)  # a missing or unwritable folder, a file on the way: refused before the import
    means, stds = _numbers(mean, "--mean", float), _numbers(std, "--std", float)
    shape = tuple(_numbers(input_shape, "--input-shape", int) or dataset_info(dataset).input_shape)
    if framework == "nir":
        model = read_nir_file(source, timesteps, means, stds)  # type: ignore[arg-type]
        origin = {"file": source.name}  # type: ignore[union-attr]
    else:
        from albsnn_compress.interop import from_snntorch, from_spikingjelly
        from albsnn_compress.interop.sources import load_factory_net, load_weights

        net = load_factory_net(factory)  # type: ignore[arg-type]
        if weights is not None:
            load_weights(net, weights)
        convert = from_snntorch if framework == "snntorch" else from_spikingjelly
        model = convert(
            net,
            shape,
            timesteps,
            mean=means,  # type: ignore[arg-type]
            std=stds,
            num_classes=dataset_info(dataset).num_classes,
        )
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
