"""Is the reblurring loss least at the truth? Its error (flowdeblur.training.adapt
``reblur_error``) on the dev clips of the large-motion real-footage set, at each clip's true
duty, for the sharp frames, the shipped weights' outputs and the blurry input (the identity).

A loss for learning without ground truth (training/reblur.py, ``deblur --adapt``) can only
help where reblurring the sharp frame matches the blurry one better than reblurring anything
else does. Flows come from the weights' own flow network on the blurry frames, as in training
and adaptation. Only the dev split is read.

A second table asks how much of each clip's blur the reblurring model explains at all, over
the clip's moving pixels (real_clips.py ``moving_mask``): the mean absolute difference, in
8-bit levels, between the blurry frame and the sharp frame, the sharp frame reblurred with the
network's flows, the sharp frame reblurred with DIS flows of the sharp frames themselves
(flows no deblurring has: an upper bound on what better flows could give), and the blurry
frame reblurred (the identity). Where the reblurred sharp frame is not clearly closer to the
blurry one than the reblurred blurry frame is, the loss cannot tell the truth from the input.

    python references/reblur_check.py [--weights FILE]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from adapt_eval import DEFINITION, dev_clips
from real_clips import (
    DEFAULT_CACHE,
    built_clips,
    dis_flow,
    duty,
    load_definition,
    moving_mask,
    to_tensor,
)

import flowdeblur
from flowdeblur.training.adapt import reblur_error
from flowdeblur.training.reblur import FrozenFlow, ReblurConfig, reblur

SAMPLES = ReblurConfig().samples


def clip_errors(model, blurry: list[torch.Tensor], sharp: list[torch.Tensor],
                duty: float) -> dict[str, float]:
    """Reblurring errors of the sharp frames, the outputs and the input on one clip."""
    truth = reblur_error(model, blurry, duty=duty, images=sharp)
    output = reblur_error(model, blurry, duty=duty)
    return {"sharp": truth.model, "output": output.model, "input": output.identity}


def _flow_tensor(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """DIS flow from (H, W, 3) uint8 frame a to b as (1, 2, H, W), docs/DESIGN.md's sign."""
    return torch.from_numpy(dis_flow(a, b)).permute(2, 0, 1)[None]


def explained(model, blurry: np.ndarray, sharp: np.ndarray, exposure: float
              ) -> dict[str, float]:
    """Mean absolute difference (8-bit levels) over the moving pixels of the clip's whole
    triples between each blurry frame and the candidates of the module docstring's second
    table; (N, H, W, 3) uint8 frames, ``exposure`` the clip's duty. Frames without moving
    pixels are left out."""
    frozen = FrozenFlow(model.flownet, model.in_frames)
    b, s, moving = to_tensor(blurry), to_tensor(sharp), torch.from_numpy(moving_mask(blurry, sharp))
    d = torch.tensor([exposure])
    sums: dict[str, list[float]] = {}
    for k in range(1, len(b) - 1):
        batch = frozen.add_flows({"unlabelled_t": b[k:k + 1], "unlabelled_next": b[k + 1:k + 2],
                                  "unlabelled_prev": b[k - 1:k]})
        network = (batch["unlabelled_flow_next"], batch["unlabelled_flow_prev"])
        oracle = (_flow_tensor(sharp[k], sharp[k + 1]), _flow_tensor(sharp[k], sharp[k - 1]))
        candidates = {"sharp frame": s[k:k + 1],
                      "sharp, network flows": reblur(s[k:k + 1], *network, d, SAMPLES)[0],
                      "sharp, DIS flows of sharp frames":
                          reblur(s[k:k + 1], *oracle, d, SAMPLES)[0],
                      "blurry, network flows": reblur(b[k:k + 1], *network, d, SAMPLES)[0]}
        m = moving[k]
        if not m.any():
            continue
        for name, image in candidates.items():
            diff = (image[0] - b[k]).abs().mean(0)[m]
            sums.setdefault(name, []).append(255.0 * diff.mean().item())
    return {name: float(np.mean(v)) for name, v in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="default: the shipped weights")
    p.add_argument("--cache", default=DEFAULT_CACHE)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    definition = load_definition(DEFINITION)
    clips = dev_clips(definition, None)
    built = built_clips(definition, clips, args.cache)
    model = flowdeblur.load_weights(args.weights) if args.weights else flowdeblur.load_pretrained()
    print("| clip | duty | sharp frame | deblurred output | blurry input |")
    print("|---|--:|--:|--:|--:|")
    for clip in clips:
        b = built[clip["name"]]
        e = clip_errors(model, list(to_tensor(b.blurry)), list(to_tensor(b.sharp)), duty(clip))
        print(f"| {clip['name']} | {duty(clip):.2f} | {e['sharp']:.4f} | {e['output']:.4f} | "
              f"{e['input']:.4f} |", flush=True)
    print("\nMean |candidate - blurry frame| over moving pixels, 8-bit levels:\n")
    rows = {c["name"]: explained(model, built[c["name"]].blurry, built[c["name"]].sharp,
                                 duty(c)) for c in clips}
    names = list(next(iter(rows.values())))
    print("| clip | " + " | ".join(names) + " |")
    print("|---|" + "--:|" * len(names))
    for clip, row in rows.items():
        print(f"| {clip} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |", flush=True)


if __name__ == "__main__":
    main()
