"""Laying out a run's DAG for an SVG drawing (pure: positions from the definition).

Steps go in columns by layer (a step sits one column right of its deepest
dependency, the same layering ``quick runs show`` prints) and in definition order
within a column; each dependency is an edge from the right side of one box to the
left side of the next. The template draws the boxes and edges; this module only
computes where, so it can be tested without Flask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from workflow.views import layers

__all__ = ["BOX_W", "BOX_H", "Node", "Edge", "Drawing", "layout"]

#: Box size and gaps in SVG user units: wide enough for a 20-character step key.
BOX_W, BOX_H = 170, 46
GAP_X, GAP_Y, MARGIN = 60, 18, 10
#: Step keys longer than this are cut in the box (the full key is in its tooltip).
LABEL_CHARS = 22


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A step's box: its top-left corner, its key, a shortened label and its status."""

    key: str
    label: str
    status: str
    x: int
    y: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """A dependency, from the right middle of ``dep`` to the left middle of ``step``."""

    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Drawing:
    """Everything the SVG template needs."""

    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]


def _label(key: str) -> str:
    return key if len(key) <= LABEL_CHARS else key[: LABEL_CHARS - 1] + "…"


def layout(after: Mapping[str, Sequence[str]], status: Mapping[str, str]) -> Drawing:
    """Positions of every step and dependency edge; ``after`` in definition order."""
    columns = layers(after)
    nodes: dict[str, Node] = {}
    for col, keys in enumerate(columns):
        for row, key in enumerate(keys):
            nodes[key] = Node(
                key=key,
                label=_label(key),
                status=status.get(key, "unknown"),
                x=MARGIN + col * (BOX_W + GAP_X),
                y=MARGIN + row * (BOX_H + GAP_Y),
            )
    edges = [
        Edge(
            x1=nodes[dep].x + BOX_W,
            y1=nodes[dep].y + BOX_H // 2,
            x2=node.x,
            y2=node.y + BOX_H // 2,
        )
        for key, node in nodes.items()
        for dep in after[key]
    ]
    rows = max((len(keys) for keys in columns), default=0)
    return Drawing(
        width=2 * MARGIN + max(len(columns) * (BOX_W + GAP_X) - GAP_X, 0),
        height=2 * MARGIN + max(rows * (BOX_H + GAP_Y) - GAP_Y, 0),
        nodes=list(nodes.values()),
        edges=edges,
    )
