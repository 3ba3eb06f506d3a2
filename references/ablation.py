"""The paper's Table IV ablation (and the stage-1 flow accuracy), in one command.

Protocol (every run goes through ``flowdeblur.training.loop.train``):

1. Stage 1, once per flow-network input arity that the chosen variants need:
   configs/flow_pretrain.yaml (multi-scale EPE on synthetic ground-truth flow) with
   ``model.variant=full`` (two frames) and, for 'bidirectional', ``model.variant=bidirectional``
   (three frames; or ``--bidirectional-stage1 full`` to start it from the two-frame flow net,
   the tensors that fit). Its flow accuracy (EPE, see src/flowdeblur/evaluation/flow_epe.py)
   is scored on the held-out synthetic set and on the Middlebury motorcycle stereo pair.
2. Stage 2: configs/joint.yaml (Eq. 14, Adam lr 1e-3) for every variant x seed, all with the
   same number of steps, batch and patch size. The seed sets the synthetic data stream and
   the initialisation of everything stage 1 did not train; so seed k shows every variant the
   same batches. Each run starts from the stage-1 flow network: only the tensors stage 1
   changed are carried over (``model.init_strict=false``), the rest (deblurring U-Net, RNN
   gate heads, and any layer whose shape differs, e.g. single_frame's conv1) get the run's
   own Xavier init. Short-budget change to joint.yaml: the learning rate warms up over 5% of
   the steps and decays linearly to 0 (``schedule.kind=poly, power=1``), so that the final
   weights are not taken at a high-lr noise floor; ``--set`` overrides anything.
3. Scoring: each run's final weights on one fixed held-out synthetic set (seed
   flowdeblur.evaluation.heldout.HELDOUT_SEED, the stage-2 config's scene settings, three
   frames so one set serves every variant), outputs quantised to 8 bits, PSNR/SSIM of
   flowdeblur.evaluation.metrics;
   plus the flow EPE of the run's flow network on the same set.

Variants (Table IV names): full ("Ours"), no_flow_loss ("w/o flow losses": flow_loss=false),
single_frame ("w/o flow": one input frame and, as the paper says, no flow loss either),
no_rnn ("w/o RNNs": no flow net, no RNNs, no stage 1), concat_gates ("Concat RNN weights"),
bidirectional ("Bidirection flows"), decoder_rnn ("RNNs in decoder").

Output (``--out``, default runs/ablation): one run folder per training run
(``stage1_<variant>/``, ``<variant>_seed<k>/``, each with config.yaml, losses.jsonl,
weights.safetensors, score.json), ``ablation.json`` (everything) and ``ablation.md`` (the
table). Resumable through ``common`` (references/common.py): a run with a score (or with
weights) is not trained again, one with checkpoints but no weights resumes, a stage 1 with its
flownet_init.safetensors is done, and a run folder holding another protocol's run is refused
before any training; so the same command can be repeated until it reports the table complete
(exit status 0; 75 when it stopped early: ``--budget-s`` reached, or SIGINT/SIGTERM, which ends
the current run with a checkpoint). ``--export DIR`` copies the tables and those small state
files (about 20 MB per stage 1, no weights) to DIR; ``--out`` pointing at such a copy continues
from it.

    python references/ablation.py --device cuda --stage1-steps 3000 --steps 3000 --seeds 0,1
    python references/ablation.py --quick --out /tmp/ablation     # CPU smoke run, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from common import (
    ROOT,
    TIMING,
    atomic_copy,
    cached_json,
    check_same_run,
    comma_list,
    finished_weights,
    format_stats,
    is_current,
    read_json,
    recorded_json,
    seed_stats,
    train_or_resume,
    weights_path,
)
from safetensors.torch import save_file

from flowdeblur.data.synthetic import SceneConfig
from flowdeblur.errors import UserError
from flowdeblur.evaluation.flow_epe import flow_epe, motorcycle_epe
from flowdeblur.evaluation.heldout import HELDOUT_SEED, heldout_synthetic_batches
from flowdeblur.evaluation.metrics import psnr, quantize_8bit, ssim
from flowdeblur.media.atomic import atomic_file, atomic_write_text
from flowdeblur.models import FlowDeblurNet, count_parameters
from flowdeblur.runtime import Runtime
from flowdeblur.training.checkpoint import TrainingDiverged
from flowdeblur.training.config import TrainConfig, load_config
from flowdeblur.weights import load_weights, read_weights

STAGE1_CONFIG = ROOT / "configs" / "flow_pretrain.yaml"
STAGE2_CONFIG = ROOT / "configs" / "joint.yaml"
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: run the same command again to continue


@dataclass(frozen=True)
class Arm:
    """One column of Table IV: a model variant with a training option, and the paper's score."""

    label: str  # the paper's name
    variant: str  # flowdeblur.models.VARIANTS key
    flow_loss: bool
    paper_psnr: float  # Table IV, DVD
    paper_ssim: float


ARMS: dict[str, Arm] = {
    "full": Arm("Ours", "full", True, 30.58, 0.928),
    "no_flow_loss": Arm("w/o flow losses", "full", False, 30.35, 0.924),
    "single_frame": Arm("w/o flow", "single_frame", False, 30.11, 0.922),
    "no_rnn": Arm("w/o RNNs", "no_rnn", False, 28.84, 0.901),
    "concat_gates": Arm("Concat RNN weights", "concat_gates", True, 29.71, 0.914),
    "bidirectional": Arm("Bidirection flows", "bidirectional", True, 30.56, 0.927),
    "decoder_rnn": Arm("RNNs in decoder", "decoder_rnn", True, 29.72, 0.914),
}
#: The ordering the paper's Table IV shows, best first.
PAPER_ORDER = ("full", "no_flow_loss", "single_frame", "no_rnn")
QUICK = dict(stage1_steps=3, steps=3, crop=64, batch=1, variants="full,no_rnn", seeds="0,1",
             heldout_samples=2, device="cpu")


class Stop(Exception):
    """Stop before the protocol is complete (budget reached or a training run interrupted)."""


# ---------------------------------------------------------------------------------------------
# Configs


def _common_overrides(args: argparse.Namespace, run_dir: Path, steps: int, seed: int) -> list:
    return [
        f"run_dir={run_dir}", f"steps={steps}", f"seed={seed}", f"device={args.device}",
        f"data.crop_size={args.crop}", f"data.batch_size={args.batch}",
        "log.progress=false", "log.tensorboard=false", "log.image_every=0",
        f"log.checkpoint_every={max(1, min(500, steps))}", "log.keep_checkpoints=1",
        "export_dtype=fp32",
    ]


def stage1_config(args: argparse.Namespace, variant: str) -> TrainConfig:
    base_warmup = load_config(STAGE1_CONFIG).schedule.warmup_steps
    overrides = _common_overrides(args, args.out / f"stage1_{variant}", args.stage1_steps,
                                  args.stage1_seed)
    # flow_pretrain.yaml warms up over 1000 steps, too long for a short run.
    overrides += [f"model.variant={variant}",
                  f"schedule.warmup_steps={min(base_warmup, args.stage1_steps // 10)}"]
    return load_config(STAGE1_CONFIG, overrides + list(args.stage1_set))


def stage2_config(args: argparse.Namespace, name: str, seed: int, init: Path | None) -> TrainConfig:
    arm = ARMS[name]
    overrides = _common_overrides(args, args.out / f"{name}_seed{seed}", args.steps, seed)
    overrides += [
        f"model.variant={arm.variant}", f"flow_loss={str(arm.flow_loss).lower()}",
        f"model.init_weights={init if init is not None else 'null'}", "model.init_strict=false",
        "schedule.kind=poly", "schedule.power=1.0", f"schedule.warmup_steps={args.steps // 20}",
    ]
    return load_config(STAGE2_CONFIG, overrides + list(args.set))


# ---------------------------------------------------------------------------------------------
# Training runs (resumable)


def run_training(config: TrainConfig, *, deadline: float | None) -> Path | None:
    """The weights of ``config``'s run, found finished, trained or resumed (``common``); None
    if the run diverged (recorded in ``diverged.json``). Raises Stop when the time budget is
    spent before the run could start or a signal interrupted it.
    """
    run_dir, weights = Path(config.run_dir), finished_weights(config)
    if weights is not None or (run_dir / "diverged.json").is_file():
        return weights
    if deadline is not None and time.time() > deadline:
        raise Stop("time budget reached")
    try:
        summary = train_or_resume(config)
    except TrainingDiverged as e:
        atomic_write_text(run_dir / "diverged.json", json.dumps({"error": str(e)}))
        print(f"ablation: {run_dir.name} diverged: {e}", flush=True)
        return None
    if summary is not None and summary["interrupted"]:
        raise Stop(f"{run_dir.name} interrupted by {summary['interrupted']}")
    return weights_path(config)


def flownet_init(stage1: TrainConfig, weights: Path, path: Path) -> Path:
    """Write the tensors stage 1 trained, alone, to ``path`` (a safetensors file).

    Stage 1 freezes what its EPE loss does not reach (gate heads) and never runs the
    deblurring U-Net, so those keep the Xavier init of stage 1's seed. Carrying only the
    changed tensors lets each stage-2 seed initialise the rest itself (as ``train`` does:
    ``torch.manual_seed(seed)`` then the constructor), so seeds differ in more than data order.
    """
    if is_current(path, weights):
        return path
    state, _ = read_weights(weights)
    torch.manual_seed(stage1.seed)
    fresh = FlowDeblurNet(stage1.model.variant).state_dict()
    keep = {k: v.contiguous() for k, v in state.items()
            if k.startswith("flownet.") and not torch.equal(v, fresh[k].to(v.dtype))}
    if not keep:
        raise UserError(f"{weights}: stage 1 changed no flow-network tensor")
    with atomic_file(path) as tmp:
        save_file(keep, tmp, metadata={"format": "flowdeblur-partial",
                                       "source": str(weights), "tensors": str(len(keep))})
    return path


# ---------------------------------------------------------------------------------------------
# Scoring


HELDOUT_KEYS = ("frame_t", "frame_next", "frame_prev", "sharp_t", "flow", "valid")


def heldout_set(args: argparse.Namespace, stage2: TrainConfig
                ) -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """(spec, batches) of the held-out set: ``spec`` defines it (saved beside every score, so
    a changed set scores again), the batches hold only what scoring reads."""
    spec = {"samples": args.heldout_samples, "size": args.heldout_size or args.crop,
            "seed": HELDOUT_SEED, "scenes": stage2.data.synthetic}
    batches = heldout_synthetic_batches(SceneConfig(**spec["scenes"]), samples=spec["samples"],
                                        size=spec["size"], seed=spec["seed"], three_frames=True)
    return spec, [{k: b[k] for k in HELDOUT_KEYS} for b in batches]


def score_model(model: FlowDeblurNet | None, heldout: list[dict], runtime: Runtime) -> dict:
    """PSNR/SSIM (8-bit outputs) on the held-out set; ``model=None`` scores the blurry input.
    With a flow network, also its flow EPE on the same set. The network runs through
    ``runtime`` (resolved for reporting: fp32)."""
    forward = runtime.prepare(model) if model is not None else None
    ps, ss = [], []
    for b in heldout:
        frame_t, sharp = b["frame_t"].to(runtime.device), b["sharp_t"].to(runtime.device)
        out = frame_t if forward is None else \
            forward(frame_t, b["frame_next"], b["frame_prev"]).image
        out = quantize_8bit(out.float())
        ps.append(psnr(out, sharp).cpu())
        ss.append(ssim(out, sharp).cpu())
    result = {"psnr": torch.cat(ps).mean().item(), "ssim": torch.cat(ss).mean().item()}
    if model is not None and model.flownet is not None:
        result["flow"] = flow_epe(model, heldout)
    return result


def score_run(config: TrainConfig, heldout: list[dict], spec: dict, runtime: Runtime,
              deadline: float | None) -> dict | None:
    """The run's ``score.json`` (:func:`score_model` on the held-out set ``spec``): read when
    it records that set, else computed once the run is trained (:func:`run_training`); None
    if the run diverged."""
    weights, path = weights_path(config), Path(config.run_dir) / "score.json"
    inputs = {"heldout": spec}
    if recorded_json(path, inputs, weights) is None \
            and run_training(config, deadline=deadline) is None:
        return None

    def score() -> dict:
        return score_model(load_weights(weights).to(runtime.device).eval(), heldout, runtime)
    return cached_json(path, score, inputs=inputs, source=weights)


def stage1_flow_report(config: TrainConfig, init: Path, heldout: list[dict], spec: dict,
                       device: torch.device, scale: int, deadline: float | None) -> dict:
    """The stage-1 run's ``flow_epe.json`` (the flow EPE of its flow network on the held-out
    set ``spec`` and on the motorcycle pair at 1/``scale``) and its ``init`` for stage 2
    (:func:`flownet_init`): read when both are there, else made once the run is trained."""
    weights, path = weights_path(config), Path(config.run_dir) / "flow_epe.json"
    inputs = {"heldout": {**spec, "motorcycle_scale": scale}}
    if recorded_json(path, inputs, weights) is None or not init.is_file():
        if run_training(config, deadline=deadline) is None:
            raise UserError(f"stage 1 ({config.model.variant}) diverged; see {config.run_dir}")
        flownet_init(config, weights, init)

    def report() -> dict:
        model = load_weights(weights).to(device).eval()
        return {"synthetic": flow_epe(model, heldout),
                "motorcycle": motorcycle_epe(model, scale=scale)}
    return cached_json(path, report, inputs=inputs, source=weights)


# ---------------------------------------------------------------------------------------------
# Summary and table


def summarize(runs: dict[str, dict[int, dict | None]]) -> dict[str, dict]:
    """Per variant: PSNR/SSIM statistics over seeds, and the gap to 'full'.

    A gap "exceeds the seed spread" when the two variants' per-seed PSNR ranges do not
    overlap (every seed of one beats every seed of the other); it needs two seeds of each.
    The per-seed differences (same seed = same data stream) are kept too.
    """
    summary = {}
    for name, by_seed in runs.items():
        ok = {s: r for s, r in by_seed.items() if r is not None}
        entry: dict = {"seeds": sorted(ok), "diverged": sorted(s for s, r in by_seed.items()
                                                             if r is None)}
        if ok:
            entry["psnr"] = seed_stats([r["psnr"] for r in ok.values()])
            entry["ssim"] = seed_stats([r["ssim"] for r in ok.values()])
            epes = [r["flow"]["epe"] for r in ok.values() if "flow" in r]
            if epes:
                entry["flow_epe"] = seed_stats(epes)
        summary[name] = entry
    full = summary.get("full", {})
    for name, entry in summary.items():
        if name == "full" or "psnr" not in entry or "psnr" not in full:
            continue
        a, b = entry["psnr"], full["psnr"]
        entry["gap_vs_full"] = a["mean"] - b["mean"]
        if a["n"] >= 2 and b["n"] >= 2:
            entry["beyond_spread"] = a["max"] < b["min"] or a["min"] > b["max"]
        entry["paired_gaps"] = [runs[name][s]["psnr"] - runs["full"][s]["psnr"]
                                for s in entry["seeds"] if runs["full"].get(s) is not None]
    return summary


def ordering_check(summary: dict[str, dict]) -> str:
    """One line: does the paper's order full > w/o flow losses > w/o flow > w/o RNNs hold?"""
    present = [n for n in PAPER_ORDER if "psnr" in summary.get(n, {})]
    if len(present) < 2:
        return "paper ordering (full > w/o flow losses > w/o flow > w/o RNNs): not enough variants"
    parts = []
    holds = True
    for hi, lo in zip(present, present[1:]):
        a, b = summary[hi]["psnr"], summary[lo]["psnr"]
        ok = a["mean"] > b["mean"]
        holds &= ok
        sep = a["n"] >= 2 and b["n"] >= 2 and (a["min"] > b["max"] or a["max"] < b["min"])
        parts.append(f"{ARMS[hi].label} {'>' if ok else '<='} {ARMS[lo].label} "
                     f"({a['mean'] - b['mean']:+.2f} dB, "
                     f"{'beyond' if sep else 'within'} the seed spread)")
    order = " > ".join(ARMS[n].label for n in present)
    verdict = "HOLDS" if holds else "does NOT hold"
    return f"paper ordering {order}: {verdict} on the means; " + "; ".join(parts)


def markdown(meta: dict, summary: dict, blurry: dict | None, stage1: dict,
             params: dict[str, int], complete: bool, timings: dict[str, dict | None]) -> str:
    lines = [
        "## Table IV ablation: short-budget synthetic results",
        "",
        f"Not comparable to the paper's DVD numbers (given for reference): stage 1 "
        f"{meta['stage1_steps']} steps, stage 2 {meta['steps']} steps, batch {meta['batch']} x "
        f"{meta['crop']}x{meta['crop']} synthetic patches, seeds {meta['seeds']}; scored on "
        f"{meta['heldout_samples']} held-out synthetic scenes of {meta['heldout_size']}x"
        f"{meta['heldout_size']} (seed {HELDOUT_SEED}), outputs quantised to 8 bits. "
        "PSNR/SSIM: mean ± std over seeds [min, max]. A gap is 'beyond the seed spread' when "
        "the per-seed ranges of the variant and of full do not overlap."
        + ("" if complete else " INCOMPLETE: some runs are missing."),
        "",
        "| variant (paper name) | key | params | seeds | PSNR (dB) | SSIM | ΔPSNR vs full | "
        "gap beyond seed spread | flow EPE (px) | paper PSNR / SSIM (DVD) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in summary.items():
        arm = ARMS[name]
        if "psnr" not in e:
            lines.append(f"| {arm.label} | {name} | {params[name]:,} | diverged "
                         f"{e['diverged']} | – | – | – | – | – | {arm.paper_psnr:.2f} / "
                         f"{arm.paper_ssim:.3f} |")
            continue
        seeds = ",".join(map(str, e["seeds"])) + (f" (diverged: {e['diverged']})"
                                                  if e["diverged"] else "")
        gap = f"{e['gap_vs_full']:+.2f}" if "gap_vs_full" in e else "–"
        beyond = "–" if name == "full" else \
            {True: "yes", False: "no", None: "n/a"}[e.get("beyond_spread")]
        epe = format_stats(e["flow_epe"], 2) if "flow_epe" in e else "–"
        lines.append(f"| {arm.label} | {name} | {params[name]:,} | {seeds} | "
                     f"{format_stats(e['psnr'], 2)} | {format_stats(e['ssim'], 4)} | {gap} | "
                     f"{beyond} | {epe} | {arm.paper_psnr:.2f} / {arm.paper_ssim:.3f} |")
    if blurry is not None:
        lines.append(f"| blurry input | – | – | – | {blurry['psnr']:.2f} | {blurry['ssim']:.4f} "
                     "| – | – | – | – |")
    lines += ["", ordering_check(summary)]
    if stage1:
        lines += ["", "### Stage-1 flow accuracy (finest flow, x4 bilinear to full resolution)",
                  "", "| stage-1 flow net | test set | EPE model (px) | EPE zero flow (px) |",
                  "|---|---|---|---|"]
        for variant, rep in stage1.items():
            s, m = rep["synthetic"], rep["motorcycle"]
            lines.append(f"| {variant} | synthetic held-out ({s['samples']} scenes) | "
                         f"{s['epe']:.3f} | {s['zero_epe']:.3f} |")
            h, w = m["size"]
            lines.append(f"| {variant} | Middlebury motorcycle, 1/{m['scale']} scale ({h}x{w}) | "
                         f"{m['epe']:.3f} | {m['zero_epe']:.3f} |")
    done = {k: t for k, t in timings.items() if t and t["steps"]}
    if done:
        lines += ["", f"Training wall time per run on {meta['device']} (start-up included): "
                  + ", ".join(f"{k} {t['seconds']:.0f} s ({1000 * t['seconds'] / t['steps']:.0f}"
                              " ms/step)" for k, t in done.items())]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The protocol


class PlannedRun(NamedTuple):
    """One stage-2 training run of the protocol."""

    name: str  # ARMS key
    seed: int
    config: TrainConfig


@dataclass(frozen=True)
class Plan:
    """Every training run of the protocol, configured before any of them starts."""

    stage1: dict[str, TrainConfig]  # flow-network variant -> its stage-1 run
    inits: dict[str, Path]  # flow-network variant -> that stage 1's flownet_init.safetensors
    runs: list[PlannedRun]  # seed-major: an early stop leaves whole seeds


@dataclass
class Results:
    """What the protocol has measured so far (written out even when it stops early)."""

    runs: dict[str, dict[int, dict | None]]  # variant -> seed -> score (None: diverged)
    heldout: list[dict] | None = None
    stage1: dict[str, dict] = field(default_factory=dict)  # flow-network variant -> report
    timings: dict[str, dict | None] = field(default_factory=dict)  # run folder -> timing.json


def _stage1_source(arm: Arm, own_bidirectional: bool) -> str | None:
    """The stage-1 flow network a variant starts from (None: it has no flow network)."""
    if arm.variant == "bidirectional" and own_bidirectional:
        return "bidirectional"
    return None if arm.variant == "no_rnn" else "full"


def make_plan(args: argparse.Namespace, variants: list[str], seeds: list[int]) -> Plan:
    """Every config up front: typos in --set and runs of another protocol in --out fail
    before any training starts."""
    own = args.bidirectional_stage1 == "own"
    needed = {_stage1_source(ARMS[v], own) for v in variants} - {None}
    stage1 = {v: stage1_config(args, v) for v in sorted(needed)}
    inits = {v: Path(c.run_dir) / "flownet_init.safetensors" for v, c in stage1.items()}
    runs = []
    for seed in seeds:
        for name in variants:
            source = _stage1_source(ARMS[name], own)
            init = inits[source] if source is not None else None
            runs.append(PlannedRun(name, seed, stage2_config(args, name, seed, init)))
    for config in [*stage1.values(), *(r.config for r in runs)]:
        check_same_run(config)
    return Plan(stage1, inits, runs)


def run_stage1(args: argparse.Namespace, plan: Plan, spec: dict, results: Results,
               runtime: Runtime, deadline: float | None) -> None:
    """Train (or find done) each stage 1, then score its flow network."""
    for variant, config in plan.stage1.items():
        results.stage1[variant] = stage1_flow_report(
            config, plan.inits[variant], results.heldout, spec, runtime.device, args.scale,
            deadline)
        results.timings[f"stage1_{variant}"] = read_json(Path(config.run_dir) / TIMING)


def run_stage2(plan: Plan, spec: dict, results: Results, runtime: Runtime,
               deadline: float | None) -> None:
    """Train (or find done) each variant x seed, then score it on the held-out set."""
    for name, seed, config in plan.runs:
        score = score_run(config, results.heldout, spec, runtime, deadline)
        if score is not None:
            score = {k: v for k, v in score.items() if k != "heldout"}
            print(f"ablation: {name} seed {seed}: PSNR {score['psnr']:.2f} dB, SSIM "
                  f"{score['ssim']:.4f}", flush=True)
        results.runs[name][seed] = score
        results.timings[f"{name}_seed{seed}"] = read_json(Path(config.run_dir) / TIMING)


def protocol_meta(args: argparse.Namespace, variants: list[str], seeds: list[int],
                  runtime: Runtime) -> dict:
    """The settings that define this protocol's results (saved in ablation.json)."""
    return {"stage1_steps": args.stage1_steps, "steps": args.steps, "batch": args.batch,
            "crop": args.crop, "seeds": seeds, "variants": variants,
            "heldout_samples": args.heldout_samples,
            "heldout_size": args.heldout_size or args.crop, "heldout_seed": HELDOUT_SEED,
            "stage2_config": str(STAGE2_CONFIG.relative_to(ROOT)), "set": list(args.set),
            "stage1_config": str(STAGE1_CONFIG.relative_to(ROOT)),
            "stage1_set": list(args.stage1_set), "stage1_seed": args.stage1_seed,
            "bidirectional_stage1": args.bidirectional_stage1, "device": str(runtime.device)}


def write_results(args: argparse.Namespace, meta: dict, results: Results, complete: bool,
                  runtime: Runtime) -> None:
    """ablation.json and ablation.md in --out (and the --export copy); prints the table."""
    out: Path = args.out
    summary = summarize({v: r for v, r in results.runs.items() if r})
    params = {v: count_parameters(FlowDeblurNet(ARMS[v].variant)) for v in meta["variants"]}
    blurry = score_model(None, results.heldout, runtime) if results.heldout is not None else None
    table = markdown(meta, summary, blurry, results.stage1, params, complete, results.timings)
    result = {"meta": meta, "complete": complete, "runs": {
        v: {str(s): r for s, r in by_seed.items()} for v, by_seed in results.runs.items()},
        "summary": summary, "blurry_input": blurry, "stage1_flow": results.stage1,
        "params": params, "timings": results.timings, "ordering": ordering_check(summary)}
    atomic_write_text(out / "ablation.json", json.dumps(result, indent=1))
    atomic_write_text(out / "ablation.md", table)
    if args.export:
        export_state(out, Path(args.export))
    print(table, flush=True)


def run_protocol(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget_s if args.budget_s else None
    # Scores are figures the project reports: fp32, whatever the device.
    runtime = Runtime.resolve(args.device, purpose="report")
    variants = comma_list(args.variants, "--variants", choices=ARMS)
    seeds = comma_list(args.seeds, "--seeds", int)
    plan = make_plan(args, variants, seeds)
    meta = protocol_meta(args, variants, seeds, runtime)
    results = Results(runs={v: {} for v in variants})
    complete = False
    message = ""
    try:
        spec, results.heldout = heldout_set(args, plan.runs[0].config)
        run_stage1(args, plan, spec, results, runtime, deadline)
        run_stage2(plan, spec, results, runtime, deadline)
        complete = True
    except Stop as e:
        message = f"ablation: stopped early ({e}); run the same command again to continue"
    finally:
        write_results(args, meta, results, complete, runtime)
        if message:
            print(message, flush=True)
    return 0 if complete else EXIT_INCOMPLETE


#: The files that record a run without its weights: enough to resume the protocol elsewhere.
STATE_FILES = ("config.yaml", "losses.jsonl", TIMING, "score.json", "flow_epe.json",
               "diverged.json", "flownet_init.safetensors")


def export_state(out: Path, dest: Path) -> None:
    """Copy the tables and every run's small state files (no weights, no checkpoints) to
    ``dest``; ``--out`` pointing at such a copy continues the protocol (runs with a score are
    done, a stage 1 with its flownet_init is done)."""
    runs = [p for p in sorted(out.iterdir()) if p.is_dir()]
    files = [out / "ablation.json", out / "ablation.md",
             *(run / name for run in runs for name in STATE_FILES)]
    for path in files:
        if path.is_file():
            atomic_copy(path, dest / path.relative_to(out))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage1-steps", type=int, default=3000)
    p.add_argument("--steps", type=int, default=3000, help="stage-2 steps of every run")
    p.add_argument("--seeds", default="0,1", help="comma-separated stage-2 seeds")
    p.add_argument("--variants", default=",".join(ARMS),
                   help=f"comma-separated subset of {','.join(ARMS)}")
    p.add_argument("--crop", type=int, default=256, help="patch side (a multiple of 64)")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--heldout-samples", type=int, default=64)
    p.add_argument("--heldout-size", type=int, default=0, help="0: the --crop size")
    p.add_argument("--scale", type=int, default=4,
                   help="downscale factor of the motorcycle stereo pair for the flow EPE")
    p.add_argument("--stage1-seed", type=int, default=100,
                   help="seed of stage 1 (apart from the stage-2 seeds: other data)")
    p.add_argument("--bidirectional-stage1", choices=("own", "full"), default="own",
                   help="'own': a three-frame stage 1; 'full': start from the two-frame one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of every stage-2 config (repeatable), e.g. optim.lr=4e-4")
    p.add_argument("--stage1-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override of the stage-1 configs (repeatable)")
    p.add_argument("--budget-s", type=float, default=0,
                   help="start no new training run after this many seconds (0: no limit)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="also copy the tables and each run's small state files (scores, "
                   "configs, losses, stage-1 flow init; no weights) here, e.g. $OUT/ablation")
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: 3 steps, 64x64, batch 1, full and no_rnn, seeds 0,1, "
                   "2 held-out scenes (options given explicitly still apply)")
    args = p.parse_args(argv)
    if args.quick:  # tiny settings, except where an option was given explicitly
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    for key in ("stage1_steps", "steps", "crop", "batch", "heldout_samples", "scale"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if args.crop % 64:
        raise UserError(f"--crop must be a multiple of 64 (stage 1 needs it), got {args.crop}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        return run_protocol(parse_args(argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
