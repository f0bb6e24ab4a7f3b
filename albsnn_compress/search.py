"""The compression search: measure, finetune, binarize, verify, under an accuracy budget.

``compress(model, train, val, budget=0.2)`` copies the model, lets a strategy
(:mod:`albsnn_compress.strategies`) choose which candidate layers to binarize,
finetunes with the input model as teacher, and returns a
:class:`~albsnn_compress.result.CompressionResult`. Whatever the strategy, the
final model's *measured* validation drop is checked against the budget (the
``all`` and ``none`` baselines excepted: they report what they get).

:class:`SearchSession` holds what every strategy needs: the working model, the
teacher, the data, measurement (batch-norm re-estimation then validation
accuracy), finetuning slices, snapshots for reverting, and the trajectory.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from albsnn_compress.binarize import binarize_, binarized_layers, candidate_layers, unbinarize_
from albsnn_compress.data.imageset import ImageSet
from albsnn_compress.data.loader import BatchLoader
from albsnn_compress.distributed import LOCAL, DistContext
from albsnn_compress.errors import BudgetError, CompressionError
from albsnn_compress.estimators import ESTIMATORS, Calibration, Estimator, LossEstimator, Probe, make_estimator
from albsnn_compress.finetune import distillation_loss, frozen_teacher, recalibrate_batchnorm
from albsnn_compress.model_copy import copy_model
from albsnn_compress.progress import ProgressCallback, ProgressEvent
from albsnn_compress.result import CompressionResult, LayerDecision, SearchStep
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training import TrainConfig, Trainer, cross_entropy_loss, evaluate

__all__ = ["SearchConfig", "SearchSession", "compress", "STRATEGIES", "check_budget"]

STRATEGIES = ("adaptive", "oracle", "all", "none")


@dataclass
class SearchConfig:
    """Settings of a compression run.

    Attributes:
        strategy: ``adaptive`` (estimator-guided, default), ``oracle``, ``all`` or ``none``.
        estimator: ``weight``, ``output`` or ``loss``.
        epochs: finetuning epochs after the selection is made.
        trial_epochs: finetuning epochs after each tried change.
        lr: peak learning rate of each finetuning slice (AdamW, cosine).
        batch_size: global batch size.
        distill: distil from the input model (else plain cross-entropy).
        seed: fixes every random choice; same seed, same selection.
        probe_batches: calibration batches the estimators run on.
        bn_batches: training batches for batch-norm re-estimation before each measurement.
        layers: candidate layer names (default: every Conv2d/Linear but the first and last).
        exclude: layer names never to binarize.
        binarize_first_last: let the first and last layers be candidates too.
        amp: bfloat16 autocast while finetuning on CUDA (ignored on CPU).
        sync_bn: under DDP, finetune with batch norm synchronised across processes.
    """

    strategy: str = "adaptive"
    estimator: str = "weight"
    epochs: float = 1.0
    trial_epochs: float = 0.25
    lr: float = 1e-3
    batch_size: int = 128
    distill: bool = True
    seed: int = 0
    probe_batches: int = 4
    bn_batches: int = 20
    layers: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    binarize_first_last: bool = False
    amp: bool = False
    sync_bn: bool = False


def check_budget(budget: Any) -> float:
    """A budget in percentage points: a finite number >= 0.

    Raises:
        BudgetError: naming the bad value and the expected form.
    """
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise BudgetError(f"budget {budget!r} is not a number; pass percentage points, e.g. --budget 0.2") from None
    if not value >= 0 or value == float("inf"):
        raise BudgetError(f"budget {budget!r} must be a finite number >= 0 (percentage points of top-1 accuracy)")
    return value


def _resolve_candidates(model: nn.Module, config: SearchConfig) -> list[str]:
    available = candidate_layers(model, include_first_last=True)
    if config.layers:
        unknown = [n for n in config.layers if n not in available]
        if unknown:
            raise CompressionError(f"--layers {unknown[0]!r} is not a Conv2d/Linear layer; choose from {available}")
        chosen = [n for n in available if n in config.layers]
    else:
        chosen = candidate_layers(model, include_first_last=config.binarize_first_last)
    unknown = [n for n in config.exclude if n not in available]
    if unknown:
        raise CompressionError(f"--exclude {unknown[0]!r} is not a Conv2d/Linear layer; choose from {available}")
    chosen = [n for n in chosen if n not in config.exclude]
    if not chosen:
        raise CompressionError(
            "no candidate layers to binarize: the model needs Conv2d/Linear layers besides the first and the "
            "last (or pass --binarize-first-last / --layers)"
        )
    return chosen


class SearchSession:
    """The shared machinery of every strategy (see the module docstring)."""

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
        self.model = copy_model(model).to(ctx.device)
        self.train, self.val = train, val
        self.budget = budget
        self.config = config
        self.ctx = ctx
        self.on_progress = on_progress
        self.candidates = _resolve_candidates(self.model, config)
        self.input_model = frozen_teacher(self.model)  # the input as it came, for the test split and distillation
        self.teacher = self.input_model if config.distill else None
        self.loss_fn = distillation_loss(self.teacher) if self.teacher is not None else cross_entropy_loss
        self.estimator: Estimator = make_estimator(config.estimator)
        self.calibration = Calibration()
        self.trajectory: list[SearchStep] = []
        self.decisions: dict[str, LayerDecision] = {}
        self.finetune_epochs = 0.0
        self.slices = 0
        self.timings: dict[str, float] = {"estimate": 0.0, "finetune": 0.0, "measure": 0.0}
        self.saved_bits = self._saved_bits()
        self.probe = self._make_probe()
        self.val_before = evaluate(self.model, val, ctx)
        self.current_drop = 0.0
        self.started = time.perf_counter()
        self.initial = self.snapshot()  # the input model: the fallback that always meets the budget

    # -- bookkeeping ---------------------------------------------------------------
    def _saved_bits(self) -> dict[str, int]:
        rows = {row.name: row for row in layer_storage(self.model, self.candidates)}
        return {name: rows[name].saved_bits for name in self.candidates}

    def _make_probe(self) -> Probe:
        loader = BatchLoader(self.train, 128, shuffle=True, seed=self.config.seed + 7919, drop_last=True)
        batches = []
        for index, (images, labels) in enumerate(loader):
            if index >= self.config.probe_batches:
                break
            batches.append((images.to(self.ctx.device), labels.to(self.ctx.device)))
        return Probe(batches)

    def storage_bits(self) -> int:
        return total_bits(layer_storage(self.model, binarized_layers(self.model)))[1]

    def record(self, action: str, layer: str | None, estimates: dict[str, float] | None = None) -> SearchStep:
        step = SearchStep(
            index=len(self.trajectory), action=action, layer=layer, selection=binarized_layers(self.model),
            val_accuracy=self.val_before - self.current_drop, drop=self.current_drop,
            storage_bits=self.storage_bits(), estimates=dict(estimates or {}), seconds=time.perf_counter() - self.started,
        )
        self.trajectory.append(step)
        if self.on_progress is not None:
            selection = ",".join(n.split(".")[-1] for n in step.selection) or "none"
            status = f"binarized [{selection}]  val {step.val_accuracy:.2f}% (drop {step.drop:+.2f} / budget {self.budget:.2f})"
            self.on_progress(ProgressEvent("search", f"search: {action}", len(self.trajectory), None, status))
        return step

    def final_decisions(self) -> list[LayerDecision]:
        """One decision per candidate, in model order (untouched ones say so)."""
        selected = set(binarized_layers(self.model))
        return [
            self.decisions.get(name)
            or LayerDecision(name, self._params(name), name in selected, None, None, self.saved_bits[name], "not considered")
            for name in self.candidates
        ]

    def decide(self, name: str, binarized: bool, reason: str, raw: float | None = None, measured: float | None = None) -> None:
        """Record the (latest) verdict on candidate ``name``."""
        estimate = self.calibration.points(raw) if raw is not None else None
        self.decisions[name] = LayerDecision(
            name=name, params=self._params(name), binarized=binarized, estimator_value=raw, estimate=estimate,
            saved_bits=self.saved_bits[name], reason=reason, measured_drop=measured,
        )

    def _params(self, name: str) -> int:
        module = dict(self.model.named_modules())[name]
        return int(module.weight.numel())

    # -- the three operations strategies compose --------------------------------------
    def estimate(self, names: list[str]) -> dict[str, float]:
        """Raw estimator values for ``names`` on the current model (identical on every rank)."""
        start = time.perf_counter()
        values = self.estimator.estimate(self.model, names, self.probe)
        self.timings["estimate"] += time.perf_counter() - start
        return self.ctx.broadcast(values)

    def finetune(self, epochs: float, description: str) -> None:
        """Finetune the current model for ``epochs`` (one cosine slice), then re-estimate BN."""
        if epochs <= 0:
            return
        start = time.perf_counter()
        self.slices += 1
        config = TrainConfig(
            epochs=epochs, batch_size=self.config.batch_size, lr=self.config.lr, seed=self.config.seed + self.slices,
            amp=self.config.amp, sync_bn=self.config.sync_bn,
        )
        tracker = self.estimator.tracker if isinstance(self.estimator, LossEstimator) else None
        after_backward = (lambda model: tracker.update(model, self.candidates)) if tracker else None
        trainer = Trainer(self.model, self.train, config, self.ctx, self.loss_fn, after_backward)
        trainer.run(trainer.total_steps, self.on_progress, description)
        self.finetune_epochs += trainer.total_steps / trainer.steps_per_epoch
        self.timings["finetune"] += time.perf_counter() - start

    def measure(self) -> float:
        """Re-estimate batch norm, then the validation drop (points) against the input model."""
        start = time.perf_counter()
        recalibrate_batchnorm(self.model, self.train, self.ctx, self.config.bn_batches, seed=self.config.seed)
        self.current_drop = self.val_before - evaluate(self.model, self.val, self.ctx)
        self.timings["measure"] += time.perf_counter() - start
        return self.current_drop

    def snapshot(self) -> tuple[list[str], dict[str, torch.Tensor]]:
        return binarized_layers(self.model), copy.deepcopy(self.model.state_dict())

    def restore(self, snapshot: tuple[list[str], dict[str, torch.Tensor]], drop: float) -> None:
        selection, state = snapshot
        unbinarize_(self.model, [n for n in binarized_layers(self.model) if n not in selection])
        binarize_(self.model, selection)
        self.model.load_state_dict(state)
        self.current_drop = drop

    def binarize(self, names: list[str]) -> None:
        binarize_(self.model, names)

    def unbinarize(self, names: list[str]) -> None:
        unbinarize_(self.model, names)

    def verify_and_back_off(self) -> None:
        """Measure the final model; while over budget, return the costliest-per-bit layer to float.

        If the model is still over budget with every layer in float (finetuning itself
        cost accuracy), the input model is returned unchanged: its drop is 0 by definition.
        """
        drop = self.measure()
        self.record("final", None)
        while drop > self.budget and self._binarized_candidates():
            selection = self._binarized_candidates()
            worst = max(selection, key=lambda n: (self.decisions[n].measured_drop or 0.0) / max(self.saved_bits[n], 1))
            self.unbinarize([worst])
            self.finetune(self.config.trial_epochs, f"back off {worst}")
            drop = self.measure()
            previous = self.decisions[worst]
            self.decide(
                worst, False, f"backed off at the final check: drop with it > budget {self.budget:.2f} pts",
                previous.estimator_value, previous.measured_drop,
            )
            self.record("backoff", worst)
        if drop > self.budget:
            self.restore(self.initial, 0.0)
            self.record("restore-input", None)

    def _binarized_candidates(self) -> list[str]:
        return [name for name in binarized_layers(self.model) if name in self.saved_bits]

    def run(self, strategy_fn: Callable[[SearchSession], None]) -> None:
        """Record the starting point, then let ``strategy_fn`` drive the session."""
        self.record("start", None)
        strategy_fn(self)
        if self.on_progress is not None:
            self.on_progress(ProgressEvent("search", "search: done", len(self.trajectory), None, finished=True))


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the run and give the caller's random state back after it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _as_imageset(data: ImageSet | tuple[torch.Tensor, torch.Tensor]) -> ImageSet:
    if isinstance(data, ImageSet):
        return data
    images, labels = data
    return ImageSet(images, labels.to(torch.int64), pixel_max=1.0)


def compress(
    model: nn.Module,
    train_data: ImageSet | tuple[torch.Tensor, torch.Tensor],
    val_data: ImageSet | tuple[torch.Tensor, torch.Tensor],
    budget: float = 0.2,
    *,
    test_data: ImageSet | tuple[torch.Tensor, torch.Tensor] | None = None,
    config: SearchConfig | None = None,
    ctx: DistContext = LOCAL,
    on_progress: ProgressCallback | None = None,
) -> CompressionResult:
    """Binarize the candidate layers of ``model`` that ``budget`` affords.

    Args:
        model: any ``nn.Module`` mapping images (in [0, 1] for ImageSets, else as
            given) to logits; it is copied, never modified.
        train_data, val_data: an :class:`ImageSet` or ``(images, labels)`` tensors.
            Finetuning uses ``train_data``; the budget is checked on ``val_data``.
        budget: allowed drop in percentage points of validation top-1 accuracy
            (0.2 = 0.2 points), against the input model on the same split.
        test_data: optional; reported only, never used for decisions.
        config: strategy, estimator, finetuning settings, seed.

    Returns:
        The compressed model with its selection, decisions, trajectory and accuracies.

    Raises:
        BudgetError: ``budget`` is negative or not a number.
        CompressionError: there is no candidate layer, or a layer name is wrong.
    """
    from albsnn_compress.strategies import STRATEGY_FUNCTIONS

    budget = check_budget(budget)
    config = config or SearchConfig()
    if config.strategy not in STRATEGIES:
        raise CompressionError(f"unknown strategy {config.strategy!r}; choose one of {list(STRATEGIES)}")
    if config.estimator not in ESTIMATORS:
        raise CompressionError(f"unknown estimator {config.estimator!r}; choose one of {list(ESTIMATORS)}")
    started = time.perf_counter()
    train, val = _as_imageset(train_data), _as_imageset(val_data)
    test = _as_imageset(test_data) if test_data is not None else None
    with _seeded(config.seed, ctx.device):
        session = SearchSession(model, train, val, budget, config, ctx, on_progress)
        session.run(STRATEGY_FUNCTIONS[config.strategy])
        accuracy = {"val_before": session.val_before, "val_after": session.val_before - session.current_drop}
        if test is not None:
            accuracy["test_before"] = evaluate(session.input_model, test, ctx)
            accuracy["test_after"] = evaluate(session.model, test, ctx)
    compressed = session.model.to("cpu").eval()
    timings = dict(session.timings)
    timings["total"] = time.perf_counter() - started
    return CompressionResult(
        model=compressed, selected=binarized_layers(compressed), candidates=session.candidates,
        decisions=session.final_decisions(),
        trajectory=session.trajectory, budget=budget, accuracy=accuracy, timings=timings,
        finetune_epochs=session.finetune_epochs, strategy=config.strategy, estimator=config.estimator,
        seed=config.seed, config=asdict(config), finetune_slices=session.slices,
    )
