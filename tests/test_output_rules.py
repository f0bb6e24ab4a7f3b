"""Where outputs may land (issue 30, classes 4 and 8), generated over every writer and every hazard.

Class 4: an output is never an input, never a symbolic link at its own name, and only ever a regular file. Every
writer (ONNX, NIR, report, C folder, and the compress set: container, ONNX, NIR, report, manifest) meets every
hazard (the input itself, a hard link to it, links inside, outside, dangling, a FIFO, a device, a folder); each
refusal is one ``error:`` line naming the path and the rule, exit status 2, before any work (the readers are
replaced by ones that fail the test), and every file that was there is byte-identical afterwards.

Class 8: a ``export --format c`` child killed (SIGKILL) before each of its file-system steps, and at random
moments, leaves the old complete set, the new complete set, or a folder with no ``manifest.json`` (marked
incomplete); the next export leaves the new complete set and no temporary file or folder.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from albsnn_compress.files.output_paths import RULE_INPUT, RULE_REGULAR, RULE_SYMLINK
from albsnn_compress.files.output_set import MANIFEST_NAME, STAGING_PREFIX, read_manifest, verify_output_set
from albsnn_compress.formats.c.export import C_FILES, HEADER, build_c_sources, export_c
from albsnn_compress.formats.container.file import read_container
from albsnn_compress.report import build_report, write_report
from albsnn_compress.snn.spec import SpikingNet
from tests.clihelp import run_cli
from tests.report_samples import digits_result

GOLDEN = Path(__file__).parent / "golden" / "conv_mixed.albsnn"
OLD_GOLDEN = Path(__file__).parent / "golden" / "fc_float32.albsnn"
ROOT = Path(__file__).resolve().parents[1]

try:
    import nir  # noqa: F401

    HAS_NIR = True
except ImportError:
    HAS_NIR = False
NEEDS_NIR = pytest.mark.skipif(not HAS_NIR, reason="nir is an optional dependency")


# -- class 4: the rules, over every writer and every hazard ----------------------------------------------------


@dataclass
class Layout:
    """A tree of files the rows plant hazards in; ``work`` is where the outputs go."""

    root: Path
    inputs: dict[str, Path]  # input kind -> the file the command reads

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def secret(self) -> Path:
        return self.root / "outside" / "secret.txt"


@pytest.fixture()
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "inside.txt").write_text("inside, not an output")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("outside the output folder")
    (tmp_path / "in").mkdir()
    container = tmp_path / "in" / "in.albsnn"
    shutil.copyfile(GOLDEN, container)
    checkpoint = tmp_path / "in" / "model.pt"
    checkpoint.write_bytes(b"a checkpoint; these rows never read it")
    report = write_report(
        build_report(digits_result(), versions={"albsnn-compress": "test"}), tmp_path / "in", formats=("json",)
    )["json"]
    return Layout(tmp_path, {"container": container, "checkpoint": checkpoint, "report": report})


@dataclass(frozen=True)
class Writer:
    """One command that writes; ``member`` is the file of its output folder a hazard is planted at (``None``: the
    ``-o`` path itself is the file)."""

    args: Callable[[Path, Path], list[str]]  # (input, -o) -> the command line
    input: str  # which input of the layout it reads
    suffix: str = ""  # the -o file's suffix (single-file writers)
    member: str | None = None
    marks: tuple[pytest.MarkDecorator, ...] = ()


def _compress(*extra: str) -> Callable[[Path, Path], list[str]]:
    return lambda inp, out: [str(inp), "--budget", "1", "--quiet", *extra, "-o", str(out)]


WRITERS = {
    "onnx": Writer(lambda inp, out: ["export", str(inp), "-o", str(out)], "container", ".onnx"),
    "nir": Writer(
        lambda inp, out: ["export", str(inp), "--format", "nir", "-o", str(out)],
        "container",
        ".nir",
        marks=(NEEDS_NIR,),
    ),
    # `report -o` is checked by check_output_file without its input (albsnn_compress/cli/report.py does not pass it)
    "report": Writer(lambda inp, out: ["report", str(inp), "--format", "md", "-o", str(out)], "report", ".md"),
    "c folder": Writer(
        lambda inp, out: ["export", str(inp), "--format", "c", "-o", str(out)], "container", member=HEADER
    ),
    "c folder manifest": Writer(
        lambda inp, out: ["export", str(inp), "--format", "c", "-o", str(out)], "container", member=MANIFEST_NAME
    ),
    "compress set: container": Writer(_compress(), "checkpoint", member="model.albsnn"),
    "compress set: onnx": Writer(_compress(), "checkpoint", member="model.onnx"),
    "compress set: nir": Writer(_compress("--formats", "nir"), "checkpoint", member="model.nir", marks=(NEEDS_NIR,)),
    "compress set: report": Writer(_compress(), "checkpoint", member="report.json"),
    "compress set: manifest": Writer(_compress(), "checkpoint", member=MANIFEST_NAME),
}


@dataclass(frozen=True)
class Hazard:
    """What is planted at the output's name: ``plant(target, layout, input) -> the input the command reads``."""

    plant: Callable[[Path, Layout, Path], Path]
    rule: str  # a regex of the rule the one line must name
    device: str | None = None  # single-file writers: -o is this device itself
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def _same_path(target: Path, _layout: Layout, inp: Path) -> Path:
    shutil.move(inp, target)  # the input sits where the output goes (for a set: the input is named like a member)
    return target


def _hard_link(target: Path, _layout: Layout, inp: Path) -> Path:
    os.link(inp, target)
    return inp


def _link(to: Callable[[Layout, Path], str | Path]) -> Callable[[Path, Layout, Path], Path]:
    def plant(target: Path, layout: Layout, inp: Path) -> Path:
        target.symlink_to(to(layout, inp))
        return inp

    return plant


def _fifo(target: Path, _layout: Layout, inp: Path) -> Path:
    os.mkfifo(target)
    return inp


def _folder(target: Path, _layout: Layout, inp: Path) -> Path:
    target.mkdir()
    (target / "kept.txt").write_text("a file in a folder named like an output")
    return inp


def _nothing(_target: Path, _layout: Layout, inp: Path) -> Path:
    return inp


DEVICES_WRITABLE = all(stat.S_ISCHR(os.stat(d).st_mode) for d in ("/dev/null", "/dev/full") if os.path.exists(d))

HAZARDS = {
    "output is the input (same path)": Hazard(_same_path, RULE_INPUT),
    "output is a hard link to the input": Hazard(_hard_link, RULE_INPUT),
    "output is a symlink to the input": Hazard(_link(lambda _l, inp: inp), f"{RULE_INPUT}|{RULE_SYMLINK}"),
    "output is a symlink to a file inside the folder": Hazard(
        _link(lambda lay, _i: lay.work / "inside.txt"), RULE_SYMLINK
    ),
    "output is a symlink to a file outside the folder": Hazard(_link(lambda lay, _i: lay.secret), RULE_SYMLINK),
    "output is a relative symlink out of the folder": Hazard(
        _link(lambda _l, _i: Path("..") / "outside" / "secret.txt"), RULE_SYMLINK
    ),
    "output is a dangling symlink": Hazard(_link(lambda lay, _i: lay.root / "nowhere"), RULE_SYMLINK),
    "output is a symlink to /dev/full": Hazard(_link(lambda _l, _i: "/dev/full"), RULE_SYMLINK),
    "output is a FIFO": Hazard(_fifo, RULE_REGULAR),
    "output is /dev/null": Hazard(_nothing, RULE_REGULAR, device="/dev/null"),
    "output is /dev/full": Hazard(_nothing, RULE_REGULAR, device="/dev/full"),
    "output is a folder": Hazard(_folder, r"it is a folder|is a directory"),
}


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root``, nothing followed: links by their text, files by their bytes, nodes by kind."""
    seen: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                seen[path] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                seen[path] = ("file", Path(path).read_bytes(), info.st_ino)
            else:
                seen[path] = (stat.S_IFMT(info.st_mode), info.st_ino)
    return seen


def _no_work(what: str) -> Callable[..., None]:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError(f"{what} started before the outputs were checked")

    return refuse


def _guard_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test (instead of replacing a device node: the tests may run as root) if a write reaches /dev."""
    real_replace, real_mkstemp = os.replace, tempfile.mkstemp

    def replace(src: object, dst: object, **kwargs: object) -> None:
        if str(dst).startswith("/dev/"):
            raise AssertionError(f"os.replace onto {dst}")
        real_replace(src, dst, **kwargs)

    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        if str(kwargs.get("dir", "")).startswith("/dev"):
            raise AssertionError(f"a temporary file in {kwargs['dir']}")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def _rows() -> list[object]:
    rows = []
    for writer_name, writer in WRITERS.items():
        for hazard_name, hazard in HAZARDS.items():
            if hazard.device is not None and (writer.member is not None or not os.path.exists(hazard.device)):
                continue  # a set's member cannot be a device without mknod; its link to one is a row of its own
            marks = [*writer.marks, *hazard.marks]
            rows.append(pytest.param(writer_name, hazard_name, marks=marks, id=f"{writer_name} / {hazard_name}"))
    return rows


@pytest.mark.parametrize(("writer_name", "hazard_name"), _rows())
def test_every_writer_refuses_every_hazard_in_one_line_and_touches_nothing(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, writer_name: str, hazard_name: str
) -> None:
    writer, hazard = WRITERS[writer_name], HAZARDS[hazard_name]
    inp = layout.inputs[writer.input]
    if writer.member is None:
        out = Path(hazard.device) if hazard.device else layout.work / f"out{writer.suffix}"
        target = out
    else:
        out = layout.work
        target = out / writer.member
    inp = hazard.plant(target, layout, inp)
    before = _snapshot(layout.root)
    devices = {d: os.stat(d).st_rdev for d in ("/dev/null", "/dev/full") if os.path.exists(d)}
    monkeypatch.setattr("albsnn_compress.cli.export.read_container", _no_work("reading the container"))
    monkeypatch.setattr("albsnn_compress.cli.report.load_report", _no_work("reading the report"))
    monkeypatch.setattr("albsnn_compress.pipeline.read_checkpoint", _no_work("reading the checkpoint"))
    monkeypatch.setattr("albsnn_compress.pipeline.is_nir_file", _no_work("reading the input"))
    _guard_devices(monkeypatch)

    result = run_cli(writer.args(inp, out), expected_exit=2)

    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(target) in lines[0], lines[0]  # the path that broke the rule is named
    assert re.search(hazard.rule, lines[0]), lines[0]
    assert "Traceback" not in result.output and result.stdout.strip() == ""
    assert _snapshot(layout.root) == before  # the input and every file that was there, byte for byte
    assert layout.secret.read_text() == "outside the output folder"
    for device, rdev in devices.items():
        info = os.stat(device)
        assert stat.S_ISCHR(info.st_mode) and info.st_rdev == rdev, f"{device} is no longer the device"


def test_every_writer_and_hazard_meets_the_matrix() -> None:
    """The matrix is complete: every writer meets every hazard that applies to it."""
    ids = {(row.values[0], row.values[1]) for row in _rows()}
    for writer_name, writer in WRITERS.items():
        for hazard_name, hazard in HAZARDS.items():
            applies = hazard.device is None or (writer.member is None and os.path.exists(hazard.device))
            assert ((writer_name, hazard_name) in ids) == applies


def test_the_c_export_checks_the_names_it_writes() -> None:
    """The names checked before the container is read are the names the export writes."""
    assert tuple(build_c_sources(read_container(GOLDEN).model).files) == C_FILES


# -- what stays allowed ---------------------------------------------------------------------------------------


def test_a_symlink_among_the_folders_on_the_way_is_followed(layout: Layout) -> None:
    """Legitimate: the user names a folder through a link (``~/data -> /mnt/disk``); the file lands in it, regular."""
    real = layout.root / "real"
    real.mkdir()
    (layout.work / "via").symlink_to(real, target_is_directory=True)
    run_cli(["export", str(layout.inputs["container"]), "-o", str(layout.work / "via" / "m.onnx")])
    assert stat.S_ISREG(os.lstat(real / "m.onnx").st_mode)


def test_an_output_folder_given_by_a_symlink_is_followed_and_each_file_is_regular(layout: Layout) -> None:
    real = layout.root / "real_c"
    real.mkdir()
    (layout.work / "c").symlink_to(real, target_is_directory=True)
    run_cli(["export", str(layout.inputs["container"]), "--format", "c", "-o", str(layout.work / "c")])
    assert sorted(p.name for p in real.iterdir()) == sorted([*C_FILES, MANIFEST_NAME])
    assert all(stat.S_ISREG(os.lstat(p).st_mode) for p in real.iterdir())
    assert verify_output_set(real / HEADER).complete


def test_an_output_beside_its_input_and_a_hard_linked_output_that_is_no_input_are_written(layout: Layout) -> None:
    """Legitimate: the output folder holds the input under another name; a regular file with a second link (not
    an input) is replaced by a new file, the other link keeps the old bytes."""
    container = layout.inputs["container"]
    run_cli(["export", str(container), "-o", str(container.with_suffix(".onnx"))])
    assert container.read_bytes() == GOLDEN.read_bytes()
    old = layout.work / "old.onnx"
    old.write_bytes(b"old onnx")
    os.link(old, layout.work / "backup.onnx")
    run_cli(["export", str(container), "-o", str(old)])
    assert (layout.work / "backup.onnx").read_bytes() == b"old onnx" and old.read_bytes() != b"old onnx"


def test_a_compress_run_beside_its_checkpoint_is_written(digits_checkpoint: Path, tmp_path: Path) -> None:
    """Legitimate: ``compress d/model.pt -o d`` (no name of the set is the input)."""
    shutil.copyfile(digits_checkpoint, tmp_path / "model.pt")
    run_cli(
        [str(tmp_path / "model.pt"), "--budget", "1", "--strategy", "none", "--epochs", "0", "--quiet"]
        + ["-o", str(tmp_path)]
    )
    assert (tmp_path / "model.pt").read_bytes() == digits_checkpoint.read_bytes()
    assert verify_output_set(tmp_path / "model.albsnn").complete


# -- class 8: a killed C export -------------------------------------------------------------------------------

RUNNER = r"""
import os, signal, sys
from albsnn_compress.cli.main import cli
import sklearn.datasets  # the calibration images' loader, imported once here rather than in every forked export

container, folder, log = sys.argv[1:4]
STEPS = ("open", "mkdir", "fchmod", "fsync", "replace", "rename", "unlink", "rmdir")


def arm(n):
    # SIGKILL this process just before its n-th file-system step (as a power cut would)
    count = [0]
    for name in STEPS:
        real = getattr(os, name)

        def hooked(*args, _real=real, **kwargs):
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            count[0] += 1
            return _real(*args, **kwargs)

        setattr(os, name, hooked)


print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    pid = os.fork()
    if pid == 0:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(out, 1)
        os.dup2(out, 2)
        if n >= 0:
            arm(n)
        code = 99
        try:
            cli.main(args=["export", container, "--format", "c", "-o", folder], prog_name="albsnn-compress")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    print(f"pid {pid}", flush=True)
    sys.stdin.readline()  # the test kills it (or not), then says "reap"
    _, status = os.waitpid(pid, 0)
    print(f"status {status}", flush=True)
"""


class Runner:
    """A process that imported the CLI once and forks one ``export --format c`` child per request."""

    def __init__(self, tmp: Path, container: Path, folder: Path) -> None:
        script = tmp / "runner.py"
        script.write_text(RUNNER)
        self.log = tmp / "children.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(container), str(folder), str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self._read() == "ready"

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line, f"the runner died; its children's output: {self.log.read_text() if self.log.exists() else ''}"
        return line

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def export(self, kill_at_step: int = -1, kill_after: float | None = None) -> int:
        """Run one export; kill it before its ``kill_at_step``-th step, or ``kill_after`` seconds in.

        Returns:
            The child's wait status (``os.WIFSIGNALED`` when it was killed).
        """
        self._send(str(kill_at_step))
        pid = int(self._read().split()[1])
        if kill_after is not None:
            time.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)  # not yet reaped: the pid is still this child's
        self._send("reap")
        return int(self._read().split()[1])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in C_FILES if (folder / name).is_file()}


def _leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of ours in the folder and beside it."""
    found = []
    for place in (folder, folder.parent):
        if place.is_dir():
            found += [
                str(p)
                for p in place.iterdir()
                if p.name.startswith(STAGING_PREFIX) or re.fullmatch(r"\..*\.tmp", p.name)
            ]
    return found


def _assert_old_or_new(folder: Path, old: dict[str, bytes], new: dict[str, bytes], where: str) -> str:
    """The folder after a kill: absent (a new export), or one complete set (old or new) per its manifest, or a
    folder without manifest (marked incomplete) whose every file is whole. Returns which."""
    if not folder.exists():
        assert not old, f"{where}: the old set vanished"
        return "absent"
    files = _files(folder)
    if (folder / MANIFEST_NAME).exists():
        read_manifest(folder / MANIFEST_NAME)
        check = verify_output_set(folder / HEADER)
        assert check.complete, f"{where}: a manifest that does not match its files: {check.problem}"
        assert files in (old, new), f"{where}: a complete set mixed from two runs"
        return "old" if files == old and old != new else "new"
    assert not verify_output_set(folder / HEADER).complete
    for name, data in files.items():  # each file is whole, from one run or the other
        assert data in (old.get(name), new[name]), f"{where}: {name} is neither the old nor the new file"
    return "incomplete"


def _reference_sets(runner: Runner, folder: Path, old_model: SpikingNet) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The old set (exported here) and the new one (exported by the runner, unkilled), each read back from disk, so
    each process is compared with what its own code writes."""
    shutil.rmtree(folder, ignore_errors=True)
    assert os.WEXITSTATUS(runner.export()) == 0, runner.log.read_text()
    new = _files(folder)
    shutil.rmtree(folder)
    export_c(old_model, folder)
    old = _files(folder)
    assert sorted(new) == sorted(old) == sorted(C_FILES) and old[HEADER] != new[HEADER]
    assert old["albsnn_model.c"] != new["albsnn_model.c"]
    return old, new


@pytest.mark.subprocess
@pytest.mark.parametrize("existing", [True, False], ids=["into an existing folder", "into a new folder"])
def test_a_c_export_killed_at_every_step_leaves_old_new_or_marked_incomplete(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "out" / "model_c"
    folder.parent.mkdir()
    old_model = read_container(OLD_GOLDEN).model
    runner = Runner(tmp_path, GOLDEN, folder)
    seen: set[str] = set()
    try:
        old, new = _reference_sets(runner, folder, old_model)
        for step in range(400):
            shutil.rmtree(folder, ignore_errors=True)
            if existing:
                export_c(old_model, folder)
            status = runner.export(kill_at_step=step)
            if not os.WIFSIGNALED(status):
                assert os.WEXITSTATUS(status) == 0, runner.log.read_text()
                assert _assert_old_or_new(folder, old, new, "done") == "new"
                break
            seen.add(_assert_old_or_new(folder, old if existing else {}, new, f"killed before step {step}"))
            assert os.WEXITSTATUS(runner.export()) == 0, runner.log.read_text()  # the next export ...
            assert _files(folder) == new and verify_output_set(folder / HEADER).complete
            assert _leftovers(folder) == []  # ... leaves no temporary file or folder
        else:
            raise AssertionError("the export never finished")
    finally:
        runner.close()
    assert step > 10  # every staging and commit step was a kill point
    assert {"incomplete", "new"} <= seen and ("old" in seen) == existing


@pytest.mark.subprocess
def test_a_c_export_killed_at_random_moments_leaves_old_new_or_marked_incomplete(tmp_path: Path) -> None:
    folder = tmp_path / "model_c"
    old_model = read_container(OLD_GOLDEN).model
    runner = Runner(tmp_path, GOLDEN, folder)
    rng = random.Random(30)
    try:
        old, new = _reference_sets(runner, folder, old_model)
        shutil.rmtree(folder)
        started = time.monotonic()
        assert os.WEXITSTATUS(runner.export()) == 0
        duration = time.monotonic() - started
        for attempt in range(12):
            shutil.rmtree(folder, ignore_errors=True)
            export_c(old_model, folder)
            moment = rng.uniform(0, duration)
            runner.export(kill_after=moment)
            _assert_old_or_new(folder, old, new, f"killed after {moment:.3f} s")
            assert os.WEXITSTATUS(runner.export()) == 0, runner.log.read_text()
            assert _files(folder) == new and verify_output_set(folder / HEADER).complete
            assert _leftovers(folder) == [], attempt
    finally:
        runner.close()


def test_a_temporary_sibling_folder_of_an_older_version_is_removed_and_nothing_else(tmp_path: Path) -> None:
    """Versions before this one staged a new C folder in ``.NAME.XXXXXXXX.tmp/`` beside it."""
    folder = tmp_path / "model_c"
    stale = tmp_path / ".model_c.k2j4h5g6.tmp"
    stale.mkdir()
    (stale / HEADER).write_text("half")
    (stale / ".albsnn_model.c.abcdefgh.tmp").write_text("half")
    foreign = tmp_path / ".model_c.zzzzzzzz.tmp"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    export_c(read_container(GOLDEN).model, folder)
    assert not stale.exists() and (foreign / "notes.txt").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*C_FILES, MANIFEST_NAME])
