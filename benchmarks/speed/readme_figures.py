"""Measure the default run and write the README's default-run figures from the measurement.

    python benchmarks/speed/readme_figures.py              # measure (about 3 minutes on 2 cores), write, update README
    python benchmarks/speed/readme_figures.py --render     # rewrite the README block from the saved measurement

What a new user does after the set-up command, timed from the outside, in a
temporary folder with an empty dataset cache:

1. ``stgcn-pyg data info``: generates the built-in synthetic set (first use only);
2. ``stgcn-pyg train``: the default run, with the set in the cache; its final table
   and ``metrics.csv`` give the figures and the seconds per epoch.

The measurement goes to ``benchmarks/speed/results/default_run.json`` (with the date,
the machine, torch, the commit and the load average) and ``default_run.md``; the
README's block between the two ``default-run figures`` markers is rendered from
that JSON, and ``tests/test_readme.py`` checks that it still is.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # `benchmarks` is a package
from benchmarks.common import cpu_name, git  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
JSON_PATH = RESULTS / "default_run.json"
BEGIN = "<!-- default-run figures: written by benchmarks/speed/readme_figures.py from benchmarks/speed/results/default_run.json -->"
END = "<!-- end of default-run figures -->"
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
_TABLE_ROWS = {"rank-1": "rank1", "rank-5": "rank5", "rank-10": "rank10", "rank-20": "rank20", "mAP": "mAP",
               "mINP": "mINP"}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], cwd: Path, env: dict) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (all threads) and stdout of a command."""
    start, cpu = time.perf_counter(), _children_cpu_seconds()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _children_cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, cpu, proc.stdout


def parse_table(text: str) -> dict:
    """The metrics, the test mode line and the query/gallery counts from `stgcn-pyg train`'s final table."""
    out: dict = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 2 and cells[0] in _TABLE_ROWS:
            out[_TABLE_ROWS[cells[0]]] = float(cells[1])
        m = re.search(r"(\d+) queries x (\d+) gallery tracklets", line)
        if m:
            out["num_query"], out["num_gallery"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"\((\w+) protocol, \w+, (mode [^)]*)\)", line)
        if m:
            out["protocol"], out["mode"] = m.group(1), m.group(2)
    missing = [k for k in (*METRICS, "num_query", "num_gallery", "protocol") if k not in out]
    if missing:
        raise SystemExit(f"could not read {', '.join(missing)} from the train output:\n{text}")
    return out


def measure() -> dict:
    python = sys.executable
    load_before = os.getloadavg()[0]
    # The code the runs use: the commit at the start, and whether the package differs from it.
    commit = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "stgcn_pyg"))
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "STGCN_PYG_CACHE": str(tmp / "cache")}
        env.pop("STGCN_PYG_QUICK", None)
        generation, generation_cpu, _ = _run([python, "-m", "stgcn_pyg", "data", "info"], tmp, env)
        training, training_cpu, printed = _run([python, "-m", "stgcn_pyg", "train"], tmp, env)
        with open(tmp / "runs" / "synthetic" / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    table = parse_table(printed)
    last = rows[-1]
    for key in METRICS:  # the printed table and metrics.csv are the same run
        if abs(float(last[key]) - table[key]) > 0.051:
            raise SystemExit(f"{key}: the table says {table[key]}, metrics.csv {last[key]}")
    import torch

    return {
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "uncommitted_changes_in_package": dirty,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "arch": platform.machine(), "python": platform.python_version(), "torch": torch.__version__},
        "niceness": os.nice(0),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "generation_seconds": round(generation, 1),
        "generation_cpu_seconds": round(generation_cpu, 1),
        "train_command_seconds": round(training, 1),
        "train_command_cpu_seconds": round(training_cpu, 1),
        "epochs": len(rows),
        "seconds_per_epoch": round(sum(float(r["seconds"]) for r in rows) / len(rows), 1),
        "results": table,
    }


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def render_block(fig: dict) -> str:
    """The README's default-run paragraph and table (between the markers, markers excluded)."""
    r, m = fig["results"], fig["machine"]
    load = f"load average {fig['load_average_before']:g} at the start"
    if fig.get("niceness"):
        load += f", run at nice {fig['niceness']}"
    lines = [
        f"Measured on {fig['date']} (commit {fig['commit']}"
        f"{' with uncommitted changes' if fig.get('uncommitted_changes_in_package') else ''}) "
        f"on the project's machine: {m['cpu']}, "
        f"{m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']} ({load}). "
        f"From a fresh clone, generating the synthetic set took {_duration(fig['generation_seconds'])} "
        f"(first use only) and `stgcn-pyg train` then took {_duration(fig['train_command_seconds'])} "
        f"({fig['epochs']} epochs, {fig['seconds_per_epoch']:g} s each on average, plus start-up and the "
        f"final evaluation; {_duration(fig['train_command_cpu_seconds'])} of CPU time over all threads, "
        f"which other jobs on the machine inflate far less than the wall time), ending with:",
        "",
        f"| synthetic set, {r['protocol']} protocol, {r['mode']} | rank-1 | rank-5 | rank-10 | rank-20 | mAP | mINP |",
        "|---|---|---|---|---|---|---|",
        f"| STGCN, default run, seed 0 ({r['num_query']} queries × {r['num_gallery']} gallery tracklets) | "
        + " | ".join(f"{r[k]:.1f}" for k in METRICS) + " |",
    ]
    return "\n".join(lines)


def update_readme(fig: dict, readme: Path = REPO / "README.md") -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: the default-run figures markers are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{render_block(fig)}\n{END}{tail}")


def write_results(fig: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(fig, indent=2) + "\n")
    (RESULTS / "default_run.md").write_text(
        "# The default run (`stgcn-pyg train`), measured by `benchmarks/speed/readme_figures.py`\n\n"
        + render_block(fig) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the README block from benchmarks/speed/results/default_run.json")
    args = parser.parse_args()
    if args.render:
        fig = json.loads(JSON_PATH.read_text())
    else:
        fig = measure()
        write_results(fig)
    update_readme(fig)
    print(render_block(fig))


if __name__ == "__main__":
    main()
