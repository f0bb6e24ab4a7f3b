"""The storage report: bit accounting, JSON schema, safe reading, and the text forms and CLI."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
from clihelp import run_cli
from report_samples import digits_result, make_result, tiny_model
from test_operations import hand_report

from albsnn_compress.checkpoint import save_checkpoint
from albsnn_compress.errors import ReportError
from albsnn_compress.report import (
    SCHEMA,
    build_report,
    dump_json,
    load_report,
    render_html,
    render_markdown,
    render_text,
    report_paths,
    validate_report,
    write_report,
)
from albsnn_compress.report import schema as schema_module
from albsnn_compress.search.paired_drop import PairedDrop
from albsnn_compress.storage import layer_storage, total_bits

VERSIONS = {"albsnn-compress": "test"}


def tiny_report(**files: object) -> dict:
    model = tiny_model()
    result = make_result(model, ["layers.conv1", "layers.conv2"], ["layers.conv1", "layers.conv2"])
    return build_report(result, versions=VERSIONS, **files)


@pytest.fixture()
def digits_report() -> dict:
    return build_report(digits_result(), versions=VERSIONS)


# --- accounting ------------------------------------------------------------------------------


def test_tiny_model_bits_match_the_hand_count() -> None:
    report = tiny_report()
    layers = {layer["name"]: layer for layer in report["layers"]}
    # conv1: 4x1x3x3 = 36 weights, no bias. float: 36*32; binary: 36 sign bits + 4 float32 scales.
    conv1 = layers["layers.conv1"]
    assert (conv1["bits_before"], conv1["bits_after"]) == (36 * 32, 36 + 4 * 32) == (1152, 164)
    assert conv1["bytes_after"] == 20.5
    assert [(t["name"], t["elements"], t["precision_before"], t["precision_after"]) for t in conv1["tensors"]] == [
        ("weight", 36, 32, 1),
        ("weight_scale", 4, None, 32),
    ]
    # bn1: weight, bias, running mean and var of 4 channels, all float32, untouched.
    assert (layers["layers.bn1"]["bits_before"], layers["layers.bn1"]["bits_after"]) == (4 * 4 * 32, 512)
    # conv2: 3x4x1x1 = 12 weights + 3 biases; the bias stays float32 next to the 3 scales.
    conv2 = layers["layers.conv2"]
    assert (conv2["bits_before"], conv2["bits_after"]) == ((12 + 3) * 32, 12 + 3 * 32 + 3 * 32) == (480, 204)
    computed = report["storage"]["computed"]
    assert (computed["bits_before"], computed["bits_after"]) == (1152 + 512 + 480, 164 + 512 + 204) == (2144, 880)
    assert (computed["bytes_before"], computed["bytes_after"]) == (268, 110)
    assert computed["params"] == 36 + 16 + 15
    assert computed["binarized_weight_params"] == 48
    assert computed["ratio"] == pytest.approx(2144 / 880)
    assert computed["saved_percent"] == pytest.approx(100 * (2144 - 880) / 2144)


@pytest.mark.parametrize("binarized", [(), ("layers.conv3",), ("layers.conv2", "layers.conv3", "layers.conv4")])
def test_every_bit_is_accounted_for(binarized: tuple[str, ...]) -> None:
    result = make_result(digits_result(()).model, list(binarized), ["layers.conv2", "layers.conv3", "layers.conv4"])
    report = build_report(result, versions=VERSIONS)
    before, after = total_bits(layer_storage(result.model, binarized))
    computed = report["storage"]["computed"]
    assert (computed["bits_before"], computed["bits_after"]) == (before, after)
    assert sum(layer["bits_after"] for layer in report["layers"]) == after
    assert sum(layer["bytes_after"] for layer in report["layers"]) == computed["bytes_after"] == after / 8
    for layer in report["layers"]:
        assert sum(t["bits_before"] for t in layer["tensors"]) == layer["bits_before"]
        assert sum(t["bits_after"] for t in layer["tensors"]) == layer["bits_after"]
        assert layer["binarized"] == (layer["name"] in binarized)
    assert computed["binarized_layers"] == len(binarized)


def test_measured_sizes_are_the_files_on_disk(tmp_path: Path) -> None:
    model = tiny_model()
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, model)
    container = tmp_path / "model.albsnn"
    container.write_bytes(b"x" * 321)
    report = tiny_report(input_checkpoint=checkpoint, container=container, onnx=tmp_path / "absent.onnx")
    disk = report["storage"]["on_disk"]
    assert disk["input_checkpoint"] == {"path": str(checkpoint), "bytes": os.path.getsize(checkpoint)}
    assert disk["container"] == {"path": str(container), "bytes": 321}
    assert disk["onnx"] == {"path": str(tmp_path / "absent.onnx"), "bytes": None}
    assert report["storage"]["on_disk_ratio"] == {"container": os.path.getsize(checkpoint) / 321, "onnx": None}
    assert tiny_report()["storage"]["on_disk"]["container"] == {"path": None, "bytes": None}


def test_accuracy_and_trajectory_come_from_the_result(digits_report: dict) -> None:
    acc = digits_report["accuracy"]
    assert acc["val_drop_points"] == pytest.approx(0.1)
    assert acc["test_drop_points"] == pytest.approx(0.25)
    assert acc["val_floor"] == pytest.approx(89.8)
    assert acc["within_budget"] is True
    assert [step["action"] for step in digits_report["trajectory"]] == [
        "start",
        "binarize",
        "binarize",
        "binarize",
        "revert",
        "final",
    ]
    assert digits_report["trajectory"][-1]["storage_bits"] == digits_report["storage"]["computed"]["bits_after"]
    assert digits_report["model"] == {
        "name": "digits-small",
        "timesteps": 1,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }


def test_the_drop_comes_with_its_paired_counts_and_exact_interval(digits_report: dict) -> None:
    paired = digits_report["accuracy"]["paired"]
    expected = PairedDrop(1000, lost=6, gained=5)
    assert (paired["val"]["images"], paired["val"]["lost"], paired["val"]["gained"]) == (1000, 6, 5)
    assert paired["val"]["drop_points"] == pytest.approx(digits_report["accuracy"]["val_drop_points"])
    assert paired["val"]["interval_points"] == pytest.approx(list(expected.interval(0.95)))
    low, high = paired["val"]["interval_points"]
    assert low < paired["val"]["drop_points"] < high
    assert paired["val"]["upper_bound_points"] == pytest.approx(expected.upper_bound(0.9))
    assert paired["val"]["resolution_points"] == pytest.approx(0.1)
    assert paired["test"]["drop_points"] == pytest.approx(digits_report["accuracy"]["test_drop_points"])


def test_the_terminal_and_html_show_the_interval(digits_report: dict) -> None:
    text = render_text(digits_report, brief=True, width=200)
    low, high = digits_report["accuracy"]["paired"]["val"]["interval_points"]
    row = next(line for line in text.splitlines() if "validation" in line and "89.90%" in line)
    assert f"[{low:+.2f}, {high:+.2f}] pts" in row and "6 / 5 of 1000" in row
    assert "95 % interval" in text and "90 % upper bound" in text
    assert f"95 % interval [{low:+.2f}, {high:+.2f}] pts" in render_html(digits_report)


def test_a_step_counted_image_by_image_shows_its_interval() -> None:
    result = digits_result()
    result.trajectory[-1].paired = PairedDrop(1000, lost=6, gained=5)
    report = build_report(result, versions=VERSIONS)
    last = report["trajectory"][-1]
    assert (last["lost"], last["gained"]) == (6, 5)
    assert last["interval_points"] == pytest.approx(list(PairedDrop(1000, 6, 5).interval(0.95)))
    assert "lost" not in report["trajectory"][0]  # a step without counts stays as it was
    validate_report(report)
    low, high = last["interval_points"]
    assert f"[{low:+.2f}, {high:+.2f}] pts" in render_text(report, width=250)


def test_estimates_are_stored_in_points_and_raw_under_their_own_names(digits_report: dict) -> None:
    step = digits_report["trajectory"][1]
    assert step["layers"] == ["layers.conv2"] and step["binarized"] == ["layers.conv2"]
    assert step["estimates_points"] == pytest.approx({"layers.conv2": 0.05, "layers.conv3": 0.10, "layers.conv4": 0.15})
    assert step["estimates_raw"] == pytest.approx({"layers.conv2": 0.01, "layers.conv3": 0.02, "layers.conv4": 0.03})
    conv2 = next(layer for layer in digits_report["layers"] if layer["name"] == "layers.conv2")
    assert (conv2["estimate_raw"], conv2["estimate_points"]) == pytest.approx((0.01, 0.05))
    assert conv2["measured_increment_points"] == pytest.approx(0.04) and conv2["measured_alone_points"] is None
    text = render_text(digits_report, width=300)
    assert any(" binarize " in line and "conv2 0.05, conv3 0.10, conv4 0.15" in line for line in text.splitlines())
    assert "0.04 pts group" in text


def test_the_measured_drop_says_whether_it_was_alone(digits_report: dict) -> None:
    layer = next(layer for layer in digits_report["layers"] if layer["name"] == "layers.conv3")
    layer["measured_alone_points"], layer["measured_increment_points"] = 0.3, None
    assert "| 0.30 pts alone |" in render_markdown(digits_report)


def test_build_rejects_inconsistent_results() -> None:
    result = digits_result()
    result.binarized = ["layers.conv2", "layers.conv9"]
    with pytest.raises(ReportError, match=r"conv9.*binarizable layers"):
        build_report(result, versions=VERSIONS)
    result = digits_result()
    result.accuracy["val_after"] = float("nan")
    with pytest.raises(ReportError, match=r"val_after.*finite"):
        build_report(result, versions=VERSIONS)


def test_non_finite_estimator_values_become_null() -> None:
    result = digits_result()
    result.decisions[0].estimate_raw = float("inf")
    report = build_report(result, versions=VERSIONS)
    assert report["layers"][2]["name"] == "layers.conv2"
    assert report["layers"][2]["estimate_raw"] is None


# --- schema ----------------------------------------------------------------------------------


def test_the_report_validates_against_its_json_schema(digits_report: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(dump_json(digits_report)))
    validate_report(digits_report)


def _broken(report: dict) -> list[tuple[str, dict]]:
    cases = []
    for label, path, value in [
        ("string bits", ("layers", 0, "bits_after"), "4608"),
        ("bool as integer", ("storage", "computed", "params"), True),
        ("negative bits", ("layers", 1, "bits_before"), -1),
        ("null accuracy", ("accuracy", "val_before"), None),
        ("binarized not strings", ("trajectory", 1, "binarized"), [1]),
        ("version not a string", ("versions", "torch"), 2),
        ("file bytes as float", ("storage", "on_disk", "onnx", "bytes"), 1.5),
    ]:
        doc = copy.deepcopy(report)
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        cases.append((label, doc))
    missing = copy.deepcopy(report)
    del missing["layers"][0]["reason"]
    extra = copy.deepcopy(report)
    extra["accuracy"]["bogus"] = 1
    return [*cases, ("missing field", missing), ("unknown field", extra)]


def test_builtin_validator_agrees_with_jsonschema(digits_report: dict) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for label, doc in _broken(digits_report):
        assert not validator.is_valid(doc), label
        with pytest.raises(ReportError, match="at /"):
            validate_report(doc)


def test_validator_names_the_path_and_checks_the_accounting(digits_report: dict) -> None:
    doc = copy.deepcopy(digits_report)
    doc["layers"][3]["bits_after"] = "x"
    with pytest.raises(ReportError, match=r"at /layers/3/bits_after: expected integer, found str"):
        validate_report(doc)
    doc = copy.deepcopy(digits_report)
    doc["layers"][2]["tensors"][0]["bits_after"] += 8
    with pytest.raises(ReportError, match=r"layers.conv2\): tensors sum to"):
        validate_report(doc)
    doc = copy.deepcopy(digits_report)
    doc["storage"]["computed"]["bits_after"] += 1
    with pytest.raises(ReportError, match=r"bits_after: layers sum to"):
        validate_report(doc)


def test_a_version_2_report_still_reads_as_version_2_described_it(tmp_path: Path, digits_report: dict) -> None:
    """Version 3 added ``operations``; a version-2 document (none) reads and renders, and holds no such field."""
    assert digits_report["schema_version"] == 3 and "operations" not in digits_report
    old = dict(digits_report, schema_version=2)
    path = tmp_path / "old.json"
    path.write_text(dump_json(old))
    assert load_report(path) == old
    assert "Cost per inference" not in render_text(old) and "Storage: computed vs on disk" in render_text(old)
    assert "Cost per inference" not in render_markdown(old) + render_html(old, charts=False)
    with_operations = dict(old, operations=hand_report()["operations"])
    with pytest.raises(ReportError, match=r"at /: unknown field 'operations'"):
        validate_report(with_operations)
    validate_report(dict(with_operations, schema_version=3))
    assert schema_module.SCHEMAS[2]["properties"]["schema_version"] == {"const": 2}
    jsonschema.Draft202012Validator.check_schema(schema_module.SCHEMAS[2])
    jsonschema.Draft202012Validator(schema_module.SCHEMAS[2]).validate(json.loads(dump_json(old)))


def test_the_operations_section_validates_against_the_json_schema() -> None:
    report = hand_report()
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate(json.loads(dump_json(report)))
    for path, value in (
        (("input_model", "layers", 0, "ac"), -1.0),
        (("compressed_model", "total", "dense"), 1.5),
        (("energy", "label"), None),
        (("images",), 0),
    ):
        doc = copy.deepcopy(report)
        node = doc["operations"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert not validator.is_valid(doc), path
        with pytest.raises(ReportError, match="at /operations/"):
            validate_report(doc)


# --- reading ---------------------------------------------------------------------------------


def test_load_report_round_trips(tmp_path: Path, digits_report: dict) -> None:
    paths = write_report(digits_report, tmp_path, formats=("json",))
    assert paths == {"json": tmp_path / "report.json"}
    assert load_report(paths["json"]) == digits_report


def _bad_reports(report: dict) -> list[tuple[str, bytes, str]]:
    text = dump_json(report)
    future = dict(report, schema_version=99)
    return [
        ("empty", b"", "not valid JSON"),
        ("truncated", text[: len(text) // 2].encode(), "not valid JSON"),
        ("not utf-8", b'{"schema": "\xff"}', "not UTF-8"),
        ("list", b"[1, 2]", "must be a JSON object, found list"),
        (
            "duplicate key",
            text.replace('"schema_version": 3,', '"schema_version": 3, "schema_version": 3,', 1).encode(),
            "duplicate key 'schema_version'",
        ),
        ("nan", text.replace('"val_before": 90.0', '"val_before": NaN', 1).encode(), "NaN is not allowed"),
        ("huge int", text.replace('"seed": 0', '"seed": ' + "9" * 5000, 1).encode(), "integer with 5000 digits"),
        ("deep", b"[" * 100000 + b"]" * 100000, "nesting deeper than 32 levels"),
        ("other schema", json.dumps(dict(report, schema="x")).encode(), "not an albsnn-compress report"),
        (
            "future version",
            json.dumps(future).encode(),
            r"schema version 99 is not supported \(this reader reads \[2, 3\]\).*upgrade",
        ),
        (
            "version 1",
            json.dumps(dict(report, schema_version=1)).encode(),
            r"report schema version 1 is not supported \(this reader reads \[2, 3\]\); regenerate it",
        ),
    ]


def test_load_report_rejects_bad_files_with_one_clear_error(tmp_path: Path, digits_report: dict) -> None:
    for label, data, message in _bad_reports(digits_report):
        path = tmp_path / f"{label}.json"
        path.write_bytes(data)
        with pytest.raises(ReportError, match=message):
            load_report(path)
    with pytest.raises(ReportError, match="cannot read the report"):
        load_report(tmp_path / "absent.json")


def test_load_report_caps_the_file_size(tmp_path: Path, digits_report: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_report(digits_report, tmp_path, formats=("json",))["json"]
    monkeypatch.setattr(schema_module, "MAX_REPORT_BYTES", 100)
    with pytest.raises(ReportError, match="larger than 100 bytes"):
        load_report(path)


# --- writing ---------------------------------------------------------------------------------


def test_write_report_names_files_after_a_folder_or_a_stem(tmp_path: Path, digits_report: dict) -> None:
    assert report_paths(tmp_path, ["json", "html"]) == {
        "json": tmp_path / "report.json",
        "html": tmp_path / "report.html",
    }
    stem = tmp_path / "run.report.json"
    paths = write_report(digits_report, stem, formats=("json", "md", "terminal"))
    assert paths == {"json": stem, "md": tmp_path / "run.report.md", "terminal": tmp_path / "run.report.txt"}
    assert all(path.is_file() for path in paths.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.report.json", "run.report.md", "run.report.txt"]


def test_write_report_refuses_invalid_documents_and_writes_nothing(tmp_path: Path, digits_report: dict) -> None:
    doc = copy.deepcopy(digits_report)
    doc["layers"][0]["bits_after"] = -5
    with pytest.raises(ReportError, match="at /layers/0/bits_after"):
        write_report(doc, tmp_path)
    with pytest.raises(ReportError, match="unknown report format"):
        write_report(digits_report, tmp_path, formats=("pdf",))
    with pytest.raises(ReportError, match="does not exist"):
        write_report(digits_report, tmp_path / "missing" / "r.json")
    assert list(tmp_path.iterdir()) == []


# --- text forms ------------------------------------------------------------------------------


def test_terminal_output_shows_the_key_rows() -> None:
    text = render_text(tiny_report(), width=200)
    lines = text.splitlines()
    assert lines[0].startswith("tiny, T=1: 268 B -> 110 B computed (2.44×, 58.96% saved)")
    assert "within budget" in lines[0]
    for row in (
        ["conv1", "Conv2d", "4×1×3×3", "36", "32 -> 1", "144 B", "20.5 B"],
        ["bn1", "BatchNorm2d", "4", "16", "32", "64 B", "64 B", "not binarizable"],
        ["conv2", "Conv2d", "3×4×1×1", "15", "32 -> 1", "60 B", "25.5 B"],
        ["total", "67", "268 B", "110 B", "2 binarized"],
        ["computed (bits / 8)", "268 B", "110 B", "2.44×", "58.96%"],
        ["computed, bits", "2,144", "880"],
        ["validation", "90.00%", "89.90%", "0.10 pts"],
    ):
        assert any(all(cell in line for cell in row) for line in lines), f"no line with {row}:\n{text}"
    for title in (
        "Run",
        "Storage: computed vs on disk",
        "Files",
        "Accuracy (top-1)",
        "Layers",
        "Search trajectory",
        "Wall time",
    ):
        assert title in [line.strip() for line in lines]


def test_brief_terminal_output_keeps_storage_accuracy_and_layers(digits_report: dict) -> None:
    text = render_text(digits_report, brief=True)
    assert "Layers" in text and "Accuracy (top-1)" in text and "Storage: computed vs on disk" in text
    assert "Search trajectory" not in text and "Versions" not in text


def test_markdown_holds_every_table_with_escaped_cells(digits_report: dict) -> None:
    digits_report["layers"][2]["reason"] = "a | b < c"
    digits_report["trajectory"][2]["layers"] = ["layers.conv3", "layers.conv2"]  # a step that changed two layers
    markdown = render_markdown(digits_report)
    assert "| 2 | binarize | conv3, conv2 |" in markdown
    assert markdown.startswith("# Storage report: digits-small\n")
    assert "| **conv2** | **Conv2d** |" not in markdown  # only the first cell is bold
    assert "| **conv2** | Conv2d | 32×16×3×3 |" in markdown
    assert "a \\| b &lt; c" in markdown
    assert "| weight 4608×1b<br>weight_scale 32×32b |" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| conv4 ")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 13


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture()
def report_json(tmp_path: Path, digits_report: dict) -> Path:
    return write_report(digits_report, tmp_path / "run", formats=("json",))["json"]


@pytest.mark.parametrize(
    "form, marker",
    [
        ("terminal", "Search trajectory"),
        ("json", '"schema_version": 3'),
        ("md", "# Storage report"),
        ("html", "<!DOCTYPE html>"),
    ],
)
def test_report_command_prints_every_form(report_json: Path, form: str, marker: str) -> None:
    result = run_cli(["report", str(report_json), "--format", form])
    assert marker in result.stdout


def test_report_command_writes_files_identical_to_write_report(
    report_json: Path, tmp_path: Path, digits_report: dict
) -> None:
    for form in ("json", "md", "html"):
        out = tmp_path / f"cli.{form}"
        run_cli(["report", str(report_json), "--format", form, "-o", str(out)])
        direct = write_report(digits_report, tmp_path / "direct", formats=(form,))[form]
        assert out.read_bytes() == direct.read_bytes(), form
    assert load_report(tmp_path / "cli.json") == digits_report


def test_report_command_rejects_bad_input_in_one_line(tmp_path: Path, report_json: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "albsnn-compress/report", ', encoding="utf-8")
    result = run_cli(["report", str(bad)], expected_exit=2)
    assert result.stderr.startswith(f"error: {bad}: not valid JSON")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    result = run_cli(
        ["report", str(report_json), "-o", str(tmp_path / "no" / "x.md"), "--format", "md"], expected_exit=2
    )
    assert "does not exist" in result.stderr and result.stderr.count("\n") == 1
    result = run_cli(["report", str(report_json), "--format", "pdf"], expected_exit=2)
    assert "'pdf' is not one of" in result.stderr


def test_a_nir_file_is_listed_beside_the_container_and_onnx(tmp_path: Path) -> None:
    nir = tmp_path / "model.nir"
    nir.write_bytes(b"\x89HDF" + bytes(1000))
    report = tiny_report(nir=nir, nir_binary_layers=["layers.conv2"])
    assert report["storage"]["on_disk"]["nir"]["bytes"] == 1004
    assert report["storage"]["nir"]["binary_scaled_layers"] == ["layers.conv2"]
    for text in (render_text(report), render_markdown(report)):
        assert "NIR (float32, batch norm folded)" in text and "1,004 B" in text
        assert "on disk: checkpoint -> .nir (float32)" in text
        assert "no 1-bit packing on disk" in text
    assert "nir" not in tiny_report()["storage"]["on_disk"]  # no NIR file, no row
