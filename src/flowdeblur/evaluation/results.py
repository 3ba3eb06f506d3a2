"""The result of an evaluation: scores per frame, per sequence and overall, as JSON, CSV or a
table; result files written whole or not at all."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..media.atomic import atomic_write_text, check_can_create

METRICS = ("psnr", "ssim", "temporal_error")


@dataclass
class EvalResult:
    """Scores of one evaluation.

    per_sequence: sequence name -> {"psnr", "ssim", "temporal_error", "frames"} (means over the
        sequence's scored frames; temporal_error over its pairs of consecutive scored frames,
        NaN when there are none, e.g. under ``su30``).
    mean: {"psnr", "ssim", "temporal_error"}: means over all scored frames (pairs).
    protocol: the protocol name ("folders" for :func:`evaluate_folders`).
    frames: number of scored frames.
    settings: how the scores were made (crop, Y, quantisation, data, ...), for the record.
    per_frame: one {"sequence", "frame", "psnr", "ssim"} per scored frame, in order.
    """

    per_sequence: dict[str, dict[str, float]]
    mean: dict[str, float]
    protocol: str
    frames: int
    settings: dict[str, object] = field(default_factory=dict)
    per_frame: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready data; NaN and infinite values become None."""
        return _finite(
            {
                "protocol": self.protocol,
                "frames": self.frames,
                "mean": self.mean,
                "per_sequence": self.per_sequence,
                "settings": self.settings,
                "per_frame": self.per_frame,
            }
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON text; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        if path is not None:
            _write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """One row per sequence, then a ``mean`` row; also written to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["sequence", "frames", *METRICS])
        rows = [(name, s) for name, s in self.per_sequence.items()]
        rows.append(("mean", {**self.mean, "frames": self.frames}))
        for name, s in rows:
            writer.writerow([name, int(s["frames"]), *(_csv_number(s[m]) for m in METRICS)])
        text = buf.getvalue()
        if path is not None:
            _write_text(path, text)
        return text

    def format_table(self) -> str:
        """A human-readable table: a header line with the settings, then one row per sequence."""
        s = self.settings
        what = "Y (BT.601)" if s.get("y_channel") else "RGB"
        quant = "outputs quantised to 8 bits" if s.get("quantize") else "no quantisation"
        lines = [
            f"protocol {self.protocol}: {self.frames} frames, {len(self.per_sequence)} "
            f"sequences; PSNR/SSIM on {what}, border crop {s.get('crop_border', 0)}, {quant}",
        ]
        width = max([len("sequence"), *(len(n) for n in self.per_sequence)]) + 2
        lines.append(f"{'sequence':<{width}}{'frames':>7}{'PSNR':>9}{'SSIM':>9}{'temporal':>10}")
        rows = list(self.per_sequence.items()) + [("mean", {**self.mean, "frames": self.frames})]
        for name, r in rows:
            if name == "mean":
                lines.append("-" * (width + 35))
            lines.append(
                f"{name:<{width}}{int(r['frames']):>7}{_fmt(r['psnr'], 3):>9}"
                f"{_fmt(r['ssim'], 4):>9}{_fmt(r['temporal_error'], 5):>10}"
            )
        if s.get("unscored_targets"):
            lines.append(f"({s['unscored_targets']} target images had no output; not scored)")
        return "\n".join(lines)


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def check_result_path(path: str | os.PathLike, what: str = "result") -> None:
    """UserError unless a result file (JSON, CSV) can be written at ``path``: not a folder,
    in a folder that exists and can be written (checked before a long evaluation, and again
    when writing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if not path.resolve().parent.is_dir():
        raise UserError(f"{what} {path}: folder {path.parent} does not exist")
    check_can_create(path, what)


def _write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, into a folder that must exist."""
    check_result_path(path)
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
