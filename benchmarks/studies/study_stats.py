"""The ablation study's statistics: paired and Welch intervals over seeds, and their text in the reports."""

from __future__ import annotations

import numpy as np
import pandas as pd


def paired_text(d: pd.DataFrame, metric: str, baseline: str = "global") -> dict[str, str]:
    """Per variant: the paired difference to ``baseline`` on ``metric`` as text, "+1.2 [-1.3, +3.6]; 5/8"."""
    from benchmarks.studies import frozen_tier

    s = frozen_tier.paired_summary(d.dropna(subset=[metric]), metric, baseline=baseline)
    return {r.variant: f"{r['diff']:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]; {r.wins}"
            for _, r in s.iterrows() if not pd.isna(r["diff"])}


def welch_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its Welch t-interval (unpaired samples of unequal variance)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(va + vb)
    return diff, diff - half, diff + half


def seed_gaps(d: pd.DataFrame, metric: str, variant: str = "full", baseline: str = "global") -> pd.Series:
    """Per seed: ``variant`` − ``baseline`` on ``metric`` (the seeds both have)."""
    sub = d.dropna(subset=[metric])
    a = sub[sub.variant == variant].set_index("seed")[metric]
    b = sub[sub.variant == baseline].set_index("seed")[metric]
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).sort_index()


def mean_text(values: pd.Series, runs: int) -> str:
    """Mean ± sd over the runs that have the score, and how many those are when some have none."""
    v = values.dropna()
    if v.empty:
        return ""
    text = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}"
    return text if len(v) == runs else f"{text} ({len(v)} of {runs})"


def kept_text(occluded, clean) -> str:
    """How much of its clean score a model keeps under occlusion: the ratio of the means, as "43 %"."""
    return f"{100 * occluded.mean() / clean.mean():.0f} %"


def t_half_width(values, level: float = 0.95) -> float:
    """Half the width of the t-interval of the mean of ``values`` (paired differences, say)."""
    from scipy import stats

    v = np.asarray(values, float)
    return stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))


def interval_text(values) -> str:
    """The mean of paired differences, its 95% t-interval and how many are above zero: "+1.2 [-1.3, +3.6]; 5/8"
    (the mean alone, with the count, for fewer than 2)."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return ""
    if len(v) < 2:
        return f"{v.mean():+.1f}; {int((v > 0).sum())}/{len(v)}"
    half = t_half_width(v)
    return f"{v.mean():+.1f} [{v.mean() - half:+.1f}, {v.mean() + half:+.1f}]; {int((v > 0).sum())}/{len(v)}"
