"""Deblurring with a trained network: one pair, or a stream of frames.

- :func:`deblur_image_pair` deblurs one frame given its neighbour.
- :func:`deblur_frames` streams a sequence (pairing in :mod:`.stream`: frame t with t+1, the
  last frame with t-1, a single frame with itself). Only a sliding window of frames is held,
  however long the video.

Files to files (:func:`~.files.deblur_video`) build on these in :mod:`.files`.

Device, precision and the fast path come from one :class:`~flowdeblur.runtime.Runtime`
(``"auto"``: bf16 on CUDA and on CPUs with native bf16, else fp32; on CUDA a stream's fixed
frame shape is captured once as a CUDA graph). Outputs are float32 whatever the precision.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import OptionError, UserError
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..runtime.backends import prepare_forward
from .ensemble import check_ensemble, self_ensemble
from .forward import Deblurred, Forward, run_network
from .scene_cuts import is_scene_cut
from .stream import FrameTriple, as_frame, as_given, flow_as_given, frame_triples
from .tiling import check_tiling, deblur_tiles

__all__ = ["deblur_frames", "deblur_image_pair"]


# ----------------------------------------------------------------------------- shared steps


def _runtime(runtime: Runtime | None, device: str | torch.device, precision: str) -> Runtime:
    """``runtime`` if given (then ``device`` and ``precision`` must be left at "auto")."""
    if runtime is None:
        return Runtime.resolve(device, precision)
    if (device, precision) != ("auto", "auto"):
        raise ValueError("pass either runtime or device/precision, not both")
    return runtime


def check_batch(batch: int) -> None:
    """OptionError unless ``batch`` (pairs or tiles per network call) is at least 1."""
    if batch < 1:
        raise OptionError("batch", f"{{option}} must be at least 1, got {batch}")


def check_flow_wanted(model: FlowDeblurNet, want_flow: bool) -> None:
    if want_flow and model.flownet is None:
        raise UserError(f"variant {model.variant!r} has no flow network, so no flow to save")


def _deblur_batch(
    forward: Forward,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None,
    *,
    tile: int | None,
    overlap: int | None,
    batch: int,
    want_flow: bool,
) -> Deblurred:
    """(N, 3, H, W) frames on the runtime's device -> :class:`Deblurred`, whole or in tiles."""
    if tile is None:
        return run_network(forward, frame_t, frame_next, frame_prev, want_flow=want_flow)
    return deblur_tiles(forward, frame_t, frame_next, frame_prev, tile=tile, overlap=overlap,
                        batch=batch, want_flow=want_flow)


# ----------------------------------------------------------------------------- one pair


def deblur_image_pair(
    model: FlowDeblurNet,
    frame_t: torch.Tensor | np.ndarray,
    frame_next: torch.Tensor | np.ndarray | None = None,
    *,
    frame_prev: torch.Tensor | np.ndarray | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
    runtime: Runtime | None = None,
    ensemble: int = 1,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``frame_t`` given its neighbour ``frame_next`` (t+1, or t-1 for a last frame).

    ``frame_next`` may be omitted: the frame is then paired with itself (no flow guidance).
    Moves ``model`` to the device and puts it in eval mode; runs without gradients. A single
    call runs eager and in NCHW whatever the runtime says: one pair amortises no weight copy
    or graph capture. The result has the form of ``frame_t``: tensors give tensors, an
    (H, W, 3) NumPy frame gives an (H, W, 3) array of its dtype (and an (H, W, 2) float32 flow).

    Args:
        frame_t, frame_next, frame_prev: (3, H, W) or (N, 3, H, W) floats in [0, 1], any H, W;
            or (H, W, 3) NumPy arrays (uint8, uint16, or float in [0, 1]).
        device, precision: see :meth:`flowdeblur.runtime.Runtime.resolve`; or pass a resolved
            ``runtime`` instead.
        tile: deblur in tiles of this size (see :func:`~.tiling.deblur_tiled`); None: whole.
        ensemble: average the outputs of this many flipped/transposed copies (1, 2, 4 or 8;
            :mod:`.ensemble`), each costing one forward.
    Returns:
        (3, H, W) or (N, 3, H, W) float32 in [0, 1] on ``frame_t``'s device (and with
        ``return_flow``, the flow t -> neighbour (2, H, W) or (N, 2, H, W) in pixels); NumPy
        as said above for NumPy frames.
    """
    if isinstance(frame_t, np.ndarray):
        given = frame_t
        frames = [as_frame(0, f) if isinstance(f, np.ndarray) else f
                  for f in (frame_t, frame_next, frame_prev)]
        result = deblur_image_pair(
            model, *frames[:2], frame_prev=frames[2], device=device, precision=precision,
            tile=tile, tile_overlap=tile_overlap, return_flow=return_flow, runtime=runtime,
            ensemble=ensemble)
        if return_flow:
            return as_given(result[0], given), flow_as_given(result[1], given)
        return as_given(result, given)
    tile_overlap = check_tiling(tile, tile_overlap)
    check_ensemble(ensemble)
    runtime = _runtime(runtime, device, precision)
    runtime = dataclasses.replace(runtime, mode="eager", channels_last=False)
    check_flow_wanted(model, return_flow)
    if model.in_frames >= 2 and frame_next is None:
        frame_next = frame_t
    if model.in_frames == 3 and frame_prev is None:
        frame_prev = frame_next
    single = frame_t.dim() == 3

    def prep(x: torch.Tensor | None, keep: bool) -> torch.Tensor | None:
        if x is None or not keep:
            return None
        if not x.is_floating_point():  # a uint8 frame would silently read as 0..255
            raise ValueError(f"frames must be float tensors in [0, 1], got dtype {x.dtype}")
        x = x.unsqueeze(0) if x.dim() == 3 else x
        return x.to(runtime.device, torch.float32)

    frames = (prep(frame_t, True), prep(frame_next, model.in_frames >= 2),
              prep(frame_prev, model.in_frames == 3))
    forward = self_ensemble(prepare_forward(runtime, model), ensemble)
    out = _deblur_batch(forward, *frames, tile=tile, overlap=tile_overlap,
                        batch=1, want_flow=return_flow)
    image = out.image.to(frame_t.device)
    flow = out.flow.to(frame_t.device) if out.flow is not None else None
    if single:
        image = image[0]
        flow = flow[0] if flow is not None else None
    return (image, flow) if return_flow else image


# ----------------------------------------------------------------------------- streams


def deblur_frames(
    model: FlowDeblurNet,
    frames: Iterable[torch.Tensor | np.ndarray],
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch: int = 1,
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
    runtime: Runtime | None = None,
    scene_cuts: bool = True,
    ensemble: int = 1,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deblur every frame of a sequence, lazily: a generator over the deblurred frames.

    Frame t is paired with t+1; the last frame with t-1; a one-frame input with itself (with a
    warning: the flow guidance is then off). 'bidirectional' models also get t-1 (mirrored at
    the ends); 'single_frame' ones see frame t only. Holds at most ``batch + 2`` input frames,
    so memory stays bounded however long the input is. Runs through ``runtime.prepare(model)``
    (resolved from ``device`` and ``precision`` unless given), without gradients; an exported
    model (:class:`~flowdeblur.runtime.backends.ExportedNetwork`) runs in its own runtime
    instead. The outputs
    have the form of the inputs: tensors give tensors, NumPy frames give NumPy frames.

    Args:
        frames: iterable of (3, H, W) float tensors in [0, 1] or (H, W, 3) NumPy arrays
            (uint8, uint16, or float in [0, 1]; see ``stream.ACCEPTED_FRAMES``), one size.
        batch: pairs (or, with ``tile``, tiles) per network call.
        tile, tile_overlap: see :func:`~.tiling.deblur_tiled`; None deblurs whole frames.
        return_flow: also yield the estimated flow t -> neighbour, (2, H, W) in pixels.
        scene_cuts: re-pair a frame whose neighbour is from another shot (docs/DESIGN.md,
            "Frame pairing"; whole frames of two-frame variants, not tiles).
        ensemble: average the outputs of this many flipped/transposed copies of each frame
            (1, 2, 4 or 8; :mod:`.ensemble`): sharper, and that many times slower.
        start, stop: deblur frames ``start`` .. ``stop - 1`` of a longer stream (a chunk),
            given ``frames`` from frame ``start - 1`` to frame ``stop``, with the pairing of
            the whole stream (:func:`~.stream.frame_triples`). Calls group ``batch`` frames
            from ``start``: with ``start`` a multiple of ``batch``, each call holds the frames
            it holds when the whole stream is deblurred.
    Yields:
        (3, H, W) float32 in [0, 1] on the input frame's device, one per input frame, in
        order (or ``(image, flow)`` tuples with ``return_flow``); for NumPy frames, (H, W, 3)
        arrays of the input's dtype (integers over their full range, floats in [0, 1]) and
        (H, W, 2) float32 flows.
    """
    check_batch(batch)
    tile_overlap = check_tiling(tile, tile_overlap)
    check_ensemble(ensemble)
    runtime = _runtime(runtime, device, precision)
    check_flow_wanted(model, return_flow)
    forward = self_ensemble(prepare_forward(runtime, model), ensemble)

    def deblur(given: Iterable[torch.Tensor | np.ndarray]) -> Iterator:
        return _deblur_stream(
            forward, frame_triples(given, start=start, stop=stop), device=runtime.device,
            in_frames=model.in_frames,
            batch=batch, tile=tile, overlap=tile_overlap, want_flow=return_flow,
            scene_cuts=scene_cuts)

    return _returned_as_given(frames, deblur)


def _returned_as_given(frames: Iterable[torch.Tensor | np.ndarray],
                       deblur: Callable[[Iterable], Iterator]) -> Iterator:
    """``deblur(frames)``'s outputs in the form the frames were given (:func:`.stream.as_given`),
    judged by the first frame; lazy, like ``deblur`` itself."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    for item in deblur(itertools.chain([first], frames)):
        if isinstance(item, tuple):
            yield as_given(item[0], first), flow_as_given(item[1], first)
        else:
            yield as_given(item, first)


def _groups(triples: Iterator[FrameTriple], size: int) -> Iterator[list[FrameTriple]]:
    group: list[FrameTriple] = []
    for triple in triples:
        group.append(triple)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _deblur_stream(
    forward: Forward,
    triples: Iterator[FrameTriple],
    *,
    device: torch.device,
    in_frames: int,
    batch: int,
    tile: int | None,
    overlap: int | None,
    want_flow: bool,
    scene_cuts: bool,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    # With tiles, ``batch`` counts tiles of one frame, so frames go one at a time.
    for group in _groups(triples, 1 if tile is not None else batch):
        home = group[0].frame_t.device

        def stack(frames: list[torch.Tensor], keep: bool = True) -> torch.Tensor | None:
            return torch.stack(frames).to(device, torch.float32) if keep else None

        frame_t = stack([g.frame_t for g in group])
        out = _deblur_batch(
            forward, frame_t,
            stack([g.frame_next for g in group], in_frames >= 2),
            stack([g.frame_prev for g in group], in_frames == 3),
            tile=tile, overlap=overlap, batch=batch, want_flow=want_flow,
        )
        if scene_cuts and in_frames == 2 and tile is None:
            out = _repair_scene_cuts(forward, group, frame_t, out, device, want_flow)
        images = out.image.to(home)
        flows = out.flow.to(home) if out.flow is not None else None
        for i in range(len(group)):
            yield (images[i], flows[i]) if want_flow else images[i]


def _repair_scene_cuts(forward: Forward, group: list[FrameTriple], frame_t: torch.Tensor,
                       out: Deblurred, device: torch.device, want_flow: bool) -> Deblurred:
    """Deblur again the frames of ``group`` whose paired neighbour is from another shot
    (:func:`~.scene_cuts.is_scene_cut` on the flow the network just estimated): with the other
    neighbour when that one is of the same shot, else with the frame itself.

    frame_t: (N, 3, H, W) on ``device``, the group's frames as the network saw them.
    """
    cut = is_scene_cut(frame_t, torch.stack([g.frame_next for g in group]).to(frame_t),
                       out.flow_quarter).tolist()
    for i, g in enumerate(group):
        if not cut[i]:
            continue
        one = frame_t[i:i + 1]
        redo = None
        if g.frame_prev is not g.frame_next:  # the other neighbour exists: try it
            other = g.frame_prev[None].to(device, torch.float32)
            redo = run_network(forward, one, other, None, want_flow=want_flow)
            if bool(is_scene_cut(one, other, redo.flow_quarter)[0]):
                redo = None
        if redo is None:  # a shot of one frame, or both neighbours across cuts
            redo = run_network(forward, one, one, None, want_flow=want_flow)
        out.image[i] = redo.image[0]
        if want_flow:
            out.flow[i] = redo.flow[0]
    return out
