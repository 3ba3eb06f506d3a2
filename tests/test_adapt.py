"""Test-time adaptation (training/adapt.py, ``flowdeblur deblur --adapt``): a changed copy,
the input model untouched, the same weights for a seed, a lower reblurring error on the clip,
the triples read from a video, the provenance and ``--resume``, the options it refuses, and
its measurement script (references/adapt_eval.py)."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from helpers import Identity, import_reference, make_video, smooth_frames, use_model_in_cli

import flowdeblur.cli.deblur as cli_deblur
from flowdeblur.cli import main
from flowdeblur.inference import deblur_video
from flowdeblur.media import FrameSource, write_image
from flowdeblur.media.ownership import read_provenance
from flowdeblur.training.adapt import ClipAdaptation, adapt_to_clip, read_clip, reblur_error
from flowdeblur.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # bit-exact weights need one thread

H, W = 48, 64


@pytest.fixture(scope="module")
def model(weights):
    return load_weights(weights)


def blurred_clip(count: int = 4) -> list[torch.Tensor]:
    """smooth_frames panning 2 px a frame, each the mean of three 1-px shifts (known blur)."""
    wide = smooth_frames(count + 1, H, W + 2)
    return [torch.stack([f[:, :, k: k + W] for k in range(3)]).mean(0) for f in wide[:count]]


def test_adapting_returns_a_changed_copy_the_same_for_a_seed(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = blurred_clip()
    runs = [adapt_to_clip(model, frames, 2, crop=64, synthetic_batch=1, synthetic_side=64,
                          progress=False) for _ in range(2)]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    first, second = (r.state_dict() for r in runs)
    assert any(not torch.equal(first[k], before[k]) for k in before)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not runs[0].training and all(not p.requires_grad for p in runs[0].parameters())


def test_adapting_lowers_the_reblurring_error_on_the_clip(model):
    frames = blurred_clip()
    history: list[dict] = []
    start = reblur_error(model, frames)
    adapted = adapt_to_clip(model, frames, 3, crop=64, lr=1e-3, synthetic_weight=0,
                            progress=False, history=history)
    end = reblur_error(adapted, frames, flows_from=model)
    assert end.model < 0.8 * start.model
    assert end.identity == pytest.approx(start.identity)  # the same flows
    assert len(history) == 3 and history[0]["eq14"] is None


def test_the_reblurring_error_of_given_images(model):
    # Reblurring the blurry frames themselves is the identity's error; other images differ.
    frames = blurred_clip()
    own = reblur_error(model, frames)
    given = reblur_error(model, frames, images=frames)
    assert given.model == pytest.approx(own.identity)
    flat = reblur_error(model, frames, images=[torch.full_like(f, 0.5) for f in frames])
    assert flat.model > given.model


def test_a_video_gives_evenly_spaced_triples_and_no_triple_across_a_cut(tmp_path):
    frames = smooth_frames(6, 32, 48) + [0.3 * f for f in smooth_frames(5, 32, 48, seed=4)]
    source = FrameSource(make_video(tmp_path / "cut.mkv", frames))
    clip = read_clip(source, max_triples=3)
    # Middles 1, 5, 9 evenly spaced over 11 frames; (4, 5, 6) spans the cut between 5 and 6.
    assert len(clip.frames) == 9 and clip.centres == [1, 7]  # frames 0-2, 4-6, 8-10
    assert all(f.dtype == torch.uint8 and f.shape == (3, 32, 48) for f in clip.frames)
    assert len(read_clip(source).centres) == 7  # every triple but the two across the cut


class _Adapt:
    """An adaptation that counts its calls and returns the model unchanged."""

    def __init__(self, steps: int) -> None:
        self.record, self.calls = {"steps": steps}, 0

    def __call__(self, source, model, runtime):
        self.calls += 1
        return model


def test_the_adaptation_is_recorded_and_resume_skips_it_when_current(tmp_path):
    src = make_video(tmp_path / "a.mp4", smooth_frames(3, 32, 48))
    out = tmp_path / "out.mkv"
    adapt = _Adapt(5)

    def run(adaptation):
        return deblur_video(src, out, model=Identity(), progress=False, scene_cuts=False,
                            resume=True, adapt=adaptation)

    assert not run(adapt).skipped and adapt.calls == 1
    assert read_provenance(out)["options"]["adapt"] == {"steps": 5}
    assert run(adapt).skipped and adapt.calls == 1  # current: not adapted again
    assert not run(None).skipped  # a plain run does not take the adapted output
    assert "adapt" not in read_provenance(out)["options"]
    assert not run(_Adapt(6)).skipped


def test_deblur_adapt_runs_end_to_end(tmp_path, model, monkeypatch, capsys):
    use_model_in_cli(monkeypatch, model)
    small = functools.partial(ClipAdaptation, synthetic_batch=1, synthetic_side=64)
    monkeypatch.setattr(cli_deblur, "ClipAdaptation", small)  # fewer synthetic pixels
    src = make_video(tmp_path / "in.mp4", blurred_clip())
    out = tmp_path / "out.mp4"
    args = ["deblur", str(src), "-o", str(out), "--adapt", "1", "--adapt-crop", "64",
            "--precision", "fp32", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "adapted the weights to the input in" in printed and "1 steps on 64x48" in printed
    assert "wrote 4 frames to video" in printed
    assert read_provenance(out)["options"]["adapt"]["crop"] == 64
    assert main(args + ["--resume"]) == 0
    assert "adapted" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, says", [
    (["--adapt", "-1"], "--adapt must be 0 (off) or more steps, got -1"),
    (["--adapt", "2", "--adapt-crop", "32"], "--adapt-crop must be at least 64 pixels"),
    (["--adapt", "2", "--backend", "onnxruntime"], "does not run with --backend onnxruntime"),
    (["--adapt", "2", "--precision", "int8"], "does not run with --precision int8"),
])
def test_bad_adapt_options_are_one_line_errors(tmp_path, capsys, flags, says):
    src = make_video(tmp_path / "in.mp4", smooth_frames(3, 32, 48))
    rc = main(["deblur", str(src), "-o", str(tmp_path / "out.mp4"), *flags, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and says in err
    assert not (tmp_path / "out.mp4").exists()


def test_adapt_refuses_one_image_and_a_clip_under_three_frames(tmp_path, capsys, model,
                                                              monkeypatch):
    use_model_in_cli(monkeypatch, model)
    for i, frame in enumerate(smooth_frames(2, 32, 48)):
        write_image(tmp_path / "two" / f"{i}.png", frame)
    one = tmp_path / "two" / "0.png"
    assert main(["deblur", str(one), "-o", str(tmp_path / "o.png"), "--adapt", "2"]) == 2
    assert "not one image" in capsys.readouterr().err
    assert main(["deblur", str(tmp_path / "two"), "-o", str(tmp_path / "o"), "--adapt", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 3 frames" in err


def test_the_measurement_script_takes_dev_clips_only_and_tabulates_them():
    script = import_reference("adapt_eval")
    definition = json.loads(script.DEFINITION.read_text())
    assert {c["split"] for c in script.dev_clips(definition, None)} == {"dev"}
    test_clip = next(c["name"] for c in definition["clips"] if c["split"] == "test")
    with pytest.raises(SystemExit, match="the test split is never scored"):
        script.dev_clips(definition, [test_clip])
    assert script.parse_steps("200,0,50") == [0, 50, 200]
    with pytest.raises(SystemExit):
        script.parse_steps("-1")
    scores = {"psnr": 30.0, "moving_psnr": 25.0}
    row = {"blurry": scores, "unsharp": scores, "flowdeblur": scores, "reblur": 0.01,
           "reblur_identity": 0.02, "adapt_seconds": 3.0}
    lines = script.table({"clips": {"a": {"0": row, "2": row}}}, [0, 2]).splitlines()
    assert lines[0] == "| clip | blurry | unsharp | 0 steps | 2 steps |"
    assert lines[-1] == "| **dev mean** | " + " | ".join(["30.00 / 25.00"] * 4) + " |"
