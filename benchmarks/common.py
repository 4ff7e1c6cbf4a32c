"""Helpers shared by the benchmark scripts (no extra dependencies)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pandas as pd
import torch


def device_name(device: torch.device | str) -> str:
    """A readable name of the device that a benchmark ran on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


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
    returns the markdown."""
    results.mkdir(exist_ok=True)
    df.to_csv(results / f"{stem}.csv", index=False)
    text = (f"# {title}\n\n{description} Measured by `python benchmarks/{script}` on {device_name('cpu')}, "
            f"{time.strftime('%Y-%m-%d')}.\n\n" + to_markdown(df, floatfmt=floatfmt) + "\n")
    (results / f"{stem}.md").write_text(text)
    return text
