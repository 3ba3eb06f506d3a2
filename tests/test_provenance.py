"""The provenance an output's ownership record carries (media/ownership.py,
inference/provenance.py): written in every kind of output, read back only from a whole output
of ours, and changed by what changes the output."""

from __future__ import annotations

import pytest
import torch
from helpers import Identity, make_video, smooth_frames

from flowdeblur.inference import deblur_video
from flowdeblur.media import write_image
from flowdeblur.media.atomic import file_sha256
from flowdeblur.media.ownership import (
    MARKER,
    OUTPUT_TAG,
    file_written_by_us,
    parse_record,
    read_provenance,
    record_text,
)
from flowdeblur.models import FlowDeblurOutput
from flowdeblur.runtime.backends import ExportedNetwork
from flowdeblur.weights import weights_sha256


def test_a_record_reads_back_and_the_bare_tag_is_still_ours():
    record = {"flowdeblur": "0.1.0", "options": {"crf": 6}}
    assert parse_record(record_text(record)) == (True, record)
    assert parse_record(OUTPUT_TAG) == (True, None)
    for text in (OUTPUT_TAG + " {broken", OUTPUT_TAG + " [1]", "written by someone", None):
        assert parse_record(text) == (False, None)


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out.png", "out.jpg", "out"])
def test_every_output_carries_its_provenance(tmp_path, name):
    frames = smooth_frames(1 if name.endswith((".png", ".jpg")) else 3, 32, 48)
    src = tmp_path / "src"
    for i, frame in enumerate(frames):
        write_image(src / f"f{i}.png", frame)
    out = tmp_path / name
    deblur_video(src, out, model=Identity(), progress=False, scene_cuts=False)
    provenance = read_provenance(out)
    assert file_written_by_us(out) if out.is_file() else (out / MARKER).is_file()
    assert provenance["flowdeblur"] and len(provenance["weights_sha256"]) == 64
    assert provenance["input"]["bytes"] == sum(p.stat().st_size for p in src.iterdir())
    assert ("crf" in provenance["options"]) == (out.suffix in (".mp4", ".mkv"))


def test_a_folder_with_a_file_added_or_removed_has_no_provenance(tmp_path):
    src = tmp_path / "a.mp4"
    make_video(src, smooth_frames(3, 32, 48))
    out = tmp_path / "out"
    deblur_video(src, out, model=Identity(), progress=False, scene_cuts=False)
    assert read_provenance(out) is not None
    (out / "notes.txt").write_text("mine")
    assert read_provenance(out) is None
    (out / "notes.txt").unlink()
    (out / "000001.png").unlink()
    assert read_provenance(out) is None


def test_the_weights_and_the_input_change_the_provenance(tmp_path):
    src = make_video(tmp_path / "a.mp4", smooth_frames(3, 32, 48))
    other = Identity()
    with torch.no_grad():
        other.dummy.fill_(1.0)
    records = []
    for model in (Identity(), other):
        out = tmp_path / f"out{len(records)}.mkv"
        deblur_video(src, out, model=model, progress=False, scene_cuts=False)
        records.append(read_provenance(out))
    assert records[0]["input"] == records[1]["input"]
    assert records[0]["weights_sha256"] != records[1]["weights_sha256"]
    make_video(src, smooth_frames(3, 32, 48, seed=9))
    deblur_video(src, tmp_path / "out2.mkv", model=Identity(), progress=False, scene_cuts=False)
    assert read_provenance(tmp_path / "out2.mkv")["input"] != records[0]["input"]


class _FakeExport(ExportedNetwork):
    """An 'exported model' that returns frame t unchanged: a file to digest, no runtime."""

    def __init__(self, path, backend: str = "onnxruntime", precision: str = "fp32") -> None:
        self.path, self.backend, self.precision = path, backend, precision
        self.variant, self.flownet = "identity", None
        self.weights_sha256 = weights_sha256(Identity())  # exported from Identity's weights

    def __call__(self, frame_t, frame_next=None, frame_prev=None):
        return FlowDeblurOutput(image=frame_t.clone())


def test_the_backend_is_recorded_and_resume_redoes_another_backends_output(tmp_path):
    src = make_video(tmp_path / "a.mp4", smooth_frames(3, 32, 48))
    out = tmp_path / "out.mkv"
    model = tmp_path / "model.onnx"
    model.write_bytes(b"graph one")

    def run(network):
        return deblur_video(src, out, model=network, progress=False, scene_cuts=False,
                            resume=True, precision="fp32")

    assert not run(Identity()).skipped
    torch_record = read_provenance(out)
    assert torch_record["backend"] == {"name": "torch"}
    assert not run(_FakeExport(model)).skipped  # same weights, another backend: redone
    record = read_provenance(out)
    assert record["backend"] == {"name": "onnxruntime", "model_sha256": file_sha256(model)}
    assert record["weights_sha256"] == torch_record["weights_sha256"]
    assert record["options"]["precision"] == "fp32" and record["options"]["device"] == "cpu"
    assert run(_FakeExport(model)).skipped
    assert not run(_FakeExport(model, "openvino")).skipped
    assert not run(_FakeExport(model, "openvino", "bf16")).skipped
    model.write_bytes(b"graph two")  # another export
    assert not run(_FakeExport(model, "openvino", "bf16")).skipped
    assert run(_FakeExport(model, "openvino", "bf16")).skipped
    assert not run(Identity()).skipped
    assert read_provenance(out) == torch_record
