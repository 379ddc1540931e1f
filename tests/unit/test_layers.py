"""The layering holds: storage and bootstrap stay free of the web stack and the metrics library."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("faust", "mode", "aiohttp", "prometheus_client")


@pytest.mark.parametrize(
    "module",
    ["jobstream.storage", "jobstream.memory", "jobstream.bootstrap", "jobstream.expressions"],
)
def test_module_imports_neither_faust_nor_aiohttp_nor_prometheus_client(module: str) -> None:
    # a fresh interpreter, so that what other tests imported does not count
    probe = f"import sys, {module}; print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "", f"{module} pulls in {done.stdout.strip()}"
