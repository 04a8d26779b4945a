"""Which procflow a benchmark measured: the git commit of the checkout it imported."""

from __future__ import annotations

import subprocess
from pathlib import Path

import procflow as pf


def git_revision() -> str:
    """`` (git <commit>[, with uncommitted changes])`` of the measured procflow, if known."""
    package = Path(pf.__file__).parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=package, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=package,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    changes = ", with uncommitted changes" if dirty.stdout.strip() else ""
    return f" (git {head.stdout.strip()}{changes})"
