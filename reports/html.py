"""Small HTML building blocks for the self-contained report pages (no scripts, no external files)."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["esc", "figure", "json_bytes", "page", "table", "us", "write_csv"]

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0 auto; max-width: 1100px; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
  border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
nav a { margin-right: 14px; } .muted { color: #666; } .note { color: #555; font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f5f7; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { background: #fde8e8; } .ok { color: #1b7f3b; font-weight: 600; }
.bad { color: #b42318; font-weight: 600; } figure { margin: 8px 0 16px; }
figure svg { max-width: 100%; height: auto; } figcaption { font-size: 12px; color: #555; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; } code { font-size: 12px; }
"""


def esc(value: Any) -> str:
    """*value* as HTML text; None shows as an em dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(str(value))


def us(ns: int | float | None, digits: int = 3) -> str:
    """Nanoseconds shown as microseconds, e.g. ``12,345.6`` for 12,345,600 ns."""
    return "&mdash;" if ns is None else f"{ns / 1000:,.{digits}f}"


def ok_mark(ok: bool | None) -> str:
    if ok is None:
        return '<span class="muted">unknown</span>'
    return '<span class="ok">ok</span>' if ok else '<span class="bad">FAILED</span>'


def table(
    headers: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Iterable[int] = (),
    raw: bool = False,
    row_class: Sequence[str] | None = None,
) -> str:
    """An HTML table (no header row for *headers* None); cells in *numeric* columns align right;
    *raw* cells are already HTML."""
    num = set(numeric)
    out = ["<table>"]
    if headers is not None:
        out += ["<thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead>"]
    out.append("<tbody>")
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class and row_class[i] else ""
        out.append(f"<tr{cls}>")
        for j, cell in enumerate(row):
            text = str(cell) if raw else esc(cell)
            out.append(f'<td class="n">{text}</td>' if j in num else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return ""
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def json_bytes(data: Any) -> bytes:
    """Deterministic, human-diffable JSON: sorted keys, two-space indent, trailing newline."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def write_csv(path: Path, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
