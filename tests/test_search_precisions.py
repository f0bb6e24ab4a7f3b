"""The search over precisions (issue 26) on a real small case (digits): ladders, 'all', 'recover', refusals.

The strategies' branches are scripted in tests/test_strategy_recover.py; here the real session
sets real precisions, the result and the checkpoint carry them, and the budget still holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
import torch

from albsnn_compress import load_checkpoint
from albsnn_compress.binarize import candidate_layers
from albsnn_compress.checkpoint import read_checkpoint, save_checkpoint
from albsnn_compress.data import load_split, load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.precision import layer_bits
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.candidates import resolve_candidates, resolve_ladders
from albsnn_compress.storage import layer_storage, total_bits
from albsnn_compress.training.trainer import evaluate
from tests.clihelp import run_cli


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", None)


def test_precisions_one_gives_the_binary_search_its_candidates(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    ladders = resolve_ladders(model, None, [], False, (1,))
    assert list(ladders) == resolve_candidates(model, None, [], False)
    assert set(ladders.values()) == {(1,)}


def test_with_eight_bits_the_first_and_last_layers_become_eight_bit_candidates(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    every, inner = candidate_layers(model, include_first_last=True), candidate_layers(model)
    edges = [name for name in every if name not in inner]
    ladders = resolve_ladders(model, None, [], False, (1, 4, 8))
    assert list(ladders) == every and len(edges) == 2
    assert all(ladders[name] == (8,) for name in edges)
    assert all(ladders[name] == (1, 4, 8) for name in inner)
    # named layers and --binarize-first-last take every precision; without 8 bits the edges stay out
    assert resolve_ladders(model, [edges[0]], [], False, (1, 8)) == {edges[0]: (1, 8)}
    assert set(resolve_ladders(model, None, [], True, (1, 8)).values()) == {(1, 8)}
    assert list(resolve_ladders(model, None, [], False, (1, 4))) == inner


@pytest.mark.parametrize(
    ("value", "problem"),
    [([3], "precision '3'"), ([], "non-empty"), ("1,8", "list of"), ([1.0], "whole bits"), ([True], "whole bits")],
)
def test_unknown_or_malformed_precisions_are_refused_by_name(value: object, problem: str) -> None:
    with pytest.raises(CompressionError, match=problem):
        SearchConfig(precisions=value)  # type: ignore[arg-type]


def test_precisions_are_sorted_and_counted_once() -> None:
    assert SearchConfig(precisions=[8, 1, 8]).precisions == (1, 8)


def test_a_strategy_that_decides_one_bit_only_refuses_other_precisions(digits_checkpoint: Path, digits) -> None:
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(strategy="adaptive", precisions=(1, 8), epochs=0.1)
    with pytest.raises(CompressionError, match="strategy 'adaptive' decides between 1 bit and float only"):
        compress(model, digits["train"], digits["val"], 1.0, config=config)


def test_all_sets_each_layer_to_its_fewest_bits_and_the_checkpoint_keeps_them(
    digits_checkpoint: Path, digits, tmp_path: Path
) -> None:
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(strategy="all", precisions=(1, 8), epochs=0.2)
    result = compress(model, digits["train"], digits["val"], 1.0, config=config)
    inner = candidate_layers(model)
    edges = [name for name in candidate_layers(model, include_first_last=True) if name not in inner]
    assert result.precisions == {**{name: 8 for name in edges}, **{name: 1 for name in inner}}
    assert layer_bits(result.model) == {name: result.precisions[name] for name in layer_bits(result.model)}
    assert result.binarized == inner
    assert {d.name: d.bits for d in result.decisions} == result.precisions
    assert result.trajectory[-1].precisions == result.precisions
    float_bits, after_bits = total_bits(layer_storage(result.model, result.binarized))
    edge_weights = sum(dict(result.model.named_modules())[name].weight.numel() for name in edges)
    assert float_bits - after_bits > 24 * edge_weights  # the 8-bit edges save 24 bits per weight, less their scale
    path = tmp_path / "mixed.pt"
    save_checkpoint(path, result.model)
    read = read_checkpoint(path)
    assert read.precisions == {name: 8 for name in edges} and read.binarized == inner
    rebuilt = read.build()
    images = digits["val"].images[:64]
    with torch.no_grad():
        assert torch.equal(rebuilt(images), result.model.eval()(images))


def test_recover_over_precisions_holds_the_budget_and_the_seed_fixes_it(digits_checkpoint: Path, digits) -> None:
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(precisions=(1, 2, 4, 8), epochs=0.5, trial_epochs=0.25, seed=3)
    first = compress(model, digits["train"], digits["val"], 0.0, config=config)
    measured = evaluate(first.model, digits["val"])
    assert first.accuracy["val_before"] - measured <= 1e-9
    assert set(first.precisions.values()) <= {1, 2, 4, 8}
    assert {d.name: d.bits for d in first.decisions if d.bits < 32} == first.precisions
    again = compress(model, digits["train"], digits["val"], 0.0, config=config)
    assert again.precisions == first.precisions
    assert [step.action for step in again.trajectory] == [step.action for step in first.trajectory]


def test_the_cli_searches_precisions_and_every_file_computes_what_the_model_computes(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [str(digits_checkpoint), "--budget", "5", "--strategy", "all", "--precisions", "8,1", "--epochs", "0.2"]
    run_cli([*args, "--quiet", "-o", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["config"]["precisions"] == [1, 8]
    bits = {layer["name"]: layer["precision_after"] for layer in report["layers"] if layer["candidate"]}
    assert bits == {"layers.conv1": 8, "layers.conv2": 1, "layers.conv3": 1, "layers.conv4": 1, "layers.conv5": 8}
    test = load_split("digits", None, "test")
    container = read_container(out / "model.albsnn").model
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = container(test.as_float()).numpy()
    logits = session.run(None, {session.get_inputs()[0].name: test.as_float().numpy()})[0]
    assert (logits.argmax(1) == expected.argmax(1)).all() and abs(logits - expected).max() < 1e-4
    for options, words in (([], "stored packed"), (["--format", "c"], "packed")):  # ONNX, then C
        output = tmp_path / ("c" if options else "again.onnx")
        exported = run_cli(["export", str(out / "model.albsnn"), "-o", str(output), *options])
        assert f"3 binarized layer(s) and 2 at 2-8 bits {words}" in exported.stdout
    run_cli(["report", str(out / "report.json"), "--format", "md", "-o", str(tmp_path / "report.md")])
    rendered = (tmp_path / "report.md").read_text()  # the tables the terminal and HTML reports render too
    assert "| 2-8 bits | 2: conv1:8, conv5:8 |" in rendered and "3 binarized, 2 at 2-8 bits" in rendered
    conv1 = next(line for line in rendered.splitlines() if line.startswith("| **conv1** | Conv2d"))
    assert "| 32 -> 8 |" in conv1 and "weight 144×8b" in conv1 and "| 8-bit: " in conv1 and "kept" not in conv1


@pytest.mark.parametrize(
    ("value", "problem"), [("3", "unknown precision '3'"), ("1;8", "comma-separated"), ("", "non-empty")]
)
def test_the_cli_refuses_bad_precisions_in_one_line(digits_checkpoint: Path, value: str, problem: str) -> None:
    result = run_cli([str(digits_checkpoint), "--budget", "1", "--precisions", value], expected_exit=2)
    assert "--precisions" in result.stderr and problem in result.stderr and "Traceback" not in result.output


def test_the_cli_names_the_strategy_that_takes_precisions(digits_checkpoint: Path, tmp_path: Path) -> None:
    args = [str(digits_checkpoint), "--budget", "1", "--strategy", "oracle", "--precisions", "1,8"]
    result = run_cli([*args, "-o", str(tmp_path / "o")], expected_exit=2)
    assert "strategy 'oracle' decides between 1 bit and float only" in result.stderr
    assert result.stderr.count("\n") == 1
