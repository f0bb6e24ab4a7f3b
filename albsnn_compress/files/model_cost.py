"""What a model costs to hold and to run, from its spec alone, and the limits the readers enforce.

A checkpoint or container says how big its model is (the architecture spec and
the time steps ``T``) before any tensor is read. These functions turn that into
bytes with integer arithmetic only (:func:`albsnn_compress.snn.spec.spec_bounds`
and the layer types' output shapes), so a 2 KB file that claims a huge model is
measured, and refused, before anything is allocated.

The memory of one forward pass (no gradients, CPU) of a batch of ``B`` images:
the network normalizes the ``[B, C, H, W]`` input (a flat spec's ``[B, F]``; images
given to a flat model are flattened as a view, which costs nothing), runs the layers ahead of the
first neuron once (:func:`~albsnn_compress.snn.spec.shared_layer_count`), repeats
their output over ``T`` steps as a view and runs the rest on ``[T, B, ...]``.
While a layer runs, its input, its output and up to five output-sized temporaries
are alive (a LIF layer at ``T = 1`` holds the scaled input, the membrane, the
membrane minus the threshold, the spikes and their stacked copy; oneDNN reorders
a convolution's output), and the previous layer's tensors are freed. So, in
float32 elements, with ``T_l`` = 1 for the layers run once and ``T`` for the rest::

    inference_elements = B * (input + max over layers T_l * (in_l + 6 * out_l))

with ``input`` the elements of one sample (``C*H*W``, or ``F``): the same formula for images and
feature vectors, since every term is an element count of the layers' shapes.

and :func:`inference_bytes` is four times that. It counts activations only, not
the weights (:func:`parameter_bytes`) nor the dataset. ``tests/test_model_cost.py``
checks it against the measured peak of real forward passes.

Limits (``docs/format.md`` lists them with the container's own):

* :data:`MAX_TIMESTEPS` = 4096 time steps.
* :data:`MAX_ACTIVATION` = 2^22 elements (16 MiB as float32) in one layer's
  output for one sample.
* :data:`MAX_INFERENCE_BYTES` = 1 GiB for the activations of one forward pass.
  A file whose single sample needs more is refused when it is read;
  :func:`fitting_batch_size` picks the batch that ``eval`` runs so that a batch
  stays below it.

Example:
    >>> from albsnn_compress.snn.presets import make_preset
    >>> spec = make_preset("fmnist-vgg", [1, 28, 28], 10, [0.286], [0.353])
    >>> inference_bytes(spec, timesteps=1, batch=1)  # 4 * (784 + 1 * (25088 + 6 * 25088)): conv2's bn and lif
    705600
"""

from __future__ import annotations

import math
from typing import Any

from albsnn_compress.snn.spec import layer_shapes, shared_layer_count, spec_bounds

__all__ = [
    "MAX_TIMESTEPS",
    "MAX_ACTIVATION",
    "MAX_INFERENCE_BYTES",
    "FLOAT_BYTES",
    "activation_sizes",
    "inference_bytes",
    "parameter_bytes",
    "fitting_batch_size",
    "cost_problem",
]

MAX_TIMESTEPS = 4096
MAX_ACTIVATION = 1 << 22
MAX_INFERENCE_BYTES = 1 << 30
FLOAT_BYTES = 4  # the model runs in float32


def activation_sizes(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """``(input elements, output elements)`` per sample and time step of every layer of a normalized spec."""
    return [(math.prod(shape_in), math.prod(shape_out)) for shape_in, shape_out in layer_shapes(spec)]


def inference_bytes(spec: dict[str, Any], timesteps: int, batch: int) -> int:
    """Bytes of activations a forward pass of ``batch`` images needs at ``timesteps`` steps (see module docs).

    Args:
        spec: a normalized spec (:func:`albsnn_compress.snn.spec.normalize_spec`).
        timesteps: the simulation steps ``T``.
        batch: images per forward pass.
    """
    shared = shared_layer_count(spec)
    widest = max(
        (1 if index < shared else timesteps) * (size_in + 6 * size_out)
        for index, (size_in, size_out) in enumerate(activation_sizes(spec))
    )
    input_size: int = math.prod(spec["input"]["shape"])
    return FLOAT_BYTES * batch * (input_size + widest)


def parameter_bytes(spec: dict[str, Any]) -> int:
    """Bytes of the built model's stored tensors (float32 parameters and persistent buffers)."""
    return FLOAT_BYTES * spec_bounds(spec)[0]


def fitting_batch_size(spec: dict[str, Any], timesteps: int, requested: int, limit: int = MAX_INFERENCE_BYTES) -> int:
    """The largest batch of at most ``requested`` images whose forward pass stays within ``limit`` bytes (at least
    1)."""
    per_sample = inference_bytes(spec, timesteps, 1)
    return max(1, min(requested, limit // per_sample))


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def cost_problem(spec: dict[str, Any], timesteps: int) -> str | None:
    """The first limit a normalized spec run at ``timesteps`` steps breaks, as a message; ``None`` if it fits.

    The message starts with the field (``'timesteps'`` or ``'spec'``) and gives the
    number found, the limit and the fix; the reader adds the file and raises its
    own error type. Integer arithmetic only: nothing is allocated.
    """
    if timesteps > MAX_TIMESTEPS:
        return f"'timesteps': {timesteps} time steps, at most {MAX_TIMESTEPS} allowed"
    _, largest = spec_bounds(spec)
    if largest > MAX_ACTIVATION:
        return (
            f"'spec': a layer outputs {largest} elements per sample (at most {MAX_ACTIVATION}); "
            "use fewer channels, less padding or more pooling"
        )
    needed = inference_bytes(spec, timesteps, 1)
    if needed > MAX_INFERENCE_BYTES:
        return (
            f"'timesteps': a forward pass of one image at T={timesteps} needs {_size(needed)} of activations "
            f"(at most {_size(MAX_INFERENCE_BYTES)}); use fewer time steps or smaller layers"
        )
    return None
