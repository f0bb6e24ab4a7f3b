"""Several processes give what one process gives: torchrun (gloo on CPU), SyncBatchNorm, GPU paths.

The multi-process tests start ``python -m torch.distributed.run --nproc_per_node=2``
on the loopback interface, bounded by a timeout. The same file doubles as the
per-rank worker script for the checks that need to look inside every rank
(``python -m torch.distributed.run ... test_distributed.py OUT CHECKPOINT``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from albsnn_compress.binarize import binarize_
from albsnn_compress.checkpoint import read_checkpoint
from albsnn_compress.errors import AlbsnnError
from albsnn_compress.pipeline import CompressRequest, compress_checkpoint
from albsnn_compress.search import SearchConfig
from albsnn_compress.search.result import CompressionResult
from albsnn_compress.snn.layers import TimeBatchNorm1d, TimeBatchNorm2d
from albsnn_compress.snn.presets import make_preset
from albsnn_compress.snn.spec import SpikingNet
from albsnn_compress.training.distributed import LOCAL, DistContext, init_distributed, resolve_device
from albsnn_compress.training.sync_batchnorm import (
    TimeSyncBatchNorm,
    convert_sync_batchnorm_,
    revert_sync_batchnorm_,
    synchronized_batchnorm,
)
from albsnn_compress.training.train_model import TrainRequest, train_model
from albsnn_compress.training.trainer import TrainConfig
from tests.clihelp import run_cli

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
TRAIN_EPOCHS = 6  # enough for digits-small to leave chance level (a sensible compress input)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# -- launching ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node=2 ARGS`` on loopback, one thread per process; fails loudly."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        *args,
    ]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- the per-rank worker (runs under torchrun when this file is executed) ----------------
def _sync_bn_case() -> tuple[torch.Tensor, torch.Tensor, TimeBatchNorm2d]:
    """A [T=2, B=8, C=4, H, W] input, an upstream gradient, and a batch norm with non-trivial affine terms."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 4, 3, 3, generator=generator) * 3 + 1
    upstream = torch.randn(x.shape, generator=generator)
    norm = TimeBatchNorm2d(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.normal_(generator=generator)
    return x, upstream, norm


def _sync_bn_shard(ctx: DistContext) -> dict[str, torch.Tensor]:
    """This rank's half of the batch through a converted batch norm: outputs, gradients, statistics."""
    x, upstream, norm = _sync_bn_case()
    model = nn.Sequential(norm).train()
    convert_sync_batchnorm_(model)
    share = slice(ctx.rank * 8 // ctx.world_size, (ctx.rank + 1) * 8 // ctx.world_size)
    part = x[:, share].clone().requires_grad_(True)
    output = model(part)
    (output * upstream[:, share]).sum().backward()
    sync = model[0]
    return {
        "output": output.detach(),
        "input_grad": part.grad,
        "weight_grad": sync.weight.grad,
        "bias_grad": sync.bias.grad,
        "running_mean": sync.running_mean,
        "running_var": sync.running_var,
    }


def _search_record(result: CompressionResult) -> dict[str, Any]:
    """Everything the search decided and measured, plus a digest of the final weights."""
    digest = hashlib.sha256()
    for key, value in sorted(result.model.state_dict().items()):
        digest.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return {
        "binarized": result.binarized,
        "trajectory": [
            [s.action, s.layers, s.binarized, s.val_accuracy, s.drop_points, s.storage_bits, s.estimates_raw]
            for s in result.trajectory
        ],
        "decisions": [
            [d.name, d.binarized, d.reason, d.estimate_raw, d.measured_alone_points, d.measured_increment_points]
            for d in result.decisions
        ],
        "accuracy": result.accuracy,
        "state_sha256": digest.hexdigest(),
    }


def _worker(out: Path, checkpoint: Path) -> None:
    ctx = init_distributed("cpu")
    torch.save(_sync_bn_shard(ctx), out / f"sync_bn.rank{ctx.rank}.pt")
    config = SearchConfig(strategy="adaptive", epochs=0.25, trial_epochs=0.25, seed=3)
    outcome = compress_checkpoint(CompressRequest(checkpoint, 1.0, config), ctx)
    (out / f"search.rank{ctx.rank}.json").write_text(json.dumps(_search_record(outcome.result)))


# -- fixtures -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_by_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``torchrun -m albsnn_compress.cli train --sync-bn`` on 2 processes; the checkpoint it wrote."""
    folder = tmp_path_factory.mktemp("train2")
    _torchrun(
        [
            "-m",
            "albsnn_compress.cli",
            "train",
            "--epochs",
            str(TRAIN_EPOCHS),
            "--sync-bn",
            "--seed",
            "0",
            "--device",
            "cpu",
            "--quiet",
            "-o",
            "model.pt",
        ],
        cwd=folder,
    )
    return folder / "model.pt"


@pytest.fixture(scope="module")
def rank_dumps(trained_by_two: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What each of 2 ranks computed in :func:`_worker` (one file per rank and check)."""
    out = tmp_path_factory.mktemp("ranks")
    _torchrun([__file__, str(out), str(trained_by_two)], cwd=out)
    return out


def _digits_net(preset: str = "digits-small", timesteps: int = 1) -> SpikingNet:
    """A random net whose batch norms have seen a few batches (non-trivial running statistics)."""
    torch.manual_seed(0)
    model = SpikingNet(make_preset(preset, [1, 8, 8], 10, [0.3], [0.4]), timesteps).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 8, 8))
    return model.eval()


# -- SyncBatchNorm conversion (one process) ------------------------------------------------
def test_conversion_keeps_eval_outputs_state_keys_and_tensors() -> None:
    model = _digits_net("digits-fc", timesteps=2)
    images = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        before = model(images)
    state = model.state_dict()
    classes = {name: type(m) for name, m in model.named_modules()}
    swapped = convert_sync_batchnorm_(model)
    assert swapped == ["layers.bn1", "layers.bn2", "layers.bn3"]
    assert all(type(dict(model.named_modules())[name]) is TimeSyncBatchNorm for name in swapped)
    converted = model.state_dict()
    assert list(converted) == list(state)
    assert all(converted[key].data_ptr() == state[key].data_ptr() for key in state)  # shared, not copied
    with torch.no_grad():
        assert torch.equal(model(images), before)
    assert revert_sync_batchnorm_(model) == swapped
    assert {name: type(m) for name, m in model.named_modules()} == classes
    assert classes["layers.bn3"] is TimeBatchNorm1d
    with torch.no_grad():
        assert torch.equal(model(images), before)


def test_converted_layer_trains_like_batchnorm_on_one_process() -> None:
    x, upstream, norm = _sync_bn_case()
    reference = copy.deepcopy(norm).train()
    converted = nn.Sequential(norm).train()
    convert_sync_batchnorm_(converted)
    for module in (reference, converted):
        inputs = x.clone().requires_grad_(True)
        (module(inputs) * upstream).sum().backward()
    assert torch.equal(converted[0].running_mean, reference.running_mean)
    assert torch.equal(converted[0].running_var, reference.running_var)
    assert torch.equal(converted[0].weight.grad, reference.weight.grad)


def test_synchronized_batchnorm_restores_classes_even_on_error() -> None:
    model = _digits_net()
    with pytest.raises(RuntimeError, match="boom"), synchronized_batchnorm(model):
        assert isinstance(model.layers.bn1, TimeSyncBatchNorm)
        raise RuntimeError("boom")
    assert type(model.layers.bn1) is TimeBatchNorm2d
    with synchronized_batchnorm(model, enabled=False):
        assert type(model.layers.bn1) is TimeBatchNorm2d


# -- devices and the single-process context ----------------------------------------------
def test_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AlbsnnError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_says_so() -> None:
    with pytest.raises(AlbsnnError, match="--device cuda:0: CUDA is not available on this machine; use --device cpu"):
        resolve_device("cuda:0")


def test_single_process_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    values = torch.tensor([1.0, 2.0])
    assert LOCAL.all_reduce_sum(values) is values
    assert LOCAL.broadcast({"a": 1}) == {"a": 1}


# -- two processes (gloo on CPU) ---------------------------------------------------------
def test_sync_batchnorm_over_two_processes_equals_batchnorm_over_the_whole_batch(rank_dumps: Path) -> None:
    x, upstream, norm = _sync_bn_case()
    inputs = x.clone().requires_grad_(True)
    output = norm.train()(inputs)
    (output * upstream).sum().backward()
    shards = [torch.load(rank_dumps / f"sync_bn.rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    torch.testing.assert_close(torch.cat([s["output"] for s in shards], dim=1), output.detach())
    torch.testing.assert_close(torch.cat([s["input_grad"] for s in shards], dim=1), inputs.grad)
    torch.testing.assert_close(shards[0]["weight_grad"] + shards[1]["weight_grad"], norm.weight.grad)
    torch.testing.assert_close(shards[0]["bias_grad"] + shards[1]["bias_grad"], norm.bias.grad)
    for shard in shards:
        torch.testing.assert_close(shard["running_mean"], norm.running_mean)
        torch.testing.assert_close(shard["running_var"], norm.running_var)


def test_every_rank_takes_the_same_search_decisions(rank_dumps: Path) -> None:
    records = [json.loads((rank_dumps / f"search.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(records[0]["trajectory"]) >= 3  # start, at least one tried change, final
    assert records[0] == records[1]  # selections, measured accuracies, estimates and weights, to the bit


def test_two_process_training_matches_one_process(trained_by_two: Path) -> None:
    assert _tree(trained_by_two.parent) == ["model.pt"]  # rank 0 wrote it, once, and no temporary file is left
    two = read_checkpoint(trained_by_two)
    two.build()  # the usual classes and keys: SyncBatchNorm was only used while training
    assert two.metadata["world_size"] == 2 and two.metadata["train_config"]["sync_bn"] is True
    one = train_model(TrainRequest(config=TrainConfig(epochs=TRAIN_EPOCHS, seed=0)))
    # Same global batches, same seed, batch norm over the global batch: the first epoch agrees to
    # float rounding; later a rounding difference may flip a spike, so only closeness is asked.
    assert two.metadata["history"][0]["loss"] == pytest.approx(one.history[0]["loss"], rel=1e-5)
    for mine, theirs in zip(two.metadata["history"], one.history):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=2e-2)
    assert abs(two.metadata["accuracy"]["val"] - one.val_accuracy) <= 8.0
    reference = one.model.state_dict()
    for key, value in two.state_dict.items():
        torch.testing.assert_close(value, reference[key], atol=5e-2, rtol=0, msg=key)


def test_two_process_compress_selects_what_one_process_selects(trained_by_two: Path, tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        shutil.copy(trained_by_two, tmp_path / name / "model.pt")
    options = [
        "--budget",
        "20",
        "--strategy",
        "adaptive",
        "--epochs",
        "0.5",
        "--trial-epochs",
        "0.5",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]
    _torchrun(["-m", "albsnn_compress.cli", "compress", "model.pt", *options, "--sync-bn"], cwd=tmp_path / "two")
    run_cli(["compress", str(tmp_path / "one" / "model.pt"), *options])
    outputs = _tree(tmp_path / "one" / "model-albsnn")
    assert outputs and all(not name.startswith(".") for name in outputs)
    # one output folder, written once (rank 1 wrote nothing), holding what one process writes
    assert _tree(tmp_path / "two") == sorted(["model.pt", "model-albsnn", *(f"model-albsnn/{n}" for n in outputs)])
    reports = [json.loads((tmp_path / name / "model-albsnn" / "report.json").read_text()) for name in ("one", "two")]
    assert reports[1]["search"]["config"]["sync_bn"] is True
    assert reports[1]["search"]["binarized"] == reports[0]["search"]["binarized"]
    assert reports[0]["search"]["binarized"]  # the generous budget affords at least one layer


# -- GPU ---------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_cuda
def test_cuda_amp_training_writes_a_cpu_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    run_cli(["train", "--epochs", "2", "--device", "cuda", "--amp", "--quiet", "-o", str(path)])
    checkpoint = read_checkpoint(path)
    assert checkpoint.metadata["train_config"]["amp"] is True
    tensors = checkpoint.state_dict.values()
    assert all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.int64) for t in tensors)
    checkpoint.build()


@pytest.mark.gpu
@needs_cuda
def test_cuda_amp_compress_runs_the_whole_pipeline(digits_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_cli(
        [
            str(digits_checkpoint),
            "--budget",
            "5",
            "--epochs",
            "0.25",
            "--trial-epochs",
            "0.25",
            "--device",
            "cuda",
            "--amp",
            "--quiet",
            "-o",
            str(out),
        ]
    )
    assert (out / "model.albsnn").is_file() and (out / "model.onnx").is_file()


@pytest.mark.gpu
@needs_cuda
def test_packed_outputs_do_not_depend_on_the_device() -> None:
    from albsnn_compress.formats.container.file import container_bytes
    from albsnn_compress.formats.onnx.export import build_onnx_model

    model = _digits_net()
    binarize_(model, ["layers.conv2", "layers.conv3"])
    on_gpu = copy.deepcopy(model).to("cuda")
    assert container_bytes(on_gpu) == container_bytes(model)
    assert build_onnx_model(on_gpu).SerializeToString() == build_onnx_model(model).SerializeToString()


@pytest.mark.gpu
@needs_cuda
def test_cuda_n_is_refused_for_several_processes_per_machine() -> None:
    with pytest.raises(AlbsnnError, match="puts all 2 processes of this machine on one GPU; pass --device cuda"):
        resolve_device("cuda:0", local_rank=1, local_world_size=2)


if __name__ == "__main__":  # the per-rank worker: torchrun ... test_distributed.py OUT CHECKPOINT
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
