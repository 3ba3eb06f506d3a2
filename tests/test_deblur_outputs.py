"""What `flowdeblur deblur` leaves on disk in hard cases: colours through a video round trip,
signals, stale temporaries, replacing a previous output, truncated inputs, rotated video,
unwritable destinations, memory-bounded tiling."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from skimage import data
from test_cli_deblur import deblur, make_video, smooth_frames, snapshot
from torch import nn

from flowdeblur.inference.deblur import deblur_video
from flowdeblur.media import VideoReader
from flowdeblur.models import FlowDeblurOutput


class Identity(nn.Module):
    """A 'deblurrer' that returns frame t unchanged: isolates what the file path does."""

    in_frames = 2
    variant = "identity"
    flownet = None

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, frame_t, frame_next=None, frame_prev=None):
        return FlowDeblurOutput(image=frame_t.clone())


def read_all(path) -> torch.Tensor:
    with VideoReader(path) as reader:
        return torch.stack(list(reader))


def write_untagged_h264(path, pictures: list[np.ndarray]) -> None:
    """An H.264 yuv420p file without colour tags, as many cameras and tools write them."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = pictures[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "8"}
        for picture in pictures:
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# ------------------------------------------------------------------------------ colours


@pytest.mark.parametrize("tagged_output_of_ours", [False, True])
def test_video_round_trip_keeps_the_colours(tmp_path, tagged_output_of_ours):
    """An identity model through `deblur` (decode, encode, decode again) moves the mean by
    less than 0.2/255: the matrix and range the reader uses are the ones the writer wrote
    with, and neither conversion rounds one way (swscale's default path was 1.1/255 dark)."""
    photo = data.astronaut()[96:288, 128:384]
    src = tmp_path / "src.mp4"
    if tagged_output_of_ours:  # a BT.709-tagged file of our own writer as the input
        make_video(src, [torch.from_numpy(np.roll(photo, 3 * i, 1).copy()).permute(2, 0, 1)
                         .float() / 255 for i in range(3)])
    else:
        write_untagged_h264(src, [np.roll(photo, 3 * i, 1).copy() for i in range(3)])
    out = tmp_path / "out.mp4"
    deblur_video(src, out, model=Identity(), device="cpu", crf=0, progress=False,
                 scene_cuts=False)
    before, after = read_all(src), read_all(out)
    assert after.shape == before.shape
    shift = (after - before).mean(dim=(0, 2, 3)) * 255
    assert shift.abs().max() < 0.2, shift
