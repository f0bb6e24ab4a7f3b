"""The search session: the machinery every strategy drives (it implements :class:`StrategySession`).

It holds the working model (a copy of the input), the frozen input model (the
teacher, and the reference for the test split), the data, measurement
(batch-norm re-estimation, then validation accuracy), finetuning slices,
snapshots for reverting, the verdicts per candidate and the trajectory. The
strategy (:mod:`albsnn_compress.search.strategies`) decides; the session carries out
and writes down.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, unbinarize_, weight_parametrizations
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import FLOAT_BITS, layer_bits, set_precision_, weight_bits
from albsnn_compress.progress import ProgressCallback, ProgressEvent
from albsnn_compress.search.calibration import Calibration
from albsnn_compress.search.candidates import resolve_ladders
from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.estimators import Estimator, Probe, resolve_estimator
from albsnn_compress.search.finetune import distillation_loss, frozen_teacher, recalibrate_batchnorm
from albsnn_compress.search.model_copy import copy_model
from albsnn_compress.search.paired_drop import PairedDrop, paired_drop
from albsnn_compress.search.protocol import Strategy
from albsnn_compress.search.result import LayerDecision, SearchStep
from albsnn_compress.storage import layer_storage, saved_bits_at, total_bits
from albsnn_compress.targets import TARGETS
from albsnn_compress.training.distributed import LOCAL, DistContext
from albsnn_compress.training.outcomes import accuracy_percent, bounded_batch_size, correct_answers
from albsnn_compress.training.trainer import TrainConfig, Trainer, check_batch_size, cross_entropy_loss

__all__ = ["SearchSession", "Snapshot"]

Snapshot = tuple[dict[str, int], dict[str, torch.Tensor], PairedDrop]  # bits per layer, state dict, its measurement

_PROBE_BATCH = 128


class SearchSession:
    """A search on a copy of ``model`` (see the module docstring).

    Args:
        model: the input model; it is copied, never modified.
        train: finetuning, batch-norm re-estimation and probe batches come from it.
        val: the split the budget is checked on.
        budget: allowed validation drop, percentage points.
        config: the run's settings (candidates, estimator, finetuning, seed, the
            confidence level decisions judge the drop at).
        ctx: distributed context (single process by default).
        on_progress: receives a ``"search"`` event per trajectory step, and the
            finetuning slices' ``"slice"`` events.

    Every evaluation (validation answers, batch-norm re-estimation, probe batches) runs batches
    bounded like ``eval``'s (:func:`~albsnn_compress.training.outcomes.bounded_batch_size`: at most
    1 GiB of activations per forward pass), whatever the model's time steps.

    Raises:
        CompressionError: an unknown estimator, a wrong layer name, no candidate, a target that takes none of
            the precisions or (without float layers) ``layers``/``exclude`` leaving a layer out; or, when the run
            finetunes (``epochs`` or ``trial_epochs`` above 0), a batch size larger than ``train``
            (no batch could be drawn), before any work.
    """

    def __init__(
        self,
        model: nn.Module,
        train: ImageSet,
        val: ImageSet,
        budget: float,
        config: SearchConfig,
        ctx: DistContext = LOCAL,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        if config.epochs > 0 or config.trial_epochs > 0:  # every finetuning slice would draw no batch: refuse now
            check_batch_size(
                config.batch_size, len(train), ctx.world_size, "training split (train_data)", CompressionError
            )
        self.estimator: Estimator = resolve_estimator(config.estimator)
        self.ladders = _ladders(model, config)
        self.candidates = list(self.ladders)
        self.model = copy_model(model).to(ctx.device)
        self.train, self.val = train, val
        self.budget = budget
        self.config = config
        self.ctx = ctx
        self.on_progress = on_progress
        self.input_model = frozen_teacher(self.model)  # the input as it came: teacher and test reference
        self.teacher = self.input_model if config.distill else None
        self.loss_fn = (
            distillation_loss(self.teacher, config.distill_weight) if self.teacher is not None else cross_entropy_loss
        )
        self.calibration = Calibration()
        self.trajectory: list[SearchStep] = []
        self.decisions: dict[str, LayerDecision] = {}
        self.finetune_epochs = 0.0
        self.slices = 0
        self.timings: dict[str, float] = {"estimate": 0.0, "finetune": 0.0, "measure": 0.0}
        self.saved_bits = self._saved_bits()
        self.probe = self._make_probe()
        self.val_correct_before = correct_answers(self.model, val, ctx)
        self.val_before = accuracy_percent(self.val_correct_before)
        self.current_drop = 0.0
        self.measurement = PairedDrop(len(val), 0, 0)  # the input against itself
        self.control_measurement: PairedDrop | None = None  # the float control's drop, when a strategy ran one
        self.started = time.perf_counter()
        self._input = self.snapshot()  # the fallback that always meets the budget

    # -- bookkeeping ---------------------------------------------------------------
    def _saved_bits(self) -> dict[str, int]:
        """Per candidate, the bits it saves at its fewest allowed bits (1 bit: binarized)."""
        modules = dict(self.model.named_modules())
        return {name: saved_bits_at(modules[name], self.ladders[name][0]) for name in self.candidates}

    def _make_probe(self) -> Probe:
        """``probe_batches`` training batches of 128 images (the whole split when smaller; fewer images where one
        forward pass of 128 would need more than 1 GiB, :func:`bounded_batch_size`)."""
        size = bounded_batch_size(self.model, max(1, min(_PROBE_BATCH, len(self.train))))
        loader = BatchLoader(self.train, size, shuffle=True, seed=self.config.seed + 7919, drop_last=True)
        batches = []
        for index, (images, labels) in enumerate(loader):
            if index >= self.config.probe_batches:
                break
            batches.append((images.to(self.ctx.device), labels.to(self.ctx.device)))
        return Probe(batches)

    def saved_bits_at(self, name: str, bits: int) -> int:
        """The bits candidate ``name`` saves at ``bits`` per weight (0 at float)."""
        return saved_bits_at(dict(self.model.named_modules())[name], bits)

    def _params(self, name: str) -> int:
        module = dict(self.model.named_modules())[name]
        return int(module.weight.numel())

    def storage_bits(self) -> int:
        """Computed storage of the model as it is now, bits."""
        return total_bits(layer_storage(self.model, binarized_layers(self.model)))[1]

    def bits(self) -> dict[str, int]:
        """Every candidate's bits per weight now (:data:`~albsnn_compress.precision.FLOAT_BITS`: float)."""
        modules = dict(self.model.named_modules())
        return {name: weight_bits(modules[name]) for name in self.candidates}

    def record(self, action: str, layers: list[str], raw: Mapping[str, float] | None = None) -> SearchStep:
        """Append a trajectory step; ``raw`` estimates are also stored in points (calibration as it stands)."""
        raw = dict(raw or {})
        step = SearchStep(
            index=len(self.trajectory),
            action=action,
            layers=list(layers),
            binarized=binarized_layers(self.model),
            precisions=_below_float(layer_bits(self.model)),
            val_accuracy=self.val_before - self.current_drop,
            drop_points=self.current_drop,
            storage_bits=self.storage_bits(),
            estimates_points={name: self.calibration.points(value) for name, value in raw.items()},
            estimates_raw=raw,
            seconds=time.perf_counter() - self.started,
            paired=self.measurement,
        )
        self.trajectory.append(step)
        if self.on_progress is not None:
            names = ",".join(n.split(".")[-1] for n in step.binarized) or "none"
            drop = f"drop {step.drop_points:+.2f} / budget {self.budget:.2f}"
            status = f"binarized [{names}]  val {step.val_accuracy:.2f}% ({drop})"
            self.on_progress(ProgressEvent("search", f"search: {action}", len(self.trajectory), None, status))
        return step

    def decide(
        self,
        name: str,
        binarized: bool,
        reason: str,
        *,
        raw: float | None = None,
        alone: float | None = None,
        increment: float | None = None,
        bits: int | None = None,
    ) -> None:
        """Write the (latest) verdict on candidate ``name`` (see :class:`StrategySession`)."""
        self.decisions[name] = LayerDecision(
            name=name,
            params=self._params(name),
            binarized=binarized,
            estimate_raw=raw,
            estimate_points=self.calibration.points(raw) if raw is not None else None,
            saved_bits=self.saved_bits[name],
            reason=reason,
            measured_alone_points=alone,
            measured_increment_points=increment,
            bits=bits,
        )

    def final_decisions(self) -> list[LayerDecision]:
        """One decision per candidate, in model order (untouched ones say so)."""
        bits = self.bits()
        return [
            self.decisions.get(name)
            or LayerDecision(
                name,
                self._params(name),
                bits[name] == 1,
                None,
                None,
                self.saved_bits[name],
                "not considered",
                bits=bits[name],
            )
            for name in self.candidates
        ]

    # -- the operations strategies compose -------------------------------------------
    def estimate(self, names: list[str], bits: Mapping[str, int] | None = None) -> dict[str, float]:
        """Raw estimator values for ``names`` on the current model, each at its ``bits`` (default 1)
        (identical on every rank)."""
        start = time.perf_counter()
        if bits is None or all(value == 1 for value in bits.values()):
            values = self.estimator.estimate(self.model, names, self.probe)  # an estimator without ``bits`` too
        else:
            values = self.estimator.estimate(self.model, names, self.probe, bits=bits)
        self.timings["estimate"] += time.perf_counter() - start
        shared: dict[str, float] = self.ctx.broadcast(values)
        return shared

    def finetune(self, epochs: float, description: str, lr: float | None = None) -> None:
        """Finetune the current model for ``epochs`` (one cosine slice), calling the estimator's hook."""
        if epochs <= 0:
            return
        self.slices += 1
        self._finetune(self.model, epochs, self.config.seed + self.slices, description, lr)

    def _finetune(self, model: nn.Module, epochs: float, seed: int, description: str, lr: float | None = None) -> None:
        """One cosine slice of ``epochs`` on ``model`` with the run's recipe (every parameter at ``lr`` when given);
        its epochs count to the run's cost."""
        start = time.perf_counter()
        config = TrainConfig(
            epochs=epochs,
            batch_size=self.config.batch_size,
            lr=lr if lr is not None else self.config.lr,
            seed=seed,
            amp=self.config.amp,
            sync_bn=self.config.sync_bn,
            channels_last=self.config.channels_last,
        )
        hook = getattr(self.estimator, "after_backward", None)
        after_backward = (lambda m: hook(m, self.candidates)) if hook is not None and model is self.model else None
        groups = _param_groups(model, self.config, lr)
        trainer = Trainer(model, self.train, config, self.ctx, self.loss_fn, after_backward, groups)
        trainer.run(trainer.total_steps, self.on_progress, description)
        self.finetune_epochs += trainer.total_steps / trainer.steps_per_epoch
        self.timings["finetune"] += time.perf_counter() - start

    def control(self, epochs: float) -> bool:
        """Finetune a float copy of the input model like the run's first slice and measure it (see the protocol)."""
        control = copy_model(self.input_model)
        for parameter in control.parameters():
            parameter.requires_grad_(True)
        if epochs > 0:
            self._finetune(control, epochs, self.config.seed + 1, "float control")
        start = time.perf_counter()
        recalibrate_batchnorm(control, self.train, self.ctx, self.config.bn_batches, seed=self.config.seed)
        self.control_measurement = paired_drop(self.val_correct_before, correct_answers(control, self.val, self.ctx))
        self.timings["measure"] += time.perf_counter() - start
        return self.control_measurement.judged(self.config.confidence) <= self.budget

    def measure(self) -> float:
        """Re-estimate batch norm, then the validation drop (points) against the input model, image by image."""
        start = time.perf_counter()
        recalibrate_batchnorm(self.model, self.train, self.ctx, self.config.bn_batches, seed=self.config.seed)
        self.measurement = paired_drop(self.val_correct_before, correct_answers(self.model, self.val, self.ctx))
        self.current_drop = self.measurement.points
        self.timings["measure"] += time.perf_counter() - start
        return self.current_drop

    def judged_drop(self) -> float:
        """The last measurement's drop, or its upper bound at ``config.confidence`` when that is set, points."""
        return self.measurement.judged(self.config.confidence)

    def fits_budget(self) -> bool:
        """Whether :meth:`judged_drop` is within the budget."""
        return self.judged_drop() <= self.budget

    def binarized(self) -> list[str]:
        """The candidates binarized now, in model order."""
        return [name for name in binarized_layers(self.model) if name in self.saved_bits]

    def binarize(self, names: list[str]) -> None:
        """Binarize ``names`` in the working model."""
        binarize_(self.model, names)

    def unbinarize(self, names: list[str], keep_values: bool = False) -> None:
        """Return ``names`` of the working model to float (see the protocol for ``keep_values``)."""
        unbinarize_(self.model, names, keep_values)

    def set_bits(self, bits: Mapping[str, int], keep_values: bool = False) -> None:
        """Give each named layer its bits per weight (see the protocol for ``keep_values``)."""
        set_precision_(self.model, bits, keep_values)

    def snapshot(self) -> Snapshot:
        """Every layer's precision, a copy of every weight and buffer, and the last measurement."""
        return layer_bits(self.model), copy.deepcopy(self.model.state_dict()), self.measurement

    def restore(self, snapshot: Snapshot, drop: float) -> None:
        """Exactly the model of ``snapshot``: the same precisions, the same weights, its measurement."""
        bits, state, self.measurement = snapshot
        set_precision_(self.model, bits)
        self.model.load_state_dict(state)
        self.current_drop = drop

    def restore_input(self) -> None:
        """Back to the input model, whose drop is 0 by definition."""
        self.restore(self._input, 0.0)

    def run(self, strategy: Strategy) -> None:
        """Record the starting point, then let ``strategy`` drive the session."""
        self.record("start", [])
        strategy(self)
        if self.on_progress is not None:
            self.on_progress(ProgressEvent("search", "search: done", len(self.trajectory), None, finished=True))


def _ladders(model: nn.Module, config: SearchConfig) -> dict[str, tuple[int, ...]]:
    """Each candidate's precisions (:func:`resolve_ladders`), within ``config.target``'s when it names one.

    Raises:
        CompressionError: see :func:`resolve_ladders`; or the target takes none of ``config.precisions``.
    """
    target = TARGETS.lookup(config.target) if config.target is not None else None
    asked = config.precisions if config.precisions is not None else (1,)  # compress resolves None by strategy
    precisions = target.allowed(asked) if target is not None else asked
    no_float = (
        f"target {target.name!r} takes no float layers" if target is not None and not target.float_layers else None
    )
    return resolve_ladders(model, config.layers, config.exclude, config.binarize_first_last, precisions, no_float)


def _below_float(bits: Mapping[str, int]) -> dict[str, int]:
    return {name: value for name, value in bits.items() if value < FLOAT_BITS}


def _param_groups(model: nn.Module, config: SearchConfig, lr: float | None = None) -> list[dict[str, Any]]:
    """The float parameters at ``config.lr``; the latent weights of binarized and k-bit layers at
    ``config.binary_lr``, no decay.

    With ``lr`` given, every parameter learns at it (a slice with its own rate)."""
    latent = [
        weight_parametrizations(module).original for module in model.modules() if weight_bits(module) < FLOAT_BITS
    ]
    binary_ids = {id(weight) for weight in latent}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in binary_ids]
    groups: list[dict[str, Any]] = [{"params": rest}]
    if latent:
        binary_lr = lr if lr is not None else config.binary_lr if config.binary_lr is not None else config.lr
        groups.append({"params": latent, "lr": binary_lr, "weight_decay": 0.0})
    return groups
