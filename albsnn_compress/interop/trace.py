"""Import a model class with its own ``forward()``: trace one forward pass, find the per-step chain, map it.

snnTorch's tutorials and SpikingJelly's examples write networks as ``class Net(nn.Module)``
with the layers as attributes and the time loop in ``forward()``::

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        spk_rec = []
        for step in range(num_steps):
            spk1, mem1 = self.lif1(F.max_pool2d(self.conv1(x), 2), mem1)
            ...
            spk_rec.append(spk3)
        return torch.stack(spk_rec)

:func:`import_traced` runs that ``forward()`` once, on a copy of the network in eval mode with
its neurons at rest, on random images, and records two things:

* every call of a module the framework's table knows (a layer, a neuron, a container whose
  ``forward`` is a plain chain), or of a module without children, with its tensor inputs and
  outputs (:func:`~albsnn_compress.snn.recording.record_outputs`, the one way to hook modules);
* every torch function ``forward()`` calls between them (``F.max_pool2d``, ``x.view``,
  ``torch.stack``, ``+``, ...), with its arguments, through a ``TorchFunctionMode``.

Each tensor is then a value produced by one of these events, so the pass is a data-flow graph.
Walking it back from what ``forward()`` returns finds the readout (``torch.stack`` of per-step
outputs, its ``.mean(0)``, or the time-mean of a multi-step output), the time steps, and for
each step the chain of calls that computes its output from the input. The chain must be the
same at every step, each call must take the previous one's output (a view, ``flatten``,
``max_pool2d``, ``avg_pool2d`` or dropout between them maps to its layer), and a neuron that
is handed its state (snnTorch's ``spk, mem = lif(cur, mem)``) must be handed, at step ``t``,
what it returned at ``t - 1``, starting from zero. Anything else is refused with the
construct named: a branch or residual connection, a recurrent connection, another readout, a
functional call with no albsnn layer, an input encoding. The chain then goes through the same
per-module mapping as an ``nn.Sequential`` (:func:`~.chain.map_links`).

Why a recorded pass and not ``torch.fx``: a recorded pass runs the real code, so Python
control flow, ``mem = lif.init_leaky()``, tuple unpacking of a neuron's ``(spk, mem)`` and
SpikingJelly's stateful nodes need no special handling, and the values it sees let it check
what it recognises (the input repeated over time, a membrane that starts at zero) instead of
trusting names. ``fx`` would unroll the time loop just the same but needs every neuron declared
a leaf and fails on data-dependent Python. What one pass cannot see (a reset inside the loop,
control flow that depends on the data) is caught by running the imported network and the
source on the same images at the end: they must agree, or the import is refused.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from albsnn_compress.errors import InteropError, one_line
from albsnn_compress.interop.chain import (
    ChainBuilder,
    CheckedOptions,
    Framework,
    ImportOptions,
    Link,
    chain_of,
    check_kind,
    checked_options,
    flattened,
    import_chain,
    import_links,
    map_links,
)
from albsnn_compress.snn.recording import record_outputs
from albsnn_compress.snn.spec import SpikingNet

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

__all__ = ["import_model", "import_traced", "TRACED", "DEFAULT_TRACE_BATCH", "VERIFY_TOLERANCE"]

TRACED = (
    "a model class whose forward() runs, at every time step, one chain of the modules above on the same input "
    "(x.view/reshape/flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d(x, 1) and inactive dropout may sit "
    "between them), snnTorch neurons with init_hidden=True or with their membrane passed from step to step, and "
    "returns torch.stack(per-step outputs) or its .mean(0) (a tuple may add recorded states); or a multi-step chain "
    "on x.unsqueeze(0).expand/repeat(T, ...) and its .mean(0)"
)
"""What a traced model class may hold, listed in every refusal of the tracer."""

DEFAULT_TRACE_BATCH = 2
VERIFY_TOLERANCE = 1e-5
"""How far the imported network's output may be from the source's on the trace images (both compute the same
operations in the same order, so they agree bit for bit unless a construct the trace cannot see changes them)."""

_PROBE_SEED = 20240531


# -- the recorded pass: values, calls, operations ----------------------------------------------------------------


class _Input:
    """The input ``forward()`` is called with."""


class _Const:
    """A tensor no recorded event produced (a parameter, a buffer, something made before the pass)."""


@dataclass(eq=False)
class _Call:
    """One call of a watched module."""

    module: nn.Module
    path: str
    index: int
    """The call's number among that module's calls (0, 1, ...)."""
    inputs: tuple[_Value | None, ...]
    """Each positional argument: its value if a tensor, else ``None``."""
    zero: tuple[bool, ...]
    """Each positional argument: a tensor of zeros."""


@dataclass(eq=False)
class _Op:
    """One torch function called outside every watched module (or inside one: those are never reached)."""

    func: Callable[..., Any]
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    """The arguments with every tensor replaced by its :class:`_Value`."""
    inputs: tuple[_Value, ...]
    out_shapes: tuple[tuple[int, ...], ...]
    timed: tuple[_Value, int] | None = None
    """``(origin, T)`` when the output is ``origin`` repeated ``T`` times along a new first axis (checked on values)."""


@dataclass(frozen=True, eq=False)
class _Value:
    """A tensor of the pass: output ``index`` of ``node``."""

    node: _Input | _Const | _Call | _Op
    index: int
    shape: tuple[int, ...]

    def same(self, other: _Value | None) -> bool:
        return other is not None and other.node is self.node and other.index == self.index


_TIME_OPS = {
    "Tensor.unsqueeze",
    "torch.unsqueeze",
    "Tensor.expand",
    "Tensor.expand_as",
    "torch.broadcast_to",
    "Tensor.repeat",
    "torch.stack",
    "Tensor.contiguous",
    "Tensor.clone",
    "torch.clone",
}
"""Operations that may turn the input into the input repeated over time (checked on the values)."""


def _op_name(func: Callable[..., Any]) -> str:
    """``F.max_pool2d``, ``Tensor.view``, ``torch.stack``: how a message names a torch function."""
    name = str(getattr(func, "__name__", "") or repr(func))
    module = str(getattr(func, "__module__", "") or "")
    qualname = str(getattr(func, "__qualname__", "") or "")
    if func is F.max_pool2d:
        return "F.max_pool2d"
    if module.startswith("torch.nn.functional") or module == "torch._C._nn":
        return f"F.{name}"
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    if qualname.startswith("_VariableFunctionsClass.") or module == "torch":
        return f"torch.{name}"
    return qualname or name


class _Graph:
    """The data flow of one forward pass: every tensor as the value some event produced."""

    def __init__(self, x: torch.Tensor, paths: dict[nn.Module, str]) -> None:
        self.paths = paths
        self.calls: dict[nn.Module, list[_Call]] = {}
        self.paused = False
        self._values: dict[int, tuple[weakref.ref[torch.Tensor], _Value]] = {}
        self.input = _Value(_Input(), 0, tuple(x.shape))
        self._register(x, self.input)

    def _register(self, tensor: torch.Tensor, value: _Value) -> None:
        self._values[id(tensor)] = (weakref.ref(tensor), value)

    def value_of(self, tensor: torch.Tensor) -> _Value:
        """The value ``tensor`` holds; a tensor no event produced is a constant."""
        entry = self._values.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            return entry[1]
        value = _Value(_Const(), 0, tuple(tensor.shape))
        self._register(tensor, value)
        return value

    def operation(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Record ``out = func(*args, **kwargs)``: the inputs resolved first, then the outputs registered."""
        if self.paused:
            return
        name = _op_name(func)
        if name.endswith("__get__"):
            return  # x.shape, x.dtype: properties
        outputs = [leaf for leaf in tree_flatten(out)[0] if isinstance(leaf, torch.Tensor)]
        if not outputs:
            return
        leaves, spec = tree_flatten((args, kwargs))
        mapped = [self.value_of(leaf) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        values = tuple(m for m in mapped if isinstance(m, _Value))
        new_args, new_kwargs = tree_unflatten(mapped, spec)
        shapes = tuple(tuple(t.shape) for t in outputs)
        node = _Op(func, name, tuple(new_args), dict(new_kwargs), values, shapes)
        if name in _TIME_OPS and values:
            first = next(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))
            node.timed = self._timed(values[0], first, outputs[0])
        for index, tensor in enumerate(outputs):
            self._register(tensor, _Value(node, index, tuple(tensor.shape)))

    @staticmethod
    def _timed(source: _Value, tensor: torch.Tensor, out: torch.Tensor) -> tuple[_Value, int] | None:
        """``(origin, T)`` if ``out`` is ``origin`` repeated ``T`` times along a new first axis, by value."""
        if out.dim() == tensor.dim() + 1 and out.shape[1:] == tensor.shape and out.shape[0] >= 1:
            return (source, out.shape[0]) if torch.equal(out, tensor.unsqueeze(0).expand_as(out)) else None
        node = source.node
        if isinstance(node, _Op) and node.timed is not None and out.dim() == tensor.dim() and out.shape[0] >= 1:
            if out.shape[1:] == tensor.shape[1:] and torch.equal(out, tensor[:1].expand_as(out)):
                return node.timed[0], out.shape[0]
        return None

    def call(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        """Record one call of a watched module (from its forward hook)."""
        self.paused = True  # what this method computes is ours, not the network's
        try:
            values = tuple(self.value_of(i) if isinstance(i, torch.Tensor) else None for i in inputs)
            zero = tuple(isinstance(i, torch.Tensor) and not bool(i.any()) for i in inputs)
            calls = self.calls.setdefault(module, [])
            node = _Call(module, self.paths[module], len(calls), values, zero)
            calls.append(node)
            items = output if isinstance(output, (tuple, list)) else (output,)
            for index, tensor in enumerate(items):
                if isinstance(tensor, torch.Tensor):
                    self._register(tensor, _Value(node, index, tuple(tensor.shape)))
        finally:
            self.paused = False


class _Recorder(TorchFunctionMode):
    """Tells the graph of every torch function called while it is active."""

    def __init__(self, graph: _Graph) -> None:
        super().__init__()
        self.graph = graph

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.graph.operation(func, args, kwargs, out)
        return out


def _distinct(values: list[_Value]) -> list[_Value]:
    """``values`` without repeats (the same output of the same event)."""
    distinct: list[_Value] = []
    for value in values:
        if not any(value.same(other) for other in distinct):
            distinct.append(value)
    return distinct


_SHAPE_ONLY = {"torch.zeros_like", "torch.zeros", "Tensor.new_zeros"}
"""Operations whose output depends on their input's shape only (``mem = torch.zeros_like(cur)``)."""


# -- what a trace refusal says -----------------------------------------------------------------------------------


@dataclass
class _Tracer:
    """The analysis of one recorded pass of ``net``'s ``forward()``."""

    framework: Framework
    net: nn.Module
    graph: _Graph
    builder: ChainBuilder
    _live: dict[int, bool] = field(default_factory=dict)

    def refuse(self, reason: str) -> NoReturn:
        raise InteropError(
            f"cannot import the {self.framework.name} network: forward() of {type(self.net).__name__}: {reason}; "
            f"supported: {TRACED}"
        )

    def label(self, value: _Value | None) -> str:
        """How a message names where ``value`` comes from."""
        node = value.node if value is not None else None
        if isinstance(node, _Call):
            suffix = "" if value is None or value.index == 0 else f" (its output {value.index}, not its spikes)"
            return f"module {node.path} ({type(node.module).__name__}){suffix}"
        if isinstance(node, _Input):
            return "the input"
        if isinstance(node, _Op):
            steps = _stack_of(node)
            calls = [v.node for v in steps or [] if isinstance(v.node, _Call)]
            if steps and len(calls) == len(steps) > 1 and len({id(call.module) for call in calls}) == 1:
                return f"torch.stack of module {calls[0].path}'s per-step outputs"
            return f"{node.name}(...)"
        return "a constant"

    def live(self, value: _Value) -> bool:
        """Whether ``value`` is computed from the input (or from a module's output)."""
        node = value.node
        if isinstance(node, (_Input, _Call)):
            return True
        if isinstance(node, _Const) or node.name in _SHAPE_ONLY:
            return False
        key = id(node)
        if key not in self._live:
            self._live[key] = any(self.live(v) for v in node.inputs)
        return self._live[key]

    def origin(self, value: _Value) -> _Value:
        """The call or input ``value`` comes from through operations with one live input (itself otherwise)."""
        while isinstance(value.node, _Op):
            live = _distinct([v for v in value.node.inputs if self.live(v)])
            if len(live) != 1:
                return value
            value = live[0]
        return value

    def calls_behind(self, value: _Value) -> list[_Call]:
        """Every recorded call ``value`` is computed from."""
        found: list[_Call] = []
        seen: set[int] = set()
        pending: list[_Value | None] = [value]
        while pending:
            current = pending.pop()
            node = current.node if current is not None else None
            if node is None or id(node) in seen or isinstance(node, (_Input, _Const)):
                continue
            seen.add(id(node))
            if isinstance(node, _Call):
                found.append(node)
            pending.extend(node.inputs)
        return found

    def check_module(self, call: _Call) -> None:
        """Refuse a call of a module the framework does not map (named as in an ``nn.Sequential``)."""
        if type(call.module) in self.framework.containers:
            return
        check_kind(self.builder, self.framework, Link(call.path, call.module, (type(self.net),), traced=True))


# -- the readout and the chain of one step ----------------------------------------------------------------------


@dataclass
class _Step:
    """The calls and operations that compute one step's output from the input, input first."""

    items: list[_Call | _Op]
    timesteps: int | None = None
    """``T`` when the chain starts from the input repeated over time (a multi-step network)."""


@dataclass
class _Readout:
    outputs: list[_Value]
    """One value per step (stacked), or one multi-step / single-step value."""
    kind: str
    """``stack`` (the imported network outputs the stack's time-mean), ``mean`` (the time-mean itself), or
    ``step`` (one step per ``forward()``: the output of the step)."""
    dropped: list[str]
    """Extra outputs of a returned tuple, recorded states the imported network does not compute."""


def _dim_arg(op: _Op, position: int, default: int | None) -> object:
    if "dim" in op.kwargs:
        return op.kwargs["dim"]
    return op.args[position] if len(op.args) > position else default


def _stack_of(op: _Op) -> list[_Value] | None:
    """The per-step values ``torch.stack`` stacks along a new first axis, or ``None``."""
    if op.name != "torch.stack" or _dim_arg(op, 1, 0) != 0 or not op.args or not isinstance(op.args[0], list | tuple):
        return None
    values = [v for v in op.args[0] if isinstance(v, _Value)]
    return values if len(values) == len(op.args[0]) and values else None


def _time_mean_of(op: _Op) -> _Value | None:
    """The value ``x.mean(0)`` / ``torch.mean(x, 0)`` averages over its first axis, or ``None``."""
    if op.name not in ("Tensor.mean", "torch.mean") or not op.inputs or op.kwargs.get("keepdim", False):
        return None
    if "dtype" in op.kwargs:
        return None
    dim = _dim_arg(op, 1, None)
    if dim in (0, [0], (0,)) and len(op.args) <= 2:
        return op.inputs[0]
    return None


def _readout(tracer: _Tracer, output: Any) -> _Readout:
    """What ``forward()`` returns, as per-step values and the readout over them."""
    extra: list[Any] = []
    if isinstance(output, (tuple, list)):
        if not output:
            tracer.refuse("it returns an empty tuple")
        output, *extra = output
    if not isinstance(output, torch.Tensor):
        tracer.refuse(f"it returns {type(output).__name__}, not a tensor (or a tuple starting with one)")
    dropped = [_recorded_state(tracer, item, position) for position, item in enumerate(extra, 1)]
    value = tracer.graph.value_of(output)
    node = value.node
    if isinstance(node, _Call):
        return _Readout([value], "step", dropped)
    if isinstance(node, _Op):
        steps = _stack_of(node)
        if steps is not None:
            return _Readout(steps, "stack", dropped)
        inner = _time_mean_of(node)
        if inner is not None:
            inner_node = inner.node
            if isinstance(inner_node, _Op) and _stack_of(inner_node) is not None:
                return _Readout(_stack_of(inner_node) or [], "mean", dropped)
            if isinstance(inner_node, _Call):
                return _Readout([inner], "mean", dropped)
        source = tracer.label(tracer.origin(node.inputs[0])) if node.inputs else "nothing"
        tracer.refuse(
            f"its output is {node.name}(...) of {source}: an unsupported readout; the imported network outputs the "
            "time-mean of the last module's per-step outputs, so return torch.stack(per-step outputs) or its .mean(0)"
        )
    tracer.refuse(f"its output is {tracer.label(value)}, not computed from the input")


def _recorded_state(tracer: _Tracer, item: Any, position: int) -> str:
    """Output ``position`` of a returned tuple: allowed when it is ``torch.stack`` of one module's per-step outputs
    (a record such as snnTorch's ``mem_rec``), which the imported network does not compute."""
    if isinstance(item, torch.Tensor):
        node = tracer.graph.value_of(item).node
        steps = _stack_of(node) if isinstance(node, _Op) else None
        calls = [v.node for v in steps or []]
        modules = {id(c.module) for c in calls if isinstance(c, _Call)}
        if steps and all(isinstance(c, _Call) for c in calls) and len(modules) == 1:
            first = steps[0].node
            assert isinstance(first, _Call)
            return f"output {position}: torch.stack of module {first.path}'s output {steps[0].index}"
    tracer.refuse(
        f"output {position} of the returned tuple is not torch.stack of one module's per-step outputs (a record); "
        "the imported network computes only the first output"
    )


def _step_chain(tracer: _Tracer, value: _Value) -> _Step:
    """The calls and operations from the input to ``value``, input first; refuses a branch, a constant source."""
    items: list[_Call | _Op] = []
    current = value
    while True:
        node = current.node
        if isinstance(node, _Input):
            break
        if isinstance(node, _Const):
            tracer.refuse(f"the input of {_consumer(tracer, items)} is a constant, not computed from the input")
        if isinstance(node, _Call):
            tracer.check_module(node)
            if current.index != 0:
                consumer = _consumer(tracer, items)
                tracer.refuse(
                    f"{consumer} takes {tracer.label(current)} as data; only a module's first output "
                    "(a neuron's spikes) may feed the next module"
                )
            items.append(node)
            data = node.inputs[0] if node.inputs else None
            if data is None:
                tracer.refuse(f"module {node.path} ({type(node.module).__name__}) is called without a tensor")
            current = data
            continue
        if node.timed is not None and node.timed[0].same(tracer.graph.input):
            items.reverse()
            return _Step(items, node.timed[1])
        live = _distinct([v for v in node.inputs if tracer.live(v)])
        if not live:
            tracer.refuse(f"{node.name}(...) before {_consumer(tracer, items)} is not computed from the input")
        if len(live) > 1:
            sources = " and ".join(tracer.label(tracer.origin(v)) for v in live)
            later = {id(item.module): item for item in items if isinstance(item, _Call)}
            fed_back = next((c for v in live for c in tracer.calls_behind(v) if id(c.module) in later), None)
            if fed_back is not None:
                tracer.refuse(
                    f"{node.name}(...) combines {sources} before {_consumer(tracer, items)}, and one of them is "
                    f"computed from the output of module {fed_back.path} at an earlier step: a recurrent connection; "
                    "each step must run one chain of modules"
                )
            tracer.refuse(
                f"{node.name}(...) combines {sources} before {_consumer(tracer, items)}: not a chain (a branch or a "
                "residual connection); each step must run one chain of modules"
            )
        items.append(node)
        current = live[0]
    items.reverse()
    return _Step(items)


def _consumer(tracer: _Tracer, items: list[_Call | _Op]) -> str:
    """The module the walk came from (the last call appended), for messages."""
    for item in reversed(items):
        if isinstance(item, _Call):
            return tracer.label(_Value(item, 0, ()))
    return "the output"


# -- mapping the chain: functional calls as modules ---------------------------------------------------------------

_RESHAPES = {"Tensor.view", "Tensor.reshape", "torch.reshape", "Tensor.flatten", "torch.flatten"}
_NO_OPS = {"Tensor.contiguous", "Tensor.clone", "torch.clone", "Tensor.detach", "torch.detach"}
_DROPOUTS = {
    "F.dropout": (2, True),
    "F.dropout1d": (2, True),
    "F.dropout2d": (2, True),
    "F.alpha_dropout": (2, False),
    "F.feature_alpha_dropout": (2, False),
}
"""Dropout functions: the position of their ``training`` argument and its default."""

_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_ATEN_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
_AVG_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")


def _bind(op: _Op, names: Sequence[str]) -> dict[str, Any]:
    bound = dict(zip(names, op.args))
    bound.update(op.kwargs)
    return bound


def _op_module(tracer: _Tracer, op: _Op, before: str, lead: int) -> nn.Module | None:
    """The module a functional call between two links computes (``None``: nothing, e.g. a view that keeps the
    shape), or a refusal naming it."""
    shape_in = op.inputs[0].shape if op.inputs else ()
    shape_out = op.out_shapes[0]
    where = f"{op.name}(...) on {before}"
    if op.name in _NO_OPS:
        return None
    if op.name in _RESHAPES:
        if shape_out == shape_in:
            return None
        if lead == 1 and len(shape_in) >= 2 and shape_out == (shape_in[0], math.prod(shape_in[1:])):
            return nn.Flatten()
        tracer.refuse(
            f"{where} reshapes {list(shape_in)} to {list(shape_out)}; only the per-sample flatten to [batch, features] "
            "maps" + (" (in a multi-step network: layer.Flatten())" if lead != 1 else "")
        )
    if op.name in _DROPOUTS:
        position, default = _DROPOUTS[op.name]
        training = op.kwargs.get("training", op.args[position] if len(op.args) > position else default)
        if training:
            tracer.refuse(f"{where} with training=True drops values at inference too (pass training=self.training)")
        return None
    if lead != 1:
        tracer.refuse(
            f"{where}: a functional call in a multi-step network sees [T, B, ...]; use SpikingJelly's layer.* modules"
        )
    if op.func is F.max_pool2d or op.name == "torch.max_pool2d":
        bound = _bind(op, _MAX_POOL if op.func is F.max_pool2d else _ATEN_MAX_POOL)
        stride = bound.get("stride") or None  # torch.max_pool2d's default stride is [] (= the kernel)
        return nn.MaxPool2d(
            bound["kernel_size"],
            stride,
            bound.get("padding", 0),
            bound.get("dilation", 1),
            bool(bound.get("return_indices", False)),
            bool(bound.get("ceil_mode", False)),
        )
    if op.func is F.avg_pool2d:
        bound = _bind(op, _AVG_POOL)
        return nn.AvgPool2d(
            bound["kernel_size"],
            bound.get("stride"),
            bound.get("padding", 0),
            bool(bound.get("ceil_mode", False)),
            bool(bound.get("count_include_pad", True)),
            bound.get("divisor_override"),
        )
    if op.func is F.adaptive_avg_pool2d:
        return nn.AdaptiveAvgPool2d(_bind(op, ("input", "output_size"))["output_size"])
    tracer.refuse(
        f"{where}: no albsnn layer computes this functional call; use a module the importer maps "
        "(e.g. nn.MaxPool2d instead of F.max_pool2d with settings it cannot read)"
    )


def _links(tracer: _Tracer, step: _Step, lead: int) -> list[Link]:
    """The per-step chain as links: calls as modules (containers opened), functional calls as their modules."""
    root = type(tracer.net)
    links: list[Link] = []
    previous = "the input"
    for item in step.items:
        if isinstance(item, _Call):
            module = item.module
            if type(module) in tracer.framework.containers:
                framework = tracer.framework
                for link in chain_of(module, framework.name, framework.containers, framework.supported):
                    links.append(Link(f"{item.path}.{link.path}", link.module, link.within, True))
            else:
                links.append(Link(item.path, module, (root,), True))
            previous = f"module {item.path}"
            continue
        module_form = _op_module(tracer, item, previous, lead)
        if module_form is not None:
            after = previous.removeprefix("module ")
            links.append(Link(f"forward(): {item.name} after {after}", module_form, (root,), True, item.name))
    return links


# -- the checks across steps --------------------------------------------------------------------------------------


def _signature(step: _Step) -> list[tuple[Any, ...]]:
    """What must repeat at every step: the modules called and the functional calls with their settings."""
    signature: list[tuple[Any, ...]] = []
    for item in step.items:
        if isinstance(item, _Call):
            signature.append(("call", id(item.module)))
        else:
            leaves, spec = tree_flatten((item.args, item.kwargs))
            settings = tuple("<tensor>" if isinstance(leaf, _Value) else repr(leaf) for leaf in leaves)
            signature.append(("op", item.name, settings, repr(spec), tuple(v.shape for v in item.inputs)))
    return signature


def _check_states(tracer: _Tracer, step: _Step, t: int) -> None:
    """A neuron handed its state must get, at step ``t``, what it returned at ``t - 1``, and zero at step 0."""
    for item in step.items:
        if not isinstance(item, _Call):
            continue
        extra = [(position, value) for position, value in enumerate(item.inputs) if position and value is not None]
        if not extra:
            continue
        name = f"module {item.path} ({type(item.module).__name__})"
        if type(item.module) not in tracer.framework.neurons or len(item.inputs) != 2:
            tracer.refuse(f"{name} is called with {len(extra) + 1} tensors; only a neuron may take its state")
        state = item.inputs[1]
        assert state is not None
        if t == 0:
            if tracer.live(state) or not item.zero[1]:
                tracer.refuse(
                    f"{name} starts from {tracer.label(tracer.origin(state))}, not a zero membrane "
                    "(mem = lif.init_leaky() / reset_mem())"
                )
            continue
        node = state.node
        returned = isinstance(node, _Call) and node.module is item.module and node.index == item.index - 1
        if not (returned and state.index == 1):
            tracer.refuse(
                f"at step {t}, {name} is handed {tracer.label(state)} as its membrane, not what it returned at step "
                f"{t - 1} (a recurrent connection, or a state changed between steps)"
            )


def _check_steps(tracer: _Tracer, steps: list[_Step], multi: bool) -> None:
    """Every step runs the same chain, each module once per step, in step order; states flow from step to step."""
    first = _signature(steps[0])
    calls = [item for item in steps[0].items if isinstance(item, _Call)]
    seen: set[int] = set()
    for call in calls:
        if id(call.module) in seen:
            tracer.refuse(f"module {call.path} is called twice in one step (a shared or repeated module)")
        seen.add(id(call.module))
    for t, step in enumerate(steps):
        if _signature(step) != first:
            tracer.refuse(
                f"step {t} runs another chain than step 0 (its modules or functional calls differ); "
                "every time step must run the same chain"
            )
        for item in step.items:
            if isinstance(item, _Call) and item.index != t:
                tracer.refuse(
                    f"the output of step {t} is computed by call {item.index + 1} of module {item.path}, "
                    f"not call {t + 1}: a module is called more than once per step, or steps are skipped"
                )
        _check_states(tracer, step, t)
    for call in calls:
        count = len(tracer.graph.calls[call.module])
        expected = 1 if multi else len(steps)
        if count != expected:
            tracer.refuse(
                f"module {call.path} is called {count} times for {len(steps)} recorded step(s); "
                "each module of the chain runs once per step"
            )


# -- the import -------------------------------------------------------------------------------------------------


def _watched(net: nn.Module, framework: Framework) -> dict[nn.Module, str]:
    """The modules whose calls are recorded, with their paths: what the framework knows, and every module without
    children (so an unknown one is named); other modules are transparent (their forward's calls are recorded)."""
    known = (*framework.neurons, *framework.layers)
    watched: dict[nn.Module, str] = {}
    for path, module in net.named_modules():
        if not path:
            continue
        kind = type(module)
        if (
            kind in framework.containers
            or any(cls in known for cls in kind.__mro__)
            or framework.refusal(kind) is not None
            or not any(True for _ in module.children())
        ):
            watched[module] = path
    return watched


def _run(net: nn.Module, framework: Framework, x: torch.Tensor, watched: dict[nn.Module, str]) -> tuple[_Graph, Any]:
    """One recorded forward pass of ``net`` from rest on ``x``."""
    framework.reset(net)
    graph = _Graph(x, watched)
    modules = list(watched)

    def keep(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        graph.call(module, inputs, output)

    with torch.no_grad(), record_outputs(modules, keep=keep), _Recorder(graph):
        output = net(x)
    return graph, output


def _probe(batch: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Random images in [0, 1], the same on every call."""
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(_PROBE_SEED))


def _source_input(model: SpikingNet, images: torch.Tensor, flat: bool) -> torch.Tensor:
    """What the source network is fed for ``images``: normalized as the imported network does, flattened if it
    takes flat inputs."""
    x = (images - model.input_mean) / model.input_std
    return x.flatten(1) if flat else x


def _trace_batch(framework: Framework, options: ImportOptions) -> int:
    batch = options.get("trace_batch", DEFAULT_TRACE_BATCH)
    if type(batch) is not int or batch < 1:
        raise InteropError(
            f"cannot import the {framework.name} network: trace_batch must be an integer >= 1, got {batch!r}"
        )
    return batch


def _copy(net: nn.Module, framework: Framework) -> nn.Module:
    """A copy of ``net`` in eval mode, so tracing it changes nothing of the user's (states, batch-norm statistics).

    A neuron's state left by a training step (snnTorch's ``mem`` after ``loss.backward()``) is a tensor with
    autograd history, which ``deepcopy`` refuses; the copy gets it detached (the trace starts from rest anyway).
    """
    memo: dict[int, Any] = {}
    for module in net.modules():
        for value in (*vars(module).values(), *module._buffers.values()):
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    try:
        return copy.deepcopy(net, memo).eval()
    except Exception as exc:  # noqa: BLE001 - foreign modules fail to copy in many ways; quote it
        raise InteropError(
            f"cannot import the {framework.name} network: copying {type(net).__name__} to trace it failed: "
            f"{one_line(f'{type(exc).__name__}: {exc}')}"
        ) from exc


def _traced_pass(
    net: nn.Module, framework: Framework, checked: CheckedOptions, batch: int, watched: dict[nn.Module, str]
) -> tuple[_Graph, Any, bool]:
    """The recorded pass on images ``[B, C, H, W]``, or on them flattened if ``forward()`` only takes that."""
    images = _probe(batch, checked.shape)
    try:
        graph, output = _run(net, framework, images, watched)
        return graph, output, False
    except InteropError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward(): quote what it raised
        first = exc
    try:
        graph, output = _run(net, framework, images.flatten(1), watched)
        return graph, output, True
    except Exception:  # noqa: BLE001 - the first failure is the one to report
        pass
    raise InteropError(
        f"cannot import the {framework.name} network: calling forward() of {type(net).__name__} on {batch} random "
        f"{list(checked.shape)} images (or their flattened form) raised {type(first).__name__}: "
        f"{one_line(str(first), 240)}; if forward() hard-codes its batch size (x.view(batch_size, -1)), pass "
        "trace_batch=that size (--trace-batch)"
    ) from first


def _resolve_timesteps(tracer: _Tracer, traced: int | None, asked: int | None) -> int:
    if traced is None:
        if asked is None:
            tracer.refuse("it runs one time step per call and you loop it yourself: give timesteps (--timesteps T)")
        return asked
    if asked is not None and asked != traced:
        tracer.refuse(
            f"its time loop runs {traced} steps, timesteps {asked} was asked; the imported network must run the "
            f"loop it was trained with: give timesteps={traced} or leave it out"
        )
    return traced


def _verify(
    model: SpikingNet, net: nn.Module, framework: Framework, readout: str, flat: bool, batch: int, tracer: _Tracer
) -> None:
    """The imported network and ``forward()`` agree on the trace images, or the import is refused."""
    images = _probe(batch, tuple(model.spec["input"]["shape"]))
    with torch.no_grad():
        x = _source_input(model, images, flat)
        framework.reset(net)
        if readout == "step":
            outputs = []
            for _ in range(model.timesteps):
                out = net(x)
                outputs.append(out[0] if isinstance(out, (tuple, list)) else out)
            expected = torch.stack(outputs).mean(0)
        else:
            out = net(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            expected = out.mean(0) if readout == "stack" else out
        ours = model(images)
    if ours.shape != expected.shape:
        tracer.refuse(f"the imported network outputs {list(ours.shape)}, forward()'s readout {list(expected.shape)}")
    difference = float((ours - expected.to(ours.dtype)).abs().max()) if ours.numel() else 0.0
    if not difference <= VERIFY_TOLERANCE:
        tracer.refuse(
            f"the imported chain computes other outputs than forward() on the trace images (largest difference "
            f"{difference:.3g}): forward() does something one recorded pass cannot see (a state reset or change "
            "inside the time loop, control flow that depends on the data, hooks)"
        )


def import_traced(
    net: nn.Module,
    framework: Framework,
    input_shape: Sequence[int],
    timesteps: int | None,
    **options: Unpack[ImportOptions],
) -> SpikingNet:
    """The :class:`SpikingNet` that computes what model class ``net``'s ``forward()`` computes (see the module doc).

    Args:
        net: the source model, any ``nn.Module`` whose ``forward(x)`` takes images ``[B, C, H, W]`` (or flattened
            ``[B, C*H*W]``) and loops over time itself (or runs one step per call).
        framework: the framework's table.
        input_shape: ``(C, H, W)`` of one image, or ``(F,)``. A ``forward()`` that takes the images flattened
            (snnTorch tutorial 5) gives a network of flat input ``[C*H*W]``, which runs on the images too,
            flattening them (:meth:`~albsnn_compress.snn.spec.SpikingNet.samples`).
        timesteps: ``None`` to take the number of steps from ``forward()``'s loop, or that same number; needed for
            a ``forward()`` that runs one step per call.
        **options: :class:`~.chain.ImportOptions`.

    Returns:
        The network in eval mode; ``model.metadata["source"]["traced"]`` records the class, the readout, the
        step mode, whether the input is flattened and the recorded states the import drops.

    Raises:
        InteropError: a construct that is not a per-step chain the core expresses, named; ``forward()`` failing on
            the trace images; or the imported network disagreeing with ``forward()`` on them.
    """
    checked = checked_options(framework, input_shape, options)
    batch = _trace_batch(framework, options)
    if timesteps is not None and (type(timesteps) is not int or timesteps < 1):
        raise InteropError(
            f"cannot import the {framework.name} network: timesteps must be an integer >= 1, got {timesteps!r}"
        )
    source_net = _copy(net, framework)
    watched = _watched(source_net, framework)
    graph, output, flat = _traced_pass(source_net, framework, checked, batch, watched)
    if flat:  # forward() takes the images flattened: so does the imported network, whose input is [C*H*W]
        checked = flattened(checked, framework)
    builder = ChainBuilder(framework.name, framework.supported, checked.shape)
    tracer = _Tracer(framework, source_net, graph, builder)
    readout = _readout(tracer, output)
    steps = [_step_chain(tracer, value) for value in readout.outputs]
    timed = {step.timesteps for step in steps}
    multi = steps[0].timesteps is not None
    if len(timed) != 1:
        tracer.refuse("some steps start from the input repeated over time and others from the input itself")
    kind = readout.kind
    if multi and len(steps) > 1:
        tracer.refuse("it stacks the outputs of a multi-step chain; return the multi-step output or its .mean(0)")
    if multi and kind == "step":
        kind = "stack"  # the multi-step output [T, B, ...] holds every step; the imported network outputs its mean
    if not multi and readout.kind == "mean" and len(steps) == 1 and isinstance(readout.outputs[0].node, _Call):
        tracer.refuse(
            f"it returns .mean(0) of {tracer.label(readout.outputs[0])}, a per-step output: that averages over the "
            "batch, not over time"
        )
    if not multi and readout.kind == "step":
        last = readout.outputs[0].node
        assert isinstance(last, _Call)
        count = len(graph.calls[last.module])
        if count > 1:
            tracer.refuse(
                f"it returns the output of the last of {count} calls of module {last.path} (the last time step "
                "only); return torch.stack(per-step outputs) or its .mean(0)"
            )
    _check_steps(tracer, steps, multi)
    traced_t = steps[0].timesteps if multi else (len(steps) if kind != "step" else None)
    T = _resolve_timesteps(tracer, traced_t, timesteps)
    if kind == "step" and T > 1:
        handed = next((c for c in steps[0].items if isinstance(c, _Call) and any(c.inputs[1:])), None)
        if handed is not None:
            tracer.refuse(
                f"it starts module {handed.path}'s membrane at zero on every call, so the calls of your time loop are "
                "independent single steps; move the time loop into forward() (or import with timesteps=1)"
            )
    links = _links(tracer, steps[0], 2 if multi else 1)
    mapped, source = map_links(links, framework, checked.shape)
    mode = source.get("step_mode", "s")
    if multi and mode != "m":
        tracer.refuse(
            f"it feeds its chain the input repeated over time ([T, B, ...]) but the modules run one step per call "
            f"(step_mode {mode!r})"
        )
    if not multi and mode != "s":
        tracer.refuse("its modules run step_mode 'm' ([T, B, ...] per call) but forward() calls them once per step")
    traced = {
        "class": type(net).__name__,
        "readout": kind,
        "steps": "multi-step" if multi else "per-step loop" if kind != "step" else "one step per call",
        "flattened_input": flat,
        "dropped_outputs": readout.dropped,
    }
    model = import_links(mapped, {**source, "traced": traced}, framework, checked, T)
    _verify(model, source_net, framework, kind, flat, batch, tracer)
    return model


def import_model(
    net: nn.Module,
    framework: Framework,
    input_shape: Sequence[int],
    timesteps: int | None,
    **options: Unpack[ImportOptions],
) -> SpikingNet:
    """An ``nn.Sequential`` (or another container of the framework) through :func:`~.chain.import_chain`, any other
    model class through :func:`import_traced`."""
    if type(net) in framework.containers:
        return import_chain(net, framework, input_shape, timesteps, **options)
    return import_traced(net, framework, input_shape, timesteps, **options)
