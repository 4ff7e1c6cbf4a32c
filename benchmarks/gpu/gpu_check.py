"""The prepared GPU check: one command, a few minutes on one H100 or H200, every figure the project models.

    PYTHONPATH=. python benchmarks/gpu/gpu_check.py                  # on the GPU machine (under 8 minutes)
    PYTHONPATH=. python benchmarks/gpu/gpu_check.py --wheels .whl    # first install the wheels in .whl (torchcodec...)
    python benchmarks/gpu/gpu_check.py --smoke --out DIR             # the same script on the CPU, tiny sizes

For a bare machine that has torch, torchvision and torch-geometric (the project's other needs, pandas,
rich, scipy and pillow, are in the H200 image; see docs/gpu-model.md) and no network. It uses the project
from the source tree. Sections, each under its own time budget and ``try``: one that fails or runs out of
time is recorded as such and the next one runs.

1. ``environment``: versions of what the project imports (missing ones named), the device, whether the
   loader has ``data.decode`` and whether torchcodec is there.
2. ``cuda_tests``: the suite's tests that need CUDA (``benchmarks/gpu/cuda_tests_plugin.py`` selects them:
   the ``skipif(not torch.cuda.is_available())`` tests), run with pytest in a subprocess. ``--smoke``
   only collects them (on a CPU they would all be skipped).
3. ``train_step``: the paper's training step (ResNet-50, last stride 1, 256x128, 16 ids x 4 tracklets x T=8
   = 512 frames, bf16 autocast, channels_last, Adam) for the full STGCN and the global-only model, on
   batches already on the device: frames/s, ms/step, peak memory, and the graph branches' share of the
   step against the goal of at most +15 % over global-only.
4. ``loader_supply``: the training loader (MARS-size 256x128 JPEGs of the synthetic set, uint8 frames to
   the device, normalised there) at 8 and 16 workers, with CPU decode and with GPU decode
   (``data.decode = "cuda"``: workers read the bytes, nvjpeg decodes each batch; ``--smoke`` runs that path
   with a CPU stand-in decoder), in frames/s and per worker against the full model's demand from section 3.
5. ``eval_all_frames``: descriptor extraction of every frame (test mode "all", clips of T=8, 32 clips per
   call, 8 workers) end to end, and the model alone on clips already on the device, in fp32 (the default
   on CUDA) and in channels_last + bf16.
6. ``descriptor_agreement``: the same model's descriptors of the same clips on the CPU (fp32) and on the
   device (fp32 default, TF32 off, bf16): max abs difference, max relative to the largest value, lowest
   cosine similarity (as 1 - cosine).

Writes ``gpu_check_<device>.csv`` (one row per figure: section, metric, value, unit, status, note) and
``.md`` under benchmarks/gpu/results/ (``--out`` elsewhere; ``--smoke`` adds ``_smoke``). The CSV is written
with the csv module: the check itself needs neither pandas nor rich.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import importlib
import inspect
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the repository root
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_GRAPH_OVERHEAD_PCT = 15.0  # train_gpu.py's target: the full model's step at most +15 % over global-only
MODULES = ("torch", "torchvision", "torch_geometric", "numpy", "pandas", "rich", "scipy", "PIL", "onnxruntime",
           "torchcodec", "pytest")
"""What the check reports the versions of; the project imports all but onnxruntime and torchcodec (optional)."""


@dataclass
class Sizes:
    """The sizes of one mode: the paper's on a GPU, tiny ones for ``--smoke`` on the CPU."""

    backbone: str = "resnet50"
    image_size: tuple[int, int] = (256, 128)
    seq_len: int = 8
    num_ids: int = 16
    num_instances: int = 4
    widths: list[str] = field(default_factory=list)  # config overrides of the graph layers' widths
    warmup: int = 10
    steps: int = 30
    workers: tuple[int, ...] = (8, 16)
    loader_batches: int = 15
    synthetic_ids: int = 24
    synthetic_frames: tuple[int, int] = (8, 24)
    replicas: int = 40  # copies of the training table (new identities, same files): long epochs
    eval_replicas: int = 20  # copies of the gallery for the all-frames extraction
    eval_tracklets: int | None = None  # the first few gallery tracklets only (smoke)
    eval_batch: int = 32  # clips per call (GPU_CLIPS_PER_CALL)
    eval_workers: int = 8
    eval_calls: int = 10  # model-alone timing
    agreement_clips: int = 4
    budgets: dict = field(default_factory=lambda: {"environment": 20, "cuda_tests": 90, "train_step": 120,
                                                   "loader_supply": 120, "eval_all_frames": 75,
                                                   "descriptor_agreement": 30})


SMOKE = Sizes(backbone="resnet18", image_size=(64, 32), seq_len=2, num_ids=2, num_instances=2,
              widths=["model.temporal_width=32", "model.spatial_width=32"], warmup=1, steps=1, workers=(0, 1),
              loader_batches=2, synthetic_ids=6, synthetic_frames=(4, 6), replicas=2, eval_replicas=1, eval_tracklets=4,
              eval_batch=4, eval_workers=0, eval_calls=1, agreement_clips=1,
              budgets={"environment": 20, "cuda_tests": 60, "train_step": 60, "loader_supply": 60,
                       "eval_all_frames": 60, "descriptor_agreement": 30})


class SectionTimeout(Exception):
    """A section ran past its budget (raised by the alarm, or by a section that checks its clock)."""


class Clock:
    """A section's budget: ``left()`` seconds, ``check()`` raises SectionTimeout once it is spent."""

    def __init__(self, seconds: float):
        self.seconds, self.start = float(seconds), time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def check(self, what: str = "") -> None:
        if self.left() <= 0:
            raise SectionTimeout(f"budget of {self.seconds:.0f} s spent{' (' + what + ')' if what else ''}")


@contextlib.contextmanager
def alarm(seconds: float):
    """A backstop: SIGALRM raises SectionTimeout ``seconds`` from now (main thread, POSIX), in case a section
    does not check its clock in time."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def ring(signum, frame):
        raise SectionTimeout(f"stopped by the alarm after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Check:
    """The rows of one run and the sections' statuses; writes the CSV and the markdown."""

    FIELDS = ("section", "metric", "value", "unit", "status", "note")

    def __init__(self, args, sizes: Sizes):
        self.args, self.sizes = args, sizes
        self.rows: list[dict] = []
        self.sections: list[dict] = []
        self.shared: dict = {}  # what one section hands to another (the step's demand, the dataset)
        self.section = ""

    def add(self, metric: str, value, unit: str = "", note: str = "", status: str = "ok") -> None:
        if isinstance(value, float):
            value = float(f"{value:.6g}")
        self.rows.append(dict(section=self.section, metric=metric, value=value, unit=unit, status=status,
                              note=note))
        print(f"  {metric}: {value} {unit}{'  (' + note + ')' if note else ''}", flush=True)

    def run(self, name: str, fn) -> None:
        budget = self.sizes.budgets[name] * self.args.budget_scale
        self.section = name
        print(f"== {name} (budget {budget:.0f} s)", flush=True)
        clock, t0 = Clock(budget), time.perf_counter()
        status, note = "ok", ""
        try:
            with alarm(budget + 30):
                fn(self, clock)
        except SectionTimeout as exc:
            status, note = "timeout", str(exc)
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            status, note = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            traceback.print_exc()
        finally:
            _release()
        seconds = time.perf_counter() - t0
        self.sections.append(dict(section=name, status=status, seconds=seconds, budget=budget, note=note))
        self.rows.append(dict(section=name, metric="section status", value=status, unit="",
                              status=status, note=f"{seconds:.1f} s of {budget:.0f} s" + (f"; {note}" if note else "")))
        print(f"== {name}: {status} in {seconds:.1f} s{'  ' + note if note else ''}", flush=True)

    def write(self, out: Path, stem: str) -> tuple[Path, Path]:
        out.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        md_path.write_text(self.markdown())
        return csv_path, md_path

    def markdown(self) -> str:
        env = self.shared.get("env", {})
        lines = [f"# GPU check on {env.get('device', '?')}{' (smoke run on the CPU: tiny sizes)' if self.args.smoke else ''}",
                 "",
                 f"{datetime.datetime.now().isoformat(timespec='seconds')}; torch {env.get('torch', '?')}; "
                 f"`{' '.join(['python', 'benchmarks/gpu/gpu_check.py', *self.args.argv])}`; sizes: "
                 f"{self.sizes.backbone}, {self.sizes.image_size[0]}x{self.sizes.image_size[1]}, "
                 f"{self.sizes.num_ids} ids x {self.sizes.num_instances} tracklets x T={self.sizes.seq_len} = "
                 f"{self.sizes.num_ids * self.sizes.num_instances * self.sizes.seq_len} frames per step.",
                 ""]
        if self.args.smoke:
            lines += ["Smoke run: it checks the script; its numbers say nothing about a GPU.", ""]
        lines += ["| section | status | seconds | budget | note |", "|:---|:---|---:|---:|:---|"]
        lines += [f"| {s['section']} | {s['status']} | {s['seconds']:.1f} | {s['budget']:.0f} | {_cell(s['note'])} |"
                  for s in self.sections]
        lines += [""]
        verdicts = self.shared.get("verdicts", [])
        if verdicts:
            lines += ["## Verdicts", "", *[f"- {v}" for v in verdicts], ""]
        for s in self.sections:
            rows = [r for r in self.rows if r["section"] == s["section"] and r["metric"] != "section status"]
            lines += [f"## {s['section']}", ""]
            if not rows:
                lines += [f"(no figures: {s['status']})", ""]
                continue
            lines += ["| metric | value | unit | note |", "|:---|---:|:---|:---|"]
            lines += [f"| {r['metric']} | {_fmt(r['value'])} | {r['unit']} | {_cell(r['note'])} |" for r in rows]
            lines += [""]
        return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _release() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def slug(name: str) -> str:
    """A file-name form of a device name: "NVIDIA H200" -> "nvidia-h200"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


# ---------------------------------------------------------------------------------------------- sections
def section_environment(check: Check, clock: Clock) -> None:
    import torch

    env = check.shared["env"]
    for name in MODULES:
        try:
            version = str(getattr(importlib.import_module(name), "__version__", "") or _dist_version(name))
            check.add(f"{name} version", version)
        except Exception as exc:  # noqa: BLE001 - a missing or broken package is a finding
            version = "missing"
            note = ("optional: the loader falls back to torchvision's decoder" if name == "torchcodec" else
                    "optional" if name in ("onnxruntime", "pytest") else
                    "the project needs it: carry it as a wheel (--wheels)")
            check.add(f"{name} version", version, note=f"{type(exc).__name__}; {note}", status="missing")
        env[name] = version
    check.add("device", env["device"])
    if check.device.type == "cuda":
        p = torch.cuda.get_device_properties(check.device)
        check.add("device memory", p.total_memory / 2**30, "GiB")
        check.add("compute capability", f"{p.major}.{p.minor}")
        check.add("multiprocessors", p.multi_processor_count)
        check.add("cuDNN", str(torch.backends.cudnn.version()))
    check.add("CPU cores (affinity)", len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    check.add("python", platform.python_version())
    check.add("loader has data.decode", str(decode_supported()),
              note="stgcn_pyg.data.build_train_loader(decode=...); without it GPU decode is n/a")


def _dist_version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTIONS.get(module, module))
    except metadata.PackageNotFoundError:
        return "?"


DISTRIBUTIONS = {"PIL": "pillow", "torch_geometric": "torch-geometric"}


def decode_supported() -> bool:
    from stgcn_pyg.data import build_train_loader

    return "decode" in inspect.signature(build_train_loader).parameters


def cuda_test_files() -> list[str]:
    """The test modules that mention CUDA or a GPU in a skip or a marker (a cheap scan before pytest's)."""
    found = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name == "test_gpu_check.py":  # this check's own tests: they name CUDA, and need none
            continue
        text = path.read_text(errors="replace")
        if re.search(r"(skipif|mark\.(cuda|gpu))[^\n]*(cuda|gpu)", text, re.IGNORECASE):
            found.append(str(path.relative_to(ROOT)))
    return found


def section_cuda_tests(check: Check, clock: Clock) -> None:
    files = cuda_test_files()
    check.add("test files with GPU tests", len(files), note=", ".join(files))
    if not files:
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-p", "cuda_tests_plugin", "-q", "-rs", "-o", "addopts=",
           "-p", "no:cacheprovider", *files]
    if check.args.smoke:
        cmd.append("--collect-only")
    timeout = max(clock.left() - 5, 5)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SectionTimeout(f"pytest ran past {timeout:.0f} s") from exc
    out = proc.stdout + proc.stderr
    (check.out / f"{check.stem}_pytest.log").write_text(out)
    tail = [line for line in out.strip().splitlines() if line.strip()][-1:] or [""]
    if check.args.smoke:
        collected = len([line for line in out.splitlines() if "::" in line])
        check.add("GPU tests collected", collected, note="--smoke: collected, not run")
        if proc.returncode not in (0, 5):
            raise RuntimeError(f"pytest --collect-only exited {proc.returncode}: {tail[0]}")
        return
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail[0])}
    for key in ("passed", "failed", "skipped", "deselected"):
        check.add(f"GPU tests {key}", counts.get(key, 0))
    check.add("pytest exit code", proc.returncode, note=tail[0][:200])
    if proc.returncode not in (0, 5):
        raise RuntimeError(f"pytest exited {proc.returncode}: {tail[0]} (log: {check.stem}_pytest.log)")


def model_config(check: Check, branches: list[str], num_classes: int):
    from stgcn_pyg.config import load_config

    s = check.sizes
    over = [f"data.image_size=[{s.image_size[0]}, {s.image_size[1]}]", f"data.seq_len={s.seq_len}",
            f"eval.seq_len={s.seq_len}", f"data.num_ids={s.num_ids}", f"data.num_instances={s.num_instances}",
            f'model.backbone="{s.backbone}"', 'model.weights="none"', "data.dataset=synthetic", *s.widths]
    cfg = load_config("mars", over)
    mcfg = cfg.resolved_model()
    mcfg = type(mcfg)(**{**vars(mcfg), "branches": list(branches), "num_classes": num_classes})
    return cfg, mcfg


def build_model(check: Check, branches, num_classes: int, train: bool):
    import torch

    from stgcn_pyg.models import STGCN

    cfg, mcfg = model_config(check, branches, num_classes)
    torch.manual_seed(0)
    model = STGCN(mcfg).to(check.device)
    if check.device.type == "cuda" and train:
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return cfg, model.train(train)


def random_batches(check: Check, model, count: int):
    """Training batches of random frames (normalised-looking floats) and labels, on the device."""
    import torch

    from stgcn_pyg.data import tracklet_batch

    s = check.sizes
    B = s.num_ids * s.num_instances
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(s.num_ids).repeat_interleave(s.num_instances)
    out = []
    for _ in range(count):
        frames = torch.randn(B, s.seq_len, 3, *s.image_size, generator=g)
        batch = tracklet_batch(frames, labels, torch.zeros(B), graph=model.graph)
        batch.label = labels.clone()
        out.append(batch.to(check.device))
    return out


def time_steps(check: Check, clock: Clock, branches, batches) -> dict:
    import torch

    from stgcn_pyg.models import STGCNLoss
    from stgcn_pyg.training.run import build_optimizer
    from stgcn_pyg.training.trainer import train_step

    s, device = check.sizes, check.device
    cfg, model = build_model(check, branches, check.num_classes, train=True)
    crit, opt = STGCNLoss.from_config(cfg.loss), build_optimizer(model, cfg.optim)
    cuda = device.type == "cuda"

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else None

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(s.warmup):
        train_step(model, crit, opt, batches[i % len(batches)], device, amp())
        clock.check(f"warm-up of {'+'.join(branches)}")
    _sync(device)
    losses, done = [], 0
    start = time.perf_counter()
    for i in range(s.steps):
        loss, _ = train_step(model, crit, opt, batches[i % len(batches)], device, amp())
        losses.append(loss)
        done += 1
        if clock.left() < 0.25 * clock.seconds and done >= 3:  # keep a quarter of the budget for the rest
            break
    _sync(device)
    seconds = time.perf_counter() - start
    frames = done * s.num_ids * s.num_instances * s.seq_len
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else float("nan")
    loss = float(torch.stack(losses).float().mean())
    del model, opt, crit
    return dict(steps=done, ms_per_step=1000 * seconds / done, frames_per_s=frames / seconds, peak_gib=peak,
                loss=loss)


def section_train_step(check: Check, clock: Clock) -> None:
    import torch

    s = check.sizes
    if check.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    _, probe = build_model(check, ["global"], check.num_classes, train=False)
    batches = random_batches(check, probe, 2)
    del probe
    results = {}
    for name, branches in (("full STGCN", ["global", "temporal", "spatial"]), ("global-only", ["global"])):
        clock.check(name)
        r = time_steps(check, clock, branches, batches)
        results[name] = r
        unit_note = f"{r['steps']} timed steps after {s.warmup} warm-up"
        check.add(f"{name}: frames/s", r["frames_per_s"], "frames/s", unit_note)
        check.add(f"{name}: ms/step", r["ms_per_step"], "ms")
        check.add(f"{name}: peak memory", r["peak_gib"], "GiB", "torch.cuda.max_memory_allocated" if
                  check.device.type == "cuda" else "n/a on the CPU")
        check.add(f"{name}: mean loss", r["loss"], "", "finite: the step trains")
        if not torch.isfinite(torch.tensor(r["loss"])):
            raise RuntimeError(f"{name}: the loss is not finite ({r['loss']})")
    full, base = results["full STGCN"], results["global-only"]
    overhead = 100 * (full["ms_per_step"] / base["ms_per_step"] - 1)
    share = 100 * (1 - base["ms_per_step"] / full["ms_per_step"])
    check.add("graph branches: step time over global-only", overhead, "%", f"goal at most +{GOAL_GRAPH_OVERHEAD_PCT:.0f} %")
    check.add("graph branches: share of the full step", share, "%", "1 - t(global-only) / t(full)")
    verdict = "meets" if overhead <= GOAL_GRAPH_OVERHEAD_PCT else "misses"
    check.add("graph branches vs the 15 % goal", verdict)
    check.shared["demand"] = full["frames_per_s"]
    check.shared.setdefault("verdicts", []).append(
        f"training step: full STGCN {full['frames_per_s']:,.0f} frames/s ({full['ms_per_step']:.1f} ms/step, "
        f"peak {full['peak_gib']:.1f} GiB), global-only {base['frames_per_s']:,.0f}; graph branches "
        f"{overhead:+.1f} % over global-only ({share:.1f} % of the step): {verdict} the +15 % goal")


def dataset(check: Check):
    """The MARS-size synthetic set (generated once per run, in the cache folder)."""
    if "dataset" not in check.shared:
        from stgcn_pyg.data import ensure_synthetic, load_dataset

        s = check.sizes
        t0 = time.perf_counter()
        root = ensure_synthetic(check.cache / "synthetic", num_ids=s.synthetic_ids, height=s.image_size[0],
                                width=s.image_size[1], min_frames=s.synthetic_frames[0],
                                max_frames=s.synthetic_frames[1], progress=False,
                                workers=0 if check.args.smoke else min(16, os.cpu_count() or 1))
        check.shared["dataset"] = load_dataset("mars", root)
        check.shared["dataset_seconds"] = time.perf_counter() - t0
    return check.shared["dataset"]


def replicate(df, copies: int, pid_step: int = 100_000):
    """``copies`` of a tracklet table, each copy's identities new (same files): longer epochs, same frames."""
    import pandas as pd

    return pd.concat([df.assign(pid=df.pid + k * pid_step) for k in range(copies)], ignore_index=True)


def time_loader(check: Check, clock: Clock, train, workers: int, decode: str) -> dict:
    from stgcn_pyg.data import build_train_loader

    s, device = check.sizes, check.device
    _, m = model_config(check, ["global", "temporal", "spatial"], 0)
    kw = dict(seq_len=s.seq_len, num_ids=s.num_ids, num_instances=s.num_instances, image_size=s.image_size,
              num_workers=workers, seed=0, num_stripes=m.num_stripes, temporal_topology=m.temporal_topology,
              spatial_topology=m.spatial_topology, pin_memory=device.type == "cuda", device=device)
    if decode != "cpu":  # data.decode = "cuda": nvjpeg on a GPU, a CPU stand-in in --smoke
        kw.update(decode=decode, decoder=None if device.type == "cuda" else _stand_in_decoder)
    loader = build_train_loader(train, **kw)
    it = iter(loader)
    next(it)  # worker start-up: not timed
    _sync(device)
    t0, frames, done, epoch = time.perf_counter(), 0, 0, 0
    while done < s.loader_batches and clock.left() > 0.1 * clock.seconds:
        try:
            b = next(it)
        except StopIteration:
            epoch += 1
            loader.set_epoch(epoch)
            it = iter(loader)
            continue
        frames += int(b.frames.size(0))
        done += 1
    _sync(device)
    seconds = time.perf_counter() - t0
    del it, loader
    if done == 0:
        raise SectionTimeout(f"no batch timed at {workers} workers, decode {decode}")
    return dict(frames_per_s=frames / seconds, batches=done)


def _stand_in_decoder(datas):
    """The batch decoder's contract (a list of JPEG byte tensors in, frames out), on the CPU: the GPU-decode
    path's logic in --smoke, not nvjpeg's speed."""
    from stgcn_pyg.data.transforms import decode_frame

    return [decode_frame(d, "stand-in") for d in datas]


def gpu_decoder_name() -> str:
    """Whose nvjpeg call ``data.decode = "cuda"`` makes: TorchCodec's where it imports, else torchvision's."""
    try:
        from torchcodec.decoders import decode_jpeg  # noqa: F401

        return "torchcodec"
    except Exception:  # noqa: BLE001 - as stgcn_pyg.data.batching.device_jpeg_decoder falls back
        return "torchvision"


def section_loader_supply(check: Check, clock: Clock) -> None:
    s = check.sizes
    ds = dataset(check)
    check.add("synthetic set ready", check.shared["dataset_seconds"], "s",
              f"{s.synthetic_ids} ids, {s.image_size[0]}x{s.image_size[1]} JPEGs: the training size, no resize "
              "(MARS's frames are 256x128)")
    train = replicate(ds.train, s.replicas)
    check.add("training table", len(train), "tracklets", f"{s.replicas} copies of {len(ds.train)}, new identities")
    demand = check.shared.get("demand")
    decodes = ["cpu", "cuda"]
    supported = decode_supported()
    for decode in decodes:
        for workers in s.workers:
            label = f"{workers} workers, {decode} decode"
            if decode == "cuda" and (not supported or (check.device.type != "cuda" and not check.args.smoke)):
                why = "this loader has no data.decode" if not supported else "no CUDA device"
                check.add(f"{label}: frames/s", "n/a", "frames/s", why, status="n/a")
                continue
            clock.check(label)
            r = time_loader(check, clock, train, workers, decode)
            note = f"{r['batches']} batches"
            if decode == "cuda":
                note += (f"; nvjpeg via {gpu_decoder_name()}" if check.device.type == "cuda" else
                         "; smoke: a CPU stand-in for the nvjpeg call (the path's logic, not its speed)")
            check.add(f"{label}: frames/s", r["frames_per_s"], "frames/s", note)
            if workers:  # docs/gpu-model.md models one worker's rate
                check.add(f"{label}: frames/s per worker", r["frames_per_s"] / workers, "frames/s")
            if demand:
                ratio = r["frames_per_s"] / demand
                check.add(f"{label}: supply / demand", ratio, "", f"demand {demand:,.0f} frames/s (full STGCN step)")
                check.shared.setdefault("verdicts", []).append(
                    f"loader, {label}: {r['frames_per_s']:,.0f} frames/s = {ratio:.2f} x the step's demand"
                    f" ({'keeps up' if ratio >= 1 else 'the GPU waits'})")
    if not demand:
        check.add("supply / demand", "n/a", "", "no demand: the train_step section did not finish", status="n/a")


def section_eval_all_frames(check: Check, clock: Clock) -> None:
    import torch

    from stgcn_pyg.data import build_test_loader
    from stgcn_pyg.deploy import prepare_for_inference
    from stgcn_pyg.evaluation import extract_split  # noqa: F401 - the public path; the loader is built alike
    from stgcn_pyg.evaluation.descriptors import extract_descriptors

    s, device = check.sizes, check.device
    ds = dataset(check)
    gallery = replicate(ds.gallery.iloc[:s.eval_tracklets], s.eval_replicas)
    frames = int(sum(len(f) for f in gallery.frames))
    check.add("gallery", frames, "frames", f"{len(gallery)} tracklets ({s.eval_replicas} copies), test mode all")
    _, model = build_model(check, ["global", "temporal", "spatial"], 0, train=False)
    for precision in ("fp32", "bf16"):
        clock.check(precision)
        if precision == "bf16" and device.type != "cuda" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            check.add(f"{precision}: end to end", "n/a", "frames/s", "no bf16 on this CPU", status="n/a")
            continue
        enc = prepare_for_inference(model, device, precision)
        # the model alone, on clips already on the device
        clips = torch.randn(s.eval_batch, s.seq_len, 3, *s.image_size, device=device)
        with torch.no_grad():
            enc.encode(clips)
            _sync(device)
            t0, calls = time.perf_counter(), 0
            while calls < s.eval_calls:
                enc.encode(clips)
                calls += 1
            _sync(device)
        rate = calls * s.eval_batch * s.seq_len / (time.perf_counter() - t0)
        check.add(f"{precision}: model alone", rate, "frames/s", f"{s.eval_batch} clips x T={s.seq_len} per call")
        clock.check(precision)
        loader = build_test_loader(gallery, seq_len=s.seq_len, mode="all", image_size=s.image_size,
                                   batch_size=s.eval_batch, num_workers=s.eval_workers,
                                   pin_memory=device.type == "cuda")
        t0 = time.perf_counter()
        feats = extract_descriptors(enc.encode, loader, len(gallery), device, progress=False)
        seconds = time.perf_counter() - t0
        if not torch.isfinite(feats).all():
            raise RuntimeError(f"{precision}: non-finite descriptors")
        check.add(f"{precision}: end to end", frames / seconds, "frames/s",
                  f"{s.eval_workers} workers, {s.eval_batch} clips per call; {seconds:.1f} s")
        if precision == "fp32":
            check.shared.setdefault("verdicts", []).append(
                f"all-frames evaluation, fp32: {frames / seconds:,.0f} frames/s end to end ({s.eval_workers} workers), "
                f"{rate:,.0f} for the model alone")
        if precision == "bf16" and hasattr(enc, "model"):
            enc.model.to(memory_format=torch.contiguous_format)  # leave the shared model as it was
    del model


def section_descriptor_agreement(check: Check, clock: Clock) -> None:
    import torch

    from stgcn_pyg.deploy import prepare_for_inference

    s, device = check.sizes, check.device
    _, model = build_model(check, ["global", "temporal", "spatial"], 0, train=False)
    model = model.cpu()
    clips = torch.randn(s.agreement_clips, s.seq_len, 3, *s.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.encode(clips).double()
    check.add("descriptor size", int(ref.size(1)))
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    cases = [("fp32 (default)", "fp32", None), ("fp32, TF32 off", "fp32", False), ("bf16 channels_last", "bf16", None)]
    try:
        for name, precision, allow in cases:
            clock.check(name)
            if allow is not None:
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
            if precision == "bf16" and device.type != "cuda" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
                check.add(f"{name}: max abs diff", "n/a", "", "no bf16 on this CPU", status="n/a")
                continue
            import copy

            enc = prepare_for_inference(copy.deepcopy(model), device, precision)
            with torch.no_grad():
                out = enc.encode(clips.to(device)).double().cpu()
            diff = (out - ref).abs().max().item()
            rel = diff / ref.abs().max().item()
            cos = 1 - torch.nn.functional.cosine_similarity(out, ref, dim=1).min().item()
            where = f"{device.type} against the CPU's fp32"
            check.add(f"{name}: max abs diff", diff, "", where)
            check.add(f"{name}: max rel diff", rel, "", "over the largest |value|")
            check.add(f"{name}: max 1 - cosine", cos, "", f"over {s.agreement_clips} clips")
            if name == "fp32 (default)":
                check.shared.setdefault("verdicts", []).append(
                    f"descriptors, {device.type} fp32 against the CPU: max rel diff {rel:.1e}, max 1 - cosine {cos:.1e}")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


SECTIONS = {
    "environment": section_environment,
    "cuda_tests": section_cuda_tests,
    "train_step": section_train_step,
    "loader_supply": section_loader_supply,
    "eval_all_frames": section_eval_all_frames,
    "descriptor_agreement": section_descriptor_agreement,
}


# ---------------------------------------------------------------------------------------------- main
def install_wheels(folder: Path) -> str:
    """``pip install --no-index --no-deps --target`` the wheels of ``folder`` into a temporary site folder,
    put it first on sys.path and on PYTHONPATH (for workers and subprocesses); returns what it said."""
    wheels = sorted(str(p) for p in folder.glob("*.whl"))
    if not wheels:
        return f"no wheels in {folder}"
    target = Path(tempfile.mkdtemp(prefix="gpu_check_site_"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--target", str(target), *wheels], check=True)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])
    importlib.invalidate_caches()
    return f"installed {len(wheels)} wheel(s) from {folder} into {target}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Sections: " + ", ".join(SECTIONS))
    p.add_argument("--smoke", action="store_true", help="the same check on the CPU with tiny sizes (a few minutes at most)")
    p.add_argument("--out", default=None, help="folder of the CSV and markdown (default benchmarks/results)")
    p.add_argument("--device", default=None, help="default: cuda where there is one, else cpu")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list of sections to run")
    p.add_argument("--cache", default=None, help="where the synthetic set is generated (default: a temporary folder)")
    p.add_argument("--wheels", default=None, help="a folder of wheels to install first (e.g. torchcodec), no network")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = [s for s in args.sections.split(",") if s and s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    said = install_wheels(Path(args.wheels)) if args.wheels else ""
    if said:
        print(said, flush=True)
    import torch

    sizes = SMOKE if args.smoke else Sizes()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here; run with --smoke on a CPU")
    check = Check(args, sizes)
    check.device = device
    check.num_classes = 625  # MARS's training identities
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{_cpu_model() or platform.machine()} CPU")
    check.shared["env"] = {"device": name}
    check.stem = f"gpu_check{'_smoke' if args.smoke else ''}_{slug(name if device.type == 'cuda' else 'cpu')}"
    check.out = Path(args.out) if args.out else HERE / "results"
    check.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        check.cache = Path(args.cache) if args.cache else Path(tmp)
        for section in args.sections.split(","):
            if section:
                check.run(section, SECTIONS[section])
        csv_path, md_path = check.write(check.out, check.stem)
    print(check.markdown())
    print(f"wrote {csv_path} and {md_path}")
    bad = [s["section"] for s in check.sections if s["status"] != "ok"]
    if bad:
        print(f"sections not ok: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
