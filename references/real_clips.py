"""Real-footage dev and test clips, blurred as REDS was, and the scores of weights on them.

The clips come from real camera footage that Debian packages ship (``opencv-doc``,
``visp-images-data``, ``python3-imageio``), fetched with ``apt-get download`` and unpacked with
``dpkg -x`` into a cache folder outside the repository (``--cache``, default
``$FLOWDEBLUR_REAL_CLIPS`` or ``~/.cache/flowdeblur/real_clips``). Every source file is checked
against the sha256 recorded in ``benchmarks/real_clips.json``, and the script refuses to go on
when one differs.

Blur, per clip (factors in the JSON): the frame rate is raised by optical-flow interpolation
(OpenCV's DIS flow), ``span`` frame intervals around an original frame are averaged in linear
light (sRGB curve) and the mean is re-encoded to 8-bit sRGB; the sharp target is that original
frame. Grey sources are replicated to three channels. The DEV clips are for choosing between
training recipes; the TEST clips are never used for a choice.

Scores, per clip and as the mean of the clip means over dev and over test: PSNR / SSIM (RGB,
``flowdeblur.evaluation.metrics``) of the blurry input, of unsharp masking with (sigma, amount)
tuned as ``benchmarks/heldout_synthetic.py`` tunes it (on training scenes of
``configs/cpu_shipped.yaml``, never on these clips), and of flowdeblur in fp32 with its outputs
quantised to 8 bits. Frame t is paired with t+1 and the last frame with t-1
(``flowdeblur.deblur_frames``).

Needs ``opencv-python-headless`` (a benchmark-only dependency: ``pip install
opencv-python-headless``) and, for the first build, ``apt-get`` and ``dpkg``.

    python benchmarks/real_clips.py [--weights FILE] [--split dev|test|all] [--json OUT]
    python benchmarks/real_clips.py --build-only          # fetch, verify and blur; no scoring
    python benchmarks/real_clips.py --look DIR            # deblur a frame of the look-only clips
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import flowdeblur
from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
from flowdeblur.evaluation.baselines import tune_unsharp_mask, unsharp_mask
from flowdeblur.evaluation.metrics import psnr, quantize_8bit, ssim
from flowdeblur.media.atomic import file_sha256
from flowdeblur.training.config import load_config
from flowdeblur.weights import PRETRAINED

try:
    import cv2
except ImportError:  # the benchmark-only dependency; say how to get it
    sys.exit("benchmarks/real_clips.py needs OpenCV: pip install opencv-python-headless")

DEFINITION = Path(__file__).with_name("real_clips.json")
DEFAULT_CACHE = Path(
    os.environ.get("FLOWDEBLUR_REAL_CLIPS", Path.home() / ".cache" / "flowdeblur" / "real_clips")
)
#: Bumped whenever the blur synthesis code changes, so cached clips are rebuilt.
SYNTHESIS_VERSION = 1


class DefinitionError(SystemExit):
    """A refusal: the sources or the definition are not what the benchmark was recorded with."""


# ----------------------------------------------------------------------------- sources


def deb_version(deb: Path) -> str:
    """The Version field of a .deb (``dpkg-deb -f``)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def download_deb(package: str, version: str, debs: Path) -> Path:
    """The .deb of ``package`` at ``version`` in ``debs``, fetched with apt-get when missing."""
    debs.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob(f"{package}_*.deb")):
        if deb_version(deb) == version:
            return deb
    result = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs,
                            capture_output=True, text=True)
    found = [d for d in sorted(debs.glob(f"{package}_*.deb")) if deb_version(d) == version]
    if result.returncode != 0 or not found:
        raise DefinitionError(
            f"could not fetch {package}={version} with apt-get download ({result.stderr.strip()})."
            f" Put that .deb into {debs} by hand, or run `apt-get update` first."
        )
    return found[0]


def unpacked_package(package: str, version: str, cache: Path) -> Path:
    """The root folder of ``package``'s unpacked files (``dpkg -x``), unpacking when needed."""
    root = cache / "packages" / f"{package}_{version}"
    done = root / ".unpacked"
    if not done.is_file():
        deb = download_deb(package, version, cache / "debs")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        done.write_text(file_sha256(deb) + "\n")
    return root


def clip_source_files(clip: dict) -> list[str]:
    """Paths (inside the package) of every source file a clip (or look-only clip) reads."""
    if "video" in clip:
        return [clip["video"]]
    lo, hi = frame_range(clip)
    return [clip["images"].format(i) for i in range(lo, hi + 1)]


def verify_sources(clip: dict, package: dict, root: Path) -> None:
    """Refuse (DefinitionError) unless every source file of ``clip`` has its recorded sha256."""
    for rel in clip_source_files(clip):
        want = package["files"].get(rel)
        path = root / rel
        if want is None:
            raise DefinitionError(f"{DEFINITION.name} records no sha256 for {rel} ({clip['name']})")
        if not path.is_file():
            raise DefinitionError(f"{clip['package']} {package['version']} lacks {rel}")
        got = file_sha256(path)
        if got != want:
            raise DefinitionError(
                f"sha256 mismatch for {rel} of {clip['package']} {package['version']}: "
                f"expected {want}, found {got}. The clips would not be the recorded ones; "
                "refusing to use them."
            )


# ----------------------------------------------------------------------------- frames


def frame_range(clip: dict) -> tuple[int, int]:
    """(first, last) original frame indices a clip's blur windows touch, inclusive."""
    half = clip["span"] / 2
    last_centre = clip["first_centre"] + (clip["frames"] - 1) * clip["stride"]
    return math.floor(clip["first_centre"] - half), math.ceil(last_centre + half)


def read_video(path: Path, lo: int, hi: int) -> list[np.ndarray]:
    """Frames lo..hi (inclusive) of a video file as (H, W, 3) uint8 RGB arrays."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while index <= hi:
        ok, bgr = capture.read()
        if not ok:
            raise DefinitionError(f"{path} ends at frame {index}, before frame {hi}")
        if index >= lo:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return frames


def read_image(path: Path) -> np.ndarray:
    """One 8-bit image file as (H, W, 3) uint8 RGB; grey images are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise DefinitionError(f"{path} is not an 8-bit image OpenCV can read")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def source_frames(clip: dict, root: Path) -> list[np.ndarray]:
    """The original frames ``frame_range(clip)`` of a clip, (H, W, 3) uint8 RGB each."""
    lo, hi = frame_range(clip)
    if "video" in clip:
        return read_video(root / clip["video"], lo, hi)
    return [read_image(root / rel) for rel in clip_source_files(clip)]


# ----------------------------------------------------------------------------- blur synthesis


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> float32 linear light in [0, 1] (IEC 61966-2-1 curve)."""
    c = image.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """(..., 3) float linear light -> uint8 sRGB, rounding halves up as ``quantize_8bit``."""
    x = np.clip(linear, 0.0, 1.0)
    c = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.floor(np.clip(c, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from frame a to frame b ((H, W, 3) uint8) -> (H, W, 2) float32 pixels."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey_a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    grey_b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return dis.calc(grey_a, grey_b, None)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear; (H, W, 3) float32 and (H, W, 2) -> (H, W, 3)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate(i0: np.ndarray, i1: np.ndarray, f01: np.ndarray, f10: np.ndarray,
                a: float) -> np.ndarray:
    """The frame at time a in (0, 1) between linear-light frames i0 and i1, (H, W, 3) float32.

    The flows from time a to each end are the linear combinations of Jiang et al. (2018,
    Super SloMo, Eq. 4), which treat the motion as locally constant in time; each end is
    warped there and the two are blended by temporal distance.
    """
    f_a0 = -(1 - a) * a * f01 + a * a * f10
    f_a1 = (1 - a) * (1 - a) * f01 - a * (1 - a) * f10
    return (1 - a) * backward_warp(i0, f_a0) + a * backward_warp(i1, f_a1)


def window_samples(centre: int, span: int, interp: int) -> list[tuple[float, float]]:
    """(time, weight) samples of one exposure: ``centre +- span / 2`` every ``1 / interp``.

    Trapezoid weights (the end samples weigh half) integrate a box exposure exactly when the
    signal is piecewise linear between samples; weights sum to 1.
    """
    half = span * interp // 2
    steps = range(-half, half + 1)
    weights = [0.5 if abs(j) == half else 1.0 for j in steps]
    total = sum(weights)
    return [(centre + j / interp, w / total) for j, w in zip(steps, weights)]


class FlowCache:
    """Linear-light frames and their DIS flows per frame interval, computed once each."""

    def __init__(self, frames: list[np.ndarray], first_index: int):
        self.frames = frames
        self.linear = [srgb_to_linear(f) for f in frames]
        self.first = first_index
        self.flows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def at(self, time_: float) -> np.ndarray:
        """The linear-light frame at (fractional) original time ``time_``, (H, W, 3) float32."""
        k = math.floor(time_ + 1e-9)
        a = time_ - k
        i = k - self.first
        if a < 1e-6:
            return self.linear[i]
        if i not in self.flows:
            self.flows[i] = (dis_flow(self.frames[i], self.frames[i + 1]),
                             dis_flow(self.frames[i + 1], self.frames[i]))
        f01, f10 = self.flows[i]
        return interpolate(self.linear[i], self.linear[i + 1], f01, f10, a)


def check_factors(clip: dict) -> None:
    """Refuse factors that cannot make the blur this script describes."""
    span, interp, stride = clip["span"], clip["interp"], clip["stride"]
    if (span * interp) % 2:
        raise DefinitionError(f"{clip['name']}: span * interp must be even to centre the window")
    if span > stride:
        raise DefinitionError(f"{clip['name']}: span {span} > stride {stride} means an exposure "
                              "longer than the frame interval")


def synthesise(clip: dict, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Blurry and sharp frames of a clip, each (N, h, w, 3) uint8 RGB after the crop.

    ``frames`` are the originals ``frame_range(clip)``, (H, W, 3) uint8.
    """
    check_factors(clip)
    lo, _ = frame_range(clip)
    cache = FlowCache(frames, lo)
    top, left, h, w = clip["crop"]
    blurry, sharp = [], []
    for n in range(clip["frames"]):
        centre = clip["first_centre"] + n * clip["stride"]
        mean = sum(wt * cache.at(t) for t, wt in window_samples(centre, clip["span"],
                                                                 clip["interp"]))
        blurry.append(linear_to_srgb8(mean)[top:top + h, left:left + w])
        sharp.append(frames[centre - lo][top:top + h, left:left + w])
    return np.stack(blurry), np.stack(sharp)


def clips_digest(blurry: np.ndarray, sharp: np.ndarray) -> str:
    """sha256 over the shapes and bytes of a built clip, to tell whether a rebuild matches."""
    digest = hashlib.sha256()
    for a in (blurry, sharp):
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- built clips


def build_key(clip: dict, tools: dict) -> str:
    """What a built clip depends on: its definition, the tool versions and this code's version."""
    key = {"clip": {k: v for k, v in clip.items() if k != "digest"}, "tools": tools,
           "synthesis": SYNTHESIS_VERSION, "installed": tool_versions()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save_clip(folder: Path, blurry: np.ndarray, sharp: np.ndarray, key: str) -> None:
    """Write (N, h, w, 3) uint8 blurry and sharp frames as PNGs, then the key (last = complete)."""
    for kind, frames in (("blurry", blurry), ("sharp", sharp)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / kind / f"{i:03d}.png")
    (folder / "key.txt").write_text(key + "\n")


def load_clip(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The (N, h, w, 3) uint8 blurry and sharp frames that :func:`save_clip` wrote."""
    def read(kind: str) -> np.ndarray:
        return np.stack([np.asarray(Image.open(folder / kind / f"{i:03d}.png").convert("RGB"))
                         for i in range(count)])
    return read("blurry"), read("sharp")


def tool_versions() -> dict[str, str]:
    """Installed versions of the packages the blur synthesis depends on."""
    return {name: importlib.metadata.version(name)
            for name in ("opencv-python-headless", "numpy")}


def warn_on_tools(tools: dict) -> None:
    """Say when OpenCV / numpy differ from the versions the definition was recorded with."""
    for name, have in tool_versions().items():
        want = tools.get(name)
        if want != have:
            print(f"note: {name} {have} here, the definition was recorded with {want}; "
                  "the blurred clips may differ slightly", file=sys.stderr)


def built_clip(clip: dict, definition: dict, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fetch, verify, blur and cache one clip -> (N, h, w, 3) uint8 blurry and sharp frames."""
    package = definition["packages"][clip["package"]]
    root = unpacked_package(clip["package"], package["version"], cache)
    verify_sources(clip, package, root)
    folder = cache / "clips" / clip["name"]
    key = build_key(clip, definition["tools"])
    key_file = folder / "key.txt"
    if key_file.is_file() and key_file.read_text().strip() == key:
        return load_clip(folder, clip["frames"])
    blurry, sharp = synthesise(clip, source_frames(clip, root))
    want = clip.get("digest")
    if want and clips_digest(blurry, sharp) != want:
        print(f"note: {clip['name']} built here differs from the recorded build (digest "
              f"{clips_digest(blurry, sharp)[:12]} vs {want[:12]}); scores may differ slightly "
              "from the recorded ones", file=sys.stderr)
    save_clip(folder, blurry, sharp, key)
    return blurry, sharp


def record(definition: dict, cache: Path) -> None:
    """Fill the definition's sha256 values and build digests from the sources in ``cache``.

    For editing the definition only: after this, the recorded values are whatever was fetched.
    """
    for name, package in definition["packages"].items():
        root = unpacked_package(name, package["version"], cache)
        package["deb_sha256"] = (root / ".unpacked").read_text().strip()
        package["files"] = {}
    for clip in definition["clips"] + definition.get("look", []):
        package = definition["packages"][clip["package"]]
        root = cache / "packages" / f"{clip['package']}_{package['version']}"
        for rel in clip_source_files(clip):
            package["files"][rel] = file_sha256(root / rel)
    for clip in definition["clips"]:
        clip.pop("digest", None)
        clip["digest"] = clips_digest(*built_clip(clip, definition, cache))
    definition["tools"].update(tool_versions())
    DEFINITION.write_text(json.dumps(definition, indent=1) + "\n")


# ----------------------------------------------------------------------------- scoring


def tuned_unsharp(config: str, samples: int = 64) -> tuple[float, float]:
    """(sigma, amount) tuned for PSNR on training scenes, as benchmarks/heldout_synthetic.py.

    The scenes are the first ``samples`` of the training stream of ``config`` (seed 0,
    128x128, its data.synthetic settings), so these clips never influence the choice.
    """
    settings = load_config(config).data.synthetic if config else {}
    scenes = SyntheticScenes(SceneConfig(**{**settings, "size": (128, 128)}), seed=0)
    pairs = []
    for _ in range(samples // 8):
        s = scenes.sample(8)
        pairs.append((s["frame_t"], s["sharp_t"]))
    sigma, amount, _ = tune_unsharp_mask(pairs)
    return sigma, amount


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


def mean_scores(output: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over frames of (N, 3, H, W) output and target."""
    return {"psnr": psnr(output, sharp).mean().item(), "ssim": ssim(output, sharp).mean().item()}


def deblur_clip(model, blurry: torch.Tensor, device: str, ensemble: int = 1) -> torch.Tensor:
    """flowdeblur's fp32 output for (N, 3, H, W) frames, quantised to 8 bits, same shape."""
    out = flowdeblur.deblur_frames(model, list(blurry), device=device, precision="fp32",
                                   ensemble=ensemble)
    return quantize_8bit(torch.stack([o.cpu() for o in out]))


def score_clip(model, blurry_u8: np.ndarray, sharp_u8: np.ndarray, unsharp: tuple[float, float],
               device: str, ensemble: int = 1) -> dict:
    """Scores of the blurry input, unsharp masking and flowdeblur on one clip."""
    blurry, sharp = to_tensor(blurry_u8), to_tensor(sharp_u8)
    t0 = time.perf_counter()
    restored = deblur_clip(model, blurry, device, ensemble)
    seconds = time.perf_counter() - t0
    return {
        "blurry": mean_scores(blurry, sharp),
        "unsharp": mean_scores(quantize_8bit(unsharp_mask(blurry, *unsharp)), sharp),
        "flowdeblur": mean_scores(restored, sharp),
        "seconds": seconds,
    }


def split_means(rows: dict[str, dict], clips: list[dict]) -> dict[str, dict]:
    """Per split: the mean over its clips of each method's clip-mean PSNR and SSIM."""
    means = {}
    for split in ("dev", "test"):
        names = [c["name"] for c in clips if c["split"] == split and c["name"] in rows]
        if not names:
            continue
        means[split] = {
            method: {m: float(np.mean([rows[n][method][m] for n in names]))
                     for m in ("psnr", "ssim")}
            for method in ("blurry", "unsharp", "flowdeblur")
        }
    return means


def markdown_table(rows: dict[str, dict], means: dict[str, dict], clips: list[dict]) -> str:
    """Per-clip and per-split rows: PSNR / SSIM of blurry, unsharp, flowdeblur, and the gain."""
    lines = ["| split | clip | frames | blurry PSNR | SSIM | unsharp PSNR | SSIM | "
             "flowdeblur PSNR | SSIM | gain (dB) |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]

    def cells(r: dict) -> str:
        gain = r["flowdeblur"]["psnr"] - r["blurry"]["psnr"]
        return " | ".join(f"{r[m]['psnr']:.2f} | {r[m]['ssim']:.4f}"
                          for m in ("blurry", "unsharp", "flowdeblur")) + f" | {gain:+.2f}"

    for split in ("dev", "test"):
        for c in clips:
            if c["split"] == split and c["name"] in rows:
                _, _, h, w = c["crop"]
                lines.append(f"| {split} | {c['name']} | {c['frames']} x {w}x{h} | "
                             f"{cells(rows[c['name']])} |")
        if split in means:
            lines.append(f"| **{split} mean** | | | {cells(means[split])} |")
    return "\n".join(lines)


def look(model, definition: dict, cache: Path, out_dir: Path, device: str) -> None:
    """Deblur one frame of each look-only clip (paired with the next) and save input | output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for clip in definition.get("look", []):
        package = definition["packages"][clip["package"]]
        root = unpacked_package(clip["package"], package["version"], cache)
        verify_sources(clip, package, root)
        pair = to_tensor(np.stack(read_video(root / clip["video"], clip["frame"],
                                             clip["frame"] + 1)))
        restored = deblur_clip(model, pair, device)[0]
        side = torch.cat([pair[0], restored], dim=-1)
        image = (side.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        Image.fromarray(image).save(out_dir / f"{clip['name']}_{clip['frame']}.png")
        print(f"wrote {out_dir / (clip['name'] + '_' + str(clip['frame']) + '.png')} "
              "(input | flowdeblur)")


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None,
                   help="weights file (flowdeblur.load_weights); default: the shipped weights")
    p.add_argument("--split", choices=("dev", "test", "all"), default="all")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"folder for packages and built clips (default {DEFAULT_CACHE})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="configs/cpu_shipped.yaml",
                   help="training config whose scenes tune unsharp masking")
    p.add_argument("--unsharp", nargs=2, type=float, metavar=("SIGMA", "AMOUNT"), default=None,
                   help="skip the tuning and use these unsharp-mask parameters")
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),
                   help="flowdeblur's self-ensemble size (flowdeblur deblur --ensemble)")
    p.add_argument("--json", default=None, help="write the scores here")
    p.add_argument("--build-only", action="store_true", help="fetch, verify and blur; no scores")
    p.add_argument("--look", type=Path, default=None,
                   help="also deblur a frame of each look-only clip into this folder")
    p.add_argument("--record", action="store_true",
                   help="(editing the definition only) rewrite its sha256 values and digests")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_grad_enabled(False)
    cv2.setNumThreads(1)  # one thread keeps DIS deterministic and leaves the CPU to others
    definition = json.loads(DEFINITION.read_text())
    if args.record:
        record(definition, args.cache)
        print(f"recorded sha256 values and digests into {DEFINITION}")
        return
    warn_on_tools(definition["tools"])
    clips = [c for c in definition["clips"] if args.split in ("all", c["split"])]
    built = {c["name"]: built_clip(c, definition, args.cache) for c in clips}
    if args.build_only:
        print(f"built {len(built)} clips under {args.cache / 'clips'}")
        return

    model = flowdeblur.load_weights(args.weights) if args.weights else flowdeblur.load_pretrained()
    unsharp = tuple(args.unsharp) if args.unsharp else tuned_unsharp(args.config)
    rows = {name: score_clip(model, b, s, unsharp, args.device, args.ensemble)
            for name, (b, s) in built.items()}
    means = split_means(rows, clips)
    weights = args.weights or str(PRETRAINED)
    print(f"weights {weights} (ensemble {args.ensemble}); unsharp mask sigma {unsharp[0]}, "
          f"amount {unsharp[1]}; "
          f"flowdeblur {sum(r['seconds'] for r in rows.values()):.0f} s on {args.device}")
    print(markdown_table(rows, means, clips))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"weights": weights, "weights_sha256": file_sha256(Path(weights)),
                       "ensemble": args.ensemble,
                       "unsharp": {"sigma": unsharp[0], "amount": unsharp[1]},
                       "clips": rows, "means": means}, f, indent=1)
    if args.look:
        look(model, definition, args.cache, args.look, args.device)


if __name__ == "__main__":
    main()
