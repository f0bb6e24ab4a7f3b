"""The benchmark suite: ``run_all --quick`` runs every script at toy size and each writes its JSON result.

The quick suite takes one to a few minutes on 2 shared cores, so it runs once per
module (marked slow); the tests read the files it wrote. Nothing here asserts a
speed: only that each result exists, records the machine, and holds the fields
and the invariants its table is built from.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from albsnn_compress.search.estimators import ESTIMATORS

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[1]
QUICK_TIMEOUT_S = 1200
EXPECTED = ("search", "container", "inference", "depth", "timesteps", "paper", "formats", "run_all")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run ``python -m benchmarks.run_all --quick`` once; every ``<name>-quick.json`` it wrote, parsed."""
    folder = tmp_path_factory.mktemp("bench-quick")
    command = [sys.executable, "-m", "benchmarks.run_all", "--quick", "--results", str(folder)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"run_all --quick exited {done.returncode}\n--- stdout (tail)\n{done.stdout[-6000:]}\n--- stderr "
            f"(tail)\n{done.stderr[-6000:]}"
        )
    return {path.stem.removesuffix("-quick"): json.loads(path.read_text()) for path in folder.glob("*-quick.json")}


@pytest.mark.slow
def test_every_benchmark_writes_its_result_with_machine_info(quick_results: dict[str, dict[str, Any]]) -> None:
    assert sorted(quick_results) == sorted(EXPECTED)
    for name, result in quick_results.items():
        machine = result["machine"]
        assert machine["cores"] >= 1, name
        assert machine["cpu"], name
        assert "gpu" in machine and "torch" in json.dumps(machine["versions"]), name
    assert [entry["status"] for entry in quick_results["run_all"]["benchmarks"]] == ["ok"] * 7


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def assert_provenance(result: dict[str, Any], module: str, argv: list[str]) -> None:
    """``result`` records the commit, a dirty flag, a recent UTC date and the arguments of ``python -m module``."""
    record = result["provenance"]
    if _git("rev-parse", "HEAD").returncode != 0:  # not a git checkout: nothing to record
        assert record["commit"] is None and record["dirty"] is None
    else:  # HEAD or an ancestor of it: others may commit while the benchmark runs
        assert re.fullmatch("[0-9a-f]{40}", record["commit"])
        assert _git("merge-base", "--is-ancestor", record["commit"], "HEAD").returncode == 0
        assert isinstance(record["dirty"], bool)
    written = datetime.strptime(record["date_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(0) <= datetime.now(timezone.utc) - written < timedelta(hours=2)
    assert record["argv"] == argv
    assert record["command"].startswith(f"python -m {module}")
    assert str(ROOT) not in json.dumps(result)


@pytest.mark.slow
def test_every_quick_result_records_its_provenance(quick_results: dict[str, dict[str, Any]]) -> None:
    for name, result in quick_results.items():
        module = "benchmarks.run_all" if name == "run_all" else f"benchmarks.bench_{name}"
        assert_provenance(result, module, result["provenance"]["argv"])
        assert "--quick" in result["provenance"]["argv"], name
    assert all(entry["command"].startswith("python -m benchmarks.") for entry in quick_results["run_all"]["benchmarks"])


@pytest.mark.slow
def test_depth_counts_slices_and_compares_oracle_with_adaptive(quick_results: dict[str, dict[str, Any]]) -> None:
    depth = quick_results["depth"]
    assert depth["quick"] is True
    assert [entry["depth"] for entry in depth["depths"]] == [4, 8]
    for entry in depth["depths"]:
        runs = {run["strategy"]: run for run in entry["runs"]}
        assert set(runs) == {"adaptive", "oracle", "all"}
        assert all(run["candidates"] == entry["depth"] for run in entry["runs"])
        assert runs["oracle"]["slices"] >= entry["depth"] + 1  # one probe per layer, then the final finetune
        assert runs["all"]["slices"] == 1
        for run in entry["runs"]:
            assert 0.0 <= run["storage_saved_percent"] < 100.0
            assert run["finetune_epochs"] > 0 and run["seconds"] > 0
        ratio = entry["oracle_over_adaptive"]["weight"]
        assert ratio["slices"] == pytest.approx(runs["oracle"]["slices"] / runs["adaptive"]["slices"])
        assert set(entry["fidelity_spearman"]) == set(ESTIMATORS)
        assert all(rho is None or -1.0 <= rho <= 1.0 for rho in entry["fidelity_spearman"].values())


@pytest.mark.slow
def test_timesteps_reports_accuracy_and_latency_ratios_per_t(quick_results: dict[str, dict[str, Any]]) -> None:
    timesteps = quick_results["timesteps"]
    assert timesteps["config"]["arch"] == "digits-small" and timesteps["config"]["epochs"] == 2
    assert [row["timesteps"] for row in timesteps["rows"]] == [1, 2, 4]
    for row in timesteps["rows"]:
        assert 0.0 <= row["val_accuracy"] <= 100.0 and 0.0 <= row["test_accuracy"] <= 100.0
        assert row["onnx_bytes"] > 0
        assert [entry["batch"] for entry in row["latency"]] == [1, 64]
        for entry in row["latency"]:
            assert entry["eager"]["runs"] >= 10 and entry["onnx_packed"]["runs"] >= 10
    for entry in timesteps["rows"][0]["latency"]:
        assert entry["eager"]["ratio_to_first_t"] == 1.0 and entry["onnx_packed"]["ratio_to_first_t"] == 1.0


@pytest.mark.slow
def test_paper_table_has_every_budget_with_bits_and_bytes(quick_results: dict[str, dict[str, Any]]) -> None:
    paper = quick_results["paper"]
    assert paper["dataset"] == "digits" and paper["paper"]["rows"] is None
    assert paper["training"]["epochs"] == 8 and paper["training"]["seconds"] > 0
    assert set(paper["full_precision"]) == {"val_before", "test_before"}
    assert [run["budget"] for run in paper["runs"]] == [0.0, 0.2, 1.0]
    for run in paper["runs"]:
        assert run["container_bytes"] > 0 and run["onnx_bytes"] > 0 and run["checkpoint_bytes"] > 0
        if run["selected"]:
            assert run["bits_after"] < run["bits_before"]
            assert run["storage_saved_percent_bits"] > 0
        else:
            assert run["bits_after"] == run["bits_before"]


@pytest.mark.slow
def test_search_container_and_inference_hold_their_tables(quick_results: dict[str, dict[str, Any]]) -> None:
    assert {run["strategy"] for run in quick_results["search"]["runs"]} == {"adaptive", "oracle", "all"}
    assert set(quick_results["search"]["fidelity_spearman"]) == set(ESTIMATORS)
    container = quick_results["container"]
    assert container["sizes"] and container["io"] and container["bitpack"]
    assert {row["variant"] for row in quick_results["inference"]["rows"]} >= {"pytorch", "ort-packed"}


def _run_all_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("COLUMNS", "160")
    from benchmarks import run_all

    return run_all


def test_full_size_benchmarks_without_inputs_are_skipped_not_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_all = _run_all_module(monkeypatch)
    assert run_all.main(["--only", "search", "timesteps", "paper", "--results", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "run_all.json").read_text())
    assert_provenance(
        summary, "benchmarks.run_all", ["--only", "search", "timesteps", "paper", "--results", str(tmp_path)]
    )
    reasons = {entry["name"]: (entry["status"], entry["reason"]) for entry in summary["benchmarks"]}
    assert reasons == {
        "search": ("skipped", "needs --checkpoint"),
        "timesteps": ("skipped", "needs --data-root (FashionMNIST)"),
        "paper": ("skipped", "needs --checkpoint"),
    }


def test_a_failing_benchmark_is_reported_as_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_all = _run_all_module(monkeypatch)
    broken = run_all.Benchmark(
        "broken", "benchmarks.no_such_benchmark", lambda args, folder: [], lambda args: "broken.json"
    )
    entry = run_all.run_one(broken, argparse.Namespace(quick=True, seed=None), tmp_path)
    assert entry["status"] == "failed" and entry["reason"].startswith("exit status")
    silent = run_all.Benchmark("silent", "benchmarks.machine", lambda args, folder: [], lambda args: "silent.json")
    entry = run_all.run_one(silent, argparse.Namespace(quick=True, seed=None), tmp_path)
    assert entry["status"] == "failed" and "wrote no" in entry["reason"]


def test_recorded_paths_are_relative_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.provenance import provenance, repo_relative

    assert (
        repo_relative(str(ROOT / "benchmarks" / "checkpoints" / "fmnist-vgg-T1.pt"))
        == "benchmarks/checkpoints/fmnist-vgg-T1.pt"
    )
    assert repo_relative(str(ROOT.parent / "shared" / "datasets")) == "../shared/datasets"
    assert repo_relative(str(ROOT)) == "."
    assert repo_relative("/tmp/elsewhere/model.pt") == "/tmp/elsewhere/model.pt"
    assert repo_relative("--quick") == "--quick" and repo_relative("0.2") == "0.2"
    record = provenance("benchmarks.bench_paper", ["--checkpoint", str(ROOT / "m.pt"), "--outdir", "out dir"])
    assert record["argv"] == ["--checkpoint", "m.pt", "--outdir", "out dir"]
    assert record["command"] == "python -m benchmarks.bench_paper --checkpoint m.pt --outdir 'out dir'"


@pytest.mark.slow
def test_fidelity_ranks_every_estimator_against_two_oracle_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_fidelity

    argv = ["--quick", "--results", str(tmp_path)]
    bench_fidelity.main(argv)
    result = json.loads((tmp_path / "fidelity-quick.json").read_text())
    assert_provenance(result, "benchmarks.bench_fidelity", argv)
    (entry,) = result["archs"]
    assert entry["candidates"] == 5 and entry["first_last"] is True  # digits-small: 4 convs and the classifier
    assert [oracle["seed"] for oracle in entry["oracles"]] == [0, 1]
    for oracle in entry["oracles"]:
        assert len(oracle["measured_alone_points"]) == 5
        assert oracle["slices"] == 5  # one slice per layer alone, no final finetune, no back-off
    for table in ("fidelity_spearman", "fidelity_spearman_vs_mean_oracle"):
        assert set(entry[table]) == set(ESTIMATORS)
        assert all(rho is None or -1.0 <= rho <= 1.0 for rho in entry[table].values())
    for cost in entry["estimates"].values():
        assert cost["seconds"] >= 0 and cost["probe_passes"] >= 0 and len(cost["values"]) == 5
    assert entry["estimates"]["probe"]["probe_passes"] > entry["estimates"]["weight"]["probe_passes"]
    noise = entry["oracle_noise"]
    assert noise["seeds"] == [0, 1] and noise["sd_one_measurement_points"] >= 0
    assert set(entry["probe_measures_spearman"]) == {"probe:kl_nats", "probe:prediction_flip_fraction"}
