"""Files and folders that appear only once complete (flowdeblur.media.atomic)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from flowdeblur.errors import UserError
from flowdeblur.media.atomic import (
    TEMP_SUFFIX,
    PendingFile,
    TargetLock,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    make_parent_folder,
    temp_dir_beside,
    temp_prefix,
)


def test_failure_leaves_the_target_untouched_and_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="stop"), atomic_file(target) as tmp:
        tmp.write_bytes(b"half of the new")
        assert tmp.parent == tmp_path and tmp.name.startswith(temp_prefix(target))
        raise RuntimeError("stop")
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failure_without_a_target_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "new.txt") as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt  # BaseException too: an interrupted run cleans up
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_the_target_whole(tmp_path):
    target = tmp_path / "sub" / "out.txt"  # missing folders are created
    atomic_write_text(target, "first version, longer than the second")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_temp_is_hidden_beside_the_target_and_keeps_a_suffix(tmp_path):
    target = tmp_path / "frame.png"
    with atomic_file(target, suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.is_file()
        assert tmp.name.startswith(".frame.png.") and tmp.name.endswith(TEMP_SUFFIX + ".png")
        assert not target.exists()  # nothing under the real name until the block ends
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_published_file_has_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644


def test_pending_file_commit_and_discard(tmp_path):
    target = tmp_path / "v.mp4"
    kept = PendingFile(target, suffix=".mp4")
    dropped = PendingFile(target, suffix=".mp4")
    assert kept.path != dropped.path  # two writers of one target never share a temporary
    kept.path.write_bytes(b"video")
    dropped.path.write_bytes(b"other")
    dropped.discard()
    dropped.discard()  # a second discard is harmless
    assert not target.exists()
    kept.commit()
    assert target.read_bytes() == b"video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_temp_dir_beside_makes_a_hidden_empty_folder(tmp_path):
    target = tmp_path / "deeper" / "frames"
    a = temp_dir_beside(target)
    b = temp_dir_beside(target)
    for d in (a, b):
        assert d.is_dir() and d.parent == target.parent and list(d.iterdir()) == []
        assert d.name.startswith(temp_prefix(target)) and d.name.endswith(TEMP_SUFFIX)
    assert a != b and not target.exists()


def test_make_parent_folder_names_the_folder_it_cannot_create(tmp_path):
    make_parent_folder(tmp_path / "x" / "y" / "file.png")
    assert (tmp_path / "x" / "y").is_dir()
    (tmp_path / "blocker").write_text("a file where a folder should go")
    with pytest.raises(UserError, match="cannot create output folder .*blocker"):
        make_parent_folder(tmp_path / "blocker" / "sub" / "file.png")


def test_target_lock_keeps_a_second_process_out_until_the_first_is_gone(tmp_path):
    target = tmp_path / "out.mp4"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from flowdeblur.media.atomic import TargetLock\n"
         f"with TargetLock({str(target)!r}):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"being written by another flowdeblur process "
                                            rf"\(process {holder.pid}\)"):
            with TargetLock(target):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder's lock goes with it
        holder.wait()
    with TargetLock(target) as lock:
        assert lock.path.exists()
    assert not lock.path.exists() and not target.exists()  # nothing left behind
    # Another spelling of the same place is the same lock.
    with TargetLock(target):
        with pytest.raises(UserError, match="being written"):
            with TargetLock(tmp_path / "." / "x" / ".." / "out.mp4"):
                pass
