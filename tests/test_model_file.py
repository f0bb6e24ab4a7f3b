"""Opening a model file of either kind, told apart by content, not by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from albsnn_compress.binarize import binarize_
from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.errors import CheckpointError, ContainerError
from albsnn_compress.formats.container.file import write_container
from albsnn_compress.model_file import load_model_file
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet


@pytest.fixture
def model() -> SpikingNet:
    torch.manual_seed(0)
    return binarize_(SpikingNet(make_preset("digits-small", [1, 8, 8], 10, [0.5], [0.25])).eval(), ["layers.conv2"])


def test_a_renamed_container_and_checkpoint_open_as_what_they_are(tmp_path: Path, model: SpikingNet) -> None:
    container, checkpoint = tmp_path / "model.pt", tmp_path / "model.albsnn"  # names swapped on purpose
    write_container(container, model, metadata={"dataset": "digits"})
    save_checkpoint(checkpoint, model, {"dataset": "digits"})
    images = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        expected = model(images)
    for path, kind in ((container, "container"), (checkpoint, "checkpoint")):
        opened = load_model_file(path)
        assert (opened.kind, opened.dataset) == (kind, "digits")
        with torch.no_grad():
            assert torch.equal(opened.model(images), expected)


def test_damaged_files_get_the_error_of_their_kind(tmp_path: Path, model: SpikingNet) -> None:
    container = tmp_path / "a.albsnn"
    write_container(container, model)
    container.write_bytes(container.read_bytes()[:100])
    with pytest.raises(ContainerError, match="truncated"):
        load_model_file(container)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_model_file(text)
