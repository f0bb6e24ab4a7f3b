"""Record what chosen modules compute during forward passes: the one place that hooks neurons.

The C export's trace, the NIR agreement check and the interop checks all need a
network's spikes layer by layer (ours, snnTorch's or SpikingJelly's neurons). They
call :func:`record_outputs` around their forward passes instead of managing
forward hooks themselves, so a hook is never left behind on a user's model.

Example:
    >>> import torch
    >>> from albsnn_compress.snn.neurons import LIF
    >>> lif = LIF()
    >>> with record_outputs([lif]) as outputs:
    ...     _ = lif(torch.ones(2, 1, 3))
    >>> [tuple(step.shape) for step in outputs[0]]
    [(2, 1, 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import nn

from albsnn_compress.snn.neurons import LIF

__all__ = ["Keep", "lif_modules", "output_only", "record_outputs"]

Keep = Callable[[nn.Module, tuple[Any, ...], Any], Any]
"""What to keep of one call: ``keep(module, inputs, output)``."""


def output_only(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> Any:
    """A call's output; for neurons that return ``(spikes, membrane)`` (snnTorch), the spikes."""
    return output[0] if isinstance(output, tuple) else output


def lif_modules(model: nn.Module) -> list[LIF]:
    """The model's LIF neurons in module order (the order they fire in a chain)."""
    return [module for module in model.modules() if isinstance(module, LIF)]


@contextmanager
def record_outputs(modules: Sequence[nn.Module], keep: Keep = output_only) -> Iterator[list[list[Any]]]:
    """Within the block, keep what each of ``modules`` computes, one list per module, call by call.

    ``outputs[k]`` holds ``keep(module, inputs, output)`` for every call of ``modules[k]`` in
    call order: one entry per forward pass for a neuron that runs all time steps at once (ours),
    one per time step for a neuron called step by step (snnTorch, SpikingJelly single-step).
    A module listed twice is recorded into both lists. The hooks are removed when the block
    ends, also when it raises.

    Args:
        modules: the modules to watch.
        keep: what to keep of a call (default: its output, spikes only for ``(spikes, membrane)``).

    Yields:
        The lists, filled as the block runs forward passes.
    """
    outputs: list[list[Any]] = [[] for _ in modules]

    def hook_for(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            outputs[index].append(keep(module, inputs, output))

        return hook

    handles = [module.register_forward_hook(hook_for(index)) for index, module in enumerate(modules)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
