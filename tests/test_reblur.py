"""The reblurring loss (training/reblur.py) and the unlabelled videos it reads
(training/unlabelled.py): the operator against a box blur, the frozen flow copy, the config
keys, a short run with the loss on, and the loss off leaving training as it was."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from flowdeblur.data.blur_synthesis import linear_to_srgb, srgb_to_linear
from flowdeblur.errors import UserError
from flowdeblur.models import FlowDeblurNet
from flowdeblur.training import loop as T
from flowdeblur.training.batches import TrainingBatches
from flowdeblur.training.config import load_config
from flowdeblur.training.losses import eq14_loss
from flowdeblur.training.objective import compute_loss
from flowdeblur.training.reblur import (
    FrozenFlow,
    encode_srgb,
    reblur,
    reblur_terms,
    subexposure_offsets,
)
from flowdeblur.training.unlabelled import UnlabelledTriples
from flowdeblur.weights import load_pretrained

# ----------------------------------------------------------------------------- the operator

#: The warp maps pixel centres to grid_sample's [-1, 1] and back in float32 (a few 1e-6 px
#: off), and near black the sRGB curve multiplies an error by 12.92.
ATOL = 1e-4


def _shifted(image: torch.Tensor, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``image(p - (dx, dy))`` by indexing, and where that point lies inside the image."""
    _, _, h, w = image.shape
    out = torch.zeros_like(image)
    inside = torch.zeros(image.shape[0], 1, h, w)
    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
    src_y, src_x = slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[..., ys, xs] = image[..., src_y, src_x]
    inside[..., ys, xs] = 1.0
    return out, inside


def _box_blur(image, shifts):
    """The mean in linear light of ``image`` moved by each (dx, dy), computed directly."""
    linear = srgb_to_linear(image)
    moved = [_shifted(linear, dx, dy) for dx, dy in shifts]
    mean = sum(m for m, _ in moved) / len(moved)
    inside = torch.stack([i for _, i in moved]).amin(0)
    return linear_to_srgb(mean), inside


def _constant(n, h, w, fx, fy):
    return torch.tensor([float(fx), float(fy)]).view(1, 2, 1, 1).expand(n, 2, h, w).clone()


def test_offsets_are_midpoints_centred_on_frame_t():
    assert subexposure_offsets(5).tolist() == pytest.approx([-0.4, -0.2, 0.0, 0.2, 0.4])
    assert subexposure_offsets(4).tolist() == pytest.approx([-0.375, -0.125, 0.125, 0.375])
    assert float(subexposure_offsets(17)[8]) == 0.0


def test_zero_flow_returns_the_image():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 37, 53, generator=g)
    zero = torch.zeros(2, 2, 37, 53)
    out, mask = reblur(image, zero, zero, torch.tensor([0.5, 1.0]), samples=7)
    torch.testing.assert_close(out, image, rtol=0, atol=ATOL)
    assert bool((mask == 1).all())


@pytest.mark.parametrize("flow, duty", [((5, -10), 1.0), ((10, 20), 0.5), ((-15, 30), 2 / 3)])
def test_constant_velocity_is_a_box_blur_along_the_flow(flow, duty):
    """F- = -F+: every sub-exposure sample moves frame t by s F+, s in d * (-0.4 .. 0.4)."""
    g = torch.Generator().manual_seed(2)
    image = torch.rand(2, 3, 41, 67, generator=g)
    fx, fy = flow
    f_next, f_prev = _constant(2, 41, 67, fx, fy), _constant(2, 41, 67, -fx, -fy)
    out, mask = reblur(image, f_next, f_prev, torch.full((2,), duty), samples=5)
    shifts = [(round(duty * u * fx), round(duty * u * fy)) for u in (-0.4, -0.2, 0, 0.2, 0.4)]
    assert all(abs(duty * u * fx - dx) < 1e-9 for u, (dx, _) in zip((-0.4, -0.2, 0, 0.2, 0.4),
                                                                    shifts))
    expected, inside = _box_blur(image, shifts)
    torch.testing.assert_close(mask, inside, rtol=0, atol=0)
    assert 0 < float(mask.mean()) < 1
    torch.testing.assert_close(out * mask, expected * mask, rtol=0, atol=ATOL)


def test_each_half_of_the_exposure_follows_its_own_flow():
    """Before t the frame moves along F- (t -> t-1), after t along F+: here F- is not -F+."""
    g = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 45, 38, generator=g)
    f_next, f_prev = _constant(1, 45, 38, 10, 0), _constant(1, 45, 38, 0, 5)
    out, mask = reblur(image, f_next, f_prev, torch.ones(1), samples=5)
    # s > 0: image(p - s F+); s < 0: image(p + s F-) = image(p - |s| F-).
    shifts = [(0, 2), (0, 1), (0, 0), (2, 0), (4, 0)]
    expected, inside = _box_blur(image, shifts)
    torch.testing.assert_close(mask, inside, rtol=0, atol=0)
    torch.testing.assert_close(out * mask, expected * mask, rtol=0, atol=ATOL)


def test_srgb_encoding_is_the_package_curve_with_a_finite_gradient():
    y = torch.cat([torch.zeros(3), torch.linspace(-0.1, 1.2, 400)]).requires_grad_(True)
    torch.testing.assert_close(encode_srgb(y.detach().clamp(min=0)),
                               linear_to_srgb(y.detach().clamp(min=0)), rtol=0, atol=1e-7)
    encode_srgb(y).sum().backward()
    assert bool(torch.isfinite(y.grad).all())


def test_reblur_terms_score_the_output_and_the_identity_where_the_warps_stay_inside():
    g = torch.Generator().manual_seed(4)
    blurry = torch.rand(2, 3, 32, 40, generator=g)
    flow = _constant(2, 32, 40, 6, 0)
    batch = {"unlabelled_t": blurry, "unlabelled_flow_next": flow,
             "unlabelled_flow_prev": -flow, "unlabelled_duty": torch.ones(2)}
    output = torch.rand(2, 3, 32, 40, generator=g, requires_grad=True)
    terms = reblur_terms(output, batch, samples=5, reduction="mean")
    assert float(terms.identity) > 0 and not terms.identity.requires_grad
    # the samples reach 2.4 px to either side: the outer three columns are masked out
    blurred, mask = reblur(output.detach(), flow, -flow, torch.ones(2), samples=5)
    assert float(mask[..., 3:-3].min()) == 1 and float(mask[..., :3].max()) == 0
    assert float(mask[..., -3:].max()) == 0
    err = ((blurred - blurry).square() + 1e-6).sqrt()
    assert float(terms.model.detach()) == pytest.approx(float((err * mask).sum() / mask.sum() / 3))
    terms.model.backward()
    assert bool(torch.isfinite(output.grad).all()) and float(output.grad.abs().max()) > 0
    # a still scene reblurs to itself: the identity's error is Charbonnier's floor
    still = dict(batch, unlabelled_flow_next=0 * flow, unlabelled_flow_prev=0 * flow)
    assert float(reblur_terms(blurry, still, 5, "mean").identity) == pytest.approx(1e-3, rel=0.02)


# ----------------------------------------------------------------------------- videos


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random (h, w, 3) uint8 texture."""
    coarse = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=torch.Generator().manual_seed(seed))
    smooth = torch.nn.functional.interpolate(coarse, scale_factor=8, mode="bicubic")
    return (smooth[0, :, :h, :w].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _write_video(path: Path, frames: int = 7, size: tuple[int, int] = (96, 80),
                 cut: int | None = None) -> Path:
    """A small video of a smooth random texture panning right by 3 pixels per frame; from
    frame ``cut`` on, of another texture (a scene cut)."""
    w, h = size
    texture = _texture(h, w + 3 * frames, 0)
    other = _texture(h, w + 3 * frames, 1) // 2  # another scene, darker
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"qscale": "2"}
        for i in range(frames):
            start = 3 * (frames - i)
            shot = texture if cut is None or i < cut else other
            image = np.ascontiguousarray(shot[:, start: start + w])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("videos") / "pan.mp4")


def test_unlabelled_triples_are_crops_of_consecutive_frames_and_resume_exactly(video):
    def source():
        return UnlabelledTriples([str(video)], side=48, flips=True, duty_range=(0.5, 1.0),
                                 seed=5, rank=0)

    first = source()
    assert len(first) == 5  # 7 frames: triples centred on frames 1 .. 5
    batch = first.sample(6, torch.device("cpu"))
    assert set(batch) == {"unlabelled_prev", "unlabelled_t", "unlabelled_next",
                          "unlabelled_duty"}
    assert batch["unlabelled_t"].shape == (6, 3, 48, 48)
    assert batch["unlabelled_t"].dtype == torch.float32
    duty = batch["unlabelled_duty"]
    assert 0.5 <= float(duty.min()) < float(duty.max()) <= 1
    assert not torch.equal(batch["unlabelled_t"], batch["unlabelled_next"])
    state = first.state_dict()
    expected = first.sample(3, torch.device("cpu"))
    again = source()
    again.load_state_dict(state)
    for key, value in again.sample(3, torch.device("cpu")).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_no_triple_spans_a_scene_cut(tmp_path):
    path = _write_video(tmp_path / "cut.mp4", frames=8, cut=4)
    source = UnlabelledTriples([str(path)], side=48, flips=False, duty_range=(0.5, 1.0),
                               seed=0, rank=0)
    assert [t for _, t in source.triples] == [1, 2, 5, 6]  # not 3 (2, 3, 4) nor 4 (3, 4, 5)


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("text.mp4", "cannot open video"), ("notes.txt", "not a video file"),
    ("folder", "not a video file"), ("short.mp4", "at least 3"), ("small.mp4", "smaller than"),
])
def test_the_unlabelled_source_refuses_bad_paths_in_one_line(tmp_path, case, message):
    path = tmp_path / case
    if case in ("text.mp4", "notes.txt"):
        path.write_text("not a video\n")
    elif case == "folder":
        path.mkdir()
    elif case == "short.mp4":
        _write_video(path, frames=2)
    elif case == "small.mp4":
        _write_video(path, size=(48, 32))
    with pytest.raises(UserError, match=message) as raised:
        UnlabelledTriples([str(path)], side=40, flips=True, duty_range=(0.5, 1.0), seed=0,
                          rank=0)
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("data.unlabelled_videos:")


# ----------------------------------------------------------------------------- config


def _reblur_keys(video, *more):
    """The loss on, its flows from the shipped weights' flow network."""
    return ["reblur.weight=0.5", f"data.unlabelled_videos=[{video}]",
            "model.init_weights=shipped", *more]


def test_config_defaults_leave_the_loss_off():
    c = load_config(None)
    assert c.reblur.weight == 0 and c.data.unlabelled_videos == []
    assert (c.reblur.batch_size, c.reblur.samples, c.reblur.duty_range) == (4, 17, (0.5, 1.0))


@pytest.mark.parametrize("overrides, message", [
    (["reblur.weight=1"], "needs data.unlabelled_videos"),
    (["data.unlabelled_videos=[a.mp4]"], "reblur.weight is 0"),
    (["reblur.weight=1", "data.unlabelled_videos=[a.mp4]"], "model.init_weights"),
    (["reblur.weight=1", "data.unlabelled_videos=[a.mp4]", "model.init_weights=w",
      "stage=flow"], "stage=joint"),
    (["reblur.weight=1", "data.unlabelled_videos=[a.mp4]", "model.init_weights=w",
      "model.variant=no_rnn"], "no_rnn has none"),
    (["reblur.weight=-1"], "reblur.weight must be"),
    (["reblur.weight=.nan"], "reblur.weight must be"),
    (["reblur.samples=0"], "reblur.samples must be >= 1"),
    (["reblur.duty_range=[0.5, 1.5]"], "duty_range"),
    (["data.unlabelled_videos=a.mp4"], "expects a list, each a string"),
    (["data.unlabelled_videos=[[a.mp4]]"], r"unlabelled_videos\[0\]' expects a string"),
    (["reblur.wieght=1"], "did you mean 'reblur.weight'"),
])
def test_config_refuses_what_the_loss_cannot_use(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


# ----------------------------------------------------------------------------- training


def _tiny_overrides(tmp_path: Path, run: str) -> list[str]:
    """Two CPU steps of the full model at 64x64, batch 1."""
    return [f"run_dir={tmp_path / run}", "device=cpu", "steps=2", "seed=3",
            "model.variant=full", "model.rnn_backend=torch", "data.crop_size=64",
            "data.batch_size=1", "data.num_workers=0", "log.progress=false",
            "log.tensorboard=false", "log.checkpoint_every=1",
            "data.synthetic={max_camera_motion: 4.0, max_object_motion: 4.0}"]


def _tiny(tmp_path: Path, *overrides: str, run: str = "run"):
    return load_config(None, _tiny_overrides(tmp_path, run) + list(overrides))


def _losses(run_dir: str | Path) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "losses.jsonl").read_text().splitlines()]


def test_no_gradient_reaches_the_frozen_flow_copy(video, tmp_path):
    config = _tiny(tmp_path, *_reblur_keys(video, "reblur.batch_size=2"))
    batches = TrainingBatches(config, device=torch.device("cpu"), batch_size=1)
    model = load_pretrained(rnn_backend="torch")
    frozen = FrozenFlow(copy.deepcopy(model.flownet), in_frames=2)
    before = {k: v.clone() for k, v in frozen.flownet.state_dict().items()}
    batch = frozen.add_flows(batches.next())
    assert batch["unlabelled_flow_next"].shape == (2, 2, 64, 64)
    assert not batch["unlabelled_flow_next"].requires_grad
    # the frozen copy sees the pan: 3 px per frame to the right, unless the crop was flipped
    assert 1.5 < float(batch["unlabelled_flow_next"][:, 0].abs().median()) < 4.5
    loss = compute_loss(model, batch, config)
    assert set(loss.parts) == {"image", "flow", "reblur", "reblur_identity"}
    loss.total.backward()
    assert all(p.grad is None and not p.requires_grad for p in frozen.flownet.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for p in model.flownet.parameters())
    for k, v in frozen.flownet.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_a_run_with_the_loss_logs_its_parts_and_resumes(video, tmp_path):
    keys = _reblur_keys(video, "reblur.batch_size=1", "reblur.samples=5")
    result = T.train(_tiny(tmp_path, *keys))
    rows = _losses(result["run_dir"])
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["reblur"] > 0 and row["reblur_identity"] > 0
        assert row["loss"] == pytest.approx(row["image"] + row["flow"] + 0.5 * row["reblur"],
                                            rel=1e-5)
    # step 2 again, from the checkpoint of step 1: the same unlabelled draws, the same loss
    # (within the CPU's repeatability, see test_a_run_with_the_loss_off_trains_as_today)
    again = _tiny(tmp_path, *keys, run="again")
    T.train(_tiny(tmp_path, *keys, "steps=1", run="again"))
    T.train(again, resume=True, overrides=["steps"])
    resumed = _losses(again.run_dir)[1]
    assert set(resumed) == set(rows[1])
    for key in ("loss", "image", "flow", "reblur", "reblur_identity"):
        assert resumed[key] == pytest.approx(rows[1][key], rel=1e-5), key


def test_the_loss_off_draws_the_same_batches_and_losses_as_today(tmp_path):
    """Other reblur settings with the loss off: the same batches and stream state as a config
    without any reblur key (today's), and the same loss as Eq. 14 computed as the trainer did
    before the reblurring loss, bit for bit."""
    off = ["reblur.batch_size=3", "reblur.samples=5", "reblur.duty_range=[0.6, 0.9]"]
    today, other = _tiny(tmp_path, run="today"), _tiny(tmp_path, *off, run="off")
    streams = [TrainingBatches(c, device=torch.device("cpu"), batch_size=2)
               for c in (today, other)]
    for _ in range(2):
        a, b = (s.next() for s in streams)
        assert set(a) == set(b) and not any(k.startswith("unlabelled") for k in a)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)
    assert set(streams[0].state_dict()) == set(streams[1].state_dict())
    torch.manual_seed(0)
    model = FlowDeblurNet("full", rnn_backend="torch")
    losses = [compute_loss(model, a, c) for c in (today, other)]
    out = model(a["frame_t"], a["frame_next"])
    before = eq14_loss(out, a["frame_t"], a["frame_next"], a["sharp_t"])
    for loss in losses:
        assert set(loss.parts) == {"image", "flow"}
        assert torch.equal(loss.total, before.total)
        assert torch.equal(loss.parts["image"], before.image)


def test_a_run_with_the_loss_off_trains_as_today(tmp_path):
    """To the last bits only within the CPU's own repeatability: oneDNN's convolution weight
    gradients differ in the last bit between identical runs."""
    today = T.train(_tiny(tmp_path, run="today"))
    off = T.train(_tiny(tmp_path, "reblur.samples=5", "reblur.batch_size=3", run="off"))
    for a, b in zip(_losses(today["run_dir"]), _losses(off["run_dir"])):
        assert set(a) == set(b) == {"step", "loss", "lr", "image", "flow"}
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)


# ----------------------------------------------------------------------------- the arm


def test_the_reblur_arm_trains_on_recorded_videos_that_no_dev_or_test_clip_comes_from():
    references = Path(__file__).resolve().parents[1] / "references"
    if str(references) not in sys.path:
        sys.path.insert(0, str(references))
    arms = importlib.import_module("recipe_arms")
    videos = importlib.import_module("reblur_videos")
    config = load_config(arms.RECIPE, ["model.init_weights=start.safetensors",
                                       *arms.ARMS["reblur"]])
    assert config.reblur.weight > 0 and config.ema_decay > 0
    assert config.data.unlabelled_videos == [str(p) for p in videos.video_paths()]
    held_out = videos.evaluation_sources()
    assert any("vtest.avi" in source for source in held_out.values())  # the sources are read
    for video in videos.recorded_videos():
        assert video["sha256"] not in held_out
        assert f"{video['package']} {video['path']}" not in held_out.values()
