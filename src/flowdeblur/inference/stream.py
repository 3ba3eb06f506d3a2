"""A stream of frames as the network reads it: each frame with the neighbours it is paired with.

The pairing is :func:`flowdeblur.data.pairing.neighbours` (docs/DESIGN.md, "Frame pairing"),
applied to a stream of unknown length: looking one frame ahead is enough to know whether
frame t is the last, so only three frames are held however long the video is.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..data.pairing import neighbours
from ..errors import UserError
from ..media.pixels import quantize, to_tensor

#: What a frame of :func:`frame_triples` (and so of ``deblur_frames``) may be.
ACCEPTED_FRAMES = ("a (3, H, W) float tensor in [0, 1], or an (H, W, 3) NumPy array: uint8 "
                   "(0-255), uint16 (0-65535) or float in [0, 1]")

SINGLE_FRAME_WARNING = (
    "the input has a single frame: it is paired with itself, so there is no motion to see "
    "and the flow guidance is off (paper Fig. 6); expect a weaker result than on video"
)


@dataclass(frozen=True)
class FrameTriple:
    """Frame t of a stream and its neighbours, each (3, H, W) float in [0, 1].

    frame_next: the frame paired with t (t+1, or t-1 for the last frame, or t itself for a
        one-frame stream): the model's ``frame_next`` argument.
    frame_prev: the other neighbour (t-1, or t+1 for the first frame): the 'bidirectional'
        variant's ``frame_prev`` argument.
    """

    index: int
    frame_t: torch.Tensor
    frame_next: torch.Tensor
    frame_prev: torch.Tensor


def as_frame(index: int, frame: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A frame as (3, H, W) float: tensors pass through, (H, W, 3) NumPy arrays are converted
    (integers scaled to [0, 1]). ValueError naming :data:`ACCEPTED_FRAMES` otherwise."""
    if isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3:
        if frame.dtype == np.uint8:
            return to_tensor(frame, 255.0)
        if frame.dtype == np.uint16:
            return to_tensor(frame.astype(np.int32), 65535.0)
        if np.issubdtype(frame.dtype, np.floating):
            return to_tensor(frame, 1.0)
    if isinstance(frame, (torch.Tensor, np.ndarray)):
        got = f"{type(frame).__name__} of shape {tuple(frame.shape)} and dtype {frame.dtype}"
    else:
        got = type(frame).__name__
    if not isinstance(frame, torch.Tensor):
        raise ValueError(f"frame {index} must be {ACCEPTED_FRAMES}; got {got}")
    return frame


def as_given(image: torch.Tensor, like: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """A (3, H, W) float result in the form its input ``like`` had: tensors as they are,
    NumPy frames as an (H, W, 3) array of ``like``'s dtype (integers rounded to the full range
    of the dtype, floats in [0, 1])."""
    if not isinstance(like, np.ndarray):
        return image
    if like.dtype in (np.uint8, np.uint16):
        return quantize(image, 8 if like.dtype == np.uint8 else 16)
    return image.detach().cpu().permute(1, 2, 0).numpy().astype(like.dtype)


def flow_as_given(flow: torch.Tensor, like: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """A (2, H, W) flow as its input frame ``like`` was given: a tensor, or for NumPy frames an
    (H, W, 2) float32 array (channel 0 x right, 1 y down, pixels)."""
    if not isinstance(like, np.ndarray):
        return flow
    return flow.detach().cpu().permute(1, 2, 0).contiguous().numpy().astype(np.float32)


def _check_frame(index: int, frame: torch.Tensor, size: tuple[int, int] | None) -> None:
    if frame.dim() != 3 or frame.shape[0] != 3:
        raise ValueError(f"frame {index} must be {ACCEPTED_FRAMES}; got a tensor of shape "
                         f"{tuple(frame.shape)}")
    if not frame.is_floating_point():  # a uint8 frame would silently read as 0..255
        raise ValueError(f"frame {index} must be {ACCEPTED_FRAMES}; got a {frame.dtype} tensor")
    if not bool(torch.isfinite(frame).all()):  # one NaN would spread to every paired output
        raise ValueError(f"frame {index} holds NaN or infinite values; frames must be "
                         f"{ACCEPTED_FRAMES}")
    if size is not None and tuple(frame.shape[-2:]) != size:
        raise UserError(
            f"frame {index} is {frame.shape[-1]}x{frame.shape[-2]} but the first frame is "
            f"{size[1]}x{size[0]} (width x height); all frames must have the same size"
        )


def _checked(frames: Iterable[torch.Tensor | np.ndarray],
             first: int = 0) -> Iterator[torch.Tensor]:
    """The frames as (3, H, W) float tensors, each checked to be the size of the first;
    ``first``: the index of the first one in its stream (for messages)."""
    size = None
    for index, item in enumerate(frames, first):
        frame = as_frame(index, item)
        _check_frame(index, frame, size)
        size = tuple(frame.shape[-2:])
        yield frame


def frame_triples(frames: Iterable[torch.Tensor | np.ndarray], *, start: int = 0,
                  stop: int | None = None) -> Iterator[FrameTriple]:
    """Lazily pair every frame of ``frames`` with its neighbours (see :class:`FrameTriple`).

    Holds frames t-1, t and t+1 only. A one-frame stream warns (:data:`SINGLE_FRAME_WARNING`).
    Frames are :data:`ACCEPTED_FRAMES`. Raises ValueError naming the frame's index for any
    other frame (a NaN or infinite value included), UserError for one whose size differs from
    the first frame's.

    ``start``, ``stop``: the triples of frames ``start`` .. ``stop - 1`` only (``stop`` None:
    to the end), each as the whole stream pairs it. ``frames`` then begins at frame
    ``start - 1`` (at frame 0 when ``start`` is 0) and frame ``stop`` is read, if it exists,
    only to pair the frames beside it: a window of a long stream, with one frame of overlap on
    each side.
    """
    t = max(start - 1, 0)  # the index of the first frame given
    source = _checked(frames, t)
    first = next(source, None)
    if first is None:
        return
    window = {t: first}  # index -> frame, for t-1, t, t+1
    while stop is None or t < stop:
        ahead = next(source, None)
        if ahead is not None:
            window[t + 1] = ahead
        elif t == 0:
            warnings.warn(SINGLE_FRAME_WARNING, UserWarning, stacklevel=3)
        if t >= start:
            # Whether frame t+1 exists is all the pairing rule needs to know of the length.
            paired, other = neighbours(t, t + 2 if ahead is not None else t + 1)
            yield FrameTriple(t, window[t], window[paired], window[other])
        window.pop(t - 1, None)
        if ahead is None:
            return
        t += 1
