"""Multi-process training (DDP): 2 CPU processes on gloo end with identical weights."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flowdeblur.training.checkpoint import latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

OVERRIDES = ["device=cpu", "steps=2", "seed=5", "model.variant=full", "model.rnn_backend=torch",
             "data.crop_size=64", "data.batch_size=2", "data.num_workers=0",
             "log.progress=false", "log.tensorboard=false", "log.checkpoint_every=1",
             "data.synthetic={max_camera_motion: 4.0, max_object_motion: 4.0}"]


def _worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    # what torchrun would set
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from flowdeblur.training.config import load_config
    from flowdeblur.training.loop import train

    result = train(load_config(None, OVERRIDES + [f"run_dir={run_dir}"]))
    assert not dist.is_initialized()  # train() ends the process group it started
    torch.save({"state": result["model"].state_dict(), "step": result["final_step"]},
               Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_hold_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    mp.start_processes(_worker, args=(2, _free_port(), str(run_dir), str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["step"] == r1["step"] == 2
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k

    # The processes trained on different data (per-rank synthetic streams) ...
    rows = [json.loads(x) for x in (run_dir / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        a, b = r["rank_losses"]
        assert a != b
        assert r["loss"] == pytest.approx((a + b) / 2)
    # ... from the same initial weights, which moved.
    torch.manual_seed(5)
    from flowdeblur.models import FlowDeblurNet

    initial = FlowDeblurNet("full").state_dict()
    assert not torch.equal(initial["flownet.conv1.0.weight"], r0["state"]["flownet.conv1.0.weight"])

    # The checkpoint carries both processes' RNG and data-stream states.
    state = load_checkpoint(latest_checkpoint(run_dir))
    assert state["step"] == 2 and state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    # Resuming it with one process is refused with a clear message.
    from flowdeblur.errors import UserError
    from flowdeblur.training.config import load_config
    from flowdeblur.training.loop import train

    with pytest.raises(UserError, match="written by 2 processes, this run has 1"):
        train(load_config(None, OVERRIDES + [f"run_dir={run_dir}", "steps=3"]), resume=True)
