"""The formats benchmark: its precision spec and its quick run on digits, where every runtime agrees with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from albsnn_compress.data import load_split
from albsnn_compress.formats.nir.check import model_runner
from albsnn_compress.formats.onnx.export import export_onnx
from albsnn_compress.precision import set_precision_
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.train_model import resolve_architecture
from benchmarks.bench_formats import QUICK_BITS, main, onnx_runner, parse_bits

pytestmark = pytest.mark.benchmark


def test_short_layer_names_map_to_the_model_layers() -> None:
    assert parse_bits("conv1=8, conv4=1") == {"layers.conv1": 8, "layers.conv4": 1}
    for bad in ("conv1", "conv1=", "=8", "conv1=eight"):
        with pytest.raises(ValueError, match="NAME=BITS"):
            parse_bits(bad)


def test_the_quick_run_has_every_runtime_agree_on_every_digit(tmp_path: Path) -> None:
    main(["--quick", "--results", str(tmp_path)])
    written = json.loads((tmp_path / "formats-quick.json").read_text())
    assert written["provenance"]["argv"] == ["--quick", "--results", str(tmp_path)]
    assert set(written["bits"].values()) == {1, 2, 4, 8} and written["bits"] == {
        name.removeprefix("layers."): bits for name, bits in parse_bits(QUICK_BITS).items()
    }
    rows = {row["runtime"]: row for row in written["runtimes"]}
    assert list(rows) == ["pytorch", "container", "onnxruntime", "snntorch", "spikingjelly", "c"]
    for name, row in rows.items():
        if row["status"] == "skipped":
            assert name in ("snntorch", "spikingjelly", "c") and row["reason"], row
            continue
        assert row["images"] == 359 and row["unexplained"] == [], row  # every logit off is a traced tie
        assert row["identical_predictions"] >= 355, row
    assert rows["container"]["max_logit_diff"] == 0.0  # read back bit-exactly
    sizes = written["files_bytes"]
    assert sizes["container"] > 0 and sizes["onnx"] > 0 and sizes["c"]["total"] > sizes["c"]["weight_bytes"] > 0


def test_the_onnx_runner_records_the_spikes_our_model_fires(tmp_path: Path) -> None:
    """The traced session's extra outputs are each LIF layer's spikes, ``[T, B, ...]`` as our model's (T = 3)."""
    torch.manual_seed(0)
    model = SpikingNet(resolve_architecture("digits-small", "digits"), 3).eval()
    set_precision_(model, parse_bits(QUICK_BITS))
    images = load_split("digits", None, "test").as_float()[:32]
    export_onnx(model, tmp_path / "m.onnx")
    theirs, ours = onnx_runner(tmp_path / "m.onnx", model)(images, True), model_runner(model)(images, True)
    assert theirs.spikes is not None and ours.spikes is not None and len(theirs.spikes) == len(ours.spikes) == 4
    for fired, mine in zip(theirs.spikes, ours.spikes):
        assert torch.equal(fired, mine)
    assert torch.allclose(theirs.logits, ours.logits, atol=1e-5)
