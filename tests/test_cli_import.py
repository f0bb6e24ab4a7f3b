"""``albsnn-compress import``: factories and weights files in, checkpoints out; bad input is one line, exit 2."""

from __future__ import annotations

import importlib.util
import pickle
import re
from pathlib import Path

import pytest
import torch

from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data import load_split
from tests.clihelp import run_cli

HAS_NIR_READER = importlib.util.find_spec("albsnn_compress.formats.nir.read") is not None

SNNTORCH_FACTORY = """
import torch
from torch import nn
import snntorch as snn

def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), snn.Leaky(beta=0.8, init_hidden=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128, 10),
    )

def broken():
    raise RuntimeError("no GPU here")

def not_a_module():
    return 42
"""

SPIKINGJELLY_FACTORY = """
import torch
from torch import nn
from spikingjelly.activation_based import functional, layer, neuron

def build():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.LIFNode(tau=2.0), layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(128, 10),
    )
    functional.set_step_mode(net, "m")
    return net
"""


def _factory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(text)
    return path


def _error(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _trained_snntorch(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("snntorch", reason="snntorch is not installed")
    factory = _factory(tmp_path, SNNTORCH_FACTORY)
    spec = importlib.util.spec_from_file_location("factory_for_test", factory)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    net = module.build()
    with torch.no_grad():
        net[1].bias.fill_(1.0)
        net[1].running_mean.uniform_(-0.1, 0.1)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    return factory, weights


def test_import_snntorch_factory_and_weights_then_compress(tmp_path: Path) -> None:
    factory, weights = _trained_snntorch(tmp_path)
    from snntorch import utils

    out = tmp_path / "model.pt"
    result = run_cli(
        [
            "import",
            "--from",
            "snntorch",
            "--factory",
            f"{factory}:build",
            "--weights",
            str(weights),
            "--dataset",
            "digits",
            "--timesteps",
            "2",
            "-o",
            str(out),
        ]
    )
    assert f"-> {out}" in result.stdout
    model = load_checkpoint(out)
    assert model.metadata["dataset"] == "digits" and model.metadata["imported"]["framework"] == "snntorch"
    assert (
        model.metadata["imported"]["factory"] == f"{factory}:build" and model.metadata["imported"]["weights"] == "w.pt"
    )
    # the checkpoint computes what the factory's network with the weights computes
    spec = importlib.util.spec_from_file_location("factory_again", factory)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    net = module.build()
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    images = load_split("digits", None, "test").as_float()[:64]
    with torch.no_grad():
        utils.reset(net)
        expected = torch.stack([net(images) for _ in range(2)]).mean(0)
        assert torch.allclose(model(images), expected, atol=1e-5, rtol=0)
    run_cli(
        [
            str(out),
            "--budget",
            "100",
            "--strategy",
            "all",
            "--epochs",
            "0.05",
            "--trial-epochs",
            "0",
            "--binarize-first-last",
            "--quiet",
            "-o",
            str(tmp_path / "compressed"),
        ]
    )
    assert (tmp_path / "compressed" / "model.albsnn").is_file()


def test_import_spikingjelly_factory(tmp_path: Path) -> None:
    pytest.importorskip("spikingjelly", reason="spikingjelly is not installed")
    factory = _factory(tmp_path, SPIKINGJELLY_FACTORY)
    out = tmp_path / "sj.pt"
    run_cli(
        [
            "import",
            "--from",
            "spikingjelly",
            "--factory",
            f"{factory}:build",
            "--input-shape",
            "1,8,8",
            "--dataset",
            "digits",
            "-T",
            "3",
            "--mean",
            "0.3",
            "--std",
            "0.4",
            "-o",
            str(out),
        ]
    )
    model = load_checkpoint(out)
    assert (
        model.timesteps == 3 and model.spec["input"]["mean"] == [0.3] and model.metadata["imported"]["step_mode"] == "m"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("import --dataset digits -T 2 -o {tmp}/m.pt".split(), "give a NIR file, or --from snntorch"),
        (
            "import --from snntorch --dataset digits -T 2 -o {tmp}/m.pt".split(),
            "takes --factory FILE.py:FUNCTION",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py --dataset digits -T 2 -o {tmp}/m.pt".split(),
            "expected FILE.py:FUNCTION",
        ),
        (
            "import --from snntorch --factory {tmp}/nothere.py:build --dataset digits -T 2 -o {tmp}/m.pt".split(),
            "is not a file",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py:missing --dataset digits -T 2 -o {tmp}/m.pt".split(),
            r"defines no function missing\(\)",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py:broken --dataset digits -T 2 -o {tmp}/m.pt".split(),
            "running it failed: RuntimeError: no GPU here",
        ),
        (
            (
                "import --from snntorch --factory {tmp}/my_models.py:not_a_module --dataset digits -T 2 -o {tmp}/m.pt"
            ).split(),
            r"not_a_module\(\) returned int, expected an nn.Module",
        ),
        (
            (
                "import --from snntorch --factory {tmp}/my_models.py:build --dataset fashion-mnist -T 2 -o {tmp}/m.pt"
            ).split(),
            "takes 128 input features, the layers before give 1568",
        ),
        (
            (
                "import --from snntorch --factory {tmp}/my_models.py:build --input-shape 1,8,8 "
                "--dataset fashion-mnist -T 2 -o {tmp}/m.pt"
            ).split(),
            "pass the matching --dataset or --input-shape",
        ),
        (
            (
                "import --from snntorch --factory {tmp}/my_models.py:build --input-shape 1,x,8 "
                "--dataset digits -T 2 -o {tmp}/m.pt"
            ).split(),
            "expected comma-separated numbers",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py:build --dataset digits -T 0 -o {tmp}/m.pt".split(),
            "--timesteps",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py:build --dataset digits -o {tmp}/m.pt".split(),
            r"runs one time step per call and you loop it yourself: give timesteps \(--timesteps T\)",
        ),
        (
            "import --from snntorch --factory {tmp}/my_models.py:build --dataset digits -T 2 -o {tmp}/no/m.pt".split(),
            "does not exist; create it first",
        ),
        (
            "import {tmp}/my_models.py --input-shape 1,8,8 --dataset digits -T 2 -o {tmp}/m.pt".split(),
            r"--from nir takes a \.nir file as SOURCE and no .*--input-shape \(the file declares its input shape\)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    pytest.importorskip("snntorch", reason="snntorch is not installed")
    _factory(tmp_path, SNNTORCH_FACTORY)
    result = run_cli([arg.replace("{tmp}", str(tmp_path)) for arg in args], expected_exit=2)
    assert re.search(message, _error(result)), result.stderr


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_that_do_not_fit_or_carry_code_are_refused(tmp_path: Path) -> None:
    factory, _ = _trained_snntorch(tmp_path)
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(3)}, wrong)
    base = [
        "import",
        "--from",
        "snntorch",
        "--factory",
        f"{factory}:build",
        "--dataset",
        "digits",
        "-T",
        "2",
        "-o",
        str(tmp_path / "m.pt"),
    ]
    wrapped = tmp_path / "wrapped.pt"  # a training checkpoint holding the state dict under "state_dict"
    torch.save({"state_dict": torch.load(tmp_path / "w.pt", weights_only=True), "epoch": 3}, wrapped)
    run_cli([*base, "--weights", str(wrapped)])
    assert "does not fit the factory's network" in _error(run_cli([*base, "--weights", str(wrong)], expected_exit=2))
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(canary), "w"))

    hostile = tmp_path / "hostile.pt"
    with hostile.open("wb") as stream:
        pickle.dump({"state_dict": Payload()}, stream)
    assert "not a weights-only torch file" in _error(run_cli([*base, "--weights", str(hostile)], expected_exit=2))
    assert not canary.exists()


def test_unsupported_module_is_refused_with_its_path(tmp_path: Path) -> None:
    pytest.importorskip("snntorch", reason="snntorch is not installed")
    factory = _factory(
        tmp_path,
        SNNTORCH_FACTORY.replace(
            "snn.Leaky(beta=0.8, init_hidden=True)", "snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)"
        ),
    )
    result = run_cli(
        [
            "import",
            "--from",
            "snntorch",
            "--factory",
            f"{factory}:build",
            "--dataset",
            "digits",
            "-T",
            "2",
            "-o",
            str(tmp_path / "m.pt"),
        ],
        expected_exit=2,
    )
    assert "module 2 (Synaptic): a second-order neuron" in _error(result)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.skipif(HAS_NIR_READER, reason="this build has a NIR reader")
def test_nir_import_says_it_is_not_available(tmp_path: Path) -> None:
    source = tmp_path / "net.nir"
    source.write_bytes(b"\x89HDF\r\n\x1a\n")
    result = run_cli(
        ["import", str(source), "--dataset", "digits", "-T", "2", "-o", str(tmp_path / "m.pt")], expected_exit=2
    )
    assert _error(result) == "error: NIR import is not available in this build"


def test_nir_import_writes_a_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("albsnn_compress.formats.nir.read", reason="this build has no NIR reader")
    pytest.importorskip("spikingjelly", reason="spikingjelly writes the test graph")
    nir = pytest.importorskip("nir")
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1),
        neuron.LIFNode(tau=2.0),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(64, 10),
        neuron.LIFNode(tau=2.0),
    )
    functional.set_step_mode(net, "m")
    source = tmp_path / "net.nir"
    nir.write(source, export_to_nir(net, torch.rand(1, 1, 1, 8, 8)))
    out = tmp_path / "m.pt"
    run_cli(["import", str(source), "--dataset", "digits", "-T", "2", "-o", str(out)])
    assert load_checkpoint(out).metadata["imported"]["file"] == "net.nir"


CLASS_FACTORY = """
import torch
import torch.nn.functional as F
from torch import nn
import snntorch as snn

num_steps = 3
batch_size = 16


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(64, 32)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=0.9)
        self.skip = nn.Linear(64, 10)
        self.feedback = nn.Linear(10, 32)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec = []
        mem2_rec = []
        for step in range(num_steps):
            spk1, mem1 = self.lif1(self.first(x, spk2_rec), mem1)
            spk2, mem2 = self.lif2(self.second(spk1, x), mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return self.readout(spk2_rec), torch.stack(mem2_rec)

    def first(self, x, spk2_rec):
        return self.fc1(x.flatten(1))

    def second(self, spk1, x):
        return self.fc2(spk1)

    def readout(self, spk2_rec):
        return torch.stack(spk2_rec)


class Residual(Net):
    def second(self, spk1, x):
        return self.fc2(spk1) + self.skip(x.flatten(1))


class Recurrent(Net):
    def first(self, x, spk2_rec):
        cur = self.fc1(x.flatten(1))
        return cur + self.feedback(spk2_rec[-1]) if spk2_rec else cur


class SumReadout(Net):
    def readout(self, spk2_rec):
        return torch.stack(spk2_rec).sum(0)


class Relu(Net):
    def second(self, spk1, x):
        return F.relu(self.fc2(spk1))


class HardCodedBatch(Net):
    def first(self, x, spk2_rec):
        return self.fc1(x.view(batch_size, -1))
"""


def _class_import(tmp_path: Path, name: str, *extra: str, exit_code: int = 0):  # type: ignore[no-untyped-def]
    pytest.importorskip("snntorch", reason="snntorch is not installed")
    factory = tmp_path / "tutorial.py"
    factory.write_text(CLASS_FACTORY)
    out = tmp_path / f"{name}.pt"
    args = ["import", "--from", "snntorch", "--factory", f"{factory}:{name}", "--dataset", "digits", *extra]
    return run_cli([*args, "-o", str(out)], expected_exit=exit_code), out


def test_import_a_model_class_takes_its_time_steps_from_its_loop(tmp_path: Path) -> None:
    result, out = _class_import(tmp_path, "Net")
    assert "T=3" in result.stdout
    model = load_checkpoint(out)
    traced = model.metadata["imported"]["traced"]
    assert traced["class"] == "Net" and traced["readout"] == "stack" and not traced["flattened_input"]
    spec = importlib.util.spec_from_file_location("class_factory", tmp_path / "tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    net = module.Net().eval()
    images = load_split("digits", None, "test").as_float()[:64]
    with torch.no_grad():
        assert torch.equal(model(images), net(images)[0].mean(0))
    # a forward() that hard-codes its batch size is traced at that size; --timesteps may repeat the loop's
    _, hard = _class_import(tmp_path, "HardCodedBatch", "--trace-batch", "16", "-T", "3")
    assert load_checkpoint(hard).timesteps == 3
    message = _error(_class_import(tmp_path, "HardCodedBatch", exit_code=2)[0])
    assert "pass trace_batch=that size (--trace-batch)" in message
    message = _error(_class_import(tmp_path, "Net", "-T", "4", exit_code=2)[0])
    assert "its time loop runs 3 steps, timesteps 4 was asked" in message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Residual", r"Tensor.add\(\.\.\.\) combines module fc2 \(Linear\) and module skip \(Linear\) .*not a chain"),
        ("Recurrent", r"computed from the output of module lif2 at an earlier step: a recurrent connection"),
        ("SumReadout", r"its output is Tensor.sum\(\.\.\.\) of torch.stack of module lif2's per-step outputs"),
        ("Relu", r"F.relu\(\.\.\.\) on module fc2: no albsnn layer computes this functional call"),
    ],
)
def test_model_class_constructs_are_refused_in_one_line(tmp_path: Path, name: str, message: str) -> None:
    result, out = _class_import(tmp_path, name, exit_code=2)
    line = _error(result)
    assert re.search(message, line), line
    assert line.startswith(f"error: cannot import the snnTorch network: forward() of {name}: ")
    assert not out.exists()
