"""Digest charts: small PNGs drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402  (after the backend is chosen)

BLUE, GREEN, RED, GREY = "#1f5f99", "#2e7d32", "#c62828", "#9e9e9e"


def _wrap(label: str) -> str:
    """Long labels on two lines, so neighbours do not overlap."""
    return label.replace(" ", "\n", 1) if len(label) > 10 else label


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _frame(title: str) -> tuple[Figure, object]:
    fig = Figure(figsize=(5.6, 2.3))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    return fig, ax


def bars(title: str, labels: list[str], values: list[float], *, color: str = BLUE, percent: bool = False) -> bytes:
    """A vertical bar chart with the value above each bar."""
    fig, ax = _frame(title)
    positions = range(len(labels))
    ax.bar(positions, values, color=color, width=0.6)  # type: ignore[attr-defined]
    ax.set_xticks(list(positions), [_wrap(label) for label in labels])  # type: ignore[attr-defined]
    top = max(values or [0]) or 1
    ax.set_ylim(0, (1.0 if percent else top) * 1.2)  # type: ignore[attr-defined]
    for x, v in zip(positions, values):
        ax.text(x, v + top * 0.03, f"{v:.0%}" if percent else f"{v:g}", ha="center", fontsize=8)  # type: ignore[attr-defined]
    return _png(fig)


def compliance(title: str, labels: list[str], values: list[float | None]) -> bytes:
    """SLA compliance per category: green at or above 90 %, red below, grey without data."""
    fig, ax = _frame(title)
    shown = [v if v is not None else 0.0 for v in values]
    colors = [GREY if v is None else GREEN if v >= 0.9 else RED for v in values]
    positions = range(len(labels))
    ax.barh(list(positions), shown, color=colors, height=0.6)  # type: ignore[attr-defined]
    ax.set_yticks(list(positions), labels)  # type: ignore[attr-defined]
    ax.set_xlim(0, 1.15)  # type: ignore[attr-defined]
    ax.invert_yaxis()  # type: ignore[attr-defined]
    for y, v in zip(positions, values):
        ax.text((v or 0) + 0.02, y, "-" if v is None else f"{v:.0%}", va="center", fontsize=8)  # type: ignore[attr-defined]
    return _png(fig)
