"""Stateless torch layers as spec layers: what ``Conv2d``, ``BatchNorm2d``, pooling, ... become, exactly.

The import chain (:func:`.chain.import_chain`) uses this for ``torch.nn`` modules of
both frameworks (and SpikingJelly's ``layer.*`` subclasses of them, which only add
multi-step folding). Each framework's table says which
exact classes mean which kind (:data:`TORCH_KINDS`): a subclass might override
``forward`` (SpikingJelly's weight-standardized ``WSConv2d`` does), so it is
refused rather than trusted. Each mapping copies the tensors unchanged and
refuses any setting with no exact spec form (dilation, padding on a pool, a
``ceil_mode`` that changes the output, batch statistics at inference, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:  # the builder is passed in; chain.py imports this module to run the chain
    from albsnn_compress.interop.chain import ChainBuilder, Link

__all__ = ["LayerKind", "TORCH_KINDS", "TORCH_SUPPORTED", "add_torch_layer"]

LayerKind = Literal["conv", "linear", "bn2d", "bn1d", "avgpool", "maxpool", "adaptive", "flatten", "skip"]
"""Which mapping a stateless layer takes (``skip``: identity at inference, no layer)."""

_M = TypeVar("_M", bound=nn.Module)

TORCH_KINDS: dict[type[nn.Module], LayerKind] = {
    nn.Conv2d: "conv",
    nn.Linear: "linear",
    nn.BatchNorm2d: "bn2d",
    nn.BatchNorm1d: "bn1d",
    nn.AvgPool2d: "avgpool",
    nn.MaxPool2d: "maxpool",
    nn.AdaptiveAvgPool2d: "adaptive",
    nn.Flatten: "flatten",
    nn.Dropout: "skip",
    nn.Dropout2d: "skip",
    nn.Identity: "skip",
}
"""Exact ``torch.nn`` classes and the kind of layer each maps to (``skip``: identity at inference)."""

TORCH_SUPPORTED = (
    "Conv2d (square kernel, zero padding, no dilation), Linear, BatchNorm1d/2d (running statistics), "
    "AvgPool2d/MaxPool2d (no padding), AdaptiveAvgPool2d(1) followed by Flatten, Flatten, Dropout/Identity (skipped)"
)


def _pair(value: Any) -> tuple[Any, ...]:
    """A torch size setting (``3`` or ``(3, 3)``) as a tuple, for comparing both sides."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _as(module: nn.Module, cls: type[_M]) -> _M:
    """``module`` as the class its kind promises; a table that maps a class to the wrong kind is our bug, not input."""
    if not isinstance(module, cls):
        raise AssertionError(f"the kinds table maps {type(module).__name__} to a {cls.__name__} kind")
    return module


def _square(builder: ChainBuilder, link: Link, value: Any, what: str) -> int:
    first, second = _pair(value)
    if first != second or type(first) is not int:
        builder.refuse(link, f"{what} {value!r} is not square (our layers take one size for height and width)")
    return first


def _conv(builder: ChainBuilder, link: Link, conv: nn.Conv2d) -> None:
    kernel = _square(builder, link, conv.kernel_size, "kernel_size")
    stride = _square(builder, link, conv.stride, "stride")
    if _pair(conv.dilation) != (1, 1):
        builder.refuse(link, f"dilation {conv.dilation} (only 1 maps)")
    if conv.padding_mode != "zeros":
        builder.refuse(link, f"padding_mode {conv.padding_mode!r} (only 'zeros' maps)")
    if conv.padding == "valid":
        padding = 0
    elif conv.padding == "same":
        if kernel % 2 == 0:
            builder.refuse(link, f"padding='same' with the even kernel {kernel} pads unevenly")
        padding = (kernel - 1) // 2
    else:
        padding = _square(builder, link, conv.padding, "padding")
    if builder.shape and len(builder.shape) == 3 and builder.shape[0] != conv.in_channels:
        builder.refuse(link, f"it takes {conv.in_channels} input channels, the layers before give {builder.shape[0]}")
    builder.add(
        link,
        {
            "type": "conv",
            "out_channels": conv.out_channels,
            "kernel_size": kernel,
            "stride": stride,
            "padding": padding,
            "groups": conv.groups,
            "bias": conv.bias is not None,
        },
        {"weight": conv.weight, "bias": conv.bias},
    )


def _linear(builder: ChainBuilder, link: Link, linear: nn.Linear) -> None:
    if len(builder.shape) == 1 and builder.shape[0] != linear.in_features:
        builder.refuse(link, f"it takes {linear.in_features} input features, the layers before give {builder.shape[0]}")
    builder.add(
        link,
        {"type": "linear", "out_features": linear.out_features, "bias": linear.bias is not None},
        {"weight": linear.weight, "bias": linear.bias},
    )


def _batch_norm(builder: ChainBuilder, link: Link, norm: nn.modules.batchnorm._BatchNorm, rank: int) -> None:
    if len(builder.shape) != rank:
        wanted = "[C, H, W] maps" if rank == 3 else "flat features"
        builder.refuse(link, f"it normalizes {wanted}, the layers before give shape {list(builder.shape)}")
    if builder.shape[0] != norm.num_features:
        builder.refuse(link, f"it has {norm.num_features} features, the layers before give {builder.shape[0]} channels")
    if not norm.track_running_stats or norm.running_mean is None or norm.running_var is None:
        builder.refuse(link, "track_running_stats=False: at inference it normalizes with each batch's own statistics")
    momentum = 0.1 if norm.momentum is None else float(norm.momentum)  # momentum only matters when finetuning
    ones = torch.ones(norm.num_features)
    builder.add(
        link,
        {"type": "bn", "eps": float(norm.eps), "momentum": momentum},
        {
            "weight": norm.weight if norm.affine else ones,
            "bias": norm.bias if norm.affine else torch.zeros_like(ones),
            "running_mean": norm.running_mean,
            "running_var": norm.running_var,
            "num_batches_tracked": norm.num_batches_tracked,
        },
    )


def _pool(builder: ChainBuilder, link: Link, pool: nn.AvgPool2d | nn.MaxPool2d, kind: LayerKind) -> None:
    kernel = _square(builder, link, pool.kernel_size, "kernel_size")
    stride = _square(builder, link, pool.stride if pool.stride is not None else pool.kernel_size, "stride")
    if _pair(pool.padding) != (0, 0):
        builder.refuse(link, f"padding {pool.padding} (only 0 maps)")
    if isinstance(pool, nn.MaxPool2d) and (_pair(pool.dilation) != (1, 1) or pool.return_indices):
        builder.refuse(link, "dilation or return_indices (neither maps)")
    if isinstance(pool, nn.AvgPool2d) and pool.divisor_override is not None:
        builder.refuse(link, f"divisor_override={pool.divisor_override} (only the mean maps)")
    if pool.ceil_mode and len(builder.shape) == 3 and any((size - kernel) % stride for size in builder.shape[1:]):
        builder.refuse(
            link, f"ceil_mode=True adds a partial window on input {list(builder.shape)} (only whole windows map)"
        )
    builder.add(link, {"type": kind, "kernel_size": kernel, "stride": stride})


def _flatten_ok(module: nn.Module) -> bool:
    return isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1


def add_torch_layer(
    builder: ChainBuilder, links: list[Link], index: int, kinds: Mapping[type[nn.Module], LayerKind]
) -> int:
    """Map ``links[index]`` (a module of kind ``kinds[type]``) onto ``builder``; returns how many links it used.

    ``AdaptiveAvgPool2d(1)`` followed by ``Flatten`` become one ``gap`` layer (2 links); every other module
    is one.

    Raises:
        InteropError: a setting has no exact spec form, or the layer does not fit the shape before it.
    """
    link = links[index]
    module, kind = link.module, kinds[type(link.module)]
    if kind == "conv":
        _conv(builder, link, _as(module, nn.Conv2d))
    elif kind == "linear":
        _linear(builder, link, _as(module, nn.Linear))
    elif kind in ("bn2d", "bn1d"):
        _batch_norm(builder, link, _as(module, nn.modules.batchnorm._BatchNorm), 3 if kind == "bn2d" else 1)
    elif kind == "avgpool":
        _pool(builder, link, _as(module, nn.AvgPool2d), kind)
    elif kind == "maxpool":
        _pool(builder, link, _as(module, nn.MaxPool2d), kind)
    elif kind == "flatten":
        flatten = _as(module, nn.Flatten)
        if not _flatten_ok(flatten):
            builder.refuse(
                link, f"start_dim={flatten.start_dim}, end_dim={flatten.end_dim} (only 1 and -1, per sample, map)"
            )
        builder.add(link, {"type": "flatten"})
    elif kind == "adaptive":
        output_size = _as(module, nn.AdaptiveAvgPool2d).output_size
        following = links[index + 1].module if index + 1 < len(links) else None
        if (
            _pair(output_size) != (1, 1)
            or following is None
            or kinds.get(type(following)) != "flatten"
            or not _flatten_ok(following)
        ):
            builder.refuse(
                link,
                "only AdaptiveAvgPool2d(1) directly followed by Flatten() maps (our gap); "
                f"got output_size {output_size!r}",
            )
        builder.add(link, {"type": "gap"})
        return 2
    return 1  # skip: identity at inference
