"""Runs that must end and stay bounded: what a run needs is checked before it starts, evaluations fit in memory.

* A batch size larger than the training split made every epoch empty (training drops the
  last incomplete batch), and ``train`` and ``compress`` looped forever. It is refused before
  any step, through the library and the command line, with the split's size and the fix;
  :func:`check_batch_size` agrees with what the loader really draws (a generator checks it).
* The search evaluated in fixed batches of 256 images (a model at T = 4096 grew past 17 GB);
  every evaluation now runs batches bounded the way ``eval`` bounds its own (1 GiB of
  activations per forward pass), which a subprocess checks under ``RLIMIT_AS``.
* A 100,000-character name is refused where the spec (or the import) enters, not after a search.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from albsnn_compress import load_checkpoint
from albsnn_compress.data import BatchLoader, ImageSet, load_splits
from albsnn_compress.data.cifar import CIFAR10_CLASSES
from albsnn_compress.errors import AlbsnnError, CompressionError, InteropError, SpecError
from albsnn_compress.files.model_cost import MAX_INFERENCE_BYTES, fitting_batch_size, inference_bytes
from albsnn_compress.limits import MAX_NAME_CHARS
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.finetune import recalibrate_batchnorm
from albsnn_compress.search.session import SearchSession
from albsnn_compress.snn.spec import SpikingNet, normalize_spec
from albsnn_compress.training.outcomes import correct_answers
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig, Trainer, check_batch_size
from tests.clihelp import run_cli

_DIGITS_TRAIN = 1294  # digits' training split after the fixed validation carve (1438 - 144)


class _Hang(BaseException):
    """The deadline's alarm: a BaseException, so no ``except Exception`` on the way can swallow it."""


@contextmanager
def _deadline(seconds: float = 30.0) -> Iterator[None]:
    """Fail instead of looping forever (the bug this file is about)."""

    def expire(signum: int, frame: object) -> None:
        raise _Hang(f"still running after {seconds} s: an endless loop?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def digits() -> dict[str, ImageSet]:
    return load_splits("digits", None)


# -- batch sizes against split sizes ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(images=st.integers(0, 300), world_size=st.integers(1, 4), batch_size=st.integers(1, 400))
def test_a_batch_size_is_accepted_exactly_when_every_process_draws_a_batch(
    images: int, world_size: int, batch_size: int
) -> None:
    data = ImageSet(torch.zeros(images, 1, 2, 2, dtype=torch.uint8), torch.zeros(images, dtype=torch.int64))
    try:
        check_batch_size(batch_size, images, world_size)
    except AlbsnnError as exc:
        message = str(exc)
        assert "\n" not in message and (f"{images} images" in message or "divisible" in message), message
        draws = batch_size % world_size == 0 and all(
            len(BatchLoader(data, batch_size // world_size, True, rank=r, world_size=world_size, drop_last=True))
            for r in range(world_size)
        )
        assert not draws, message
    else:
        for rank in range(world_size):
            loader = BatchLoader(data, batch_size // world_size, True, rank=rank, world_size=world_size, drop_last=True)
            assert len(loader) >= 1 and len(list(loader)) == len(loader)


@pytest.mark.parametrize("batch_size", [_DIGITS_TRAIN + 1, 4096, 2**31])
def test_train_refuses_a_batch_larger_than_the_split_before_any_step(batch_size: int) -> None:
    events = []
    with _deadline(), pytest.raises(AlbsnnError) as info:
        train_model(TrainRequest(config=TrainConfig(epochs=1, batch_size=batch_size)), on_progress=events.append)
    message = str(info.value)
    assert f"batch size {batch_size} is larger than the {_DIGITS_TRAIN} images of the training split" in message
    assert f"--batch-size {_DIGITS_TRAIN}" in message and "\n" not in message
    assert events == []  # refused before the first epoch was announced


def test_the_largest_batch_size_the_message_offers_trains() -> None:
    with _deadline(60):
        result = train_model(TrainRequest(config=TrainConfig(epochs=1, batch_size=_DIGITS_TRAIN)))
    assert len(result.history) == 1


def test_a_trainer_on_a_small_split_is_refused_and_one_that_fits_runs() -> None:
    tiny = ImageSet(torch.zeros(30, 1, 8, 8, dtype=torch.uint8), torch.arange(30) % 10, pixel_max=16.0)
    spec = {"input": {"shape": [1, 8, 8]}, "num_classes": 10, "layers": [{"type": "flatten"}, {"type": "linear"}]}
    spec["layers"][1]["out_features"] = 10
    with pytest.raises(AlbsnnError, match="batch size 128 is larger than the 30 images of the training split"):
        Trainer(SpikingNet(spec), tiny, TrainConfig(epochs=1))
    trainer = Trainer(SpikingNet(spec), tiny, TrainConfig(epochs=2, batch_size=30))
    with _deadline():
        trainer.run(trainer.total_steps)
    assert trainer.step == 2 and trainer.remaining == 0


def test_an_epoch_without_a_batch_is_an_error_not_an_endless_loop() -> None:
    """The last guard: should a loader draw nothing after the check (changed in between), the step fails at once."""
    data = ImageSet(torch.zeros(30, 1, 8, 8, dtype=torch.uint8), torch.arange(30) % 10, pixel_max=16.0)
    spec = {"input": {"shape": [1, 8, 8]}, "num_classes": 10, "layers": [{"type": "flatten"}, {"type": "linear"}]}
    spec["layers"][1]["out_features"] = 10
    trainer = Trainer(SpikingNet(spec), data, TrainConfig(epochs=1, batch_size=10))
    trainer.loader.batch_size = 31
    with _deadline(), pytest.raises(AlbsnnError, match="epoch 1 drew no batch of 31 from 30 images"):
        trainer.run(1)


@pytest.mark.parametrize("batch_size", [_DIGITS_TRAIN + 1, 4096])
def test_compress_refuses_a_batch_larger_than_the_split_before_the_search(
    digits_checkpoint: Path, digits: dict[str, ImageSet], batch_size: int
) -> None:
    events = []
    config = SearchConfig(batch_size=batch_size, epochs=0.5, trial_epochs=0.5)
    with _deadline(), pytest.raises(CompressionError) as info:
        compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 1.0, config=config,
                 on_progress=events.append)  # fmt: skip
    assert f"larger than the {_DIGITS_TRAIN} images of the training split (train_data)" in str(info.value)
    assert events == []


def test_a_batch_size_no_finetuning_uses_is_legitimate(digits_checkpoint: Path, digits: dict[str, ImageSet]) -> None:
    """Without finetuning (strategy none, no epochs) the batch size is never drawn: nothing to refuse."""
    config = SearchConfig(strategy="none", epochs=0, trial_epochs=0, batch_size=4096)
    with _deadline(60):
        result = compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 5.0, config=config)
    assert result.binarized == []


def test_compress_refuses_an_empty_split(digits_checkpoint: Path, digits: dict[str, ImageSet]) -> None:
    empty = (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    for train, val, what in ((digits["train"], empty, "val_data"), (empty, digits["val"], "train_data")):
        with pytest.raises(CompressionError, match=f"{what}: 0 images"):
            compress(load_checkpoint(digits_checkpoint), train, val, 1.0)


@pytest.mark.parametrize("batch_size", ["1295", "4096", "100000000"])
def test_cli_train_refuses_a_batch_larger_than_the_split(tmp_path: Path, batch_size: str) -> None:
    out = tmp_path / "m.pt"
    with _deadline():
        result = run_cli(["train", "--batch-size", batch_size, "--quiet", "-o", str(out)], expected_exit=2)
    assert f"batch size {batch_size} is larger than the {_DIGITS_TRAIN} images" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_cli_compress_refuses_a_batch_larger_than_the_split(digits_checkpoint: Path, tmp_path: Path) -> None:
    with _deadline():
        result = run_cli(
            [str(digits_checkpoint), "--budget", "1", "--batch-size", "4096", "-o", str(tmp_path / "out")],
            expected_exit=2,
        )
    assert f"batch size 4096 is larger than the {_DIGITS_TRAIN} images" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _png_folder(root: Path, train: int, test: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name in CIFAR10_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / CIFAR10_CLASSES[index % 10] / f"{index:04d}.png")
    return root


_TINY_CIFAR_SPEC = {
    "input": {"shape": [3, 32, 32]},
    "num_classes": 10,
    "layers": [
        {"type": "conv", "out_channels": 4, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "avgpool", "kernel_size": 4},
        {"type": "conv", "out_channels": 4, "padding": 1},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "conv", "out_channels": 10, "kernel_size": 1},
        {"type": "gap"},
    ],
}


def test_a_30_image_folder_at_the_default_batch_size(tmp_path: Path) -> None:
    """30 images: 27 train and 3 val. The default 128 is refused by train and by compress; 8 trains and compresses."""
    root = _png_folder(tmp_path / "cifar", train=30, test=4)
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(_TINY_CIFAR_SPEC), encoding="utf-8")
    base = ["train", "--dataset", "cifar10", "--data-root", str(root), "--arch", str(arch), "--epochs", "1", "--quiet"]
    with _deadline():
        refused = run_cli([*base, "-o", str(tmp_path / "m.pt")], expected_exit=2)
    assert "batch size 128 is larger than the 27 images of the training split" in refused.stderr
    assert "--batch-size 27" in refused.stderr
    with _deadline(60):
        run_cli([*base, "--batch-size", "8", "-o", str(tmp_path / "m.pt")])
    compress_args = [str(tmp_path / "m.pt"), "--data-root", str(root), "--budget", "50", "--quiet"]
    with _deadline():
        refused = run_cli([*compress_args, "-o", str(tmp_path / "out")], expected_exit=2)
    assert "batch size 128 is larger than the 27 images of the training split" in refused.stderr
    with _deadline(120):
        run_cli([*compress_args, "--batch-size", "8", "--epochs", "0.5", "--trial-epochs", "0.5", "-o",
                 str(tmp_path / "out2")])  # fmt: skip


# -- evaluations bounded like eval's ----------------------------------------------------------------------------

_WIDE_SPEC = {
    "input": {"shape": [1, 8, 8]},
    "num_classes": 10,
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 32},
        {"type": "bn"},
        {"type": "lif"},
        {"type": "linear", "out_features": 4096},
        {"type": "lif"},
        {"type": "linear", "out_features": 10},
    ],
}
_WIDE_T = 256  # 28 MiB of activations per image: 256 images at once would need 7 GiB, 1 GiB holds 36


def _wide_model() -> SpikingNet:
    torch.manual_seed(0)
    return SpikingNet(_WIDE_SPEC, _WIDE_T).eval()


def _record_batches(model: SpikingNet) -> list[int]:
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(int(args[0].shape[0])))
    return seen


def test_the_wide_model_needs_bounding() -> None:
    spec = _wide_model().spec
    assert inference_bytes(spec, _WIDE_T, 256) > 6 * MAX_INFERENCE_BYTES
    assert fitting_batch_size(spec, _WIDE_T, 256) == 36


def test_per_image_answers_run_bounded_batches(digits: dict[str, ImageSet]) -> None:
    model = _wide_model()
    seen = _record_batches(model)
    val = digits["val"].subset(torch.arange(80))
    answers = correct_answers(model, val)
    assert answers.shape == (80,) and seen == [36, 36, 8]


def test_the_search_session_evaluates_in_bounded_batches(digits: dict[str, ImageSet]) -> None:
    """The session's validation answers, probe batches and batch-norm re-estimation: all within 1 GiB a pass."""
    model = _wide_model()
    train, val = digits["train"].subset(torch.arange(100)), digits["val"].subset(torch.arange(40))
    config = SearchConfig(strategy="none", epochs=0, trial_epochs=0, bn_batches=2, probe_batches=2)
    session = SearchSession(model, train, val, 1.0, config)
    assert [images.shape[0] for images, _ in session.probe.batches] == [36, 36]
    seen = _record_batches(session.model)
    session.measure()
    assert seen == [36, 36, 36, 4]  # two re-estimation batches, then the 40 validation images


def test_batchnorm_reestimation_on_a_split_smaller_than_its_batch() -> None:
    """20 images and batches of 256: one batch of 20, not none (which reset the statistics and left them so)."""
    spec = {"input": {"shape": [1, 4, 4]}, "num_classes": 2, "layers": [
        {"type": "flatten"}, {"type": "linear", "out_features": 2}, {"type": "bn"}]}  # fmt: skip
    model = SpikingNet(spec)
    data = ImageSet(torch.full((20, 1, 4, 4), 200, dtype=torch.uint8), torch.zeros(20, dtype=torch.int64))
    recalibrate_batchnorm(model, data, batches=3, batch_size=256)
    norm = model.layers.bn1
    assert int(norm.num_batches_tracked) == 1 and not torch.equal(norm.running_mean, torch.zeros(2))


_CAPPED = textwrap.dedent("""
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from albsnn_compress.data import load_splits
    from albsnn_compress.snn.spec import SpikingNet
    from albsnn_compress.training.trainer import evaluate

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    spec, timesteps, count, budget = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    model = SpikingNet(spec, timesteps).eval()
    data = load_splits("digits", None, ("val",))["val"]
    data = data.subset(torch.arange(count))
    small = data.subset(torch.arange(2))
    evaluate(model, small)  # warm up: allocator arenas and first-call costs before the cap
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + budget, resource.RLIM_INFINITY))
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    try:
        outcome = f"accuracy {evaluate(model, data):.2f}"
    except BaseException as exc:
        outcome = f"escaped {type(exc).__name__}: {exc}"[:300]
    print(json.dumps({"outcome": outcome, "added": status("VmHWM") - before}))
""")


@pytest.mark.subprocess
@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status are Linux")
def test_evaluating_a_many_step_model_stays_under_a_2_gib_cap() -> None:
    """100 images at once would need 2.7 GiB; bounded batches of 36 need at most 1 GiB of activations."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, json.dumps(_WIDE_SPEC), str(_WIDE_T), "100", str(2 << 30)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["outcome"].startswith("accuracy "), measured
    assert measured["added"] <= MAX_INFERENCE_BYTES + (256 << 20), measured
    assert time.perf_counter() - start < 120


# -- names checked where they enter -----------------------------------------------------------------------------


def _named_spec(model_name: str | None = None, layer_name: str | None = None) -> dict:
    spec: dict = {"input": {"shape": [1, 8, 8]}, "num_classes": 10, "layers": [{"type": "flatten"},
                  {"type": "linear", "out_features": 10}]}  # fmt: skip
    if model_name is not None:
        spec["name"] = model_name
    if layer_name is not None:
        spec["layers"][1]["name"] = layer_name
    return spec


@settings(max_examples=40, deadline=None)
@given(length=st.integers(MAX_NAME_CHARS + 1, 100_000), where=st.sampled_from(["model", "layer"]))
def test_long_names_are_refused_when_the_spec_enters(length: int, where: str) -> None:
    name = "a" * length
    spec = _named_spec(model_name=name) if where == "model" else _named_spec(layer_name=name)
    field = "spec name" if where == "model" else "layer 1 name"
    with pytest.raises(SpecError, match=f"{field}: {length} characters, more than {MAX_NAME_CHARS}") as info:
        normalize_spec(spec)
    assert len(str(info.value)) < 200


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, MAX_NAME_CHARS))
def test_names_up_to_the_limit_are_kept(length: int) -> None:
    spec = normalize_spec(_named_spec(model_name="m" * length, layer_name="l" * length))
    assert spec["name"] == "m" * length and spec["layers"][1]["name"] == "l" * length


@pytest.mark.parametrize(
    ("model_name", "message"),
    [
        ("", "spec name: an empty name"),
        ("a\x1bb", "control character"),
        ("\u202eevil", "control character"),
        (7, "spec name: expected text, found int"),
    ],  # fmt: skip
)
def test_bad_model_names_are_refused(model_name: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        normalize_spec(_named_spec(model_name=model_name))  # type: ignore[arg-type]


def test_an_import_with_a_long_name_is_refused_before_anything_is_mapped() -> None:
    snntorch = pytest.importorskip("snntorch", reason="snntorch is not installed")
    from albsnn_compress.interop import from_snntorch

    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 10), snntorch.Leaky(beta=0.9, init_hidden=True, output=True)
    )
    start = time.perf_counter()
    with pytest.raises(InteropError, match="cannot import the snnTorch network: name: 100000 characters, more than"):
        from_snntorch(net, (1, 8, 8), 4, name="n" * 100_000)
    assert time.perf_counter() - start < 1.0
