"""``albsnn-compress train --binarize adaptive``: float warm-up, then binarization during the rest of the run.

End to end on the bundled digits (a few seconds a run): the checkpoint it writes, its recorded
decisions against its binarized layers, ``compress``/``export``/``report`` downstream, the same
bytes for the same seed, and the refused flag combinations (one line, exit status 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albsnn_compress.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from albsnn_compress.data.registry import VAL_FRACTION, load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.progress import ProgressEvent
from albsnn_compress.search.paired_drop import val_share_to_resolve
from albsnn_compress.train_binarized import (
    WARMUP_DESCRIPTION,
    AdaptiveTrainRequest,
    check_warmup_share,
    split_epochs,
    train_binarized,
)
from albsnn_compress.training.train_model import TrainRequest
from albsnn_compress.training.trainer import TrainConfig, evaluate
from tests.clihelp import run_cli

EPOCHS = 2  # one float warm-up epoch, one search epoch: about five seconds on one thread
BUDGET = "5"
ADAPTIVE = ["train", "--epochs", str(EPOCHS), "--binarize", "adaptive", "--budget", BUDGET, "--seed", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The command's checkpoint and its standard output (progress as log lines: the runner is no terminal)."""
    out = tmp_path_factory.mktemp("adaptive") / "adaptive.pt"
    result = run_cli([*ADAPTIVE, "-o", str(out)])
    return out, result.stdout


def _read(path: Path) -> Checkpoint:
    return read_checkpoint(path)


def test_the_checkpoint_holds_a_binarized_model_and_its_record(trained: tuple[Path, str]) -> None:
    path, stdout = trained
    checkpoint = _read(path)
    record = checkpoint.metadata["binarization"]
    assert record["mode"] == "adaptive" and record["budget"] == float(BUDGET)
    assert record["candidates"] == ["layers.conv2", "layers.conv3", "layers.conv4"]  # first and last stay float
    assert checkpoint.binarized and set(checkpoint.binarized) <= set(record["candidates"])
    assert record["binarized"] == checkpoint.binarized
    assert record["warmup_epochs"] == record["search_epochs"] == EPOCHS / 2
    assert record["search_config"]["epochs"] == EPOCHS / 2 and record["search_config"]["seed"] == 3
    assert checkpoint.metadata["train_config"]["epochs"] == EPOCHS  # the whole run
    assert checkpoint.metadata["val_share"] == VAL_FRACTION  # a 5-point budget needs no more than the default
    assert [row["epoch"] for row in checkpoint.metadata["history"]] == [1]  # the warm-up, per epoch
    assert record["trajectory"][0]["action"] == "start" and record["trajectory"][-1]["binarized"] == record["binarized"]
    assert all("seconds" not in step for step in record["trajectory"])  # wall times would change the bytes
    model = checkpoint.build()
    for name, module in model.named_modules():  # a binarized layer computes alpha * sign(W): one |value| per channel
        if name in checkpoint.binarized:
            magnitudes = module.weight.detach().abs().flatten(1)
            assert torch.equal(magnitudes, magnitudes[:, :1].expand_as(magnitudes))
    val = evaluate(model, load_splits("digits", None)["val"])
    assert val == checkpoint.metadata["accuracy"]["val"] == record["accuracy"]["val_after"]
    assert record["accuracy"]["val_before"] - val == pytest.approx(record["val_drop_points"])
    assert record["float_accuracy"]["val"] == record["accuracy"]["val_before"]  # the budget's reference
    assert WARMUP_DESCRIPTION in stdout and "search: final" in stdout  # progress of both stages
    assert f"-> {path}" in stdout


def test_the_recorded_decisions_agree_with_the_binarized_layers(trained: tuple[Path, str]) -> None:
    path, stdout = trained
    checkpoint = _read(path)
    decisions = checkpoint.metadata["binarization"]["decisions"]
    assert [d["name"] for d in decisions] == checkpoint.metadata["binarization"]["candidates"]
    assert {d["name"] for d in decisions if d["binarized"]} == set(checkpoint.binarized)
    assert all(d["reason"] for d in decisions)
    for decision in decisions:  # and the command printed each verdict
        short = decision["name"].rsplit(".", 1)[-1]
        assert f"  {short}: {'1-bit' if decision['binarized'] else 'float'}" in stdout


def test_the_same_seed_writes_the_same_bytes(trained: tuple[Path, str], tmp_path: Path) -> None:
    again = tmp_path / "again.pt"
    run_cli([*ADAPTIVE, "--quiet", "-o", str(again)])
    assert again.read_bytes() == trained[0].read_bytes()


def test_compress_export_and_report_take_it(trained: tuple[Path, str], tmp_path: Path) -> None:
    path = trained[0]
    out = tmp_path / "out"
    pack = ["--budget", "0", "--strategy", "none", "--epochs", "0", "--trial-epochs", "0", "--quiet", "-o", str(out)]
    run_cli(["compress", str(path), *pack])  # packed as it is
    container = read_container(out / "adaptive.albsnn")
    assert container.header["binarized"] == _read(path).binarized
    assert container.metadata["dataset"] == "digits"
    onnx = tmp_path / "m.onnx"
    exported = run_cli(["export", str(out / "adaptive.albsnn"), "-o", str(onnx)])
    assert f"{len(_read(path).binarized)} binarized layer(s) stored packed" in exported.stdout
    assert onnx.stat().st_size > 0
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["binarized"] == _read(path).binarized
    assert "conv2" in run_cli(["report", str(out / "report.json"), "--format", "md"]).stdout


def test_binarize_none_is_plain_training(tmp_path: Path) -> None:
    plain, explicit = tmp_path / "plain.pt", tmp_path / "none.pt"
    run_cli(["train", "--epochs", "1", "--quiet", "-o", str(plain)])
    run_cli(["train", "--epochs", "1", "--binarize", "none", "--quiet", "-o", str(explicit)])
    assert plain.read_bytes() == explicit.read_bytes()
    assert "binarization" not in _read(plain).metadata and _read(plain).binarized == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "1"], "--budget only applies with --binarize adaptive; add --binarize adaptive"),
        (["--warmup-share", "0.3"], "--warmup-share only applies with --binarize adaptive"),
        (["--binarize", "none", "--strategy", "oracle"], "--strategy only applies with --binarize adaptive"),
        (["--binarize", "adaptive"], "--binarize adaptive needs --budget POINTS"),
        (["--binarize", "adaptive", "--budget", "1", "--warmup-share", "1"], "not strictly between 0 and 1"),
        (["--binarize", "adaptive", "--budget", "1", "--warmup-share", "0"], "pass e.g. --warmup-share 0.5"),
        (["--binarize", "adaptive", "--budget", "1", "--warmup-share", "-0.5"], "'--warmup-share'"),
        (["--binarize", "adaptive", "--budget", "1", "--warmup-share", "nan"], "'--warmup-share'"),
        (["--binarize", "always"], "Invalid value for '--binarize': 'always' is not one of 'none', 'adaptive'"),
        (["--binarize", "adaptive", "--budget", "-1"], "Invalid value for '--budget'"),
        (["--val-share", "1"], "Invalid value for '--val-share'"),
        (["--val-share", "0"], "Invalid value for '--val-share'"),
    ],
)
def test_refused_flag_combinations_are_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(["train", *args, "--quiet", "-o", "x.pt"], expected_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "x.pt").exists()


def test_an_unwritable_output_is_refused_before_training(tmp_path: Path) -> None:
    result = run_cli([*ADAPTIVE, "--quiet", "-o", str(tmp_path / "missing" / "m.pt")], expected_exit=2)
    assert "does not exist; create it first" in result.stderr and result.stdout == ""


def test_an_architecture_without_candidates_is_refused_before_training(tmp_path: Path) -> None:
    spec = {
        "input": {"shape": [1, 8, 8]},
        "num_classes": 10,
        "layers": [
            {"type": "conv", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "lif"},
            {"type": "flatten"},
            {"type": "linear", "out_features": 10},
        ],
    }
    arch = tmp_path / "tiny.json"
    arch.write_text(json.dumps(spec))
    args = ["train", "--arch", str(arch), "--binarize", "adaptive", "--budget", "1", "-o", str(tmp_path / "x.pt")]
    result = run_cli(args, expected_exit=2)
    assert "no layer to binarize besides the first and the last" in result.stderr
    assert not (tmp_path / "x.pt").exists()


def test_the_budget_sizes_the_validation_split_and_compress_decides_on_it(tmp_path: Path) -> None:
    share = val_share_to_resolve(1.0, 1438)  # digits: 1,438 training images; 10 % would not resolve 1 point
    assert share is not None and share > VAL_FRACTION
    out = tmp_path / "sized.pt"
    adaptive = ["train", "--epochs", "2", "--binarize", "adaptive", "--budget", "1", "--seed", "3", "--quiet"]
    stdout = run_cli([*adaptive, "-o", str(out)]).stdout
    val = load_splits("digits", None, ("val",), val_share=share)["val"]
    checkpoint = _read(out)
    assert checkpoint.metadata["val_share"] == share
    assert f"validation split: {share:.0%} of the training images ({len(val):,})" in stdout
    assert checkpoint.metadata["binarization"]["trajectory"][-1]["paired"]["images"] == len(val)
    assert evaluate(checkpoint.build(), val) == checkpoint.metadata["accuracy"]["val"]
    report_dir = tmp_path / "packed"
    pack = ["--budget", "0", "--strategy", "none", "--epochs", "0", "--trial-epochs", "0", "--quiet"]
    run_cli(["compress", str(out), *pack, "-o", str(report_dir)])
    report = json.loads((report_dir / "report.json").read_text())
    assert report["accuracy"]["paired"]["val"]["images"] == len(val)  # the images training held out


def test_an_explicit_val_share_is_recorded_and_beats_the_budgets_choice(tmp_path: Path) -> None:
    plain, adaptive = tmp_path / "plain.pt", tmp_path / "adaptive.pt"
    run_cli(["train", "--epochs", "1", "--val-share", "0.3", "--quiet", "-o", str(plain)])
    run_cli([*ADAPTIVE, "--budget", "1", "--val-share", "0.15", "--quiet", "-o", str(adaptive)])
    assert _read(plain).metadata["val_share"] == 0.3 and _read(adaptive).metadata["val_share"] == 0.15
    val = load_splits("digits", None, ("val",), val_share=0.3)["val"]
    assert evaluate(_read(plain).build(), val) == _read(plain).metadata["accuracy"]["val"]


def test_a_checkpoint_with_an_unusable_val_share_is_refused_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "plain.pt"
    run_cli(["train", "--epochs", "0.2", "--quiet", "-o", str(source)])
    checkpoint = _read(source)
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, checkpoint.build(), {**checkpoint.metadata, "val_share": 7})
    result = run_cli(["compress", str(broken), "--budget", "1", "--quiet", "-o", str(tmp_path / "o")], expected_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "metadata 'val_share' is unusable" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_the_library_splits_the_epochs_and_reports_both_stages() -> None:
    assert split_epochs(10, 0.25) == (2.5, 7.5)
    for bad in (0, 1, -0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(CompressionError, match="strictly between 0 and 1"):
            check_warmup_share(bad)
    events: list[ProgressEvent] = []
    request = AdaptiveTrainRequest(
        TrainRequest(config=TrainConfig(epochs=1, seed=1)), budget=100.0, warmup_share=0.5, strategy="all"
    )
    result = train_binarized(request, on_progress=events.append)
    assert result.search.strategy == "all" and result.search.binarized == result.search.candidates
    assert result.metadata["binarization"]["strategy"] == "all"
    phases = [event.phase for event in events]
    assert phases.index("search") > max(i for i, p in enumerate(phases) if p == "train")  # warm-up, then search
    assert {event.description for event in events if event.phase == "train"} == {WARMUP_DESCRIPTION}
