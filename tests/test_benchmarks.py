"""The benchmarks run, in their CI-sized form (their figures are for BENCHMARKS.md, not checked here)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, needs_spandrel

pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_render_speed_on_the_demo_model():
    out = run("render_speed.py", "--workload", "demo", "--images", "8", "--repeats", "1")
    row = next(line for line in out.splitlines() if line.startswith("demo "))
    plain, ours, ratio = re.search(r"([\d.]+)\s+([\d.]+)\s+([\d.]+)x", row).groups()
    assert float(plain) > 0 and float(ours) > 0 and float(ratio) > 0


def test_noop_build_imports_nothing_heavy():
    out = run("noop_build.py", "--runs", "1", "--big", "0")
    lines = [line for line in out.splitlines() if "with everything cached" in line]
    assert len(lines) == 3 and all(line.endswith("imports []") for line in lines), out


@needs_spandrel()
def test_upscale_speed_on_the_tiny_network():
    out = run("upscale_speed.py", "--workload", "tiny", "--images", "4", "--repeats", "1")
    row = next(line for line in out.splitlines() if line.startswith("tiny |"))
    assert "| ours |" in row
    plain, ours, ratio = re.search(r"\| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$", row).groups()
    assert float(plain) > 0 and float(ours) > 0 and float(ratio) > 0


def test_gpu_speed_runs_its_steps_on_tiny_models():
    """benchmarks/gpu.sh's per-workload script, on tiny models (any device; the figures mean nothing):
    the sweep, the sides, the bound and the table all come out."""
    out = run("gpu_speed.py", "--workload", "sd15", "--tiny", "--no-compile", "--repeats", "1", "--budget", "300")
    assert "sweep: batch    2:" in out and "denoiser:" in out
    rows = [line for line in out.splitlines() if line.startswith("| sd15 |")]
    assert [row.split(" | ")[1] for row in rows] == ["plain", "auto", "best", "best+cl+fuse"], out
