"""A FastAPI service on quick: one endpoint enqueues a job with the async API, another
awaits its result. FastAPI is the example's dependency, not quick's.

    pip install -e . fastapi uvicorn
    uvicorn examples.fastapi_app:api                 # the web service
    quick worker --app examples.fastapi_app:jobs     # a worker (same $QUICK_DB)

    curl -X POST localhost:8000/thumbnails -H 'content-type: application/json' \\
         -d '{"tenant": "acme", "image": "cat.png", "width": 640}'
    curl 'localhost:8000/thumbnails/JOB_ID?wait=10'

Both processes open the store named by ``$QUICK_DB`` (default ``./quick.db``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import quick
import quick.aio

#: The jobs this service enqueues; ``quick worker --app examples.fastapi_app:jobs``.
jobs = quick.App()


@jobs.job("thumbnail:make", max_attempts=3)
def make_thumbnail(payload: dict[str, Any], meta: quick.Meta) -> dict[str, Any]:
    """Stands in for real work; what it returns is the job's result."""
    width = payload["width"]
    return {
        "image": payload["image"],
        "thumbnail": f"thumb-{payload['image']}",
        "size": [width, width * 3 // 4],
    }


class ThumbnailRequest(BaseModel):
    tenant: str = Field(min_length=1, max_length=100)
    image: str = Field(min_length=1)
    width: int = Field(gt=0, le=4096)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One store for the app's lifetime ($QUICK_DB, else ./quick.db)."""
    with quick.open() as db:
        app.state.db = db
        yield


api = FastAPI(title="thumbnails on quick", lifespan=lifespan)


@api.post("/thumbnails", status_code=202)
async def request_thumbnail(request: ThumbnailRequest) -> dict[str, str]:
    """Enqueue a thumbnail job (without blocking the event loop); its id to poll."""
    job_id = await quick.aio.enqueue(
        api.state.db, request.tenant, "thumbnail:make", request.model_dump(exclude={"tenant"})
    )
    return {"job_id": job_id}


@api.get("/thumbnails/{job_id}")
async def thumbnail(job_id: str, wait: float = 0) -> dict[str, Any]:
    """The job's result, awaiting it for up to ``wait`` seconds (a watch, not polling):
    200 with the result, 202 while it is not done, 404 unknown, 410 failed for good."""
    try:
        result = await quick.aio.result(api.state.db, job_id, timeout=wait)
    except quick.ResultTimeout:
        raise HTTPException(202, "not done yet") from None
    except quick.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except quick.ResultUnavailable as error:
        raise HTTPException(410, str(error)) from None
    except quick.InvalidArgument as error:
        raise HTTPException(422, str(error)) from None
    return {"job_id": job_id, "result": result}
