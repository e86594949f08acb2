"""``make run`` installs what the UI needs beyond Python (the emoji font), never fatally."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.code_facts import REPO

MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path, "HOME": "/tmp"},
        check=False,
    )


def test_run_installs_the_ui_deps_first() -> None:
    plan = _make("-n", "run", path="/usr/bin:/bin").stdout
    assert plan.index("fonts-noto-color-emoji") < plan.index("chatbot ui")


def test_ui_deps_is_a_no_op_when_the_font_is_there(tmp_path: Path) -> None:
    font = tmp_path / "NotoColorEmoji.ttf"
    font.write_bytes(b"")
    done = _make("ui-deps", f"EMOJI_FONT={font}", path="/usr/bin:/bin")
    assert done.returncode == 0 and done.stdout == ""


def test_ui_deps_without_apt_get_says_what_to_install(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with a shell and nothing else: no apt-get
    bare.mkdir()
    for tool in ("sh", "id"):
        found = shutil.which(tool)
        assert found
        (bare / tool).symlink_to(found)
    done = _make("ui-deps", f"EMOJI_FONT={tmp_path / 'missing.ttf'}", path=str(bare))
    assert done.returncode == 0, done.stderr
    assert "install an emoji font" in done.stdout
