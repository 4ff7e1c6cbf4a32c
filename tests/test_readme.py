"""The README as a new user meets it: every code block runs as written, links stay in the repository,
and the default-run figures are the ones ``benchmarks/readme_figures.py`` measured.

The blocks run in order in one fresh folder (so later commands find the runs of earlier ones), in
smoke-run mode (``STGCN_PYG_QUICK=1``: a tiny synthetic set, one step per epoch) to take seconds. A block
that cannot run here (it creates the venv, downloads, or needs a real dataset) is marked just above its
fence with ``<!-- not run by tests/test_readme.py: REASON -->``; every other block must run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
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
    setup = BLOCKS[0]
    install, tests = setup.code.strip().splitlines()
    assert "pip install -r requirements.txt -e '.[test]'" in install and install.endswith(".venv/bin/stgcn-pyg train")
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "-r requirements.txt -e '.[test]'" in next(ln for ln in ci if "pip install" in ln)
    assert tests == ci[-1] == ".venv/bin/python -m pytest -q"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_point_inside_the_repository_and_exist(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(resolved.read_text()), f"{page.name}: no heading for #{anchor} in {path}"
    assert not re.search(r"(?<![\w.~])/(work|tmp|root|home)/", text), f"{page.name} names a machine path"


def test_default_run_figures_are_rendered_from_the_measurement():
    spec = importlib.util.spec_from_file_location("readme_figures", REPO / "benchmarks" / "readme_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    measured = json.loads(figures.JSON_PATH.read_text())
    text = README.read_text()
    block = text.split(figures.BEGIN, 1)[1].split(figures.END, 1)[0].strip()
    assert block == figures.render_block(measured)
    assert f"| {measured['results']['rank1']:.1f} |" in block and measured["date"] in block


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    env = {**os.environ, "STGCN_PYG_QUICK": "1", "STGCN_PYG_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONWARNINGS", None)

    def run(language: str, code: str, where: str) -> str:
        argv = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{where} failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        # No warnings, no noise: a new user's terminal shows only what the commands mean to say.
        assert proc.stderr == "", f"{where} wrote to stderr:\n{code}\n--- stderr\n{proc.stderr}"
        return proc.stdout

    # The set-up block's last command (the venv and the install are the test environment itself).
    printed = run("bash", "stgcn-pyg train", "the set-up command")
    assert "smoke-run mode" in printed and "run saved in runs/synthetic/" in printed
    for b in BLOCKS:
        if b.not_run is None:
            run(b.language, b.code, f"README line {b.line}")
    # What the blocks promise, checked: the From-Python run went next to the first one, pictures were drawn.
    assert (clone / "runs" / "synthetic-2" / "last.pt").is_file()
    assert {"cmc.png", "affinity.png"} <= {p.name for p in (clone / "runs" / "synthetic" / "plots").iterdir()}
    assert (clone / "runs" / "synthetic" / "search.png").is_file()
    assert (clone / "runs" / "synthetic" / "folder-search.png").is_file()
