"""Polling benchmark: the project's ``aggregator poll`` beside lemon24's ``reader``, same feeds, same run.

In: options (``--feeds``, ``--latency-ms``, ``--repeat``, ``--workers``, ``--quick``,
``--no-reader``, ...).  Out: a table on stdout (phase, reader at its best ``workers``, the
project, the ratio, the target, pass/fail, entries stored by each), one JSON line per tool run
plus one summary line appended to ``bench/results/poll.jsonl``, and exit status 0 when every
target is met, 1 when one is missed, 2 when a tool did not run at all.

How: bench/feedserver.py serves ``--feeds`` generated feeds (bench/feedgen.py: 20-50 entries of
1-3 KB HTML each, RSS and Atom) on 127.0.0.1 with ``--latency-ms`` added to every response,
ETag/Last-Modified (304) and gzip.  Each tool then goes through three phases on one database:

    cold   first poll into an empty database: every feed answers 200
    warm   the same again: every feed answers 304
    bump   10% of the feeds gained two entries; the rest answer 304

The project runs as its CLI, one process per phase (``aggregator --config FEEDS_YAML poll
--json``), measured from outside: wall time including interpreter start-up, and the memory
of the whole process tree (bench/proctree.py), since it parses in a process pool.  ``reader``
3.26 runs in its own virtualenv (made on first use under ~/.cache/aggregator-bench/, so its
feedparser and requests never mix with ours) through its public API (bench/peer_reader.py),
once per ``workers`` setting; each phase takes the best setting.  Its times exclude start-up
and ``add_feed``, so the comparison leans in reader's favour; the verdicts are judged that
way, as the shared reference harness measures.  A second table gives the ratios measured
alike on both sides: reader's phase plus its start-up (a process importing reader and
opening a database, timed from outside) against the whole CLI run, and reader's phase
against the project's own "polled in" time.  With ``--repeat N`` the tools
run interleaved N times and medians are compared.  Before each tool the server puts every feed
back to its first version, so all of them see the same feeds.

Run from the repository root: ``make bench-poll`` (or ``.venv/bin/python bench/poll.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proctree import run_measured  # a sibling script, not an installed package

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("cold", "warm", "bump")
READER_REQUIREMENTS = ("reader==3.26", "sgmllib3k")  # reader's vendored feedparser imports sgmllib
DEFAULT_READER_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aggregator-bench" / "reader-3.26"
)
BUMP_FRACTION, BUMP_ITEMS = 0.1, 2

# The targets: speed-up over reader at its best (reader seconds / project seconds).
TARGET_SPEEDUP = {"cold": 5.0, "warm": 3.0, "bump": 5.0}
TARGET_WARM_SECONDS = 1.0
TARGET_MEMORY_MB = 150.0


class BenchError(Exception):
    """A tool or the server could not run at all; the message says which and why."""


# ---------------------------------------------------------------------------- the feed server


class FeedServer:
    """bench/feedserver.py in a child process; it exits when we close its stdin or die."""

    def __init__(self, feeds: int, latency_ms: float, max_seconds: float) -> None:
        argv = [sys.executable, str(HERE / "feedserver.py"), "--feeds", str(feeds)]
        argv += ["--latency-ms", str(latency_ms), "--max-seconds", str(max_seconds), "--exit-on-stdin-eof"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.close()
            raise BenchError(f"feed server: did not start: {line.strip() or 'no output'}")
        self.base = line.split()[1]
        self.feeds = feeds

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=120) as resp:
            return json.loads(resp.read())

    def urls(self) -> list[str]:
        with urllib.request.urlopen(self.base + "/__urls", timeout=120) as resp:
            text: str = resp.read().decode()
        return text.split()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------- reader


def reader_python(venv: Path) -> Path:
    """The Python of reader's virtualenv, made with ``python -m venv`` + pip on first use."""
    python = venv / "bin" / "python"
    probe = "import reader, sgmllib; print(reader.__version__)"
    if python.exists():
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0 and done.stdout.strip() == "3.26":
            return python
        shutil.rmtree(venv)  # half-made or another version: start again
    print(f"making reader's virtualenv in {venv} (once) ...", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
    pip = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        *READER_REQUIREMENTS,
    ]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise BenchError(f"reader: pip install {' '.join(READER_REQUIREMENTS)} failed: {done.stderr[-1500:]}")
    return python


def run_reader(python: Path, server: FeedServer, workers: int, timeout: float) -> dict[str, Any]:
    server.get("/__restore")
    argv = [str(python), str(HERE / "peer_reader.py"), "--server", server.base, "--workers", str(workers)]
    argv += ["--phases", ",".join(PHASES), "--bump-fraction", str(BUMP_FRACTION)]
    argv += ["--bump-items", str(BUMP_ITEMS)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"reader workers={workers}: no result within {timeout:.0f}s") from exc
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        why = done.stderr.strip()[-1500:] or f"exit status {done.returncode}"
        raise BenchError(f"reader workers={workers}: no JSON result: {why}") from exc
    return {**result, "tool": f"reader:{workers}"}


# ---------------------------------------------------------------------------- the project


def project_cli() -> list[str]:
    """The ``aggregator`` console script of the Python running us (the project's .venv)."""
    script = Path(sys.executable).parent / "aggregator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aggregator"]


def write_feeds_yaml(folder: Path, urls: Sequence[str], concurrency: int) -> Path:
    lines = [
        "# Written by bench/poll.py for one benchmark run.",
        f'database: "sqlite:///{folder / "project.sqlite"}"',
        "newsletters: []",
        "polling:",
        f"  concurrency: {concurrency}",
        # Every bench feed is on 127.0.0.1, standing in for as many different hosts as feeds.
        f"  per_host: {min(concurrency, 64)}",
        "feeds:",
        *(f"  - url: {url}" for url in urls),
    ]
    path = folder / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


_POLLED_IN = re.compile(r"feeds? polled in ([\d.]+)s")


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def run_project(server: FeedServer, workdir: Path, concurrency: int, timeout: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="project-", dir=workdir))
    config = write_feeds_yaml(folder, server.urls(), concurrency)
    server.get("/__restore")
    run: dict[str, Any] = {"tool": "project", "concurrency": concurrency, "phases": []}
    for phase in PHASES:
        if phase == "bump":
            server.get(f"/__bump?fraction={BUMP_FRACTION}&items={BUMP_ITEMS}")
        server.get("/__reset")
        out, err = folder / f"{phase}.out", folder / f"{phase}.err"
        argv = [*project_cli(), "--config", str(config), "poll", "--json"]
        measured = run_measured(argv, timeout=timeout, stdout=out, stderr=err, cwd=folder)
        stats = server.get("/__stats")
        stderr_text = err.read_text(errors="replace")
        polled_in = _POLLED_IN.search(stderr_text)
        record: dict[str, Any] = {
            "phase": phase,
            "rc": measured.returncode,
            "wall_s": measured.wall_s,
            "cpu_s": measured.cpu_s,
            "peak_rss_mb": measured.sum_of_peaks_mb,
            "tree_peak_sampled_mb": measured.tree_peak_mb,
            "tree_pss_peak_mb": measured.tree_pss_peak_mb,
            "processes": measured.processes,
            "process_peaks_mb": measured.process_peaks_mb,
            "inner_s": float(polled_in.group(1)) if polled_in else None,
            "server": {k: stats[k] for k in ("requests", "s200", "s304", "bytes_out", "server_cpu_s")},
            **_last_json_line(out.read_text(errors="replace")),
        }
        if measured.returncode not in (0, 1):
            record["stderr_tail"] = stderr_text[-1500:]
        run["phases"].append(record)
    shutil.rmtree(folder, ignore_errors=True)
    return run


def reader_startup_s(python: Path) -> float | None:
    """Wall time of a process that imports reader and opens a database: what reader's phase
    times leave out and the project's include (interpreter start-up, imports, opening)."""
    code = "import os, sys, reader; reader.make_reader(os.path.join(sys.argv[1], 'r.sqlite')).close()"
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        measured = run_measured([str(python), "-c", code, tmp], timeout=120, stdout=out, stderr=err)
    return measured.wall_s if measured.returncode == 0 else None


def compile_project() -> None:
    """Byte-compile the package first, as installing it does: with an editable install under
    PYTHONDONTWRITEBYTECODE=1 (set in some shells) every run would compile it from source
    again, about 0.05 s of start-up that no installed copy pays."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "aggregator")],
        check=False,
        capture_output=True,
        timeout=300,
    )


def cli_startup_s() -> float | None:
    """Wall time of ``aggregator --version``: the import cost every phase pays once."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        measured = run_measured([*project_cli(), "--version"], timeout=60, stdout=out, stderr=err)
    return measured.wall_s if measured.returncode == 0 else None


# ---------------------------------------------------------------------------- summary (pure)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the final table."""

    phase: str
    reader_s: float | None
    reader_workers: int | None
    project_s: float | None
    speedup: float | None  # reader seconds / project seconds
    target: str
    passed: bool | None  # None: not judged (a side is missing)
    reader_entries: int | None
    project_entries: int | None


def _phase(run: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((p for p in run.get("phases", ()) if p.get("phase") == name), None)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def summarize(runs: Sequence[dict[str, Any]]) -> list[Row]:
    """Medians per tool and phase; reader's best ``workers`` per phase; ratios and verdicts."""
    readers: dict[int, list[dict[str, Any]]] = {}
    projects = [r for r in runs if r["tool"] == "project"]
    for r in runs:
        if r["tool"].startswith("reader:"):
            readers.setdefault(int(r["workers"]), []).append(r)

    def good(run: dict[str, Any], name: str) -> dict[str, Any] | None:
        ph = _phase(run, name)
        if ph is None or ph.get("rc", 0) not in (0, 1) or ph.get("error"):
            return None  # a failed run is no time at all
        return ph

    rows: list[Row] = []
    best_cold_workers: int | None = None
    for name in PHASES:
        best: tuple[float, int, int | None] | None = None
        for workers, group in sorted(readers.items()):
            phases = [ph for ph in (good(r, name) for r in group) if ph]
            med = _median([ph["wall_s"] for ph in phases])
            if med is not None and (best is None or med < best[0]):
                best = (med, workers, phases[-1].get("entries_total"))
        project_phases = [ph for ph in (good(r, name) for r in projects) if ph]
        project_s = _median([ph["wall_s"] for ph in project_phases])
        project_entries = project_phases[-1].get("entries_total") if project_phases else None
        speedup = round(best[0] / project_s, 2) if best and project_s else None
        target = f">= {TARGET_SPEEDUP[name]:g}x faster"
        checks: list[bool | None] = [None if speedup is None else speedup >= TARGET_SPEEDUP[name]]
        if name == "warm":
            target = f"<= {TARGET_WARM_SECONDS:g} s and {target}"
            checks.append(None if project_s is None else project_s <= TARGET_WARM_SECONDS)
        if name == "cold" and best:
            best_cold_workers = best[1]
        judged = [c for c in checks if c is not None]
        passed = None if project_s is None else (all(judged) if judged else None)
        if any(c is False for c in checks):
            passed = False
        rows.append(
            Row(
                phase=name,
                reader_s=best[0] if best else None,
                reader_workers=best[1] if best else None,
                project_s=project_s,
                speedup=speedup,
                target=target,
                passed=passed,
                reader_entries=best[2] if best else None,
                project_entries=project_entries,
            )
        )

    reader_mb = None
    if best_cold_workers is not None:
        reader_mb = max(
            (ph["peak_rss_mb"] for r in readers[best_cold_workers] for ph in r["phases"]), default=None
        )
    project_mb = max(
        (ph["peak_rss_mb"] for r in projects for ph in r["phases"] if "peak_rss_mb" in ph), default=None
    )
    rows.append(
        Row(
            phase="peak memory",
            reader_s=reader_mb,
            reader_workers=best_cold_workers,
            project_s=project_mb,
            speedup=None,
            target=f"<= {TARGET_MEMORY_MB:g} MB (whole tree)",
            passed=None if project_mb is None else project_mb <= TARGET_MEMORY_MB,
            reader_entries=None,
            project_entries=None,
        )
    )
    return rows


def sanity_notes(runs: Sequence[dict[str, Any]], feeds: int) -> list[str]:
    """What makes a figure meaningless: failures, and feeds that did not answer as the phase expects."""
    notes: list[str] = []
    for run in runs:
        tool = run["tool"]
        for ph in run.get("phases", ()):
            name, server = ph.get("phase"), ph.get("server") or {}
            if ph.get("rc") not in (None, 0, 1):
                notes.append(
                    f"{tool} {name}: exit status {ph['rc']}: {ph.get('stderr_tail', '').strip()[-600:]}"
                )
                continue
            failed = ph.get("failed") or ph.get("error") or 0
            if failed:
                notes.append(f"{tool} {name}: {failed} feed(s) failed {ph.get('errors', '')}")
            if name == "warm" and server.get("s304") != feeds:
                notes.append(
                    f"{tool} warm: {server.get('s304')} of {feeds} feeds answered 304 "
                    f"({server.get('s200')} answered 200: validators not sent or not stored?)"
                )
            if name == "cold" and server.get("s200") != feeds:
                notes.append(f"{tool} cold: {server.get('s200')} of {feeds} feeds answered 200")
    return notes


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == " MB":
        return f"{value:.0f}{unit}"
    return f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def render_table(rows: Sequence[Row]) -> str:
    head = (
        "phase",
        "reader best (workers)",
        "project",
        "speed-up",
        "target",
        "result",
        "entries reader/project",
    )
    lines = [head]
    for row in rows:
        unit = " MB" if row.phase == "peak memory" else " s"
        reader = "-" if row.reader_s is None else f"{_fmt(row.reader_s, unit)} ({row.reader_workers})"
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[row.passed]
        entries = (
            "" if row.phase == "peak memory" else f"{_fmt(row.reader_entries)}/{_fmt(row.project_entries)}"
        )
        speedup = "-" if row.speedup is None else f"{row.speedup:.1f}x"
        lines.append((row.phase, reader, _fmt(row.project_s, unit), speedup, row.target, verdict, entries))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def like_for_like(
    rows: Sequence[Row], project_runs: Sequence[dict[str, Any]], reader_startup: float | None
) -> list[tuple[str, float | None, float | None, float | None, float | None]]:
    """Per phase: speed-ups measured the same way on both sides.

    The table above compares reader's in-process phase time with the project's whole CLI
    run (as the shared reference harness does).  Here: reader plus its own start-up
    against the whole CLI run, and reader's phase against the project's own "polled in"
    time (both in-process, both without start-up).
    """
    out: list[tuple[str, float | None, float | None, float | None, float | None]] = []
    for row in rows:
        if row.phase not in PHASES:
            continue
        inner = _median(
            [
                ph["inner_s"]
                for r in project_runs
                for ph in r["phases"]
                if ph["phase"] == row.phase and ph.get("inner_s")
            ]
        )
        whole_reader = (
            None if row.reader_s is None or reader_startup is None else row.reader_s + reader_startup
        )
        whole = None if whole_reader is None or not row.project_s else round(whole_reader / row.project_s, 2)
        inside = None if row.reader_s is None or not inner else round(row.reader_s / inner, 2)
        out.append((row.phase, whole_reader, whole, inner, inside))
    return out


def render_like_for_like(
    rows: Sequence[tuple[str, float | None, float | None, float | None, float | None]],
) -> str:
    lines = ["like for like: both whole processes | both in-process (no start-up)"]
    for phase, whole_reader, whole, inner, inside in rows:
        lines.append(
            f"  {phase:5}  reader + start-up {_fmt(whole_reader, ' s')} -> {_fmt(whole)}x"
            f"  |  project polled in {_fmt(inner, ' s')} -> {_fmt(inside)}x"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- driver


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def _describe(run: dict[str, Any]) -> str:
    parts = []
    for ph in run.get("phases", ()):
        if ph.get("phase") in PHASES:
            status = "" if ph.get("rc") in (None, 0, 1) else f" (exit {ph['rc']})"
            parts.append(f"{ph['phase']} {ph['wall_s']:.2f}s{status}")
    peak = max((ph.get("peak_rss_mb", 0) for ph in run.get("phases", ())), default=0)
    return f"{run['tool']}: " + ", ".join(parts) + f"; peak {peak:.0f} MB"


@contextmanager
def _results_file(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        yield fh


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, help="how many feeds (default 1000; 200 with --quick)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="added to every feed response")
    ap.add_argument("--repeat", type=int, default=1, help="run every tool this many times; compare medians")
    ap.add_argument("--workers", default="8,16,32", help="reader's workers settings to try (best per phase)")
    ap.add_argument("--concurrency", type=int, default=64, help="the project's polling.concurrency")
    ap.add_argument("--quick", action="store_true", help="200 feeds: a look in about two minutes")
    ap.add_argument("--no-reader", action="store_true", help="the project alone (no speed-up figures)")
    ap.add_argument("--no-project", action="store_true", help="reader alone (to check the harness)")
    ap.add_argument("--reader-venv", type=Path, default=DEFAULT_READER_VENV, help="reader's own virtualenv")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds allowed to one project phase")
    ap.add_argument("--results", type=Path, default=HERE / "results" / "poll.jsonl")
    args = ap.parse_args(argv)
    if args.feeds is None:
        args.feeds = 200 if args.quick else 1000
    args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = None if args.no_reader else reader_python(args.reader_venv)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    context = {
        "run_id": run_id,
        "feeds": args.feeds,
        "latency_ms": args.latency_ms,
        "commit": _git_commit(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
    }
    if not args.no_project:
        compile_project()
    startup = None if args.no_project else cli_startup_s()
    reader_startup = None if python is None else reader_startup_s(python)
    runs: list[dict[str, Any]] = []
    # Generous caps: every process ends by itself even if this one is killed.
    reader_timeout = max(1800.0, args.feeds * 0.6)
    server = FeedServer(args.feeds, args.latency_ms, max_seconds=4 * 3600)
    print(f"feed server ready: {args.feeds} feeds at {server.base}, +{args.latency_ms:g} ms", flush=True)
    try:
        with _results_file(args.results) as results, tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
            for rep in range(1, args.repeat + 1):
                tools: list[str] = [] if args.no_project else ["project"]
                tools += [] if python is None else [f"reader:{w}" for w in args.workers]
                for tool in tools:
                    if tool == "project":
                        run = run_project(server, Path(tmp), args.concurrency, args.timeout)
                    else:
                        assert python is not None
                        run = run_reader(python, server, int(tool.split(":")[1]), reader_timeout)
                    run.update(context, repeat=rep)
                    results.write(json.dumps(run) + "\n")
                    results.flush()
                    runs.append(run)
                    print(f"[{rep}/{args.repeat}] {_describe(run)}", flush=True)
            rows = summarize(runs)
            notes = sanity_notes(runs, args.feeds)
            summary = {
                "tool": "summary",
                **context,
                "repeat": args.repeat,
                "cli_startup_s": startup,
                "reader_startup_s": reader_startup,
                "rows": [asdict(row) for row in rows],
                "notes": notes,
            }
            results.write(json.dumps(summary) + "\n")
    finally:
        server.close()

    print()
    print(
        f"{args.feeds} feeds, +{args.latency_ms:g} ms latency, {args.repeat} repeat(s) "
        f"(medians); project concurrency {args.concurrency}; reader workers tried: "
        f"{','.join(map(str, args.workers)) if python else 'none'}"
    )
    print(render_table(rows))
    if startup is not None:
        print(f"\nproject times are whole CLI runs; `aggregator --version` alone takes {startup:.2f} s")
    project_runs = [r for r in runs if r["tool"] == "project"]
    if project_runs:
        inner = {ph["phase"]: ph.get("inner_s") for ph in project_runs[-1]["phases"]}
        print(
            "project's own 'polled in' times (last repeat): "
            + ", ".join(f"{k} {v}s" for k, v in inner.items())
        )
        print()
        print(render_like_for_like(like_for_like(rows, project_runs, reader_startup)))
    for note in notes:
        print(f"note: {note}")
    print(f"results appended to {args.results}")
    verdicts = [row.passed for row in rows]
    if any(v is False for v in verdicts):
        return 1
    return 0 if not notes else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench-poll: {exc}", file=sys.stderr)
        sys.exit(2)
