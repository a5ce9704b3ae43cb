"""Run one command and measure it from outside: wall time, CPU, and memory of its whole tree.

In: an argv, a timeout, files for its stdout and stderr.  Out: a ``TreeRun`` record.

Why the tree: the project parses in a process pool, so the peak RSS of the parent alone
(what ``wait4`` reports) hides the workers.  Linux keeps each process's own peak
(``VmHWM`` in /proc/PID/status); we sample the tree every ``interval`` seconds and keep

* ``sum_of_peaks_mb``: the sum over every process ever seen of its last known VmHWM, an
  upper bound of the tree's peak (peaks that never coincided are added up), and the figure
  the benchmark judges, to be on the safe side.  The last known, not the largest seen: a
  child sampled between its fork and its exec reports its parent's memory (it shares it),
  and its VmHWM starts again at the exec; keeping that early sample counted the parent
  twice (a cold poll once measured 224 MB instead of 184: a worker "peaked" at 82 MB);
* ``tree_peak_mb``: the largest sum of VmRSS seen in one sample, closer to the truth but a
  sample can miss a short spike;
* ``tree_pss_peak_mb``: the largest sum of PSS (/proc/PID/smaps_rollup) seen in one sample,
  sampled less often as it costs more.  Forked workers share their parent's pages until they
  write to them; RSS counts those pages once per process, PSS splits them, so this one is
  what the tree really holds in memory.

The parent's peak is also taken from ``wait4``: its ``ru_maxrss`` covers the last moments
between the final sample and the exit (it is the largest of the parent and the children it
reaped, so it can only make the sum larger).  Children are found through
/proc/PID/task/TID/children (Linux 3.5+), so no full /proc scan is needed per sample.
Linux only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TreeRun:
    returncode: int | None  # None: killed after the timeout
    wall_s: float
    cpu_s: float  # user + sys of the process and of the children it waited for
    sum_of_peaks_mb: float
    tree_peak_mb: float
    tree_pss_peak_mb: float
    processes: int  # how many processes the tree had in all
    # Each process's own peak (VmHWM), the command first, then the others as first seen.
    process_peaks_mb: tuple[float, ...] = ()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task.name}/children") as fh:
                kids.extend(int(k) for k in fh.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass  # the process ended between two reads
    return kids


def _tree(root: int) -> list[int]:
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(_children(pid))
    return seen


def _memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB, or None when the process is gone or a zombie."""
    rss = hwm = -1
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (rss, hwm) if rss >= 0 and hwm >= 0 else None


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def run_measured(
    argv: Sequence[str],
    *,
    timeout: float,
    stdout: Path,
    stderr: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    interval: float = 0.02,
    pss_every: int = 5,
) -> TreeRun:
    """Run ``argv`` to its end (or kill its whole process group after ``timeout``)."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        t0 = time.perf_counter()
        # A session of its own, so a timeout can kill the workers along with the parent.
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
    peaks: dict[int, int] = {}
    tree_peak = pss_peak = samples = 0
    returncode: int | None = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            returncode = os.waitstatus_to_exitcode(status)
            break
        if time.perf_counter() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        total = 0
        tree = _tree(proc.pid)
        for p in tree:
            mem = _memory_kib(p)
            if mem is not None:
                total += mem[0]
                peaks[p] = mem[1]  # the last known: VmHWM starts again at an exec
        tree_peak = max(tree_peak, total)
        if samples % pss_every == 0:
            pss_peak = max(pss_peak, sum(_pss_kib(p) for p in tree))
        samples += 1
        time.sleep(interval)
    wall = time.perf_counter() - t0
    proc.returncode = returncode if returncode is not None else -9  # already reaped by wait4
    if returncode is None:
        # Orphaned workers of a killed parent would keep running: end the whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    peaks[proc.pid] = max(peaks.get(proc.pid, 0), usage.ru_maxrss)
    own_first = [peaks[proc.pid], *(kib for p, kib in peaks.items() if p != proc.pid)]
    return TreeRun(
        returncode=returncode,
        wall_s=round(wall, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        sum_of_peaks_mb=round(sum(peaks.values()) / 1024, 1),
        tree_peak_mb=round(max(tree_peak, peaks[proc.pid]) / 1024, 1),
        tree_pss_peak_mb=round(pss_peak / 1024, 1),
        processes=len(peaks),
        process_peaks_mb=tuple(round(kib / 1024, 1) for kib in own_first),
    )
