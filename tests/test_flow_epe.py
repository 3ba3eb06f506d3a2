"""Flow accuracy: EPE against ground truth, the zero-flow baseline, the motorcycle stereo pair."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowdeblur.errors import UserError
from flowdeblur.evaluation.flow_epe import (
    flow_epe,
    format_flow_table,
    motorcycle_epe,
    motorcycle_pair,
    predict_flow,
    synthetic_epe,
)
from flowdeblur.models import FlowDeblurNet
from flowdeblur.ops import warp


class _StubFlowNet(nn.Module):
    """Returns a constant flow per sample at 1/4 of the padded size, in pixels of that scale,
    as the real FlowNet does: ``vectors`` (N, 2) full-resolution pixels, plus ``offset``."""

    def __init__(self) -> None:
        super().__init__()
        self.vectors: torch.Tensor | None = None
        self.offset = torch.zeros(2)
        self.calls: list[tuple[int, ...]] = []

    def forward(self, stacked: torch.Tensor):
        self.calls.append(tuple(stacked.shape))
        n, _, hp, wp = stacked.shape
        v = (self.vectors + self.offset) / 4.0  # pixels of the 1/4 scale
        flow = v[:, :, None, None].expand(n, 2, hp // 4, wp // 4).contiguous()
        # the coarser scales do not matter to the EPE of the finest flow
        return [flow, flow[..., ::2, ::2]], []


class _StubModel(nn.Module):
    def __init__(self, in_frames: int = 2) -> None:
        super().__init__()
        self.in_frames = in_frames
        self.flownet = _StubFlowNet()
        self.scale = nn.Parameter(torch.zeros(1))  # gives the model a device and a mode


def _constant_flow_samples(sizes, seed=0):
    """Batches of constant-flow ground truth with random valid masks and one non-finite pixel."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for n, h, w in sizes:
        vec = torch.randn(n, 2, generator=g) * 5
        flow = vec[:, :, None, None].expand(n, 2, h, w).clone()
        valid = (torch.rand(n, 1, h, w, generator=g) > 0.3).float()
        flow[0, 0, 0, 0] = float("inf")  # e.g. a missing disparity: never scored
        batches.append({"frame_t": torch.rand(n, 3, h, w, generator=g),
                        "frame_next": torch.rand(n, 3, h, w, generator=g),
                        "flow": flow, "valid": valid, "vec": vec})
    return batches


def _expected_norm(batches) -> float:
    total = count = 0.0
    for b in batches:
        ok = (b["valid"] > 0.5) & torch.isfinite(b["flow"]).all(1, keepdim=True)
        norms = b["vec"].norm(dim=1)[:, None, None, None].expand_as(ok)
        total += float(norms[ok].sum())
        count += float(ok.sum())
    return total / count


@pytest.mark.parametrize("sizes", [[(2, 64, 64)], [(2, 70, 90), (1, 33, 130)]])
def test_exact_flow_scores_zero_and_zero_flow_scores_the_mean_norm(sizes):
    batches = _constant_flow_samples(sizes)
    model = _StubModel().train()
    # exact: the stub returns each batch's ground-truth vectors (x4 upsampling, x4 values)
    results = []
    for b in batches:
        model.flownet.vectors = b["vec"]
        results.append(flow_epe(model, [b]))
    for r in results:
        assert r["epe"] == pytest.approx(0.0, abs=1e-5)
    assert model.training  # the mode is restored

    zero = []
    for b in batches:
        model.flownet.vectors = torch.zeros_like(b["vec"])
        zero.append(flow_epe(model, [b]))
    pooled_pixels = sum(r["valid_pixels"] for r in zero)
    pooled = sum(r["epe"] * r["valid_pixels"] for r in zero) / pooled_pixels
    assert pooled == pytest.approx(_expected_norm(batches), rel=1e-5)
    for r in zero:
        assert r["epe"] == pytest.approx(r["zero_epe"], rel=1e-6)
    expected_pixels = sum(int(((b["valid"] > 0.5) & torch.isfinite(b["flow"]).all(1, True)).sum())
                          for b in batches)
    assert pooled_pixels == expected_pixels
    # frames reach the flow net stacked (t first) and padded to a multiple of 64
    assert all(c[1] == 6 and c[2] % 64 == 0 and c[3] % 64 == 0 for c in model.flownet.calls)


def test_constant_error_gives_its_length_and_pixels_pool_across_batches():
    batches = _constant_flow_samples([(2, 40, 50), (3, 20, 30)], seed=3)
    vec = torch.cat([b["vec"] for b in batches])

    class _Seq(_StubFlowNet):
        """Serves the vectors of the batches in order."""

        def forward(self, stacked):
            n = stacked.shape[0]
            self.vectors, self.rest = self.rest[:n], self.rest[n:]
            return super().forward(stacked)

    model = _StubModel()
    model.flownet = _Seq()
    model.flownet.rest = vec
    model.flownet.offset = torch.tensor([3.0, -4.0])
    r = flow_epe(model, batches)
    assert r["epe"] == pytest.approx(5.0, rel=1e-5)
    assert r["samples"] == 5
    assert r["zero_epe"] == pytest.approx(_expected_norm(batches), rel=1e-5)


def test_predict_flow_crops_and_scales_the_quarter_resolution_flow():
    model = _StubModel()
    model.flownet.vectors = torch.tensor([[1.5, -2.0]])
    out = predict_flow(model, torch.rand(1, 3, 70, 90), torch.rand(1, 3, 70, 90))
    assert out.shape == (1, 2, 70, 90)
    torch.testing.assert_close(out[0, :, 5, 7], torch.tensor([1.5, -2.0]))
    with pytest.raises(ValueError, match="frame_next"):
        predict_flow(model, torch.rand(1, 3, 8, 8), None)


def test_a_model_without_flow_network_is_refused():
    with pytest.raises(UserError, match="no flow network"):
        flow_epe(FlowDeblurNet("no_rnn"), _constant_flow_samples([(1, 16, 16)]))


def test_no_valid_pixel_is_an_error():
    b = _constant_flow_samples([(1, 16, 16)])[0]
    b["valid"] = torch.zeros_like(b["valid"])
    model = _StubModel()
    model.flownet.vectors = b["vec"]
    with pytest.raises(UserError, match="no valid"):
        flow_epe(model, [b])


def test_synthetic_epe_runs_the_real_flow_network_on_held_out_scenes():
    torch.manual_seed(0)
    model = FlowDeblurNet("full", rnn_backend="torch")
    r = synthetic_epe(model, samples=2, size=64, batch=2)
    assert r["samples"] == 2 and r["size"] == 64
    assert 0 < r["valid_pixels"] <= 2 * 64 * 64
    assert r["zero_epe"] > 0 and r["epe"] >= 0
    # the same held-out set every time
    assert synthetic_epe(model, samples=2, size=64, batch=2) == r


# ----------------------------------------------------------------------------- motorcycle


def test_motorcycle_ground_truth_excludes_missing_disparity():
    from skimage import data

    _, _, disp = data.stereo_motorcycle()
    full = motorcycle_pair(scale=1)
    missing = ~torch.from_numpy(disp).isfinite()
    assert missing.any()  # scikit-image marks them (with inf)
    valid = full["valid"][0, 0] > 0.5
    assert torch.equal(valid, ~missing)
    assert torch.isfinite(full["flow"]).all()
    assert (full["flow"][0, 1] == 0).all()
    torch.testing.assert_close(full["flow"][0, 0][valid], -torch.from_numpy(disp)[valid])

    quarter = motorcycle_pair(scale=4)
    assert quarter["frame_t"].shape == (1, 3, 125, 185)
    assert quarter["flow"].shape == (1, 2, 125, 185)
    qv = quarter["valid"][0, 0] > 0.5
    # a block is valid only if all of its 4x4 source pixels are
    blocks = (~missing[:500, :740]).reshape(125, 4, 185, 4).all(3).all(1)
    assert torch.equal(qv, blocks)
    d = quarter["flow"][0, 0][qv]
    assert (d < 0).all() and -d.min() <= disp[torch.isfinite(torch.from_numpy(disp))].max() / 4


@pytest.mark.parametrize("scale", [1, 4])
def test_motorcycle_flow_sign_warps_right_onto_left(scale):
    pair = motorcycle_pair(scale=scale)
    warped, inside = warp(pair["frame_next"], pair["flow"], return_mask=True)
    m = (pair["valid"] * inside).expand(-1, 3, -1, -1) > 0.5

    def err(x):
        return (x - pair["frame_t"]).abs()[m].mean().item()

    converted, zero = err(warped), err(pair["frame_next"])
    flipped = err(warp(pair["frame_next"], -pair["flow"]))
    assert converted < 0.5 * zero  # measured: 0.030 against 0.152 at full resolution
    assert converted < 0.5 * flipped


def test_motorcycle_epe_of_zero_flow_is_the_mean_disparity():
    model = _StubModel()
    model.flownet.vectors = torch.zeros(1, 2)
    r = motorcycle_epe(model, scale=4)
    pair = motorcycle_pair(scale=4)
    v = pair["valid"][0, 0] > 0.5
    assert r["epe"] == pytest.approx(r["zero_epe"], rel=1e-6)
    assert r["zero_epe"] == pytest.approx(float(pair["flow"][0, 0][v].abs().mean()), rel=1e-5)
    assert r["size"] == [125, 185] and r["scale"] == 4
    row = format_flow_table({"motorcycle": r}).splitlines()[-1]
    assert row == (f"| motorcycle | 1 | {r['valid_pixels']} | {r['epe']:.3f} | "
                   f"{r['zero_epe']:.3f} |")
    with pytest.raises(UserError, match="scale"):
        motorcycle_pair(scale=0)

