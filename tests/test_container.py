"""The ``.albsnn`` container: golden bytes, bit-exact round trips, layout rules, atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from albsnn_compress.binarize import binarize_, binarized_layers
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data.registry import load_split
from albsnn_compress.errors import ContainerError
from albsnn_compress.files.atomic import atomic_write
from albsnn_compress.formats.container import file as container_module
from albsnn_compress.formats.container.file import (
    container_bytes,
    container_summary,
    is_container,
    read_container,
    sha256_file,
    write_container,
)
from albsnn_compress.formats.container.header import ALIGNMENT, MAGIC, PREAMBLE
from albsnn_compress.snn.presets import PRESETS, make_preset
from albsnn_compress.snn.recording import recorded_outputs
from albsnn_compress.snn.spec import SpikingNet, spec_bounds
from albsnn_compress.training.trainer import evaluate
from tests.clihelp import run_cli

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def _load_make_golden() -> Any:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = _load_make_golden()


def _digits_model(arch: str = "digits-small", timesteps: int = 1, binarized: tuple[str, ...] = ()) -> SpikingNet:
    """A random model with random batch-norm gains and statistics (so neurons fire)."""
    torch.manual_seed(0)
    model = SpikingNet(make_preset(arch, [1, 8, 8], 10, [0.3053], [0.376]), timesteps)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(1.0, 4.0)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.05, 0.5)
    binarize_(model, list(binarized))
    return model.eval()


def _inputs() -> torch.Tensor:
    return torch.rand((16, 1, 8, 8), generator=torch.Generator().manual_seed(3))


@pytest.fixture
def model() -> SpikingNet:
    return _digits_model(binarized=("layers.conv2", "layers.conv4"))


# --- golden vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(make_golden.CASES))
def test_golden_bytes_are_reproduced(name: str) -> None:
    assert make_golden.golden_bytes(name) == (GOLDEN / f"{name}.albsnn").read_bytes(), (
        f"the container bytes of golden case {name} changed: a format change needs a version bump "
        "(docs/format.md) and `python tests/golden/make_golden.py`"
    )


@pytest.mark.parametrize("name", sorted(make_golden.CASES))
def test_golden_file_reads_to_the_same_model(name: str) -> None:
    container = read_container(GOLDEN / f"{name}.albsnn")
    original, _ = make_golden.build(name)
    inputs = make_golden.fixed_inputs()
    expected = torch.tensor(json.loads((GOLDEN / "expected_outputs.json").read_text())[name])
    with torch.no_grad():
        outputs = container.model(inputs)
        assert torch.equal(outputs, original(inputs))
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-5)
    assert torch.equal(outputs.argmax(1), expected.argmax(1))


def test_a_file_written_before_the_neuron_variants_still_reads() -> None:
    """The spec vocabulary grows by keys with defaults: an older file reads to the same model."""
    legacy = read_container(GOLDEN / "legacy_conv_mixed_before_neuron_variants.albsnn")
    assert "leak" not in legacy.header["spec"]["neuron"]
    current = read_container(GOLDEN / "conv_mixed.albsnn")
    assert legacy.model.spec == current.model.spec
    inputs = make_golden.fixed_inputs()
    with torch.no_grad():
        assert torch.equal(legacy.model(inputs), current.model(inputs))


def test_golden_header_content() -> None:
    container = read_container(GOLDEN / "conv_mixed.albsnn")
    header = container.header
    assert header["binarized"] == ["layers.conv2", "layers.conv3"]
    assert header["metadata"]["dataset"] == "digits"
    assert header["budget"] == 0.5 and header["accuracy"]["test_after"] == 96.5
    assert header["source_sha256"] == hashlib.sha256(b"golden source checkpoint").hexdigest()
    conv2 = container.tensors["layers.conv2.weight"]
    assert (conv2.kind, conv2.shape, conv2.nbytes) == ("binary", (32, 16, 3, 3), 32 * 16 * 9 // 8)
    assert container.tensors["layers.conv2.weight_scale"].shape == (32,)
    assert container.tensors["layers.conv1.weight"].kind == "float32"
    assert container_summary(container)["kinds"]["binary"] == {
        "tensors": 2,
        "elements": 32 * 16 * 9 + 32 * 32 * 9,
        "bytes": 576 + 1152,
    }


def test_golden_float16_kinds() -> None:
    tensors = read_container(GOLDEN / "fc_float16.albsnn").tensors
    assert (tensors["layers.conv1.weight"].kind, tensors["layers.conv1.weight"].nbytes) == (
        "binary",
        5,
    )  # 36 bits, 4 padding
    assert tensors["layers.linear1.weight"].kind == "binary"
    assert tensors["layers.linear1.weight_scale"].kind == "float32"
    assert tensors["layers.linear2.weight"].kind == "float16"


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "timesteps", "binarized"),
    [
        ("digits-small", 1, ()),
        ("digits-small", 1, ("layers.conv2", "layers.conv3", "layers.conv4")),
        ("digits-small", 3, ("layers.conv1", "layers.conv5")),
        ("digits-fc", 2, ("layers.linear1",)),
        ("digits-fc", 1, ("layers.conv2", "layers.linear1", "layers.linear2")),
    ],
)
def test_round_trip_outputs_are_bit_exact(
    tmp_path: Path, arch: str, timesteps: int, binarized: tuple[str, ...]
) -> None:
    model = _digits_model(arch, timesteps, binarized)
    path = tmp_path / "m.albsnn"
    write_container(path, model)
    container = read_container(path)
    assert not container.model.training
    assert binarized_layers(container.model) == list(binarized)
    assert container.model.timesteps == timesteps
    with torch.no_grad():
        outputs = container.model(_inputs())
        assert torch.equal(outputs, model(_inputs()))
    assert len(outputs.unique(dim=0)) > 1, "the model ignores its input: the test would prove little"
    read_modules, modules = dict(container.model.named_modules()), dict(model.named_modules())
    for name in container.tensors:
        module, _, attr = name.rpartition(".")
        if not attr.endswith("_scale"):  # effective tensors (binary weights as alpha * sign) are equal
            assert torch.equal(getattr(read_modules[module], attr), getattr(modules[module], attr)), name


def test_rewriting_a_read_model_gives_the_same_bytes(tmp_path: Path, model: SpikingNet) -> None:
    first = tmp_path / "a.albsnn"
    write_container(first, model, accuracy={"test": 97.0}, metadata={"dataset": "digits"})
    again = container_bytes(read_container(first).model, accuracy={"test": 97.0}, metadata={"dataset": "digits"})
    assert again == first.read_bytes()
    assert container_bytes(model, accuracy={"test": 97.0}, metadata={"dataset": "digits"}) == again


def test_float16_round_trip(tmp_path: Path, model: SpikingNet) -> None:
    path = tmp_path / "h.albsnn"
    write_container(path, model, float_kind="float16")
    container = read_container(path)
    read_state = container.model.state_dict()
    for key, value in model.state_dict().items():
        if "num_batches_tracked" in key or "parametrizations" in key:
            continue
        assert torch.equal(read_state[key], value.half().float()), key
    assert torch.equal(container.model.layers.conv2.weight, model.layers.conv2.weight)  # binary stays exact


def test_reading_does_not_move_the_global_rng(tmp_path: Path, model: SpikingNet) -> None:
    write_container(tmp_path / "m.albsnn", model)
    state = torch.random.get_rng_state()
    read_container(tmp_path / "m.albsnn")
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("input_shape", [[1, 28, 28], [3, 8, 8]])
def test_architecture_bounds_match_real_models(preset: str, input_shape: list[int]) -> None:
    spec = make_preset(preset, input_shape, 10, [0.5] * input_shape[0], [0.25] * input_shape[0])
    model = SpikingNet(spec).eval()
    sizes = recorded_outputs(
        model.layers, torch.zeros((1, 1, *input_shape)), list(model.layers), lambda _m, _i, out: out[0, 0].numel()
    )
    largest = [math.prod(input_shape), *(size for calls in sizes.values() for size in calls)]
    params = sum(v.numel() for k, v in model.state_dict().items() if "num_batches_tracked" not in k)
    assert spec_bounds(model.spec) == (params, max(largest))


# --- layout and header ------------------------------------------------------------------------


def test_layout_rules(model: SpikingNet) -> None:
    data = container_bytes(model)
    magic, version, _, header_len = PREAMBLE.unpack_from(data)
    assert (magic, version) == (MAGIC, 1)
    start = PREAMBLE.size + header_len
    assert start % ALIGNMENT == 0
    raw = data[PREAMBLE.size : start]
    header = json.loads(raw)
    assert raw.rstrip(b" ").endswith(b"}") and len(raw) - len(raw.rstrip(b" ")) < ALIGNMENT
    tensors = header["tensors"]
    assert [t["name"] for t in tensors][:6] == [
        "layers.conv1.weight",
        "layers.bn1.weight",
        "layers.bn1.bias",
        "layers.bn1.running_mean",
        "layers.bn1.running_var",
        "layers.conv2.weight",
    ]
    assert tensors[6]["name"] == "layers.conv2.weight_scale"
    assert not any("num_batches_tracked" in t["name"] for t in tensors)
    assert all(t["offset"] % ALIGNMENT == 0 for t in tensors)
    assert start + tensors[-1]["offset"] + tensors[-1]["nbytes"] == len(data)


def _schema() -> dict[str, Any]:
    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- header-schema -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/format.md lost its header JSON schema block"
    return json.loads(match.group(1))


@pytest.mark.parametrize("name", sorted(make_golden.CASES))
def test_headers_match_the_documented_schema(name: str) -> None:
    header = read_container(GOLDEN / f"{name}.albsnn").header
    jsonschema.validate(header, _schema())


def test_schema_rejects_an_unknown_field() -> None:
    header = read_container(GOLDEN / "fc_float32.albsnn").header
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        jsonschema.validate({**header, "extra": 1}, _schema())


def test_summary_and_helpers(tmp_path: Path, model: SpikingNet) -> None:
    path = tmp_path / "m.albsnn"
    write_container(path, model, class_names=[str(i) for i in range(10)], budget=0.3, metadata={"dataset": "digits"})
    summary = container_summary(read_container(path))
    assert summary["architecture"] == "digits-small" and summary["binarized"] == ["layers.conv2", "layers.conv4"]
    assert summary["file_bytes"] == path.stat().st_size
    assert summary["kinds"]["binary"]["bytes"] == (32 * 16 * 9 + 64 * 32 * 9) // 8
    assert is_container(path) and not is_container(GOLDEN / "make_golden.py")
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metadata": {"dataset": 3}}, r"field 'metadata': value of 'dataset' must be a string"),
        ({"metadata": {"k": "v" * 70000}}, r"field 'metadata': .* bytes of keys and values, at most 65536"),
        ({"class_names": ["a", "b"]}, r"field 'class_names': 2 names for 10 classes"),
        ({"budget": -1.0}, r"field 'budget': expected a number >= 0"),
        ({"source_sha256": "abc"}, r"field 'source_sha256': expected 64 lowercase hex digits"),
        ({"accuracy": {"test": float("nan")}}, r"field 'accuracy': value of 'test' must be a finite number"),
        ({"float_kind": "int8"}, r"float_kind 'int8': choose one of"),
        ({"accuracy": {"test": "high"}}, r"field 'accuracy': value of 'test' must be a finite number, got 'high'"),
        ({"metadata": {"k": "\ud800"}}, r"header: text '\\ud800' is not encodable as UTF-8"),
    ],
)
def test_writer_rejects_bad_header_values(
    tmp_path: Path, model: SpikingNet, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ContainerError, match=match):
        write_container(tmp_path / "m.albsnn", model, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- atomic writes ----------------------------------------------------------------------------


class _FailingStream:
    """Writes through to a real stream until ``budget`` bytes, then fails like a full disk."""

    def __init__(self, stream: Any, budget: int) -> None:
        self.stream, self.budget = stream, budget

    def write(self, data: bytes) -> int:
        if len(data) > self.budget:
            self.stream.write(data[: self.budget])
            raise OSError(28, "No space left on device")
        self.budget -= len(data)
        return self.stream.write(data)


@pytest.mark.parametrize("fail_after", [0, 10, 24, 500, 2000, 6000])
def test_failed_write_keeps_the_old_file(
    tmp_path: Path, model: SpikingNet, monkeypatch: pytest.MonkeyPatch, fail_after: int
) -> None:
    path = tmp_path / "m.albsnn"
    write_container(path, model)
    old = path.read_bytes()

    @contextlib.contextmanager
    def failing_atomic_write(target: Path) -> Any:
        with atomic_write(target) as stream:
            yield _FailingStream(stream, fail_after)

    monkeypatch.setattr(container_module, "atomic_write", failing_atomic_write)
    with pytest.raises(OSError, match="No space left"):
        write_container(path, _digits_model(binarized=("layers.conv3",)))
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.albsnn"]


@pytest.mark.parametrize("target", ["fsync", "replace"])
def test_failed_fsync_or_rename_keeps_the_old_file(
    tmp_path: Path, model: SpikingNet, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    path = tmp_path / "m.albsnn"
    write_container(path, model)
    old = path.read_bytes()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(5, f"{target} failed")

    monkeypatch.setattr(os, target, fail)
    with pytest.raises(OSError, match=f"{target} failed"):
        write_container(path, _digits_model(binarized=("layers.conv3",)))
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.albsnn"]


# --- command line: inspect and eval --------------------------------------------------------------


def test_cli_inspect_shows_header_and_tensors() -> None:
    path = GOLDEN / "conv_mixed.albsnn"
    out = run_cli(["inspect", str(path)]).stdout
    entry = read_container(path).tensors["layers.conv2.weight_scale"]
    for text in (
        "golden-conv",
        "layers.conv2, layers.conv3",
        "test_after 96.50%",
        "0.5 percentage points",
        "metadata dataset",
        "layers.conv2.weight_scale",
        "binary",
        "[32, 16, 3, 3]",
        f"{entry.crc32:08x}",
        str(entry.offset),
    ):
        assert text in out, text


def test_cli_inspect_json_is_the_raw_header() -> None:
    path = GOLDEN / "fc_float16.albsnn"
    assert json.loads(run_cli(["inspect", str(path), "--json"]).stdout) == read_container(path).header


def test_cli_inspect_shows_hostile_text_literally(tmp_path: Path, model: SpikingNet) -> None:
    path = tmp_path / "m.albsnn"
    write_container(path, model, metadata={"note": "\x1b[31m[bold]red[/]"})
    out = run_cli(["inspect", str(path)]).stdout
    assert "\x1b" not in out and "\\x1b[31m[bold]red[/]" in out


@pytest.mark.parametrize("command", [["inspect"], ["inspect", "--json"], ["eval"]])
def test_cli_corrupt_file_is_one_line_exit_2(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "broken.albsnn"
    path.write_bytes((GOLDEN / "conv_mixed.albsnn").read_bytes()[:3000])
    result = run_cli([command[0], str(path), *command[1:]], expected_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: header_len: ")
    assert "Traceback" not in result.output


def _printed_accuracy(stdout: str) -> float:
    match = re.search(r"top-1 accuracy ([0-9.]+)%", stdout)
    assert match, stdout
    return float(match.group(1))


def test_cli_eval_matches_evaluate(tmp_path: Path, digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    binarize_(model, ["layers.conv2", "layers.conv3"])
    path = tmp_path / "m.albsnn"
    write_container(path, model, metadata={"dataset": "digits"})
    for split in ("test", "val"):
        data = load_split("digits", None, split)
        printed = _printed_accuracy(run_cli(["eval", str(path), "--split", split, "--device", "cpu"]).stdout)
        assert printed == round(evaluate(read_container(path).model, data), 2)
    checkpoint_accuracy = evaluate(load_checkpoint(digits_checkpoint), load_split("digits", None, "test"))
    assert checkpoint_accuracy > 50  # a trained model, so equality below is not a coincidence of chance level
    out = run_cli(["eval", str(digits_checkpoint), "--batch-size", "64", "--device", "cpu"]).stdout
    assert _printed_accuracy(out) == round(checkpoint_accuracy, 2) and "digits test" in out


def test_cli_eval_needs_a_dataset(tmp_path: Path, model: SpikingNet) -> None:
    path = tmp_path / "m.albsnn"
    write_container(path, model)
    assert "pass one" in run_cli(["eval", str(path)], expected_exit=2).stderr
    assert "top-1 accuracy" in run_cli(["eval", str(path), "--dataset", "digits", "--device", "cpu"]).stdout
    message = run_cli(["eval", str(path), "--dataset", "fashion-mnist"], expected_exit=2).stderr
    assert "takes inputs of shape [1, 8, 8], fashion-mnist images are [1, 28, 28]" in message


# --- values and messages (issue 19) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("poison", "kwargs", "match"),
    [
        ("layers.conv1.weight", {}, r"tensor 'layers\.conv1\.weight': values must be finite, found nan"),
        (
            "layers.bn1.running_var",
            {},
            r"tensor 'layers\.bn1\.running_var': values must be finite and >= 0, found -1\.0",
        ),
        (
            "layers.bn2.weight",
            {"float_kind": "float16"},
            r"tensor 'layers\.bn2\.weight': a value overflows float16 \(largest 65504\); write it with "
            r"float_kind='float32'",
        ),
    ],
)
def test_writer_refuses_values_the_reader_refuses(
    tmp_path: Path, model: SpikingNet, poison: str, kwargs: dict[str, Any], match: str
) -> None:
    module, _, attr = poison.rpartition(".")
    value = {"layers.conv1.weight": float("nan"), "layers.bn1.running_var": -1.0, "layers.bn2.weight": 1e6}[poison]
    with torch.no_grad():
        getattr(dict(model.named_modules())[module], attr).view(-1)[0] = value
    with pytest.raises(ContainerError, match=match):
        write_container(tmp_path / "m.albsnn", model, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_reading_fills_the_model_in_place_bit_exactly(tmp_path: Path, model: SpikingNet) -> None:
    """The reader writes each tensor into the model's own storage: same values as the written model, binarized layers
    marked."""
    path = tmp_path / "m.albsnn"
    write_container(path, model, float_kind="float16")
    loaded = read_container(path).model
    assert binarized_layers(loaded) == ["layers.conv2", "layers.conv4"]
    for key, value in loaded.state_dict().items():
        assert key.endswith("num_batches_tracked") or (value.dtype == torch.float32 and value.is_contiguous()), key
    assert torch.equal(loaded.layers.conv2.weight, model.layers.conv2.weight)  # alpha * sign, as the writer had it


def test_a_damaged_magic_is_reported_as_a_damaged_container(tmp_path: Path) -> None:
    from albsnn_compress.model_file import load_model_file

    data = (GOLDEN / "conv_mixed.albsnn").read_bytes()
    path = tmp_path / "sent-as-text.albsnn"
    path.write_bytes(data[:7] + b"\r\n" + data[8:])  # what a text-mode transfer does to the final newline
    assert is_container(path)
    with pytest.raises(
        ContainerError, match=r"magic: the file starts like an \.albsnn container whose magic is damaged .*CR LF"
    ):
        load_model_file(path)


def test_cli_inspect_json_escapes_what_a_terminal_would_interpret(tmp_path: Path, model: SpikingNet) -> None:
    path = tmp_path / "m.albsnn"
    texts = ["\x9b31mred", "del\x7f", "bidi\u202eevil", "bell\x07", "é ok", "\U0001f600", "\U000e0041tag"]
    with pytest.raises(ContainerError, match="control character"):  # names never hold one (the shared rule)
        write_container(path, model, class_names=texts + [str(i) for i in range(3)])
    write_container(path, model, metadata={f"note{i}": text for i, text in enumerate(texts)})  # free text may
    out = run_cli(["inspect", str(path), "--json"]).stdout
    assert not [c for c in out if not c.isprintable() and c != "\n"], "no raw control character reaches the terminal"
    assert "é ok" in out and "\U0001f600" in out  # printable text stays readable
    assert json.loads(out) == read_container(path).header  # still the raw header, as valid JSON


def test_cli_eval_lowers_the_batch_to_fit_the_memory_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid container whose layers are huge (padding 250: 4 million activations per image) evaluates in batches
    that need at most 1 GiB, not 256 images at once (which took 29 GB)."""
    from albsnn_compress.files.model_cost import MAX_INFERENCE_BYTES, inference_bytes

    spec = {
        "name": "padded",
        "input": {"shape": [1, 8, 8], "mean": [0.3], "std": [0.37]},
        "num_classes": 10,
        "layers": [
            {"type": "conv", "out_channels": 16, "kernel_size": 1, "padding": 250},
            {"type": "bn"},
            {"type": "lif"},
            {"type": "gap"},
            {"type": "linear", "out_features": 10},
        ],
    }
    path = tmp_path / "padded.albsnn"
    write_container(path, SpikingNet(spec).eval(), metadata={"dataset": "digits"})
    seen = []

    def fake_evaluate(model: SpikingNet, data: Any, ctx: Any, batch_size: int) -> float:
        seen.append(batch_size)
        return 0.0

    monkeypatch.setattr("albsnn_compress.cli.eval.evaluate", fake_evaluate)
    run_cli(["eval", str(path), "--device", "cpu"])
    normalized = read_container(path).model.spec
    assert seen == [MAX_INFERENCE_BYTES // inference_bytes(normalized, 1, 1)] and 1 <= seen[0] < 256
