"""The hostile-input battery (``benchmarks/bench_hostile.py``): its quick mode ends clean and records what it ran.

``python -m benchmarks.bench_hostile --quick`` replays one case per failure class of issue 30
through the CLI, each in a fresh interpreter under a 2 GiB address-space cap; every case must
end clean (a one-line refusal or a success, no raw control character, no MemoryError, no hang),
and the result JSON must hold every case, the counts per class and reader, and the provenance
(commit and dirty flag). The table itself is checked without running anything: every class has
cases, a quick case, refusals to count, and unique names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_hostile
from tests.test_benchmarks import assert_provenance

pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS, /proc/self/status and FIFOs are Linux"),
]

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ("cases", "clean", "refusals", "clean_refusals", "ok", "clean_ok", "peak_added_mib_max", "seconds_max")


def test_the_table_covers_every_class_with_unique_cases() -> None:
    cases = bench_hostile.CASES
    assert len({case.key for case in cases}) == len(cases)
    assert {case.klass for case in cases} == set(bench_hostile.CLASSES)
    assert {case.klass for case in cases if case.quick} == set(bench_hostile.CLASSES)  # --quick: one per class
    for klass in bench_hostile.CLASSES:
        expected = {case.expected for case in cases if case.klass == klass}
        assert expected <= {bench_hostile.REFUSED, bench_hostile.OK}
        assert bench_hostile.REFUSED in expected, klass  # every class has refusals to count
    assert any(case.guard and "/dev/full" in case.name for case in cases)  # -o /dev/full only under the guards
    readers = {case.reader for case in cases if case.klass == 1}
    assert {"fashion-mnist IDX (eval)", "cifar10 binary (eval)", "image folder (eval)"} <= readers
    assert {"NIR import", "NIR inspect", "NIR compress"} <= {case.reader for case in cases if case.klass == 2}


def test_unsafe_characters_finds_what_a_terminal_acts_on() -> None:
    unsafe = bench_hostile.unsafe_characters
    assert unsafe("error: plain text\twith a tab\n") == []
    assert unsafe("Größe 😀 \\x1b escaped") == []
    assert unsafe("\x1b]0;x\x07") == ["U+0007", "U+001B"]
    assert unsafe("a\rb\x7f\x9b\x85") == ["U+000D", "U+007F", "U+0085", "U+009B"]
    assert unsafe("\u202e\u2066\u2069\u202a") == ["U+202A", "U+202E", "U+2066", "U+2069"]
    assert unsafe(b"bad \x9b byte".decode("utf-8", "surrogateescape")) == ["byte 0x9b"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    """Run ``python -m benchmarks.bench_hostile --quick --results <tmp>`` once; its result and arguments."""
    folder = tmp_path_factory.mktemp("hostile-quick")
    argv = ["--quick", "--results", str(folder)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_hostile", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    assert "8 of 8 cases clean" in done.stdout
    return json.loads((folder / "hostile-battery-quick.json").read_text()), argv


@pytest.mark.subprocess
def test_every_quick_case_ends_clean(quick: tuple[dict[str, Any], list[str]]) -> None:
    result, _ = quick
    assert result["quick"] is True and result["all_clean"] is True
    assert result["settings"]["budget_bytes"] == 2 << 30 and result["settings"]["timeout_s"] == 60
    cases = result["cases"]
    assert len(cases) == result["cases_run"] == result["clean"] == len(bench_hostile.CLASSES)
    for case in cases:
        assert case["clean"] is True and case["problems"] == [] and case["status"] == "ran", case
        assert case["exit"] == (2 if case["expected"] == "refused" else 0), case
        assert isinstance(case["peak_added_bytes"], int) and case["seconds"] < 60, case
        assert bench_hostile.unsafe_characters(case["stdout"] + case["stderr"]) == [], case
        if case["expected"] == "refused":
            assert case["stderr"].startswith("error: ") and case["stderr"].count("\n") == 1, case
        assert all("<tmp>" in arg or not arg.startswith("/tmp") for arg in case["argv"]), case["argv"]


@pytest.mark.subprocess
def test_the_quick_result_counts_per_class_and_records_provenance(quick: tuple[dict[str, Any], list[str]]) -> None:
    result, argv = quick
    assert_provenance(result, "benchmarks.bench_hostile", argv)
    assert "machine" in result and result["machine"]["cores"] >= 1
    assert set(result["classes"]) == {str(klass) for klass in bench_hostile.CLASSES}
    for klass, counts in result["classes"].items():
        assert all(key in counts for key in COUNTS), counts
        assert counts["title"] == bench_hostile.CLASSES[int(klass)]
        assert counts["cases"] == counts["clean"] == counts["refusals"] + counts["ok"] == 1
        assert counts["clean_refusals"] == counts["refusals"] and counts["clean_ok"] == counts["ok"]
    assert sum(row["cases"] for row in result["rows"]) == result["cases_run"]
    assert sum(counts["refusals"] for counts in result["classes"].values()) >= 6


def test_the_committed_battery_records_its_commit_and_every_class() -> None:
    path = ROOT / "benchmarks" / "results" / "hostile-battery.json"
    if not path.exists():
        pytest.skip("no committed battery result yet")
    result = json.loads(path.read_text())
    assert result["quick"] is False and result["only"] is None
    assert len(result["provenance"]["commit"]) == 40 and isinstance(result["provenance"]["dirty"], bool)
    assert result["provenance"]["command"] == "python -m benchmarks.bench_hostile"
    assert set(result["classes"]) == {str(klass) for klass in bench_hostile.CLASSES}
    ran = [case for case in result["cases"] if case["status"] != "skipped"]
    assert sum(counts["cases"] for counts in result["classes"].values()) == result["cases_run"] == len(ran)
    assert result["clean"] == sum(case["clean"] is True for case in result["cases"])
    refused = [case for case in result["cases"] if case["expected"] == "refused" and case["status"] == "ran"]
    assert refused and all(isinstance(case["peak_added_bytes"], int) for case in refused)  # measured under the cap
