"""Hostile and careless command lines (issue 19, classes 3 and 5), one row each: exit 2, one line, no traceback.

Every row also proves the refusal came *before any work*: the functions that
would start it (reading the checkpoint or container, loading a dataset, reading
the report) are replaced by ones that fail the test.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from albsnn_compress.files import output_paths
from albsnn_compress.report import build_report, write_report
from tests.clihelp import run_cli
from tests.report_samples import digits_result

GOLDEN = Path(__file__).parent / "golden" / "conv_mixed.albsnn"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOT_AS_ROOT = pytest.mark.skipif(
    ROOT,
    reason="root ignores permission bits, so a chmod-ed folder stays writable "
    "(the read-only-disk rows simulate what the probe meets instead)",
)


@dataclass
class Place:
    """The files a row points at."""

    tmp: Path
    checkpoint: Path
    report: Path

    def __truediv__(self, name: str) -> str:
        return str(self.tmp / name)


@dataclass
class Case:
    args: Callable[[Place], list[str]]
    message: str  # a regex the one stderr line must contain
    read_only_disk: bool = False  # every new file fails with EROFS (a read-only mount, simulated)
    marks: list = field(default_factory=list)


def _compress(*extra: str) -> Callable[[Place], list[str]]:
    return lambda p: [str(p.checkpoint), "--budget", "0.2", "--quiet", *extra]


SEED_RANGE = r"is not in the range 0<=x<=4294967295"
PLAIN = r"is not a number in plain decimal form; pass percentage points as digits"

CASES = {
    # class 3: seeds torch would overflow on
    "train seed 2^64": Case(
        lambda p: ["train", "--seed", str(2**64), "-o", p / "m.pt"], f"'--seed': 18446744073709551616 {SEED_RANGE}"
    ),
    "train seed 2^63": Case(lambda p: ["train", "--seed", str(2**63), "-o", p / "m.pt"], SEED_RANGE),
    "train seed -1": Case(lambda p: ["train", "--seed", "-1", "-o", p / "m.pt"], f"-1 {SEED_RANGE}"),
    "compress seed 2^64": Case(_compress("--seed", str(2**64)), f"'--seed': 18446744073709551616 {SEED_RANGE}"),
    "compress seed 99 digits": Case(_compress("--seed", "9" * 99), SEED_RANGE),
    # class 3: outputs that cannot be written, refused before the work
    "train -o under a file": Case(
        lambda p: ["train", "-o", p / "a_file/m.pt"], r"cannot write .*a_file/m.pt: .*a_file is a file, not a folder"
    ),
    "train -o in a missing folder": Case(
        lambda p: ["train", "-o", p / "missing/m.pt"], r"folder .*missing does not exist; create it first"
    ),
    "train -o is a folder": Case(lambda p: ["train", "-o", p / "a_folder"], r"File '.*a_folder' is a directory"),
    "train -o on a read-only disk": Case(
        lambda p: ["train", "-o", p / "m.pt"],
        r"cannot write .*m.pt: the file system is read-only; choose a folder on a writable disk",
        True,
    ),
    "train -o in a folder of someone else": Case(
        lambda p: ["train", "-o", p / "locked/m.pt"],
        r"permission denied; choose a folder you can write",
        marks=[NOT_AS_ROOT],
    ),
    "compress -o under a file": Case(
        _compress("-o", "{a_file}/out"), r"cannot write into .*a_file/out: .*a_file is a file, not a folder"
    ),
    "compress -o is a file": Case(_compress("-o", "{a_file}"), r"Directory '.*a_file' is a file"),
    "compress -o on a read-only disk": Case(
        _compress("-o", "{tmp}/out"), r"cannot write .*/out: the file system is read-only", True
    ),
    "compress -o holds a foreign manifest.json": Case(
        _compress("-o", "{web_app}"),
        r"web_app/manifest.json: not an albsnn-compress output manifest .*move it or choose another output folder",
    ),
    "compress -o holds a folder named like an output": Case(
        _compress("-o", "{clash}"), r"cannot write .*clash/model.onnx: it is a folder"
    ),
    "compress -o in a folder of someone else": Case(
        _compress("-o", "{locked}/out"), r"permission denied", marks=[NOT_AS_ROOT]
    ),
    "export -o under a file": Case(
        lambda p: ["export", str(GOLDEN), "-o", p / "a_file/m.onnx"],
        r"cannot write .*a_file/m.onnx: .*a_file is a file, not a folder",
    ),
    "export -o in a missing folder": Case(
        lambda p: ["export", str(GOLDEN), "-o", p / "missing/m.onnx"],
        r"folder .*missing does not exist; create it first",
    ),
    "export -o on a read-only disk": Case(
        lambda p: ["export", str(GOLDEN), "-o", p / "m.onnx"],
        r"cannot write .*m.onnx: the file system is read-only",
        True,
    ),
    "export c -o under a file": Case(
        lambda p: ["export", str(GOLDEN), "--format", "c", "-o", p / "a_file/c"],
        r"cannot write into .*a_file/c: .*a_file is a file, not a folder",
    ),
    "export c -o on a read-only disk": Case(
        lambda p: ["export", str(GOLDEN), "--format", "c", "-o", p / "c"],
        r"cannot write .*/c: the file system is read-only",
        True,
    ),
    "report -o under a file": Case(
        lambda p: ["report", str(p.report), "--format", "md", "-o", p / "a_file/r.md"],
        r"cannot write .*a_file/r.md: .*a_file is a file, not a folder",
    ),
    "report -o in a missing folder": Case(
        lambda p: ["report", str(p.report), "--format", "md", "-o", p / "missing/r.md"],
        r"folder .*missing does not exist",
    ),
    "report -o is a folder": Case(
        lambda p: ["report", str(p.report), "-o", p / "a_folder"], r"File '.*a_folder' is a directory"
    ),
    "report -o on a read-only disk": Case(
        lambda p: ["report", str(p.report), "--format", "md", "-o", p / "r.md"],
        r"cannot write .*r.md: the file system is read-only",
        True,
    ),
    "report -o in a folder of someone else": Case(
        lambda p: ["report", str(p.report), "-o", p / "locked/r.md"], r"permission denied", marks=[NOT_AS_ROOT]
    ),
    "import -o under a file": Case(
        lambda p: [
            "import",
            "--from",
            "snntorch",
            "--factory",
            p / "absent.py:build",
            "--dataset",
            "digits",
            "-T",
            "2",
            "-o",
            p / "a_file/m.pt",
        ],
        r"cannot write .*a_file/m.pt: .*a_file is a file, not a folder",
    ),
    "import -o on a read-only disk": Case(
        lambda p: [
            "import",
            "--from",
            "snntorch",
            "--factory",
            p / "absent.py:build",
            "--dataset",
            "digits",
            "-T",
            "2",
            "-o",
            p / "m.pt",
        ],
        r"cannot write .*m.pt: the file system is read-only",
        True,
    ),
    # issue 30, class 4: an output is never an input, never a symbolic link, only a regular file
    # (tests/test_output_rules.py runs every writer against every hazard)
    "export -o is the input container": Case(
        lambda p: ["export", p / "in.albsnn", "-o", p / "in.albsnn"],
        r"cannot write .*in.albsnn: it is the input .*in.albsnn \(rule: an output never replaces an input\); "
        "choose another output path",
    ),
    "export -o is a symlink out of the folder": Case(
        lambda p: ["export", p / "in.albsnn", "-o", p / "link.onnx"],
        r"cannot write .*link.onnx: it is a symbolic link to .*a_file \(rule: an output never follows or replaces "
        r"a symbolic link\); remove the link or choose another output path",
    ),
    "export -o is a FIFO": Case(
        lambda p: ["export", p / "in.albsnn", "-o", p / "fifo"],
        r"cannot write .*fifo: it is a FIFO \(named pipe\), not a regular file \(rule: outputs are written only",
    ),
    "export nir -o is the input container": Case(
        lambda p: ["export", p / "in.albsnn", "--format", "nir", "-o", p / "in.albsnn"],
        r"it is the input .*in.albsnn \(rule: an output never replaces an input\)",
    ),
    "export c -o holds the input under a C file name": Case(
        lambda p: ["export", p / "c_in/albsnn_model.c", "--format", "c", "-o", p / "c_in"],
        r"cannot write .*c_in/albsnn_model.c: it is the input .*\(rule: an output never replaces an input\); "
        "choose another output folder",
    ),
    "export c -o holds a symlink named like an output": Case(
        lambda p: ["export", p / "in.albsnn", "--format", "c", "-o", p / "c_link"],
        r"cannot write .*c_link/albsnn_model.h: it is a symbolic link .*\(rule: an output never follows",
    ),
    "export c -o is a dangling symlink": Case(
        lambda p: ["export", p / "in.albsnn", "--format", "c", "-o", p / "gone_c"],
        r"cannot write into .*gone_c: it is a symbolic link to .*nowhere, which does not exist; remove the link",
    ),
    "compress -o is a dangling symlink": Case(
        _compress("-o", "{tmp}/gone_c"), r"cannot write into .*gone_c: it is a symbolic link to .*nowhere"
    ),
    "compress input named like an output of its set": Case(
        lambda p: [p / "same/report.json", "--budget", "0.2", "--quiet", "-o", p / "same"],
        r"cannot write .*same/report.json: it is the input .*same/report.json \(rule: an output never replaces",
    ),
    # class 5: budgets that are impossible or not plain decimals
    "budget 150": Case(
        _compress("--budget", "150"), r"budget '150' is more than 100 percentage points, all of top-1 accuracy"
    ),
    "budget 100.5": Case(_compress("--budget", "100.5"), r"is more than 100 percentage points"),
    "budget 1_0": Case(_compress("--budget", "1_0"), rf"budget '1_0' {PLAIN}"),
    "budget 1e-1": Case(_compress("--budget", "1e-1"), PLAIN),
    "budget nan": Case(_compress("--budget", "nan"), PLAIN),
    "budget inf": Case(_compress("--budget", "inf"), PLAIN),
    "budget +0.2": Case(_compress("--budget", "+0.2"), PLAIN),
    "budget with a space": Case(_compress("--budget", " 0.2"), PLAIN),
    "budget in Arabic-Indic digits": Case(_compress("--budget", "\u0660.\u0662"), PLAIN),
    "budget -0.1": Case(_compress("--budget", "-0.1"), r"budget '-0.1' must be a finite number >= 0"),
    "budget of 400 nines": Case(_compress("--budget", "9" * 400), r"budget '9{40}\.\.\.' is more than 100"),
}


@pytest.fixture()
def place(tmp_path: Path, digits_checkpoint: Path) -> Place:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "web_app").mkdir()
    (tmp_path / "web_app" / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    (tmp_path / "clash" / "model.onnx").mkdir(parents=True)
    (tmp_path / "locked").mkdir(mode=stat.S_IRUSR | stat.S_IXUSR)
    shutil.copyfile(GOLDEN, tmp_path / "in.albsnn")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "a_file")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "c_in").mkdir()
    shutil.copyfile(GOLDEN, tmp_path / "c_in" / "albsnn_model.c")
    (tmp_path / "c_link").mkdir()
    (tmp_path / "c_link" / "albsnn_model.h").symlink_to(tmp_path / "a_file")
    (tmp_path / "gone_c").symlink_to(tmp_path / "nowhere")
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "report.json").write_bytes(b"a checkpoint named report.json")
    report = write_report(
        build_report(digits_result(), versions={"albsnn-compress": "test"}), tmp_path / "run", formats=("json",)
    )
    yield Place(tmp_path, digits_checkpoint, report["json"])
    (tmp_path / "locked").chmod(stat.S_IRWXU)


def _no_work(what: str) -> Callable[..., None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(f"{what} started before the output and options were checked")

    return refuse


@pytest.mark.parametrize("name", [pytest.param(name, marks=case.marks) for name, case in CASES.items()])
def test_hostile_command_line_is_one_line_exit_2_before_any_work(
    place: Place, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    case = CASES[name]
    args = [
        arg.format(
            a_file=place / "a_file",
            tmp=place.tmp,
            web_app=place / "web_app",
            clash=place / "clash",
            locked=place / "locked",
        )
        for arg in case.args(place)
    ]
    monkeypatch.setattr("albsnn_compress.pipeline.read_checkpoint", _no_work("reading the checkpoint"))
    monkeypatch.setattr("albsnn_compress.training.train_model.load_splits", _no_work("loading the dataset"))
    monkeypatch.setattr("albsnn_compress.cli.export.read_container", _no_work("reading the container"))
    monkeypatch.setattr("albsnn_compress.cli.report.load_report", _no_work("reading the report"))
    if case.read_only_disk:

        def read_only(*_args: object, **_kwargs: object) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(output_paths.tempfile, "mkstemp", read_only)
    result = run_cli(args, expected_exit=2)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(case.message, lines[0]), lines[0]
    assert "Traceback" not in result.output and result.stdout.strip() == ""
    assert (place.tmp / "in.albsnn").read_bytes() == (place.tmp / "c_in" / "albsnn_model.c").read_bytes()
    assert (place.tmp / "in.albsnn").read_bytes() == GOLDEN.read_bytes() and (place.tmp / "a_file").read_text() == "x"
    assert stat.S_ISFIFO(os.lstat(place.tmp / "fifo").st_mode) and (place.tmp / "link.onnx").is_symlink()


def test_a_budget_below_one_validation_image_is_one_warning_line(digits_checkpoint: Path, tmp_path: Path) -> None:
    result = run_cli(
        [
            str(digits_checkpoint),
            "--budget",
            "0.002",
            "--strategy",
            "none",
            "--epochs",
            "0",
            "--quiet",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings == [
        "warning: budget 0.002 points is below what the validation split resolves (one image of 144 is "
        "0.694 points), so it allows no image to be lost, like --budget 0; a budget is in percentage "
        "points (0.2 = 0.2 points), not a fraction"
    ]
    assert (tmp_path / "out" / "manifest.json").is_file()  # a warning, not a refusal


@pytest.mark.parametrize(
    ("target", "args"),
    [
        (
            "albsnn_compress.pipeline.write_container",
            lambda ckpt, tmp: [
                str(ckpt),
                "--budget",
                "1",
                "--strategy",
                "none",
                "--epochs",
                "0",
                "--quiet",
                "-o",
                f"{tmp}/out",
            ],
        ),
        ("albsnn_compress.cli.export.export_onnx", lambda ckpt, tmp: ["export", str(GOLDEN), "-o", f"{tmp}/m.onnx"]),
        (
            "albsnn_compress.cli.report.atomic_write_text",
            lambda ckpt, tmp: ["report", str(_report(tmp)), "-o", f"{tmp}/r.md"],
        ),
    ],
)
def test_a_disk_that_fills_up_while_writing_is_one_line(
    digits_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, args
) -> None:
    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    command = args(digits_checkpoint, tmp_path)
    monkeypatch.setattr(target, disk_full)
    result = run_cli(command, expected_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "no space left on the device; free some space or choose another disk" in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.output


def _report(tmp: Path) -> Path:
    return write_report(
        build_report(digits_result(), versions={"albsnn-compress": "test"}), tmp / "run", formats=("json",)
    )["json"]
