"""CPU time and memory of the stack's processes, read from /proc (Linux only).

Workers and services are found through the pid files `scripts/dev.sh` and `scripts/infra/infra.sh`
write (`.infra/pids/<name>.pid`). A service may be a tree (postgres: runuser -> postmaster ->
backends), so CPU is summed over the live tree, counting each process's reaped children through
its cutime/cstime: a backend that exits between two samples is still counted, never twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

WORKERS = ("client-1", "client-2", "client-3", "server-1", "server-2", "server-3")
SERVICES = ("kafka-1", "kafka-2", "kafka-3", "postgres", "ferretdb", "jaeger", "prometheus")


@dataclass(frozen=True)
class StatLine:
    """The fields of /proc/<pid>/stat the benchmark needs."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """CPU ticks of the process and of its reaped children."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> StatLine:
    """Parse /proc/<pid>/stat; the command name may hold spaces and parentheses."""
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()
    # fields[0] is field 3 (state): utime is field 14, so fields[11].
    return StatLine(
        pid=pid,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def parse_status_kb(text: str, key: str) -> int | None:
    """A `Key:   123 kB` figure of /proc/<pid>/status, in kB (None when absent, e.g. a zombie)."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            parts = line.split()
            return int(parts[1]) if len(parts) > 1 else None
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_stat(pid: int) -> StatLine | None:
    """The process's stat line, or None once it is gone."""
    text = _read(f"/proc/{pid}/stat")
    return parse_stat(text) if text else None


def read_status_kb(pid: int, key: str) -> int | None:
    """One kB figure (VmHWM, VmRSS) of the process, or None."""
    text = _read(f"/proc/{pid}/status")
    return parse_status_kb(text, key) if text else None


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every live process."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry))
        if stat is not None:
            tree.setdefault(stat.ppid, []).append(stat.pid)
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    """The pid and every live descendant of it."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, ()))
    return found


@dataclass(frozen=True)
class Sample:
    """One process (tree) at one moment."""

    name: str
    pid: int
    cpu_seconds: float
    rss_kb: int
    hwm_kb: int


def read_pid_file(pid_dir: Path, name: str) -> int | None:
    """The pid recorded for a worker or service, when the process is alive."""
    try:
        pid = int((pid_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if read_stat(pid) is not None else None


def sample_tree(name: str, pid: int, tree: dict[int, list[int]]) -> Sample | None:
    """CPU seconds, RSS and peak RSS summed over a process tree (None when it is gone)."""
    ticks = rss = hwm = 0
    found = False
    for member in descendants(pid, tree):
        stat = read_stat(member)
        if stat is None:
            continue
        found = True
        ticks += stat.ticks
        rss += read_status_kb(member, "VmRSS") or 0
        hwm += read_status_kb(member, "VmHWM") or 0
    if not found:
        return None
    return Sample(name, pid, ticks / CLOCK_TICKS, rss, hwm)


def sample_all(pid_dir: Path, names: tuple[str, ...] = WORKERS + SERVICES) -> dict[str, Sample]:
    """A sample of every named process that is running, and of this process (`bench`)."""
    tree = children_map()
    samples: dict[str, Sample] = {}
    for name in names:
        pid = read_pid_file(pid_dir, name)
        if pid is None:
            continue
        sample = sample_tree(name, pid, tree)
        if sample is not None:
            samples[name] = sample
    own = sample_tree("bench", os.getpid(), tree)
    if own is not None:
        samples["bench"] = own
    return samples


def cpu_delta(before: dict[str, Sample], after: dict[str, Sample]) -> dict[str, float]:
    """CPU seconds each process spent between two samples (processes present in both)."""
    return {
        name: round(after[name].cpu_seconds - before[name].cpu_seconds, 3)
        for name in after
        if name in before and after[name].pid == before[name].pid
    }
