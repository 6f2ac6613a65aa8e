"""``relais kpi`` output: the JSON as computed, a CSV (one row per group), a plain table."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """``{"first_response_s": {"count": 3, ...}}`` -> ``{"first_response_s.count": 3, ...}`` (volumes dropped)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key == "volumes":
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def to_json(result: dict[str, Any] | list[dict[str, Any]]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2)


def to_csv(result: dict[str, Any] | list[dict[str, Any]]) -> str:
    rows = [flatten(r) for r in (result if isinstance(result, list) else [result])]
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            # a leading =, +, - or @ would be a formula in a spreadsheet: keys are user data (page names)
            writer.writerow({k: (f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v) for k, v in row.items()})
    return out.getvalue()


def _fmt_duration(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 90:
        return f"{value:.0f}s"
    if value < 5400:
        return f"{value / 60:.1f}min"
    if value < 172800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86400:.1f}d"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:.1f}"
    return str(value)


def to_table(result: dict[str, Any] | list[dict[str, Any]]) -> str:
    lines: list[str] = []
    if isinstance(result, dict):
        lines.append(f"items created from {result.get('from')} to {result.get('to')}")
        lines.append(f"{'KPI':32} {'count':>7} {'median':>9} {'p90':>9}")
        for key, value in result.items():
            if isinstance(value, dict) and "median" in value:
                lines.append(f"{key:32} {value['count']:>7} {_fmt_duration(value['median']):>9} {_fmt_duration(value['p90']):>9}")
        lines.append("")
        for key, value in result.items():
            if not isinstance(value, dict) and key not in ("from", "to"):
                lines.append(f"{key:32} {_fmt(value):>9}")
        for dimension, counts in (result.get("volumes") or {}).items():
            lines.append(f"volume by {dimension}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
        return "\n".join(lines) + "\n"
    header = f"{'group':28} {'received':>8} {'answered':>8} {'resp.rate':>9} {'SLA':>6} {'1st resp. med':>13} {'p90':>8} {'open':>5}"
    lines.append(header)
    for row in result:
        fr = row["first_response_s"]
        lines.append(
            f"{str(row['key'])[:28]:28} {row['received']:>8} {row['answered']:>8} {_fmt(row['response_rate']):>9} "
            f"{_fmt(row['sla_compliance']):>6} {_fmt_duration(fr['median']):>13} {_fmt_duration(fr['p90']):>8} "
            f"{row['backlog_open']:>5}"
        )
    return "\n".join(lines) + "\n"
