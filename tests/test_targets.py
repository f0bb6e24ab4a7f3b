"""Hardware targets: the registry, check_target bit for bit, the search without float layers, the command line.

The strategies' no-float branches run on the scripted session of tests/test_strategies.py (each layer's
cost at each precision is known); a real digits search and the command line check the whole path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from albsnn_compress.binarize import candidate_layers, weight_parametrizations
from albsnn_compress.checkpoint import load_checkpoint
from albsnn_compress.data import load_splits
from albsnn_compress.errors import CompressionError
from albsnn_compress.formats.container.file import read_container, write_container
from albsnn_compress.precision import PRECISIONS, layer_bits, set_precision_
from albsnn_compress.search import SearchConfig, compress
from albsnn_compress.search.candidates import resolve_ladders
from albsnn_compress.search.strategies import recover, verify_and_back_off
from albsnn_compress.targets import TARGETS, Target, check_target
from tests.clihelp import run_cli
from tests.test_strategies import ScriptedSession

NO_FLOAT = ("loihi2", "xylo", "speck")
LADDER = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", None)


def _edges_and_inner(model: nn.Module) -> tuple[list[str], list[str]]:
    inner = candidate_layers(model)
    return [name for name in candidate_layers(model, include_first_last=True) if name not in inner], inner


@pytest.fixture
def mixed(digits_checkpoint: Path) -> nn.Module:
    """The digits model with its first and last layers at 8 bits and the others at 1 bit."""
    model = load_checkpoint(digits_checkpoint)
    edges, inner = _edges_and_inner(model)
    return set_precision_(model, {**{name: 8 for name in edges}, **{name: 1 for name in inner}})


def _no_float(name: str) -> str:
    return f"target {name!r} takes no float layers"


# -- the registry ---------------------------------------------------------------------------------------------


def test_each_target_names_its_precisions_whether_float_stays_and_what_it_cannot_check() -> None:
    assert list(TARGETS) == ["loihi2", "xylo", "speck", "cortex-m"]
    assert [name for name, entry in TARGETS.items() if entry.float_layers] == ["cortex-m"]
    for name, entry in TARGETS.items():
        assert entry.name == name and entry.precisions == LADDER and entry.code_bits == 8
        assert set(map(str, entry.precisions)) <= set(PRECISIONS)
        assert entry.unchecked and all(item and "\n" not in item for item in entry.unchecked)
        assert entry.description and "\n" not in entry.description
    assert "power-of-two weight exponent" in TARGETS["loihi2"].unchecked[0]
    assert "absorbed by its neurons" in TARGETS["loihi2"].unchecked[0]
    assert "one scale per layer" in TARGETS["speck"].unchecked[0]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"precisions": (1, 8), "code_bits": 4}, "8-bit codes reach ±127, past the 4-bit signed weights"),
        ({"precisions": (8, 1)}, "sorted bits, each once"),
        ({"precisions": ()}, "sorted bits, each once"),
        ({"precisions": (3,)}, "unknown precision '3'"),
    ],
)
def test_a_profile_whose_precisions_do_not_fit_its_weights_is_refused(fields: dict, problem: str) -> None:
    with pytest.raises(CompressionError, match=problem):
        Target(**{"name": "chip", "float_layers": False, "description": "d", "unchecked": (), **fields})


@pytest.mark.parametrize(("value", "problem"), [("nope", "unknown target 'nope'; choose one of"), (3, "target's name")])
def test_a_search_refuses_an_unknown_target_when_it_is_set(value: object, problem: str) -> None:
    with pytest.raises(CompressionError, match=problem):
        SearchConfig(target=value)  # type: ignore[arg-type]
    config = SearchConfig(target="xylo")
    with pytest.raises(CompressionError, match=problem):
        config.target = value  # type: ignore[assignment]
    assert SearchConfig().target is None and config.target == "xylo"


# -- check_target -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TARGETS))
def test_an_eight_and_one_bit_model_runs_on_every_target(mixed: nn.Module, name: str) -> None:
    check_target(mixed, TARGETS[name])


@pytest.mark.parametrize("bits", [2, 4])
def test_two_and_four_bit_layers_are_codes_times_scales(mixed: nn.Module, bits: int) -> None:
    _, inner = _edges_and_inner(mixed)
    check_target(set_precision_(mixed, dict.fromkeys(inner, bits)), TARGETS["loihi2"])


@pytest.mark.parametrize("name", NO_FLOAT)
def test_a_float_layer_is_refused_in_one_line_naming_it(mixed: nn.Module, name: str) -> None:
    set_precision_(mixed, {"layers.conv3": 32})
    with pytest.raises(CompressionError) as info:
        check_target(mixed, TARGETS[name])
    message = str(info.value)
    assert message.startswith(f"layer layers.conv3 is float (32 bits per weight), which target {name!r} does not take")
    assert f"--target {name}" in message and "\n" not in message


def test_cortex_m_takes_float_layers(digits_checkpoint: Path) -> None:
    check_target(load_checkpoint(digits_checkpoint), TARGETS["cortex-m"])


@pytest.mark.parametrize("bits", [1, 8])
def test_a_non_finite_latent_weight_leaves_no_codes_times_scale_and_is_refused(mixed: nn.Module, bits: int) -> None:
    # what really breaks representability: an inf latent weight makes its channel compute nan
    set_precision_(mixed, {"layers.conv2": bits})
    module = dict(mixed.named_modules())["layers.conv2"]
    with torch.no_grad():
        weight_parametrizations(module).original[0].view(-1)[0] = float("inf")
    assert not torch.isfinite(module.weight).all()
    with pytest.raises(
        CompressionError, match=f"layer layers.conv2: its {bits}-bit weights are not finite integer codes"
    ):
        check_target(mixed, TARGETS["xylo"])


def test_a_target_refuses_the_precisions_it_does_not_take(mixed: nn.Module) -> None:
    chip = Target("int4-chip", (1, 2, 4), float_layers=False, description="4-bit weights", unchecked=(), code_bits=4)
    edges, _ = _edges_and_inner(mixed)
    with pytest.raises(
        CompressionError, match=rf"layer {edges[0]} is 8-bit, .* \(it takes 1-, 2- or 4-bit layers only\)"
    ):
        check_target(mixed, chip)
    check_target(set_precision_(mixed, dict.fromkeys(edges, 4)), chip)


# -- the ladders and the strategies without float -----------------------------------------------------------------


def test_without_float_every_layer_is_a_candidate_the_edges_from_eight_bits(digits_checkpoint: Path) -> None:
    model = load_checkpoint(digits_checkpoint)
    edges, inner = _edges_and_inner(model)
    ladders = resolve_ladders(model, None, [], False, LADDER, _no_float("xylo"))
    assert list(ladders) == candidate_layers(model, include_first_last=True)
    assert all(ladders[name] == (8,) for name in edges) and all(ladders[name] == LADDER for name in inner)
    # no precision reaches 8 bits: the edges take all of them rather than stay in float
    assert set(resolve_ladders(model, None, [], False, (1, 4), _no_float("xylo")).values()) == {(1, 4)}


@pytest.mark.parametrize(("layers", "exclude"), [(None, ["conv3"]), (["conv2", "conv3"], [])])
def test_without_float_layers_or_exclude_may_not_leave_a_layer_out(
    digits_checkpoint: Path, layers: list[str] | None, exclude: list[str]
) -> None:
    model = load_checkpoint(digits_checkpoint)
    with pytest.raises(CompressionError) as info:
        resolve_ladders(model, layers, exclude, False, LADDER, _no_float("speck"))
    message = str(info.value)
    assert message.startswith("target 'speck' takes no float layers, so every conv and linear layer must be")
    assert "layers.conv" in message and "\n" not in message


def _scripted(**fields: object) -> ScriptedSession:
    """Two layers on a ladder to 8 bits, a run on xylo (no float layers)."""
    defaults: dict = {"ladders": {"a": LADDER, "b": LADDER}, "config": SearchConfig(epochs=1.0, target="xylo")}
    return ScriptedSession(**{**defaults, **fields})  # type: ignore[arg-type]


def test_without_float_a_layer_climbs_to_the_top_of_its_ladder_and_no_further() -> None:
    session = _scripted(
        costs={"a": 0.5, "b": 0.05},
        budget=0.2,
        estimates={"a": 0.9, "b": 0.1},
        bit_costs={"a": {2: 0.5, 4: 0.5, 8: 0.05}},
        ladders={"a": LADDER, "b": (1, 8)},
    )
    recover(session)
    assert session.bits() == {"a": 8, "b": 1}
    assert session.slices[-3:] == ["return a to 2 bits", "return a to 4 bits", "return a to 8 bits"]
    assert session.verdicts["a"][1].startswith("8-bit: recovered")


def test_without_float_a_layer_that_misses_at_the_top_stays_there_and_the_run_ends_in_one_line() -> None:
    session = _scripted(costs={"a": 0.5, "b": 0.05}, budget=0.2, bit_costs={"a": dict.fromkeys((2, 4, 8), 0.5)})
    with pytest.raises(CompressionError) as info:
        recover(session)
    assert session.bits() == {"a": 8, "b": 8}  # every layer at its highest precision, none in float
    assert not any(name.endswith("to float") for name in session.slices)
    assert ("restore-input", []) not in session.actions
    assert str(info.value) == (
        "target 'xylo' takes no float layers and every layer is at its highest precision: measured drop 0.50 pts "
        "> budget 0.20; allow a larger budget, finetune longer (epochs), or choose a target that takes float layers"
    )


def test_without_float_a_control_over_budget_ends_the_run_rather_than_return_the_float_input() -> None:
    session = _scripted(costs={"a": 0.5, "b": 0.05}, budget=0.2, control_drop=0.4)
    with pytest.raises(CompressionError, match="a float control finetuned the same way is over budget too"):
        recover(session)
    assert session.bits() == {"a": 1, "b": 1}


def test_without_float_the_final_check_raises_a_layer_to_its_top_not_to_float() -> None:
    session = _scripted(
        costs={"a": 0.5, "b": 0.05}, budget=0.2, selection=["a", "b"], ladders={"a": (1, 8), "b": (1, 8)}
    )
    verify_and_back_off(session)
    assert session.bits() == {"a": 8, "b": 1}
    assert session.decisions["a"].bits == 8
    assert session.verdicts["a"] == (False, "raised to 8 bits at the final check: drop with it > budget 0.20 pts")
    session = _scripted(costs={"a": 0.5}, budget=0.2, selection=["a"], ladders={"a": (1, 8)}, bit_costs={"a": {8: 0.3}})
    with pytest.raises(CompressionError, match="after the final check: measured drop 0.30 pts > budget 0.20"):
        verify_and_back_off(session)
    assert session.bits() == {"a": 8}


def test_a_target_with_float_layers_keeps_the_float_ladder() -> None:
    session = _scripted(
        costs={"a": 0.5, "b": 0.05},
        budget=0.2,
        estimates={"a": 0.9, "b": 0.1},
        ladders={"a": (1,), "b": (1,)},
        config=SearchConfig(target="cortex-m"),
    )
    recover(session)
    assert session.bits() == {"a": 32, "b": 1} and "return a to float" in session.slices


# -- real searches ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["adaptive", "oracle", "none"])
def test_strategies_that_may_leave_float_layers_are_refused_a_target_without_them(
    digits_checkpoint: Path, digits, strategy: str
) -> None:
    config = SearchConfig(strategy=strategy, target="loihi2")
    with pytest.raises(CompressionError) as info:
        compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 1.0, config=config)
    assert str(info.value) == (
        f"strategy {strategy!r} may leave layers in float, which target 'loihi2' does not take; "
        "use one of ['all', 'recover']"
    )


def test_a_target_that_takes_none_of_the_precisions_is_refused(digits_checkpoint: Path, digits) -> None:
    chip = Target("eight", (8,), float_layers=False, description="8-bit only", unchecked=())
    with TARGETS.registered("eight", chip), pytest.raises(CompressionError) as info:
        config = SearchConfig(strategy="all", target="eight", precisions=(1, 2))
        compress(load_checkpoint(digits_checkpoint), digits["train"], digits["val"], 1.0, config=config)
    assert (
        str(info.value)
        == "target 'eight' takes 8-bit layers, none of precisions [1, 2]; add one of them (--precisions)"
    )


def test_all_on_xylo_gives_the_edges_eight_bits_the_rest_their_fewest_and_the_result_runs_there(
    digits_checkpoint: Path, digits
) -> None:
    model = load_checkpoint(digits_checkpoint)
    config = SearchConfig(strategy="all", target="xylo", precisions=LADDER, epochs=0.2)
    result = compress(model, digits["train"], digits["val"], 5.0, config=config)
    edges, inner = _edges_and_inner(model)
    assert result.precisions == {**dict.fromkeys(edges, 8), **dict.fromkeys(inner, 1)}
    assert layer_bits(result.model) == result.precisions and result.config["target"] == "xylo"
    check_target(result.model, TARGETS["xylo"])


# -- the command line -------------------------------------------------------------------------------------------


def test_compress_for_loihi2_writes_a_model_every_layer_of_which_it_takes_and_says_what_is_unchecked(
    digits_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--budget", "5", "--strategy", "all", "--precisions", "1,2,4,8", "--epochs", "0.2", "--target", "loihi2"]
    result = run_cli([str(digits_checkpoint), *args, "--quiet", "-o", str(out)])
    output = " ".join(result.stdout.split())  # the terminal wraps long lines
    assert "target loihi2: every conv and linear layer checked bit for bit (no float layers); not checked:" in output
    assert all(" ".join(item.split()) in output for item in TARGETS["loihi2"].unchecked)
    report = json.loads((out / "report.json").read_text())
    assert report["search"]["config"]["target"] == "loihi2"
    assert max(layer_bits(read_container(out / "model.albsnn").model).values()) == 8  # no float layer
    exported = run_cli(["export", str(out / "model.albsnn"), "-o", str(tmp_path / "m.onnx"), "--target", "loihi2"])
    assert (tmp_path / "m.onnx").is_file() and "binarized layer(s)" in exported.stdout


def test_compress_refuses_an_unknown_target_in_one_line(digits_checkpoint: Path) -> None:
    result = run_cli([str(digits_checkpoint), "--budget", "1", "--target", "nope"], expected_exit=2)
    assert "--target" in result.stderr and "'nope'" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("output_format", ["onnx", "nir", "c"])
def test_export_refuses_a_float_model_for_xylo_before_writing_anything(
    digits_checkpoint: Path, tmp_path: Path, output_format: str
) -> None:
    container = tmp_path / "float.albsnn"
    write_container(container, load_checkpoint(digits_checkpoint))
    output = tmp_path / ("model_c" if output_format == "c" else f"model.{output_format}")
    args = ["export", str(container), "-o", str(output), "--format", output_format, "--target", "xylo"]
    result = run_cli([*args, "--calibration-images", "0"] if output_format == "c" else args, expected_exit=2)
    assert result.stderr.startswith("error: layer layers.conv1 is float (32 bits per weight), which target 'xylo'")
    assert result.stderr.count("\n") == 1 and not output.exists()
    run_cli(["export", str(container), "-o", str(tmp_path / "m.onnx"), "--target", "cortex-m"])
