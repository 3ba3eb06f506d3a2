"""What ``flowdeblur bench`` measured: timings and the rows of each table, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Timing:
    """Seconds per call: median (the figure reported), min, max, and how it was taken."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int
    warmup: int
    first_call_s: float | None = None

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


@dataclass
class InferenceResult:
    device: str
    precision: str
    mode: str
    convs: Timing | None = None
    full: Timing | None = None
    peak_memory_gib: float | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.convs is None or self.full is None:
            return None
        return self.full.median_s / self.convs.median_s


@dataclass
class RnnLayerResult:
    device: str
    precision: str
    backend: str
    shapes: list[tuple[int, ...]]
    timings: list[Timing]
    error: str | None = None
    #: False: forward under no_grad; True: forward + backward.
    backward: bool = False

    @property
    def total_s(self) -> float:
        return sum(t.median_s for t in self.timings)


@dataclass
class TrainResult:
    device: str
    precision: str
    mode: str
    batch: int
    size: tuple[int, int]
    standin: Timing | None = None
    full: Timing | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.standin is None or self.full is None:
            return None
        return self.full.median_s / self.standin.median_s


@dataclass
class BenchReport:
    command: str
    date: str
    machine: dict
    variant: str
    parameters: int
    size: tuple[int, int]
    padded_size: tuple[int, int]
    batch: int
    backends: dict[str, str]
    conv_gflop: float | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    inference: list[InferenceResult] = field(default_factory=list)
    rnn_layers: list[RnnLayerResult] = field(default_factory=list)
    train: list[TrainResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Plain JSON-able dict, derived figures (ratios, milliseconds) included."""
        data = asdict(self)
        for row, obj in zip(data["inference"], self.inference):
            row["ratio"] = obj.ratio
        for row, obj in zip(data["train"], self.train):
            row["ratio"] = obj.ratio
        for row, obj in zip(data["rnn_layers"], self.rnn_layers):
            row["total_s"] = obj.total_s
        return data

