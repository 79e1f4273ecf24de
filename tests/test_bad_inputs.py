"""Untrusted detector images: a damaged file gives one line in bounded time, never a hang."""

from __future__ import annotations

import bz2
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hitbench.data.formats import CBF_BINARY_START, read_image
from hitbench.errors import HitbenchError

HITBENCH = str(Path(sys.executable).with_name("hitbench"))


@pytest.fixture
def damaged_cbf(tmp_path: Path) -> Path:
    import fabio.cbfimage

    good = tmp_path / "good.cbf"
    fabio.cbfimage.CbfImage(data=np.arange(64 * 64, dtype=np.int32).reshape(64, 64)).write(str(good))
    assert read_image(good).frame.shape == (64, 64)
    content = good.read_bytes()
    assert content.count(CBF_BINARY_START) == 1
    path = tmp_path / "damaged.cbf"
    path.write_bytes(content.replace(CBF_BINARY_START, b"\x0c\x1a\x04\x00"))
    return path


def test_damaged_cbf_marker_is_refused_before_fabio(damaged_cbf: Path, tmp_path: Path) -> None:
    with pytest.raises(HitbenchError, match="without a binary section"):
        read_image(damaged_cbf)
    packed = tmp_path / "damaged.cbf.bz2"
    packed.write_bytes(bz2.compress(damaged_cbf.read_bytes()))
    with pytest.raises(HitbenchError, match="without a binary section"):
        read_image(packed)


def test_info_on_a_damaged_cbf_gives_one_line_in_bounded_time(damaged_cbf: Path) -> None:
    result = subprocess.run([HITBENCH, "info", str(damaged_cbf)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"hitbench: error: {damaged_cbf}: CBF file without a binary section (its start marker is missing or "
        "damaged); the file is truncated or corrupt"
    ]
