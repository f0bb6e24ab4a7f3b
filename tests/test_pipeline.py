"""The whole compress run on a checkpoint: files written as one set, reproducible to the byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albsnn_compress import pipeline
from albsnn_compress.data import load_split
from albsnn_compress.errors import OutputError
from albsnn_compress.files.output_paths import RULE_INPUT, RULE_SYMLINK
from albsnn_compress.files.output_set import MANIFEST_NAME, verify_output_set
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.pipeline import CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig
from albsnn_compress.training.trainer import evaluate
from tests.clihelp import run_cli

FAST = SearchConfig(epochs=0.3, trial_epochs=0.3, seed=4)


def test_same_seed_gives_a_byte_identical_container(digits_checkpoint: Path, tmp_path: Path) -> None:
    outcomes = [
        compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, FAST, tmp_path / f"run{i}")) for i in range(2)
    ]
    assert outcomes[0].result.binarized == outcomes[1].result.binarized
    for kind in ("container", "onnx"):
        assert outcomes[0].files[kind].read_bytes() == outcomes[1].files[kind].read_bytes(), kind


def test_container_reproduces_the_compressed_model(digits_checkpoint: Path, tmp_path: Path) -> None:
    outcome = compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, FAST, tmp_path / "out"))
    container = read_container(outcome.files["container"])
    images = load_split("digits", None, "test").as_float()
    with torch.no_grad():
        assert torch.equal(container.model(images), outcome.result.model(images))
    assert evaluate(container.model, load_split("digits", None, "test")) == outcome.result.accuracy["test_after"]
    report = json.loads(outcome.files["report (json)"].read_text())
    on_disk = report["storage"]["on_disk"]
    for key, kind in (("container", "container"), ("onnx", "onnx")):
        assert on_disk[key]["bytes"] == outcome.files[kind].stat().st_size
    assert on_disk["input_checkpoint"]["bytes"] == digits_checkpoint.stat().st_size


def test_cli_default_command_writes_every_output(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    run_cli(
        [
            str(digits_checkpoint),
            "--budget",
            "0.5",
            "--epochs",
            "0.3",
            "--trial-epochs",
            "0.3",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "model.albsnn", "model.onnx", "report.html", "report.json"]
    assert all(verify_output_set(out / name).complete for name in names if name != "manifest.json")


QUICK = SearchConfig(strategy="none", epochs=0, trial_epochs=0)  # no search: only the writing is under test


def test_an_interrupted_run_leaves_the_previous_complete_set(
    digits_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    first = compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, QUICK, out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_export = pipeline.export_onnx

    def export_then_fail(model, path, **kwargs):  # the ONNX file half written, then the export dies
        real_export(model, path, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise RuntimeError("export interrupted")

    monkeypatch.setattr(pipeline, "export_onnx", export_then_fail)
    with pytest.raises(RuntimeError, match="export interrupted"):
        compress_checkpoint(CompressRequest(digits_checkpoint, 2.0, QUICK, out))  # a new budget: a new container
    assert {
        p.name: p.read_bytes() for p in out.iterdir()
    } == before  # no new .albsnn beside the old .onnx, no temporaries
    assert verify_output_set(first.files["onnx"]).complete


def test_what_a_killed_run_left_is_cleaned_up_on_the_next(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [".albsnn-staging-k2j4h5g6/model.onnx", ".model.albsnn.a1b2c3d4.tmp", f".{MANIFEST_NAME}.zz_zz_zz.tmp"]
    for name in leftovers:
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(b"left by SIGKILL")
    (out / "notes.txt").write_text("mine")
    compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, QUICK, out))
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "model.albsnn",
        "model.onnx",
        "notes.txt",
        "report.html",
        "report.json",
    ]


def test_an_unwritable_output_folder_is_refused_before_any_work(
    digits_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_work(*_args, **_kwargs):
        raise AssertionError("the checkpoint was read before the output folder was checked")

    monkeypatch.setattr(pipeline, "read_checkpoint", no_work)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match=r"cannot write into .*a_file/out: .*a_file is a file, not a folder"):
        compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, QUICK, tmp_path / "a_file" / "out"))


def test_a_nir_file_is_compressed_directly(digits_checkpoint: Path, tmp_path: Path) -> None:
    """``albsnn-compress net.nir --budget B --dataset D``: the file is imported by content, then compressed as usual."""
    pytest.importorskip("nir")
    from albsnn_compress import export_nir, load_checkpoint, read_nir

    net = tmp_path / "net.nir"
    export_nir(load_checkpoint(digits_checkpoint), net)
    out = tmp_path / "out"
    run_cli([str(net), "--budget", "100", "--dataset", "digits", "--strategy", "none", "--quiet", "-o", str(out)])
    container = read_container(out / "net.albsnn")
    assert container.metadata["dataset"] == "digits" and container.header["class_names"] is not None
    images = load_split("digits", None, "test").as_float()[:64]
    with torch.no_grad():
        assert torch.equal(container.model(images), read_nir(net).eval()(images))
    missing = run_cli([str(net), "--budget", "0.5", "--quiet", "-o", str(tmp_path / "o2")], expected_exit=2)
    assert missing.stderr.strip().endswith("a NIR file names no dataset; pass --dataset (the one it was trained on)")
    assert len(missing.stderr.strip().splitlines()) == 1


def test_the_report_carries_the_c_exports_flash_and_ram(digits_checkpoint: Path, tmp_path: Path) -> None:
    from albsnn_compress.formats.c.plan import plan_model
    from albsnn_compress.report import render_text

    request = CompressRequest(digits_checkpoint, 100.0, SearchConfig(strategy="all", epochs=0.1), tmp_path / "out")
    outcome = compress_checkpoint(request)
    plan = plan_model(outcome.result.model, weights="packed")
    assert outcome.report["storage"]["c_export"] == {
        "flash_bytes": plan.weight_bytes,
        "ram_bytes": plan.arena_bytes,
        "refused": None,
    }
    assert f"{plan.weight_bytes:,} B / {plan.arena_bytes:,} B" in render_text(outcome.report)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["storage"]["c_export"]["flash_bytes"] == plan.weight_bytes


@pytest.mark.parametrize(
    ("input_name", "formats", "refused"),
    [
        ("report.json", ("albsnn", "onnx"), "report.json"),  # stem "report": the set writes report.json
        ("m.nir", ("albsnn", "onnx", "nir"), "m.nir"),  # compress d/m.nir -o d --formats nir
        ("m.onnx", ("albsnn", "onnx"), "m.onnx"),
        ("m.albsnn", ("albsnn", "onnx"), "m.albsnn"),
    ],
)
def test_an_input_named_like_an_output_of_its_set_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, input_name: str, formats: tuple[str, ...], refused: str
) -> None:
    def no_work(*_args, **_kwargs):
        raise AssertionError("the input was read before the output set was checked")

    monkeypatch.setattr(pipeline, "read_checkpoint", no_work)
    monkeypatch.setattr(pipeline, "is_nir_file", no_work)
    checkpoint = tmp_path / input_name
    checkpoint.write_bytes(b"the input")
    request = CompressRequest(checkpoint, 1.0, QUICK, tmp_path, formats=formats)
    with pytest.raises(OutputError, match=rf"cannot write .*/{refused}: it is the input .*\(rule: {RULE_INPUT}\)"):
        compress_checkpoint(request)
    assert checkpoint.read_bytes() == b"the input" and sorted(p.name for p in tmp_path.iterdir()) == [input_name]


def test_a_symlink_in_the_output_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits_checkpoint: Path
) -> None:
    def no_work(*_args, **_kwargs):
        raise AssertionError("the checkpoint was read before the output set was checked")

    monkeypatch.setattr(pipeline, "read_checkpoint", no_work)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret").write_text("outside")
    (out / "model.onnx").symlink_to(tmp_path / "secret")
    with pytest.raises(OutputError, match=rf"cannot write .*out/model.onnx: it is a symbolic link .*{RULE_SYMLINK}"):
        compress_checkpoint(CompressRequest(digits_checkpoint, 1.0, QUICK, out))
    assert (tmp_path / "secret").read_text() == "outside" and (out / "model.onnx").is_symlink()
