"""Training loop: resume after kill -9, checkpoints, signals, NaN stop, stage 1, data mixing."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, tiny_config

from flowdeblur.errors import UserError
from flowdeblur.models import FlowDeblurNet
from flowdeblur.training import loop as T
from flowdeblur.training.batches import TrainingBatches
from flowdeblur.training.checkpoint import (
    TrainingDiverged,
    checkpoint_path,
    checksum_path,
    export_weights_from_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from flowdeblur.training.objective import StepLoss
from flowdeblur.training.run_log import log_images
from flowdeblur.training.schedule import learning_rate
from flowdeblur.training.setup import load_init_weights


def tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    """Six CPU steps, a checkpoint every three (helpers.tiny_config)."""
    return tiny_config(tmp_path / run, *overrides, steps=6, checkpoint_every=3)


def losses(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "losses.jsonl").read_text().splitlines()]


def test_learning_rate_schedules(tmp_path):
    c = tiny(tmp_path, "steps=100", "optim.lr=1e-3")
    assert learning_rate(0, c) == learning_rate(99, c) == 1e-3
    c = tiny(tmp_path, "steps=100", "optim.lr=1e-3", "schedule.kind=poly", "schedule.power=2")
    assert learning_rate(0, c) == pytest.approx(1e-3)
    assert learning_rate(50, c) == pytest.approx(1e-3 * 0.25)
    assert learning_rate(100, c) == 0.0
    c = tiny(tmp_path, "steps=100", "optim.lr=1e-3", "schedule.warmup_steps=4")
    assert [learning_rate(s, c) for s in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4,
                                                                       1e-3, 1e-3])


@pytest.mark.slow
def test_run_writes_losses_checkpoints_and_weights(tmp_path):
    from flowdeblur.weights import load_weights

    c = tiny(tmp_path, "model.variant=full", "steps=3", "log.checkpoint_every=2",
             "log.keep_checkpoints=1", "export_dtype=bf16", "log.tensorboard=true",
             "log.image_every=2", "log.every=2")
    result = T.train(c)
    run = Path(c.run_dir)
    assert result["final_step"] == 3 and result["interrupted"] is None
    rows = losses(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 and r["image"] > 0 and r["flow"] > 0 for r in rows)
    assert rows[-1]["loss"] == pytest.approx(result["last_loss"])
    assert [s for s, _ in list_checkpoints(run)] == [3]  # keep_checkpoints=1 pruned step 2
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == 3 and state["config"]["model"]["variant"] == "full"
    assert set(state["rng"][0]) == {"torch", "cuda", "numpy", "python", "data"}
    assert "scenes" in state["rng"][0]["data"]
    assert not list((run / "checkpoints").glob("*.tmp"))
    # exported bf16 weights hold the trained model (to bf16 precision)
    loaded = load_weights(result["weights"])
    trained = result["model"].state_dict()
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, trained[k].to(torch.bfloat16).float())
    # a checkpoint exports to the same weights (here fp32)
    exported = export_weights_from_checkpoint(latest_checkpoint(run), tmp_path / "w.safetensors")
    for k, v in load_weights(exported).state_dict().items():
        torch.testing.assert_close(v, trained[k], rtol=0, atol=0)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "config.yaml").is_file()


class _Writer:
    """Records what would go to TensorBoard."""

    def __init__(self):
        self.images = {}

    def add_image(self, tag, image, step):
        self.images[tag] = image


def test_tensorboard_images_of_both_stages():
    g = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(2, 3, 64, 64, generator=g) for k in ("frame_t", "sharp_t")}
    batch["flow"] = torch.randn(2, 2, 64, 64, generator=g)
    flows = [torch.randn(2, 2, 16, 16, generator=g)]
    gates = [torch.rand(2, 16, 32, 32, generator=g) * 2 - 1]
    joint = _Writer()
    log_images(joint, 1, batch, {"image": batch["frame_t"], "flows": flows, "gates": gates})
    assert set(joint.images) == {"images/blurry", "images/sharp", "images/output",
                                 "flow/predicted", "flow/ground_truth", "gates/rnnw1"}
    assert joint.images["flow/predicted"].shape == (3, 16, 16)
    assert joint.images["gates/rnnw1"].shape == (3, 64, 64)  # 2x2 grid of the 4 directions
    assert all(0 <= float(v.min()) and float(v.max()) <= 1 for v in joint.images.values())
    flow_stage = _Writer()  # no deblurred image: no output, and the gates are not shown
    log_images(flow_stage, 1, batch, {"image": None, "flows": flows, "gates": gates})
    assert set(flow_stage.images) == {"images/blurry", "images/sharp", "flow/predicted",
                                      "flow/ground_truth"}


_CHILD = """
import json, sys, time
from flowdeblur.training import loop as T
from flowdeblur.training.batches import TrainingBatches
from flowdeblur.training.config import load_config
fast_next = TrainingBatches.next
def slow_next(self):
    time.sleep(0.2)  # leaves time to kill the run between steps
    return fast_next(self)
TrainingBatches.next = slow_next
T.train(load_config(None, json.loads(sys.argv[1])), resume="--resume" in sys.argv)
"""


def _spawn(tmp_path: Path, overrides: list[str]) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    # Same thread count as this process: CPU convolutions then sum in the same order.
    return subprocess.Popen([sys.executable, str(script), json.dumps(overrides)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"child ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out waiting for the child run")
        time.sleep(0.01)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    overrides = ["steps=8", "log.checkpoint_every=3"]
    reference = T.train(tiny(tmp_path, *overrides, run="reference"))
    expected = losses(tmp_path / "reference")

    config = tiny(tmp_path, *overrides, run="killed")
    run = Path(config.run_dir)
    proc = _spawn(tmp_path, _as_overrides(config))
    # Kill once step 4 is logged: the newest checkpoint is step 3, what follows is lost work.
    _wait_for(lambda: _lines(run / "losses.jsonl") >= 4, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    saved = load_checkpoint(latest_checkpoint(run))["step"]
    logged = _lines(run / "losses.jsonl")
    assert saved in (3, 6) and saved < logged < 8  # killed mid-run, after unsaved steps

    resumed = T.train(config, resume=True)
    got = losses(run)
    assert [r["step"] for r in got] == list(range(1, 9))  # lost steps logged once, not twice
    for a, b in zip(got, expected):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6), a["step"]
    assert resumed["last_loss"] == pytest.approx(reference["last_loss"], rel=1e-5)
    ref_state = reference["model"].state_dict()
    for k, v in resumed["model"].state_dict().items():
        torch.testing.assert_close(v, ref_state[k], rtol=1e-4, atol=1e-6)


def _as_overrides(config) -> list[str]:
    from flowdeblur.training.config import to_dict

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "synthetic":
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}={json.dumps(v)}"

    return list(flat(to_dict(config)))


@pytest.mark.slow
def test_sigterm_saves_and_exits(tmp_path):
    config = tiny(tmp_path, "steps=200", "log.checkpoint_every=100")
    run = Path(config.run_dir)
    proc = _spawn(tmp_path, _as_overrides(config))
    _wait_for(lambda: _lines(run / "losses.jsonl") >= 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    stopped = _lines(run / "losses.jsonl")
    assert 3 <= stopped < 100
    assert latest_checkpoint(run) == checkpoint_path(run, stopped)
    assert not (run / "weights.safetensors").exists()  # only a finished run exports weights


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler during the test, whatever the runner inherited (a job
    started in the background by a shell inherits SIG_IGN)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def sigint_at(monkeypatch, default_sigint):
    """``sigint_at(batch, times=1)``: the process sends itself SIGINT ``times`` times when
    training asks for its ``batch``-th batch."""

    def arm(batch: int, times: int = 1) -> None:
        fast_next = TrainingBatches.next
        calls = []

        def next_then_interrupt(self):
            calls.append(1)
            if len(calls) == batch:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
            return fast_next(self)

        monkeypatch.setattr(TrainingBatches, "next", next_then_interrupt)

    return arm


def test_sigint_in_process_saves_checkpoint(tmp_path, sigint_at):
    config = tiny(tmp_path, "steps=6", "log.checkpoint_every=100")
    sigint_at(3)  # handled: the step finishes, then it saves
    result = T.train(config)
    assert result["interrupted"] == "SIGINT" and result["final_step"] == 3
    assert latest_checkpoint(config.run_dir) == checkpoint_path(config.run_dir, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    # and it continues from there
    assert T.train(config, resume=True)["final_step"] == 6


def test_second_sigint_stops_at_once(tmp_path, sigint_at):
    config = tiny(tmp_path, "steps=6", "log.checkpoint_every=100")
    sigint_at(2, times=2)
    with pytest.raises(KeyboardInterrupt):
        T.train(config)
    assert list_checkpoints(config.run_dir) == []  # nothing saved, nothing half-written
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny(tmp_path, "steps=8", "log.checkpoint_every=2")
    real = T.compute_loss
    calls = []

    def poisoned(net, batch, cfg):
        loss, parts, vis = real(net, batch, cfg)
        calls.append(1)
        if len(calls) == 5:  # steps 1..4 fine, step 5 NaN
            loss = loss * float("nan")
        return StepLoss(loss, parts, vis)

    monkeypatch.setattr(T, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"nan at step 5.*step_00000004\.pt"):
        T.train(config)
    assert isinstance(TrainingDiverged("x"), UserError)
    assert [s for s, _ in list_checkpoints(config.run_dir)] == [2, 4]
    assert [r["step"] for r in losses(Path(config.run_dir))] == [1, 2, 3, 4]


def test_checkpoint_errors_are_user_errors(tmp_path):
    config = tiny(tmp_path, "steps=2", "log.checkpoint_every=1")
    with pytest.raises(UserError, match="no checkpoint"):
        T.train(config, resume=True)
    T.train(config)
    with pytest.raises(UserError, match="already holds checkpoints"):
        T.train(config)
    with pytest.raises(UserError, match="already at step 2"):
        T.train(config, resume=True)
    longer = tiny(tmp_path, "steps=3")
    with pytest.raises(UserError, match="stage=joint, this run has stage=flow"):
        T.train(tiny(tmp_path, "steps=3", "model.variant=full", "stage=flow"), resume=True)
    with pytest.raises(UserError, match="model.variant=no_rnn, this run has model.variant=full"):
        T.train(tiny(tmp_path, "steps=3", "model.variant=full"), resume=True)

    newest = latest_checkpoint(config.run_dir)
    for older in list_checkpoints(config.run_dir)[:-1]:  # no intact one to fall back to
        older.path.unlink()
    good = newest.read_bytes()
    newest.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(UserError, match="corrupt or not a checkpoint"):
        T.train(longer, resume=True)
    newest.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(UserError, match="corrupt or not a checkpoint"):
        load_checkpoint(newest)
    torch.save({"model": {}}, newest)
    checksum_path(newest).unlink()  # a foreign file: no checksum of ours beside it
    with pytest.warns(UserWarning, match="no checksum"), \
            pytest.raises(UserError, match="not a flowdeblur training checkpoint"):
        load_checkpoint(newest, accept_unverified=True)
    # a structurally valid checkpoint whose tensors do not fit
    bad = {"format": "flowdeblur-checkpoint", "version": 1, "step": 1,
           "config": {"model": {"variant": "no_rnn"}, "stage": "joint"},
           "model": {"nope": torch.zeros(1)}, "optimizer": {}, "schedule": {}, "rng": [{}]}
    save_checkpoint(newest, bad)
    with pytest.raises(UserError, match="does not fit model.variant=no_rnn"):
        T.train(longer, resume=True)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_save_is_atomic_and_prune_keeps_newest(tmp_path, monkeypatch):
    state = {"format": "flowdeblur-checkpoint", "version": 1, "step": 1,
             "config": {"model": {"variant": "no_rnn"}},
             "model": {"w": torch.ones(2)}, "optimizer": {}, "schedule": {}, "rng": [{}]}
    for step in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, step), dict(state, step=step))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(UserError, match="cannot write checkpoint .*step_00000004.pt"):
        save_checkpoint(checkpoint_path(tmp_path, 4), state)
    monkeypatch.undo()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2, 3]  # no half-written step 4
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    prune_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 3


@pytest.mark.slow
def test_flow_stage_trains_only_the_flow_path(tmp_path):
    config = tiny(tmp_path, "stage=flow", "model.variant=full", "steps=2", "optim.lr=1e-4")
    torch.manual_seed(config.seed)
    initial = FlowDeblurNet("full").state_dict()  # train() builds the same initial weights
    result = T.train(config)
    rows = losses(Path(config.run_dir))
    assert all(r["epe"] > 0 and r["epe"] == r["loss"] for r in rows)
    after = result["model"].state_dict()
    changed = {k for k in after if not torch.equal(after[k], initial[k])}
    assert "flownet.conv1.0.weight" in changed and "flownet.flow2.weight" in changed
    # the EPE reaches neither the deblurring net nor the gate heads: they stay as initialised
    assert not any(k.startswith("deblurnet.") for k in changed)
    assert not any(k.startswith("flownet.rnnw") for k in changed)
    # stage 2 starts from these weights, optimiser fresh
    joint = tiny(tmp_path, "model.variant=full", "steps=1",
                 f"model.init_weights={result['weights']}", run="joint")
    first = T.train(joint)
    assert first["final_step"] == 1
    state = load_checkpoint(latest_checkpoint(joint.run_dir))
    assert all(v["step"] == 1 for v in state["optimizer"]["state"].values())


def test_init_weights_strict_and_partial(tmp_path):
    from flowdeblur.weights import save_weights

    source = FlowDeblurNet("full")
    path = tmp_path / "full.safetensors"
    save_weights(source, path)
    target = FlowDeblurNet("single_frame")
    with pytest.raises(UserError):
        load_init_weights(target, str(path), strict=True)
    note = load_init_weights(target, str(path), strict=False)
    assert "tensors from" in note
    torch.testing.assert_close(target.flownet.conv2[0].weight, source.flownet.conv2[0].weight)
    conv1 = target.flownet.conv1[0].weight
    assert conv1.shape[1] == 3 and not torch.equal(conv1, source.flownet.conv1[0].weight[:, :3])
    with pytest.raises(UserError, match="not found"):
        T.train(tiny(tmp_path, "model.init_weights=missing.safetensors"))


class _FakePairs(torch.utils.data.Dataset):
    """Stands in for flowdeblur.data.readers.PairedFrames: 5 frames of 80x96."""

    def __init__(self, root, layout, split="train", frames=2):
        g = torch.Generator().manual_seed(7)
        self.items = [torch.rand(3, 80, 96, generator=g) for _ in range(5)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        x = self.items[i]
        return {"frame_t": x, "frame_next": x.flip(-1), "sharp_t": x.flip(-2), "sequence": "s",
                "index": i, "name": f"{i}.png"}


def test_mixed_batches_resume_exactly(tmp_path, monkeypatch):
    import flowdeblur.data.readers as readers

    monkeypatch.setattr(readers, "PairedFrames", _FakePairs)
    config = tiny(tmp_path, "data.source=mix", "data.real_root=anything", "data.batch_size=4",
                  "data.real_fraction=0.5")

    def stream():
        b = TrainingBatches(config, device=torch.device("cpu"), batch_size=4)
        return b

    first = stream()
    first.start(num_workers=0, rank=0, world_size=1, seed=config.seed)
    warmup = [first.next() for _ in range(4)]  # 8 real draws: crosses an epoch of 5
    assert warmup[0]["frame_t"].shape == (4, 3, 64, 64)
    assert set(warmup[0]) == {"frame_t", "frame_next", "sharp_t"}
    state = first.state_dict()
    assert state["real_draws"] == 8
    expected = [first.next() for _ in range(3)]

    second = stream()
    second.load_state_dict(state)
    second.start(num_workers=0, rank=0, world_size=1, seed=config.seed)
    for a, b in zip(expected, [second.next() for _ in range(3)]):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # and a short training run on the mix goes through
    assert T.train(tiny(tmp_path, "data.source=real", "data.real_root=x", "steps=2",
                        run="real"))["final_step"] == 2


def test_cli_debug_style_run(tmp_path, capsys):
    from flowdeblur.cli import main

    run = tmp_path / "cli"
    argv = ["train", "--config", str(ROOT / "configs" / "debug.yaml"), "--run-dir", str(run),
            "steps=2", "model.variant=no_rnn", "log.tensorboard=false", "log.progress=false"]
    assert main(argv) == 0
    assert "done at step 2" in capsys.readouterr().out
    assert (run / "weights.safetensors").is_file()
    assert main(["train", "--run-dir", str(run), "--resume", "steps=3"]) == 0  # its config.yaml
    assert [r["step"] for r in losses(run)] == [1, 2, 3]
    assert main(["train", "--config", str(ROOT / "configs" / "debug.yaml"), "--run-dir",
                 str(run)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_cpu_amp_trains_under_bf16_autocast_with_fp32_weights(tmp_path):
    from flowdeblur.training.setup import training_runtime

    cpu = torch.device("cpu")
    assert training_runtime(cpu, 0, amp=True).precision == "fp32"  # amp alone: CUDA only
    assert training_runtime(cpu, 0, amp=False, cpu_amp=True).precision == "bf16"
    common = ("model.variant=full", "model.rnn_backend=cpu", "steps=2", "log.every=1")
    fp32 = T.train(tiny(tmp_path, *common, run="fp32"))
    bf16 = T.train(tiny(tmp_path, *common, "cpu_amp=true", run="bf16"))
    first = [losses(tmp_path / run)[0]["loss"] for run in ("fp32", "bf16")]
    # the same seed and batch: the first loss differs only by the forward's precision
    assert first[0] != first[1] and first[1] == pytest.approx(first[0], rel=0.05)
    assert all(p.dtype == torch.float32 for p in bf16["model"].parameters())
    assert fp32["final_step"] == bf16["final_step"] == 2


def test_channels_last_training_matches_nchw_and_resumes_across_layouts(tmp_path):
    common = ("model.variant=full", "model.rnn_backend=cpu", "steps=2", "log.every=1")
    nchw = T.train(tiny(tmp_path, *common, run="nchw"))
    nhwc = T.train(tiny(tmp_path, *common, "channels_last=true", run="nhwc"))
    weight = nhwc["model"].deblurnet.d_conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    for a, b in zip(losses(tmp_path / "nchw"), losses(tmp_path / "nhwc")):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    # Adam moves a weight by about lr (1e-3) per step whatever its gradient's size, so a
    # gradient near zero may step either way: 2e-4 apart is measured, 5e-4 allowed.
    for (name, a), b in zip(nchw["model"].state_dict().items(),
                            nhwc["model"].state_dict().values()):
        assert (a - b).abs().max() < 5e-4, name
    # the NHWC run's optimiser moments (NHWC strides) resumed into an NCHW model
    resumed = T.train(tiny(tmp_path, *common, "steps=3", run="nhwc"), resume=True)
    assert resumed["final_step"] == 3 and math.isfinite(resumed["last_loss"])


@pytest.mark.gpu
def test_cuda_bf16_autocast_run(tmp_path):
    config = tiny(tmp_path, "device=cuda", "amp=true", "model.variant=full", "steps=3",
                  "model.rnn_backend=auto", "data.batch_size=2")
    result = T.train(config)
    rows = losses(Path(config.run_dir))
    assert result["final_step"] == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert next(result["model"].parameters()).dtype == torch.float32  # autocast, fp32 master


def test_real_dataset_on_disk_with_workers(tmp_path):
    readers = pytest.importorskip("flowdeblur.data.readers")
    from flowdeblur.media import write_image

    g = torch.Generator().manual_seed(1)
    for seq in ("a", "b"):
        for i in range(3):
            for kind in ("blur", "sharp"):
                write_image(tmp_path / "data" / "train" / kind / seq / f"{i:03d}.png",
                            torch.rand(3, 72, 90, generator=g))
    assert len(readers.PairedFrames(tmp_path / "data", "folders", split="train")) == 6
    config = tiny(tmp_path, "data.source=real", f"data.real_root={tmp_path / 'data'}",
                  "data.real_layout=folders", "data.num_workers=1", "steps=2")
    assert T.train(config)["final_step"] == 2
    state = load_checkpoint(latest_checkpoint(config.run_dir))
    assert state["rng"][0]["data"]["real_draws"] == 4
