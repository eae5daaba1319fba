"""examples/fastapi_app.py through httpx's ASGI transport (the app's lifespan run around
it), with a real ``quick worker`` process running its job."""

from __future__ import annotations

from tests.extras import require_fastapi

require_fastapi()

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.acceptance.processes import start_worker, stop_worker


def test_fastapi_example_enqueues_then_awaits_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    monkeypatch.setenv("QUICK_DB", url)
    from examples.fastapi_app import api, lifespan

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=api)
        async with (
            lifespan(api),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            order = {"tenant": "acme", "image": "cat.png", "width": 8}
            asked = await client.post("/thumbnails", json=order)
            assert asked.status_code == 202
            job_id = asked.json()["job_id"]
            assert (await client.get(f"/thumbnails/{job_id}")).status_code == 202  # no worker
            worker = start_worker(url, tmp_path / "out", "examples.fastapi_app:jobs")
            try:
                done = await client.get(f"/thumbnails/{job_id}", params={"wait": 60})
            finally:
                stop_worker(worker)
            assert done.status_code == 200
            assert done.json() == {
                "job_id": job_id,
                "result": {"image": "cat.png", "thumbnail": "thumb-cat.png", "size": [8, 6]},
            }
            assert (await client.get(f"/thumbnails/{'0' * 32}")).status_code == 404
            bad = {"tenant": "", "image": "cat.png", "width": 8}
            assert (await client.post("/thumbnails", json=bad)).status_code == 422

    asyncio.run(scenario())
