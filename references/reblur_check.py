"""Is the reblurring loss least at the truth? Its error (flowdeblur.training.adapt
``reblur_error``) on the dev clips of the large-motion real-footage set, at each clip's true
duty, for the sharp frames, the shipped weights' outputs and the blurry input (the identity).

A loss for learning without ground truth (training/reblur.py, ``deblur --adapt``) can only
help where reblurring the sharp frame matches the blurry one better than reblurring anything
else does. Flows come from the weights' own flow network on the blurry frames, as in training
and adaptation. Only the dev split is read.

    python references/reblur_check.py [--weights FILE]
"""

from __future__ import annotations

import argparse

import torch
from adapt_eval import DEFINITION, dev_clips
from real_clips import DEFAULT_CACHE, built_clips, load_definition, to_tensor

import flowdeblur
from flowdeblur.training.adapt import reblur_error


def clip_errors(model, blurry: list[torch.Tensor], sharp: list[torch.Tensor],
                duty: float) -> dict[str, float]:
    """Reblurring errors of the sharp frames, the outputs and the input on one clip."""
    truth = reblur_error(model, blurry, duty=duty, images=sharp)
    output = reblur_error(model, blurry, duty=duty)
    return {"sharp": truth.model, "output": output.model, "input": output.identity}


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
        b, duty = built[clip["name"]], clip["span"] / clip["stride"]
        e = clip_errors(model, list(to_tensor(b.blurry)), list(to_tensor(b.sharp)), duty)
        print(f"| {clip['name']} | {duty:.2f} | {e['sharp']:.4f} | {e['output']:.4f} | "
              f"{e['input']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
