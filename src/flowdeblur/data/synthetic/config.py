"""What the scene generator draws from: :class:`SceneConfig`, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UserError
from ..textures import SOURCES

CAMERA_MOTIONS = ("pan", "rotation", "zoom", "perspective", "shake")
OBJECT_MOTIONS = ("translation", "rotation", "scale", "shake")
RENDERERS = ("auto", "torch", "triton", "numba")

# Fields that hold a (low, high) range drawn uniformly.
_RANGES = ("duty_cycle", "noise_std", "motion_range", "shake_frequency", "texture_scale",
           "object_radius", "edge_softness")


@dataclass
class SceneConfig:
    """What the scene generator draws from. Ranges are ``(low, high)``, drawn uniformly.

    Motion magnitudes are image-space speeds in pixels per frame interval at the largest; a
    sample's magnitude is ``max * U(motion_range)``, shared among the enabled motion kinds.
    """

    size: tuple[int, int] = (256, 256)  # H, W of the output
    max_layers: int = 4  # foreground layers (min_layers..max_layers)
    max_camera_motion: float = 24.0  # pixels per frame interval at the largest
    max_object_motion: float = 24.0
    duty_cycle: tuple[float, float] = (0.25, 1.0)  # exposure / frame interval
    noise_std: tuple[float, float] = (0.0, 0.01)  # in [0,1] units, after gamma
    gamma: float = 2.2
    quantize: bool = True
    still_probability: float = 0.05  # some samples with no motion at all
    three_frames: bool = False
    # --- beyond the required fields ---
    min_layers: int = 0
    textures: str = "mixed"  # texture bank: mixed, photos, dead_leaves, smooth
    photo_dirs: tuple[str, ...] = ()  # folders of the user's photographs, added to the bank
    motion_range: tuple[float, float] = (0.0, 1.0)  # fraction of the max motion
    camera_motions: tuple[str, ...] = CAMERA_MOTIONS
    object_motions: tuple[str, ...] = OBJECT_MOTIONS
    acceleration: float = 0.3  # speed may change by up to this fraction per frame interval
    shake_frequency: tuple[float, float] = (0.3, 2.0)  # cycles per frame interval
    texture_scale: tuple[float, float] = (0.6, 1.25)  # texture pixels per image pixel
    texture_rotation: float = 180.0  # degrees, at most, either way
    object_radius: tuple[float, float] = (0.08, 0.3)  # fraction of min(H, W)
    edge_softness: tuple[float, float] = (0.7, 1.5)  # width of the alpha ramp, pixels
    tint_gray: bool = True  # colour the grayscale photographs
    max_subframe_step: float = 1.0  # pixels between consecutive sub-frames, at most
    max_subframes: int = 160
    subframe_groups: int = 4  # exposures are rendered in up to this many sub-frame counts
    renderer: str = "auto"  # auto (fused: Triton on CUDA, numba on CPU), torch, triton, numba
    chunk_points: int = 0  # torch renderer: layer samples per chunk; 0: 2**22 CPU, 2**25 GPU

    def __post_init__(self) -> None:
        self._normalise_size()
        for name in _RANGES:
            self._normalise_range(name)
        self._check_ranges()
        self._check_counts_and_magnitudes()
        self._check_choices()
        if self.max_subframe_step <= 0 or self.max_subframes < 1 or self.subframe_groups < 1:
            raise UserError("SceneConfig needs max_subframe_step > 0, max_subframes >= 1 and "
                            "subframe_groups >= 1")

    def _normalise_size(self) -> None:
        try:
            h, w = (int(v) for v in self.size)
        except (TypeError, ValueError):
            raise UserError(
                f"SceneConfig.size must be (height, width), got {self.size!r}") from None
        if h < 2 or w < 2:
            raise UserError(f"SceneConfig.size must be at least 2x2, got {self.size!r}")
        self.size = (h, w)

    def _normalise_range(self, name: str) -> None:
        value = getattr(self, name)
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise UserError(
                f"SceneConfig.{name} must be a (low, high) pair, got {value!r}") from None
        if not lo <= hi:
            raise UserError(f"SceneConfig.{name} must have low <= high, got {value!r}")
        setattr(self, name, (lo, hi))

    def _check_ranges(self) -> None:
        if not (0 < self.duty_cycle[0] and self.duty_cycle[1] <= 1):
            raise UserError(f"SceneConfig.duty_cycle must lie in (0, 1], got {self.duty_cycle}")
        if self.noise_std[0] < 0 or self.motion_range[0] < 0 or self.texture_scale[0] <= 0:
            raise UserError("SceneConfig noise_std, motion_range and texture_scale must be >= 0")
        if self.object_radius[0] <= 0 or self.edge_softness[0] <= 0:
            raise UserError("SceneConfig object_radius and edge_softness must be positive")

    def _check_counts_and_magnitudes(self) -> None:
        if not 0 <= self.min_layers <= self.max_layers:
            raise UserError(
                f"SceneConfig needs 0 <= min_layers <= max_layers, got {self.min_layers} "
                f"and {self.max_layers}"
            )
        if self.max_camera_motion < 0 or self.max_object_motion < 0:
            raise UserError("SceneConfig max_camera_motion and max_object_motion must be >= 0")
        if not 0 <= self.still_probability <= 1:
            raise UserError(f"SceneConfig.still_probability must be in [0, 1], got "
                            f"{self.still_probability}")
        if self.gamma <= 0:
            raise UserError(f"SceneConfig.gamma must be positive, got {self.gamma}")

    def _check_choices(self) -> None:
        if self.textures not in SOURCES:
            raise UserError(f"SceneConfig.textures must be one of {SOURCES}, got "
                            f"{self.textures!r}")
        if isinstance(self.photo_dirs, str):
            raise UserError("SceneConfig.photo_dirs must be a list of folders, got a string")
        self.photo_dirs = tuple(str(d) for d in self.photo_dirs)
        self.camera_motions = tuple(self.camera_motions)
        self.object_motions = tuple(self.object_motions)
        for kinds, known, name in ((self.camera_motions, CAMERA_MOTIONS, "camera_motions"),
                                   (self.object_motions, OBJECT_MOTIONS, "object_motions")):
            bad = [k for k in kinds if k not in known]
            if bad:
                raise UserError(f"SceneConfig.{name}: unknown kind(s) {bad}; known: {known}")
        if self.renderer not in RENDERERS:
            raise UserError(f"SceneConfig.renderer must be auto, torch, triton or numba, got "
                            f"{self.renderer!r}")
