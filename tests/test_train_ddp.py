"""Two-process DistributedDataParallel training on the CPU (gloo), as torchrun would launch it."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from stgcn_pyg.distributed import DistContext, gather_rows, shard_indices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, overrides: list[str], root: str, out: str) -> None:
    # What torchrun sets for each process.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from stgcn_pyg.config import load_config
    from stgcn_pyg.training import Trainer
    from stgcn_pyg.distributed import init_distributed

    cfg = load_config("synthetic", overrides + [f'data.root="{root}"', f'train.output="{out}"', "train.epochs=2"])
    ctx = init_distributed("cpu")
    try:
        trainer = Trainer(cfg, ctx=ctx)
        results = trainer.fit()
        torch.save(trainer.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump({"results": results and {k: results[k] for k in ("rank1", "mAP", "num_query", "num_gallery")},
                       "batches": len(trainer.loader), "world": ctx.world_size}, fh)
    finally:
        ctx.close()


def test_shard_and_gather_rows_single_process():
    assert shard_indices(7, 0, 3) == [0, 3, 6] and shard_indices(7, 2, 3) == [2, 5]
    x = torch.randn(5, 3)
    assert gather_rows(x, 5, DistContext()) is x


@pytest.mark.slow
def test_two_process_gloo_run_syncs_weights_and_gathers_evaluation(tiny_root, tiny_overrides, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), tiny_overrides, str(tiny_root), str(out)), nprocs=2, join=True)
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r1["results"] is None and r0["results"]["num_query"] > 0  # scores on rank 0 only
    # DDP keeps the parameters identical on both ranks; rank 0's checkpoint holds them.
    s0, s1 = torch.load(out / "rank0.pt", weights_only=True), torch.load(out / "rank1.pt", weights_only=True)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    for name, p in s0.items():
        if "running" in name or "num_batches" in name:
            continue  # BN statistics are per rank between DDP's buffer broadcasts
        assert torch.equal(p, s1[name]), name
        assert torch.equal(p, ckpt["model"][name]), name
    # The evaluation gathered from both ranks' shards equals a single-process evaluation of the checkpoint.
    from stgcn_pyg.checkpoint import load_checkpoint
    from stgcn_pyg.data import load_dataset
    from stgcn_pyg.evaluation import evaluate_model

    model, config = load_checkpoint(out / "last.pt")
    ds = load_dataset("mars", tiny_root)
    single = evaluate_model(model, ds, seq_len=2, mode="evenly", image_size=(64, 32), batch_size=16, progress=False)
    assert single["num_query"] == r0["results"]["num_query"]
    assert r0["results"]["mAP"] == pytest.approx(single["mAP"], abs=1e-4)
    assert r0["results"]["rank1"] == pytest.approx(single["rank1"], abs=1e-4)
