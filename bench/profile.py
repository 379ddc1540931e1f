"""Optional sampling profiles of the workers with py-spy (used only when py-spy is available).

`py-spy record --format raw` writes collapsed stacks ("frame;frame;frame count"); `top_frames`
turns them into the functions that held the CPU (self) and that were on the stack (inclusive).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import procstat
from bench.stack import PID_DIR

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def find_py_spy(explicit: str | None = None) -> str | None:
    """The py-spy executable: the given path, the one beside this Python (the bench extra
    installs it), or py-spy on PATH, or None."""
    if explicit:
        return explicit if Path(explicit).exists() else None
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _short(frame: str) -> str:
    """`function (path/to/site-packages/pkg/mod.py:123)` -> `pkg/mod.py:function`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['function']}"


#: Leaf frames that mean "waiting", not working: such samples are left out.
IDLE = (
    "selectors.py:EpollSelector.select",
    "selectors.py:PollSelector.select",
    "threading.py:Condition.wait",
    "threading.py:Event.wait",
    "threading.py:Thread.join",
    "threading.py:Lock.acquire",
)
#: Frames on nearly every stack (entry points, the event loop): useless in the inclusive list.
BOILERPLATE = (
    "<frozen runpy>",
    "click/",
    "faust/cli/",
    "faust/app/base.py:App.main",
    "jobstream/__main__.py",
    "mode/worker.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "asyncio/runners.py",
    "threading.py:Thread._bootstrap",
    "threading.py:Thread.run",
)


def package_of(frame: str) -> str:
    """`aiokafka/producer/sender.py:Sender.run` -> `aiokafka`; `selectors.py:...` -> `selectors`."""
    path = frame.split(":", 1)[0]
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if head else path


def top_frames(collapsed: str, limit: int = 15) -> dict[str, Any]:
    """Where a collapsed-stack profile spent its busy samples (waiting samples left out).

    Returns the busy and idle sample counts, and shares of the busy samples: by package of the
    frame on the CPU (`packages`), by function on the CPU (`self`), and by function anywhere on
    the stack (`inclusive`, entry points and the event loop left out).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    samples = idle = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith(IDLE):
            idle += count
            continue
        samples += count
        own[frames[-1]] += count
        packages[package_of(frames[-1])] += count
        for frame in set(frames):
            if not frame.startswith(BOILERPLATE):
                inclusive[frame] += count
    if not samples:
        return {"samples": 0, "idle_samples": idle, "packages": [], "self": [], "inclusive": []}

    def share(counter: Counter[str], n: int = limit) -> list[list[Any]]:
        return [[name, round(100 * c / samples, 1)] for name, c in counter.most_common(n)]

    return {
        "samples": samples,
        "idle_samples": idle,
        "packages": share(packages, 12),
        "self": share(own),
        "inclusive": share(inclusive),
    }


async def record(
    py_spy: str, workers: list[str], seconds: float, out_dir: Path, tag: str = "", rate: int = 100
) -> dict[str, Any]:
    """Profile the named workers concurrently for `seconds`; returns their top frames."""
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, tiny)

    async def one(name: str) -> tuple[str, dict[str, Any]]:
        pid = procstat.read_pid_file(PID_DIR, name)
        if pid is None:
            return name, {"error": "not running"}
        target = out_dir / f"{tag + '-' if tag else ''}{name}.txt"
        process = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(int(seconds), 1)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(target),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0 or not target.exists():
            return name, {"error": err.decode(errors="replace")[-500:]}
        return name, {"file": target.name, **top_frames(target.read_text())}

    pairs = await asyncio.gather(*(one(name) for name in workers))
    return dict(pairs)
