"""The dashboard's pure parts: the DAG layout, time formatting, and its import boundary."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.extras import require_dashboard

require_dashboard()

from quick.dashboard.app import age, pretty, when
from quick.dashboard.dag import BOX_H, BOX_W, layout


def test_dag_layout_puts_each_step_one_column_right_of_its_deepest_dependency() -> None:
    after = {"fetch": (), "a": ("fetch",), "b": ("fetch",), "join": ("a", "b")}
    drawing = layout(after, {"fetch": "succeeded", "a": "running"})
    nodes = {node.key: node for node in drawing.nodes}
    assert nodes["fetch"].x < nodes["a"].x == nodes["b"].x < nodes["join"].x
    assert nodes["a"].y < nodes["b"].y
    assert nodes["join"].status == "unknown"
    assert len(drawing.edges) == 4
    edge = drawing.edges[0]  # fetch -> a: right middle to left middle
    assert (edge.x1, edge.y1) == (nodes["fetch"].x + BOX_W, nodes["fetch"].y + BOX_H // 2)
    assert (edge.x2, edge.y2) == (nodes["a"].x, nodes["a"].y + BOX_H // 2)
    assert drawing.width >= nodes["join"].x + BOX_W
    assert drawing.height >= nodes["b"].y + BOX_H


def test_dag_layout_shortens_long_labels_and_handles_no_steps() -> None:
    drawing = layout({"x" * 40: ()}, {})
    assert drawing.nodes[0].label.endswith("…")
    assert len(drawing.nodes[0].label) < 40
    empty = layout({}, {})
    assert (empty.nodes, empty.edges) == ([], [])


def test_dashboard_time_helpers_read_well() -> None:
    assert when(0) == "1970-01-01 00:00:00Z"
    assert when(None) == "\u2013"
    assert age(1_000, now=200_000) == "3m 19s ago"
    assert age(10_000, now=0) == "in 10s"
    assert age(0, now=90_000_000) == "1d 01h ago"
    assert json.loads(pretty({"b": b"\x00", "a": "<i>"})) == {"a": "<i>", "b": "b'\\x00'"}


def test_dashboard_import_stays_out_of_the_library() -> None:
    code = "import json, sys, quick, workflow; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert not {"flask", "waitress", "quick.dashboard"} & loaded
