"""The public API: the names the README promises, used together the way a user would."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch

import albsnn_compress as ac
from albsnn_compress.data import load_splits


def test_every_exported_name_resolves() -> None:
    for name in ac.__all__:
        assert getattr(ac, name) is not None, name
    for name in (
        "compress",
        "SearchConfig",
        "CompressionResult",
        "summary",
        "read_container",
        "write_container",
        "export_onnx",
        "build_report",
    ):
        assert name in ac.__all__, name


def test_compress_pack_export_and_report_from_the_top_level(digits_checkpoint: Path, tmp_path: Path) -> None:
    splits = load_splits("digits", None)
    model = ac.load_checkpoint(digits_checkpoint)
    train = (splits["train"].as_float(), splits["train"].labels)
    val = (splits["val"].as_float(), splits["val"].labels)
    result = ac.compress(model, train, val, budget=100.0, config=ac.SearchConfig(strategy="all", epochs=0.2))
    assert isinstance(result, ac.CompressionResult) and result.binarized
    container, onnx_path = tmp_path / "m.albsnn", tmp_path / "m.onnx"
    ac.write_container(container, result.model)
    ac.export_onnx(result.model, onnx_path)
    images = splits["test"].as_float()[:32]
    with torch.no_grad():
        expected = result.model(images)
        assert torch.equal(ac.read_container(container).model(images), expected)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": images.numpy()})[0]
    assert (logits.argmax(1) == expected.argmax(1).numpy()).mean() >= 0.95
    report = ac.build_report(result, input_checkpoint=digits_checkpoint, container=container, onnx=onnx_path)
    assert report["storage"]["on_disk"]["container"]["bytes"] == container.stat().st_size
    table = ac.summary(result.model)
    assert {row.name for row in table.rows if row.precision == "1-bit"} == set(result.binarized)
