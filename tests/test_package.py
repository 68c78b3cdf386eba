"""inboxd installs like any Python tool: the wheel and the sdist carry the templates, default rules, training
data, demo mailbox and example configs, and a wheel installed into a new virtual environment runs the demo and
training from an empty folder exactly as a source checkout does.

The links in inboxd/bundled/ (to the top-level folders the team edits) are checked on every run. The build and
install tests are marked ``package`` (one to two minutes; ``-m "not package"`` skips them); they build from a copy
of the working tree, so the build leaves no build/ folder or stale files behind in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from inboxd import resources
from inboxd.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "inboxd" / "bundled"
# Each link in inboxd/bundled/ and the top-level file or folder it points at.
LINKS = {
    "reply_templates": "reply_templates",
    "rules": "rules",
    "training": "data/training",
    "demo/mailbox": "data/demo/mailbox",
    "demo/agents.toml": "data/demo/agents.toml",
    "demo/routing.toml": "data/demo/routing.toml",
    "config.example.toml": "config.example.toml",
    "agents.example.toml": "agents.example.toml",
}
# The installed inboxd must not see the checkout, nor a configuration of the person running the tests.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INBOXD_CONFIG")}


def files_under(path: Path) -> dict[str, bytes]:
    """A file, or every file below a folder, by its path relative to ``path``."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def in_wheel(link: str, name: str) -> str:
    """Where a file reached through a link lands in the wheel (``name`` is empty when the link is a file)."""
    return "/".join(filter(None, ("inboxd/bundled", link, name)))


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> str:
    """Run a command; its output, or a failure showing that output."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env or CLEAN_ENV, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --------------------------------------------------------------------------- links and this installation


def test_bundled_links_point_at_the_top_level_folders() -> None:
    found = {p.relative_to(BUNDLED).as_posix() for p in BUNDLED.rglob("*") if p.is_symlink()}
    assert found == set(LINKS), "inboxd/bundled/ and LINKS (and pyproject's package-data) must list the same links"
    for link, target in LINKS.items():
        assert (BUNDLED / link).resolve() == (ROOT / target).resolve(), link
        assert not os.path.isabs(os.readlink(BUNDLED / link)), f"{link}: a relative link survives a clone elsewhere"


def test_this_installation_finds_the_shipped_files() -> None:
    """Under scripts/test this is the editable install: importlib.resources reads the top-level folders."""
    for path, target in [(resources.TEMPLATES, "reply_templates"), (resources.RULES, "rules"),
                         (resources.TRAINING, "data/training"), (resources.DEMO / "mailbox", "data/demo/mailbox"),
                         (resources.CONFIG_EXAMPLE, "config.example.toml"),
                         (resources.AGENTS_EXAMPLE, "agents.example.toml")]:
        assert files_under(path) == files_under(ROOT / target), target
    assert {p.name for p in resources.TEMPLATES.iterdir()} == {"en", "zh-Hant", "zh-Hans"}


@pytest.mark.parametrize("mails", [[], ["14-malformed.eml"]], ids=["no sample mail", "nothing ticketed"])
def test_demo_that_tickets_nothing_fails_with_a_plain_message(mails: list[str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in mails:
        shutil.copy(ROOT / "data" / "demo" / "mailbox" / name, tmp_path)
    monkeypatch.setattr("inboxd.cli.demo.DEMO_MAILBOX", tmp_path)
    monkeypatch.setattr("inboxd.cli.demo.bundled_examples", lambda: [])  # no model needed to see it fail
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ("found no sample mails" if not mails else "created no ticket") in result.output


# --------------------------------------------------------------------------- wheel, sdist, fresh install


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A copy of the working tree as a clone would have it (git-ignored files left out), its wheel and its sdist."""
    base = tmp_path_factory.mktemp("package")
    tree = base / "tree"
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source, copy = ROOT / name, tree / name
        if not os.path.lexists(source):  # deleted in the working tree, not yet in git
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            copy.symlink_to(os.readlink(source))
        else:
            copy.write_bytes(source.read_bytes())
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "wheel", ".", cwd=tree)
    # No `build` package needed: setuptools' own sdist builder, with the versions pyproject asks for.
    backend = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    run(sys.executable, "-m", "pip", "install", "-q", "--target", base / "backend", *backend, cwd=base)
    run(sys.executable, "-c", "import sys, setuptools.build_meta as b; b.build_sdist(sys.argv[1])", base / "sdist",
        cwd=tree, env={**CLEAN_ENV, "PYTHONPATH": str(base / "backend")})
    [wheel], [sdist] = (base / "wheel").glob("*.whl"), (base / "sdist").glob("*.tar.gz")
    return {"base": base, "tree": tree, "wheel": wheel, "sdist": sdist}


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if ".dist-info/" not in n}


@pytest.mark.package
def test_wheel_carries_exactly_the_shipped_files(build: dict[str, Path]) -> None:
    names = wheel_names(build["wheel"])
    tree = build["tree"]
    expected = {in_wheel(link, name) for link, target in LINKS.items() for name in files_under(tree / target)}
    assert {"inboxd/bundled/reply_templates/zh-Hant/ack.txt.j2", "inboxd/bundled/rules/routing.toml",
            "inboxd/bundled/training/en.jsonl", "inboxd/bundled/demo/mailbox/01-order-not-arrived.eml",
            "inboxd/bundled/config.example.toml"} <= expected
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    extra = {n for n in names if n.startswith("inboxd/bundled/")} - expected
    assert not extra, f"shipped but not linked from a top-level folder: {sorted(extra)}"
    with zipfile.ZipFile(build["wheel"]) as archive:  # real copies, not links
        for link, target in LINKS.items():
            for name, data in files_under(tree / target).items():
                assert archive.read(in_wheel(link, name)) == data, in_wheel(link, name)


@pytest.mark.package
def test_sdist_builds_the_same_wheel(build: dict[str, Path]) -> None:
    out = build["base"] / "from-sdist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, build["sdist"], cwd=build["base"])
    [wheel] = out.glob("*.whl")
    assert wheel_names(wheel) == wheel_names(build["wheel"])


@pytest.mark.package
def test_installed_wheel_runs_the_demo_and_training_from_an_empty_folder(build: dict[str, Path]) -> None:
    base = build["base"]
    reference_dir = base / "reference"
    reference_dir.mkdir()
    # The source checkout's demo (what scripts/demo prints), running while the wheel installs.
    reference = subprocess.Popen([sys.executable, "-m", "inboxd", "demo"], cwd=reference_dir, env=CLEAN_ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=base)
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
        "-c", ROOT / "requirements.lock", build["wheel"], cwd=base)
    inboxd = venv / "bin" / "inboxd"
    empty = base / "empty"
    empty.mkdir()

    demo = run(inboxd, "demo", cwd=empty)
    expected, errors = reference.communicate(timeout=240)
    assert reference.returncode == 0, expected + errors
    (header, *report), (_, *expected_report) = (
        [line for line in out.splitlines() if not line.startswith("Training")] for out in (demo, expected))
    assert re.fullmatch(rf"inboxd demo: \d+ sample mails from {re.escape(str(venv))}/lib/.*/site-packages/"
                        r"inboxd/bundled/demo/mailbox", header), header
    assert report == expected_report, "the installed demo differs from the checkout's"
    assert "SUP-1 " in demo and "ack queued" in demo and "One acknowledgement as the customer receives it" in demo
    assert not list(empty.iterdir()), "the demo must leave the current folder alone"

    trained = run(inboxd, "train", "--output", base / "model.joblib", cwd=empty)
    match = re.search(r"Training on (\d+) examples", trained)
    assert match and int(match.group(1)) > 0, trained
    assert (base / "model.joblib").stat().st_size > 0

    missing = subprocess.run([inboxd, "check-config"], cwd=empty, env=CLEAN_ENV, capture_output=True, text=True)
    assert missing.returncode == 2, missing.stderr
    example = re.search(r"start from a copy of (\S+config\.example\.toml)", missing.stderr)
    assert example, missing.stderr
    (empty / "inboxd.toml").write_bytes(Path(example[1]).read_bytes())
    passwords = {"INBOXD_IMAP_PASSWORD": "x", "INBOXD_SMTP_PASSWORD": "y"}
    assert "OK" in run(inboxd, "check-config", cwd=empty, env={**CLEAN_ENV, **passwords})
