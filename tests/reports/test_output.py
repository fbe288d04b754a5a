"""What the written files are like: the same bytes for the same input, small and fast for 100,000
events, and a page a real browser renders with its charts and no console errors."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from hvsim.reports.report import write_report
from hvsim.reports.trace import write_trace

CHROMIUM = Path("/usr/bin/chromium")
OUTPUTS = (
    "report.html",
    "report.json",
    "trace.json",
    "report-latency.csv",
    "report-spans.csv",
    "report-vps.csv",
    "report-throughput.csv",
    "report-pools.csv",
    "report-faults.csv",
)


def outputs(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in OUTPUTS}


def test_same_input_same_bytes(tmp_path: Path, hand_run: Path, synthetic: Any, make_run: Any) -> None:
    for run in (hand_run, make_run("synthetic", synthetic(4_000, seed=9))):
        twin = tmp_path / f"{run.name}-twin"
        shutil.copytree(run, twin)
        for d in (run, twin):
            write_report(d)
            write_trace(d)
        first = outputs(run)
        write_report(run)  # again, over its own output
        write_trace(run)
        assert outputs(run) == first
        assert outputs(twin) == first  # the folder's path and name are not in the content


def test_same_bytes_in_a_fresh_interpreter_with_another_hash_seed(tmp_path: Path, hand_run: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(hand_run, twin)
    write_report(hand_run)
    write_trace(hand_run)
    code = (
        "import sys\nfrom hvsim.reports.report import write_report\n"
        "from hvsim.reports.trace import write_trace\nwrite_report(sys.argv[1])\nwrite_trace(sys.argv[1])"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    res = subprocess.run(
        [sys.executable, "-c", code, str(twin)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert outputs(twin) == outputs(hand_run)


def test_100k_events_report_in_under_5_s_and_10_mb(tmp_path: Path, synthetic: Any, make_run: Any) -> None:
    records = synthetic(100_000, seed=1)
    assert len(records) >= 100_000
    run = make_run("big", records)
    write_report(make_run("warm", records[:200]))  # matplotlib's first import is not the report's cost
    start = time.perf_counter()
    data = write_report(run)
    elapsed = time.perf_counter() - start
    size = sum((run / name).stat().st_size for name in data["files"])
    start = time.perf_counter()
    trace = write_trace(run)
    trace_elapsed = time.perf_counter() - start
    print(
        f"100k events: report {elapsed:.2f} s, {size / 1e6:.2f} MB; "
        f"trace {trace_elapsed:.2f} s, {trace.stat().st_size / 1e6:.1f} MB"
    )
    assert data["run"]["events"] == len(records)
    assert elapsed < 5.0, f"report took {elapsed:.2f} s"
    assert size < 10_000_000, f"report weighs {size} bytes"
    assert (run / "report.html").stat().st_size < 2_000_000


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG: zlib and struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "only 8-bit RGB/RGBA, not interlaced"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(idat)), width * bpp
    rows: list[bytes] = []
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((x + p) & 0xFF for x, p in zip(line, prev, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = bytes(line)
        rows.append(prev[:: bpp // 3] if bpp == 3 else bytes(v for i, v in enumerate(prev) if i % 4 != 3))
    return width, height, rows


def test_report_renders_in_chromium(tmp_path: Path, hand_run: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install the Debian package chromium for the real-browser check")
    write_report(hand_run)
    png = tmp_path / "report.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        "--window-size=1200,2400",
        "--enable-logging=stderr",
        "--v=0",
        (hand_run / "report.html").as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert png.is_file(), f"no screenshot (exit {res.returncode}): {res.stderr[-2000:]}"
    for bad in ("Uncaught", ":CONSOLE"):  # this Chromium logs console.error as INFO:CONSOLE
        assert bad not in res.stderr, res.stderr[-2000:]
    width, height, rows = decode_png(png.read_bytes())
    assert (width, height) == (1200, 2400)
    colours = {row[i : i + 3] for row in rows for i in range(0, len(row), 3)}
    # A blank page has one colour and text alone a few hundred shades of grey; the charts' own colours
    # (opaque bars: p50 blue, p99 orange, VP run time green) show the SVG rendered.
    assert len(colours) > 500, len(colours)
    assert {bytes((76, 114, 176)), bytes((221, 132, 82)), bytes((85, 168, 104))} <= colours
