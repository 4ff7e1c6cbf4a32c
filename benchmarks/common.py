"""Helpers shared by the benchmark scripts (no extra dependencies)."""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch


def device_name(device: torch.device | str) -> str:
    """A readable name of the device that a benchmark ran on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The CPU's model name, or what the platform says where /proc/cpuinfo has none."""
    return cpu_model() or platform.processor() or platform.machine()


def git(*args: str) -> str:
    """``git ARGS`` in this repository: its output, stripped ("" outside git or when git fails)."""
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (e.g. "AMD EPYC"), None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return None


# The CPU flags that decide which precision is fastest (docs/deployment.md): with AMX tiles bf16 pays.
PRECISION_FLAGS = ("avx512f", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The flags of /proc/cpuinfo (or of its text ``cpuinfo``) that decide the fastest precision: avx512f,
    avx512_bf16 and every amx_*; None where there is no /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return sorted(f for f in flags if f in PRECISION_FLAGS or f.startswith("amx"))


def measured_on() -> str:
    """"<CPU> CPU, N threads (flags: ...), YYYY-MM-DD": where and when a CPU benchmark ran, for its report."""
    flags = cpu_flags()
    return (f"{device_name('cpu')}{' (flags: ' + ', '.join(flags) + ')' if flags else ''}, "
            f"{time.strftime('%Y-%m-%d')}")


def has_amx(flags) -> bool:
    """Whether ``flags`` (:func:`cpu_flags`) hold AMX tiles with bf16, where oneDNN's bf16 matmuls beat fp32."""
    return {"amx_bf16", "amx_tile"} <= set(flags)


def to_markdown(df: pd.DataFrame, index: bool = False, floatfmt: str = ".2f") -> str:
    """A GitHub markdown table of a DataFrame (pandas' own needs `tabulate`)."""
    if index:
        df = df.reset_index()

    def fmt(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    header = [str(c) for c in df.columns]
    rows = [[fmt(v) for v in row] for row in df.itertuples(index=False)]
    align = ["---:" if pd.api.types.is_numeric_dtype(df[c]) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_table(results: Path, stem: str, title: str, description: str, df: pd.DataFrame, script: str,
                floatfmt: str = ".3g") -> str:
    """``stem``.csv and ``stem``.md (title, description, where and when measured, the table) under ``results``;
    ``script`` is the writing script's ``__file__``, named from the repository root. Returns the markdown."""
    results.mkdir(exist_ok=True)
    df.to_csv(results / f"{stem}.csv", index=False)
    script = Path(script).resolve().relative_to(Path(__file__).resolve().parents[1]).as_posix()
    text = (f"# {title}\n\n{description} Measured by `python {script}` on {device_name('cpu')}, "
            f"{time.strftime('%Y-%m-%d')}.\n\n" + to_markdown(df, floatfmt=floatfmt) + "\n")
    (results / f"{stem}.md").write_text(text)
    return text


# --------------------------------------------------------------------------- finished study runs
# benchmarks/studies/test_modes.py, oversmoothing.py and occlusion_branches.py score the run folders a study left behind.
RUN_NAME = re.compile(r"^(?P<variant>.+)-seed(?P<seed>\d+)$")


def parse_run(run_dir: Path) -> tuple[str, int]:
    """``(variant, seed)`` from a run folder's name, ``full-seed6`` -> ``("full", 6)``."""
    m = RUN_NAME.match(run_dir.name)
    if not m:
        raise SystemExit(f"{run_dir}: not a run of benchmarks/studies/ablation.py (expected a folder named <variant>-seed<k>)")
    if not (run_dir / "last.pt").is_file():
        raise SystemExit(f"{run_dir}: no last.pt (the run did not finish)")
    return m["variant"], int(m["seed"])


def parse_no_options(doc: str, argv=None) -> None:
    """The command line of a script that takes no options: ``--help`` prints ``doc``, anything else is an error."""
    argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)


def run_folder_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The command line of a benchmark over finished runs: RUN_DIR ..., ``--out`` (default ``out``), ``--study``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished runs (folders with last.pt)")
    parser.add_argument("--out", default=out, help="stem of the outputs under benchmarks/studies/results/")
    parser.add_argument("--study", default="", help="what the runs are, for the report")
    return parser


def runs_of(args) -> list[tuple[Path, str, int]]:
    """``(folder, variant, seed)`` of each run on the command line, all checked before any is scored."""
    return [(run, *parse_run(run)) for run in args.runs]


def append_rows(df: pd.DataFrame, rows: list[dict], csv: Path, **to_csv) -> pd.DataFrame:
    """``df`` with ``rows`` added, written to ``csv`` at once: an interrupted benchmark keeps what it scored."""
    df = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
    df.to_csv(csv, index=False, **to_csv)
    return df
