"""What the page shows of a finished deblur: 8-bit stills, the side-by-side video, scores.

After :func:`flowdeblur.inference.deblur_video` has written the output (exactly what
``flowdeblur deblur`` writes), one pass over the input and the output as written (decoded
again, as a player would) makes, frame by frame:

- ``preview/input/NNNNNN.png`` and ``preview/output/NNNNNN.png``: 8-bit stills turned as a
  player shows them (browsers show neither 10-bit H.264 nor 4:4:4 reliably, so the page
  compares stills);
- the side-by-side video, input | output, upright, encoded with the output's options
  (:func:`flowdeblur.inference.outputs.open_output`, as ``deblur --side-by-side`` writes it);
  its right half is the output as decoded from the written file;
- PSNR and SSIM of input and output against the sharp frames, when the user gave them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ...errors import UserError
from ...evaluation.metrics import psnr, ssim
from ...inference.outputs import display_rotation, open_output, output_names
from ...media import FrameSource, is_video_path, rotate_for_display, write_image
from ...viz import side_by_side

#: Folders of a job's stills, under its folder.
PREVIEW_INPUT, PREVIEW_OUTPUT = "preview/input", "preview/output"


def preview_name(index: int) -> str:
    return f"{index:06d}.png"


def upright_frames(source: FrameSource) -> Iterator[tuple[torch.Tensor, int | None]]:
    """``source``'s frames turned as a player shows them, with their pts."""
    rotation = display_rotation(source)
    for item in source.iterate_with_pts():
        image = rotate_for_display(item.image, rotation) if rotation else item.image
        yield image, item.pts


def display_facts(source: FrameSource) -> dict:
    """Frames, size as displayed and frame rate of ``source``, for the page."""
    turned = display_rotation(source) % 180 == 90
    width, height = (source.height, source.width) if turned else (source.width, source.height)
    fps = source.fps
    return {"kind": source.kind, "frames": len(source), "width": width, "height": height,
            "fps": float(fps) if fps else None}


def check_sharp_matches(clip: dict, sharp: dict) -> None:
    """UserError unless the sharp frames (``sharp``, :func:`display_facts`) fit the clip's."""
    if (sharp["frames"], sharp["width"], sharp["height"]) != (
            clip["frames"], clip["width"], clip["height"]):
        raise UserError(
            f"the sharp frames ({sharp['frames']} of {sharp['width']}x{sharp['height']}) do "
            f"not match the clip ({clip['frames']} of {clip['width']}x{clip['height']}): PSNR "
            "and SSIM need one sharp frame per frame, of the same size")


def _output_source(output: Path, source: FrameSource) -> FrameSource:
    """The written output as frames: the video, or the folder's PNGs in the input's order."""
    if is_video_path(output):
        return FrameSource(output)
    return FrameSource([output / n for n in output_names(source, len(source))])


def _scores(output: torch.Tensor, image: torch.Tensor, sharp: torch.Tensor) -> dict:
    pair = torch.stack([image, output])
    target = sharp.unsqueeze(0).expand_as(pair)
    p, s = psnr(pair, target), ssim(pair, target)
    return {"psnr_input": float(p[0]), "psnr_output": float(p[1]),
            "ssim_input": float(s[0]), "ssim_output": float(s[1])}


def _mean(per_frame: list[dict]) -> dict:
    keys = per_frame[0].keys()
    finite = {k: [f[k] for f in per_frame if f[k] != float("inf")] for k in keys}
    return {k: (sum(v) / len(v) if v else None) for k, v in finite.items()}


def finish(
    folder: Path,
    inputs: list[Path],
    output: Path,
    side_by_side_path: Path,
    *,
    encoding: dict,
    sharp: list[Path] | None,
    step: Callable[[int, int], None],
) -> dict:
    """Stills, the side-by-side video and scores of the job in ``folder`` (see the module
    docstring). ``encoding``: the output's ``crf``, ``chroma``, ``lossless``, ``video_codec``
    and ``fps``. ``step(done, total)`` is called after each frame (an exception it raises
    stops the pass; the side-by-side video is then not written). Returns what the page
    shows: frame count, still names, the side-by-side file, scores per frame and their mean."""
    source = FrameSource(inputs[0] if len(inputs) == 1 else inputs)
    written = _output_source(output, source)
    truth = upright_frames(FrameSource(sharp[0] if len(sharp) == 1 else sharp)) if sharp else None
    total = len(source)
    sink = open_output(side_by_side_path, source, audio_from=inputs[0], side_by_side=True,
                       **encoding)
    per_frame: list[dict] = []
    done = 0
    with sink:
        for (image, pts), (result, _) in zip(upright_frames(source), upright_frames(written)):
            name = preview_name(done)
            write_image(folder / PREVIEW_INPUT / name, image)
            write_image(folder / PREVIEW_OUTPUT / name, result)
            sink.write(done, side_by_side(image, result), pts=pts)
            if truth is not None:
                target = next(truth, (None, None))[0]
                if target is None or target.shape != image.shape:
                    raise UserError("the sharp frames do not match the clip's frames")
                per_frame.append(_scores(result, image, target))
            done += 1
            step(done, total)
    metrics = {"per_frame": per_frame, "mean": _mean(per_frame)} if per_frame else None
    return {"frames": done, "previews": [preview_name(i) for i in range(done)],
            "flow_names": output_names(source, done), "metrics": metrics}


def zip_folder(folder: Path, target: Path) -> Path:
    """The files of ``folder`` (hidden ones left out) in the zip ``target`` (stored, as PNGs
    do not compress further)."""
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                z.write(path, f"{folder.name}/{path.name}")
    tmp.replace(target)
    return target
