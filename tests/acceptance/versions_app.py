"""Two deployments of the ``orders`` workflow, for the versions-in-flight test.

``FLOW_V1`` and ``app_v1`` are the old code; ``FLOW_V2`` and ``app_v2`` the new
(``--app tests.acceptance.versions_app:app_v2``): step ``validate`` renamed ``check``,
``approve``, ``gift?`` and ``wrap`` removed, ``pack`` added, ``ship`` moved to topic
``ship2``. ``app_v2`` keeps the handlers old runs still need (``validate``, ``gift``,
``ship``) except ``wrap``, whose old runs then fail naming it. Every handler returns
which deployment ran it.
"""

from __future__ import annotations

from typing import Any

import quick
from workflow import Workflow

FLOW_V1 = (
    Workflow("orders")
    .step("validate", topic="validate")
    .external("approve", after="validate")
    .branch("gift?", topic="gift", branches={"gift": ["wrap"], "plain": []}, after="approve")
    .step("wrap", topic="wrap", after="gift?")
    .step("ship", topic="ship", after=["gift?", "wrap"])
)

FLOW_V2 = (
    Workflow("orders")
    .step("check", topic="validate")
    .step("pack", topic="pack", after="check")
    .step("ship", topic="ship2", after="pack")
)


def _deployment(name: str, topics: list[str]) -> quick.App:
    app = quick.App()
    for topic in topics:

        def handler(payload: Any, meta: quick.Meta, *, topic: str = topic) -> Any:
            if topic == "gift":
                return "gift" if payload.get("gift") else "plain"
            return {"by": name, "topic": topic, "step": meta.context.step}

        app.job(topic)(handler)
    return app


app_v1 = _deployment("v1", ["validate", "gift", "wrap", "ship"])
app_v2 = _deployment("v2", ["validate", "gift", "ship", "pack", "ship2"])
