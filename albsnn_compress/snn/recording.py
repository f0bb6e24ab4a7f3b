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

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from torch import nn

from albsnn_compress.snn.neurons import LIF

__all__ = ["Keep", "lif_modules", "output_only", "record_outputs", "recorded_outputs"]

Keep = Callable[[nn.Module, tuple[Any, ...], Any], Any]
"""What to keep of one call: ``keep(module, inputs, output)``."""


def output_only(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> Any:
    """A call's output; for neurons that return ``(spikes, membrane)`` (snnTorch), the spikes."""
    return output[0] if isinstance(output, tuple) else output


def lif_modules(model: nn.Module) -> list[LIF]:
    """The model's LIF neurons in module order (the order they fire in a chain)."""
    return [module for module in model.modules() if isinstance(module, LIF)]


class _EnoughRecorded(Exception):
    """Ends a forward pass once every output a caller asked for is recorded."""


@contextmanager
def record_outputs(
    modules: Sequence[nn.Module], keep: Keep = output_only, stop_after: Mapping[nn.Module, int] | None = None
) -> Iterator[list[list[Any]]]:
    """Within the block, keep what each of ``modules`` computes, one list per module, call by call.

    ``outputs[k]`` holds ``keep(module, inputs, output)`` for every call of ``modules[k]`` in
    call order: one entry per forward pass for a neuron that runs all time steps at once (ours),
    one per time step for a neuron called step by step (snnTorch, SpikingJelly single-step).
    A module listed twice is recorded into both lists. The hooks are removed when the block
    ends, also when it raises.

    Args:
        modules: the modules to watch.
        keep: what to keep of a call (default: its output, spikes only for ``(spikes, membrane)``).
        stop_after: cut the forward pass short once ``module`` has been recorded that many times
            (nothing later in the network can change what was recorded): the rest of the block is
            skipped, so the block should hold one forward pass.

    Yields:
        The lists, filled as the block runs forward passes.
    """
    outputs: list[list[Any]] = [[] for _ in modules]
    limits = stop_after or {}

    def hook_for(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            outputs[index].append(keep(module, inputs, output))
            if len(outputs[index]) == limits.get(module, -1):
                raise _EnoughRecorded

        return hook

    handles = [module.register_forward_hook(hook_for(index)) for index, module in enumerate(modules)]
    try:
        yield outputs
    except _EnoughRecorded:
        pass
    finally:
        for handle in handles:
            handle.remove()


def recorded_outputs(
    model: nn.Module,
    inputs: Any,
    modules: Sequence[nn.Module],
    keep: Keep = output_only,
    stop_after: Mapping[nn.Module, int] | None = None,
) -> dict[nn.Module, list[Any]]:
    """What each of ``modules`` computes in one forward pass of ``model`` on ``inputs``, by module.

    The pass is cut short by ``stop_after`` as in :func:`record_outputs`; a module listed twice
    is recorded once.
    """
    watched = list(dict.fromkeys(modules))
    with record_outputs(watched, keep, stop_after) as outputs:
        model(inputs)
    return dict(zip(watched, outputs))
