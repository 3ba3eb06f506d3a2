"""How much of flowdeblur's gain a video output keeps, by H.264 rate control, beside PNGs.

For each dev clip of a real-clip definition (``references/real_clips.json`` by default) and one
720p synthetic clip (the demo's engine, seed 0), the shipped weights deblur the blurry frames
in fp32 and the result is quantised to 8 bits: that is what a PNG output holds. The same
frames are then encoded as ``flowdeblur deblur`` encodes a video (``flowdeblur.media.
VideoWriter``, H.264, BT.709 limited range), decoded with the package's reader and scored
against the sharp frames, once per rate-control setting. Per setting: the mean PSNR gain over
the blurry input of the PNG and of the video outputs, the share of the PNG gain the video
keeps, and the size in bits per pixel.

    python references/rate_control.py [--definition references/real_clips_motion.json]
        [--json OUT] [--no-720p]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import real_clips
import torch

import flowdeblur
from flowdeblur.data.synthetic import make_clip
from flowdeblur.evaluation.metrics import psnr, quantize_8bit
from flowdeblur.media import VideoReader, VideoWriter
from flowdeblur.media.atomic import atomic_write_text

#: The settings measured: name -> VideoWriter arguments ("crf 0, yuv444p10le" is what `deblur`
#: writes for an 8-bit input by default).
SETTINGS = {
    "crf 18": {"crf": 18},
    "crf 14": {"crf": 14},
    "crf 10": {"crf": 10},
    "crf 8": {"crf": 8},
    "crf 6": {"crf": 6},
    "crf 4": {"crf": 4},
    "crf 18, preset slow": {"crf": 18, "options": {"preset": "slow"}},
    "crf 18, tune film": {"crf": 18, "options": {"tune": "film"}},
    "crf 14, yuv444p": {"crf": 14, "pix_fmt": "yuv444p"},
    "crf 10, yuv444p": {"crf": 10, "pix_fmt": "yuv444p"},
    "crf 8, yuv444p": {"crf": 8, "pix_fmt": "yuv444p"},
    "crf 6, yuv444p": {"crf": 6, "pix_fmt": "yuv444p"},
    "crf 4, yuv444p": {"crf": 4, "pix_fmt": "yuv444p"},
    "crf 2, yuv444p": {"crf": 2, "pix_fmt": "yuv444p"},
    "crf 0, yuv444p": {"crf": 0, "pix_fmt": "yuv444p"},
    "crf 6, yuv444p10le": {"crf": 6, "pix_fmt": "yuv444p10le"},
    "crf 2, yuv444p10le": {"crf": 2, "pix_fmt": "yuv444p10le"},
    "crf 0, yuv444p10le": {"crf": 0, "pix_fmt": "yuv444p10le"},
    "lossless RGB (libx264rgb crf 0)": {"crf": 0, "codec": "libx264rgb"},
}


def mean_psnr(frames: torch.Tensor, sharp: torch.Tensor) -> float:
    """Mean over frames of the RGB PSNR (dB) of (N, 3, H, W) frames in [0, 1]."""
    return float(np.mean([psnr(f[None], s[None]) for f, s in zip(frames, sharp)]))


def encoded(frames: torch.Tensor, folder: Path, setting: dict) -> tuple[torch.Tensor, int]:
    """(N, 3, H, W) frames after an H.264 round trip with ``setting``, and the file's bytes."""
    path = folder / "clip.mp4"
    with VideoWriter(path, fps=25, width=frames.shape[-1], height=frames.shape[-2],
                     **setting) as writer:
        for frame in frames:
            writer.write(frame)
    with VideoReader(path) as reader:
        decoded = torch.stack(list(reader))
    return decoded[..., : frames.shape[-2], : frames.shape[-1]], path.stat().st_size


def score_clip(name: str, blurry: torch.Tensor, sharp: torch.Tensor, model) -> dict:
    """The blurry, PNG and per-setting video PSNR of one clip, with the video sizes."""
    t0 = time.perf_counter()
    out = flowdeblur.deblur_frames(model, list(blurry), device="cpu", precision="fp32")
    png = quantize_8bit(torch.stack(list(out)))
    row = {"name": name, "size": list(blurry.shape[-2:]), "frames": len(blurry),
           "seconds": time.perf_counter() - t0, "blurry": mean_psnr(blurry, sharp),
           "png": mean_psnr(png, sharp), "video": {}}
    pixels = blurry.shape[0] * blurry.shape[-2] * blurry.shape[-1]
    with tempfile.TemporaryDirectory() as tmp:
        for label, setting in SETTINGS.items():
            video, size = encoded(png, Path(tmp), setting)
            row["video"][label] = {"psnr": mean_psnr(video, sharp), "bpp": 8 * size / pixels}
    print(f"{name}: blurry {row['blurry']:.2f}, png {row['png']:.2f}, "
          + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in row["video"].items()), flush=True)
    return row


def dev_clips(definition: Path) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, blurry, sharp) of the dev clips of ``definition``, as (N, 3, H, W) in [0, 1]."""
    real_clips.require_opencv()
    spec = real_clips.load_definition(definition)
    clips = [c for c in spec["clips"] if c["split"] == "dev"]
    built = real_clips.built_clips(spec, clips, real_clips.DEFAULT_CACHE)
    return [(name, real_clips.to_tensor(b.blurry), real_clips.to_tensor(b.sharp))
            for name, b in built.items()]


def synthetic_720p() -> tuple[str, torch.Tensor, torch.Tensor]:
    clip = make_clip(6, (720, 1280), seed=0)
    return "synthetic 1280x720", quantize_8bit(clip["blur"]), quantize_8bit(clip["sharp"])


def summary(rows: list[dict]) -> dict:
    """Per setting: mean PNG gain, mean video gain, their ratio, mean bits per pixel."""
    png_gain = float(np.mean([r["png"] - r["blurry"] for r in rows]))
    table = {}
    for label in SETTINGS:
        gain = float(np.mean([r["video"][label]["psnr"] - r["blurry"] for r in rows]))
        table[label] = {"png_gain": png_gain, "video_gain": gain,
                        "kept": gain / png_gain if png_gain else float("nan"),
                        "bpp": float(np.mean([r["video"][label]["bpp"] for r in rows]))}
    return table


def markdown(table: dict) -> str:
    lines = ["| setting | PNG gain (dB) | video gain (dB) | kept | bits/pixel |",
             "|---|---|---|---|---|"]
    for label, t in table.items():
        lines.append(f"| {label} | {t['png_gain']:+.2f} | {t['video_gain']:+.2f} | "
                     f"{100 * t['kept']:.0f}% | {t['bpp']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--definition", type=Path, default=real_clips.DEFINITION)
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--no-720p", dest="hd", action="store_false",
                        help="leave out the 720p synthetic clip")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = flowdeblur.load_pretrained()
    clips = dev_clips(args.definition)
    if args.hd:
        clips.append(synthetic_720p())
    rows = [score_clip(name, blurry, sharp, model) for name, blurry, sharp in clips]
    report = {"definition": args.definition.name, "clips": rows,
              "real": summary([r for r in rows if not r["name"].startswith("synthetic")]),
              "all": summary(rows)}
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    print("\nreal dev clips\n" + markdown(report["real"]))
    print("\nreal dev clips and the 720p clip\n" + markdown(report["all"]))


if __name__ == "__main__":
    main()
