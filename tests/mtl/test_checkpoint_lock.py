"""One training run per checkpoint folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alloy_mtl.mtl.training.checkpoint_lock import CheckpointFolderInUse, checkpoint_lock


def test_a_second_run_on_one_folder_is_refused_naming_the_first_and_the_folder_is_freed_after(tmp_path):
    folder = tmp_path / "fnn" / "checkpoints"
    with checkpoint_lock(folder):
        assert "process" in (tmp_path / "fnn" / "checkpoints.lock.owner").read_text()
        with pytest.raises(
            CheckpointFolderInUse, match=r"checkpoints: another training run .*host .*process \d+"
        ):
            with checkpoint_lock(folder):
                pass
        with checkpoint_lock(tmp_path / "resnet18" / "checkpoints"):  # another architecture: its own folder
            pass
    assert not (tmp_path / "fnn" / "checkpoints.lock.owner").exists()
    with checkpoint_lock(folder):  # released
        pass
    with checkpoint_lock(None):
        pass


def test_a_killed_run_leaves_the_folder_free(tmp_path):
    folder = tmp_path / "checkpoints"
    code = (
        "import os, sys\n"
        "from alloy_mtl.mtl.training.checkpoint_lock import checkpoint_lock\n"
        f"with checkpoint_lock({str(folder)!r}):\n"
        "    os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    with checkpoint_lock(folder):  # the operating system released the dead process's lock
        pass
