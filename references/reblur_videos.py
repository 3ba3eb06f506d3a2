"""The real blurry videos of the ``reblur`` arm (references/recipe_arms.py), fetched and checked.

    python references/reblur_videos.py [--cache DIR]

Reads references/configs/reblur_videos.json (package, version, path and sha256 of each video).
Unpacks each package with references/real_clips.py's ``unpacked_package`` (``apt-get
download`` and ``dpkg -x``) into the real clips' cache, checks each file's sha256 against the
record, and refuses a video that a dev or test clip of references/real_clips.json or
references/real_clips_motion.json comes from, by path or by content: the arm never trains on
a frame of a source it is scored on. Prints the videos' paths, one a line. The arm's
overrides name the same paths (:func:`video_paths`): run this once before training the arm.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import CONFIGS
from real_clips import DEFAULT_CACHE, DEFINITIONS, clip_source_files, unpacked_package

from flowdeblur.errors import UserError
from flowdeblur.media.atomic import file_sha256

SOURCES = CONFIGS / "reblur_videos.json"


def recorded_videos() -> list[dict]:
    """The training videos of references/configs/reblur_videos.json."""
    return json.loads(SOURCES.read_text())["videos"]


def video_paths(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """Where the unpacked videos lie under ``cache`` (nothing is read or fetched)."""
    return [cache / "packages" / f"{v['package']}_{v['version']}" / v["path"]
            for v in recorded_videos()]


def evaluation_sources() -> dict[str, str]:
    """sha256 -> "package path" of every source file of a dev or test clip, in every
    real-clip definition."""
    sources = {}
    for definition in DEFINITIONS.values():
        data = json.loads(definition.read_text())
        for clip in data["clips"]:
            files = data["packages"][clip["package"]]["files"]
            for rel in clip_source_files(clip):
                sources[files[rel]] = f"{clip['package']} {rel}"
    return sources


def training_videos(cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The videos' paths once fetched and checked; UserError for a sha256 that differs from
    the record, or a video that a dev or test clip comes from."""
    held_out = evaluation_sources()
    paths = []
    for video, path in zip(recorded_videos(), video_paths(cache)):
        name = f"{video['package']} {video['path']}"
        if name in held_out.values() or video["sha256"] in held_out:
            raise UserError(f"{name} is a source of a dev or test clip: never trained on")
        unpacked_package(video["package"], video["version"], cache)
        got = file_sha256(path)
        if got != video["sha256"]:
            raise UserError(f"sha256 of {path} is {got}, the record says {video['sha256']}")
        if got in held_out:
            raise UserError(f"{name} has the content of {held_out[got]}, a dev or test source")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        paths = training_videos(args.cache)
    except UserError as e:
        print(f"reblur_videos: {e}", file=sys.stderr)
        return 2
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
