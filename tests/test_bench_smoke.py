"""The polling benchmark's own parts work: feeds, the loopback server's 200/304/gzip/bump, the verdicts.

Fast on purpose (a few feeds, no latency): `make bench-poll` takes minutes, and a broken
generator or server would only show there.
"""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    # bench/ holds scripts, not a package: load them by path.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


feedgen = _load("feedgen")
poll = _load("poll")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    argv = [sys.executable, str(BENCH / "feedserver.py"), "--feeds", "3", "--max-seconds", "60"]
    proc = subprocess.Popen(
        [*argv, "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    with proc, proc.stdin, proc.stdout:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield line.split()[1]
        proc.stdin.close()  # how poll.py stops it: the server sees EOF and exits
        assert proc.wait(timeout=10) == 0


def test_generated_feed_has_20_to_50_entries_of_1_to_3_kb_html() -> None:
    spec = feedgen.FeedSpec(1, 3, 1000)
    items = [spec.item(k) for k in spec.window(0)]
    assert 20 <= len(items) <= 50
    sizes = [len(item["html"]) for item in items]
    assert min(sizes) >= 1000
    assert max(sizes) <= 4000  # a block can overshoot the 3 KB aim a little
    assert spec.render(0) == feedgen.FeedSpec(1, 3, 1000).render(0)  # deterministic


def test_a_bumped_version_adds_exactly_that_many_entries_on_top() -> None:
    spec = feedgen.FeedSpec(1, 0, 1000)
    assert list(spec.window(2))[2:] == list(spec.window(0))[:-2]
    assert spec.etag(2) != spec.etag(0)


def test_server_answers_gzip_then_304_then_new_entries_after_a_bump(server: str) -> None:
    url = f"{server}/feeds/1.xml"
    status, headers, body = _get(url, {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).startswith(b"<?xml")
    etag, last_modified = headers["ETag"], headers["Last-Modified"]

    assert _get(url, {"If-None-Match": etag})[0] == 304
    assert _get(url, {"If-Modified-Since": last_modified})[0] == 304

    _get(f"{server}/__bump?fraction=1&items=2")
    status, headers, _ = _get(url, {"If-None-Match": etag})
    assert status == 200
    assert headers["ETag"] != etag

    _get(f"{server}/__restore")
    assert _get(url, {"If-None-Match": etag})[0] == 304
    stats: dict[str, Any] = poll.json.loads(_get(f"{server}/__stats")[2])
    assert stats["s200"] == 2
    assert stats["s304"] == 3


def _run(
    tool: str, walls: tuple[float, float, float], entries: int = 100, mb: float = 50.0
) -> dict[str, Any]:
    phases = [
        {"phase": name, "wall_s": wall, "rc": 0, "peak_rss_mb": mb, "entries_total": entries}
        for name, wall in zip(("cold", "warm", "bump"), walls, strict=True)
    ]
    run: dict[str, Any] = {"tool": tool, "phases": phases}
    if tool.startswith("reader:"):
        run["workers"] = int(tool.split(":")[1])
    return run


def test_summary_compares_with_readers_best_setting_per_phase() -> None:
    runs = [
        _run("reader:8", (60.0, 2.0, 12.0)),
        _run("reader:16", (50.0, 3.0, 10.0)),
        _run("project", (10.0, 0.9, 1.0), mb=120.0),
    ]
    rows = {row.phase: row for row in poll.summarize(runs)}
    assert (rows["cold"].reader_s, rows["cold"].reader_workers, rows["cold"].speedup) == (50.0, 16, 5.0)
    assert rows["cold"].passed is True
    assert (rows["warm"].reader_workers, rows["warm"].passed) == (8, False)  # 2.2x < 3x
    assert rows["bump"].passed is True
    assert rows["peak memory"].passed is True


def test_summary_without_reader_judges_only_absolute_targets() -> None:
    rows = {row.phase: row for row in poll.summarize([_run("project", (10.0, 1.5, 1.0), mb=200.0)])}
    assert rows["cold"].passed is None
    assert rows["warm"].passed is False  # over 1 s
    assert rows["peak memory"].passed is False


def test_like_for_like_adds_readers_start_up_and_compares_in_process_times() -> None:
    runs = [_run("reader:16", (50.0, 3.0, 10.0)), _run("project", (10.0, 1.5, 2.0))]
    for phase, inner in zip(runs[1]["phases"], (9.0, 1.0, 1.25), strict=True):
        phase["inner_s"] = inner
    rows = poll.summarize(runs)
    table = {phase: rest for phase, *rest in poll.like_for_like(rows, [runs[1]], reader_startup=0.5)}
    # Whole processes: (3.0 + 0.5) / 1.5; in-process: 3.0 / 1.0.
    assert table["warm"] == [3.5, 2.33, 1.0, 3.0]
    assert table["bump"] == [10.5, 5.25, 1.25, 8.0]
    assert poll.like_for_like(rows, [runs[1]], reader_startup=None)[0][1:3] == (None, None)
