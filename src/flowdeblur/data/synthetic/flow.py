"""Ground-truth optical flow between two sharp frames, computed analytically from the maps.

Pixel ``p`` of frame a belongs to the topmost layer ``l`` whose alpha there is >= 1/2, and
moves to ``p' = M_l(b) M_l(a)^-1 p``. The flow is ``p' - p`` in the backward-warp convention
of docs/DESIGN.md (``frame_a(p) ~ frame_b(p + flow(p))``). It is marked valid where ``p``
lies well inside that layer (away from soft edges), ``p'`` is inside the image and no layer
in front of ``l`` covers ``p'`` in frame b (occlusion). ``render_triton.flow_and_valid``
computes the same in one kernel.
"""

from __future__ import annotations

import torch

from .shapes import OFFSET, ON, SOFT, signed_distance


def flow_and_valid(inv_a: torch.Tensor, a_to_b: torch.Tensor, inv_b: torch.Tensor,
                   shape: torch.Tensor, height: int, width: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth flow from sharp frame a to sharp frame b, and where it holds.

    Args:
        inv_a, inv_b: (N, L1, 3, 3) image -> layer coordinates at the two frame times.
        a_to_b: (N, L1, 3, 3) image a -> image b if the point belongs to that layer.
        shape: (N, L1 - 1, SHAPE_PARAMS).
    Returns:
        (flow, valid): flow (N, 2, H, W) with ``frame_a(p) ~ frame_b(p + flow(p))``, valid
        (N, 1, H, W) float in {0, 1}.
    """
    n, l1 = inv_a.shape[:2]
    dev = shape.device
    hw = height * width
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32),
                            torch.arange(width, device=dev, dtype=torch.float32), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(hw, device=dev)])  # (3, HW)

    def layer_coords(inv: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        r = torch.matmul(inv, pts)  # (N, L, 3, HW)
        return r[:, :, :2] / r[:, :, 2:3]

    sp = shape[:, :, None, :]  # (N, L1-1, 1, P)
    # Outside an object, or for a disabled slot, the distance counts as very negative.
    margin = sp[..., SOFT] / 2 + 1.5  # soft ramp half-width plus the bilinear footprint

    def distances(u: torch.Tensor) -> torch.Tensor:
        d = signed_distance(u[:, :, 0], u[:, :, 1], sp)
        return torch.where(sp[..., ON] > 0, d, torch.full_like(d, -1e4))

    owner = torch.zeros(n, hw, dtype=torch.long, device=dev)
    if l1 > 1:
        d_a = distances(layer_coords(inv_a[:, 1:], pix))  # (N, L1-1, HW)
        alpha = (sp[..., OFFSET] + d_a / sp[..., SOFT]).clamp(0.0, 1.0)
        for layer in range(1, l1):
            owner = torch.where(alpha[:, layer - 1] >= 0.5, layer, owner)
    r = torch.matmul(a_to_b, pix)  # (N, L1, 3, HW)
    p_all = r[:, :, :2] / r[:, :, 2:3]
    p_b = torch.gather(p_all, 1, owner[:, None, None, :].expand(n, 1, 2, hw))[:, 0]  # (N,2,HW)
    flow = p_b - pix[:2]
    valid = ((p_b[:, 0] >= 0) & (p_b[:, 0] <= width - 1)
             & (p_b[:, 1] >= 0) & (p_b[:, 1] <= height - 1))
    if l1 > 1:
        hom_b = torch.cat([p_b, torch.ones(n, 1, hw, device=dev)], 1)[:, None]  # (N,1,3,HW)
        d_b = distances(layer_coords(inv_b[:, 1:], hom_b))  # (N, L1-1, HW)
        idx = torch.arange(1, l1, device=dev)[None, :, None]
        above = idx > owner[:, None]  # layers in front of the owner
        is_owner = idx == owner[:, None]
        clear = ((d_a <= -margin) & (d_b <= -margin)) | ~above
        inside = (d_a >= margin) | ~is_owner
        valid &= clear.all(1) & inside.all(1)
    return flow.view(n, 2, height, width), valid.view(n, 1, height, width).float()
