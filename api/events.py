"""Events out: the pull feed `GET /v1/events`, webhook subscriptions and failed deliveries, and each worker's
delivery loop (several workers share the work: deliveries are leased, see store/webhooks.py)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Annotated

from litestar import Litestar, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from pydantic import BaseModel, ConfigDict, Field

from api.guards import KEYED
from store import webhooks
from store.apikeys import in_scope
from store.errors import Forbidden, Invalid
from store.outbox import KINDS, feed, listen, local, message
from store.tables import MAX_ID, ApiKey

log = logging.getLogger("gridpolicy")
# the delivery loop's fallback poll when no commit in this process woke it (other processes' events, retries)
DELIVERY_SECONDS = float(os.environ.get("GRIDPOLICY_DELIVERY_SECONDS", "5"))
# woken by a commit, the loop waits this long before its round, so the commits of a busy intake share one round (each
# round's numbering and claiming are write transactions that take turns with intake's: at 50 ms they were a sixth of
# a busy server's CPU; at 250 ms an event leaves at most a quarter second later and intake costs a fifth less CPU)
GATHER_SECONDS = 0.25
RowId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="接收地址 (http/https); 保存前先发送一个 webhook.ping")
    kinds: list[str] = Field(default_factory=list, max_length=len(KINDS), description="事件类型; 空 = 全部")
    secret: str | None = Field(None, max_length=200, description="whsec_ 开头的密钥; 留空则生成 (只在创建时返回)")
    description: str = Field("", max_length=200)
    actor: str = Field(min_length=1, max_length=128)


def _kinds(text: str | None) -> list[str] | None:
    return webhooks.check_kinds([k for k in text.split(",") if k]) if text else None


def subscription_json(sub: webhooks.WebhookSubscription, with_secret: bool = False) -> dict:
    out = {"id": sub.id, "jurisdiction": sub.jurisdiction, "url": sub.url, "kinds": sub.kinds,
           "description": sub.description, "created_by": sub.created_by, "created_at": local(sub.created_at)}
    if with_secret:
        out["secret"] = sub.secret
    return out


def delivery_json(row: dict) -> dict:
    d = row["delivery"]
    return {"id": d.id, "event_id": d.event_id, "case_id": d.case_id, "kind": row["kind"], "url": row["url"],
            "status": d.status, "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
            "next_attempt_at": local(d.next_attempt_at) if d.status == webhooks.PENDING else None,
            "created_at": local(d.created_at)}


@get("/v1/events", sync_to_thread=True, **KEYED)
def events_feed(request: Request, api_key: NamedDependency[ApiKey],
                jurisdiction: Annotated[str | None, QueryParameter(max_length=64)] = None,
                after: Annotated[str | None, QueryParameter(max_length=20, description="上一页的 next 游标")] = None,
                kinds: Annotated[str | None, QueryParameter(max_length=500, description="逗号分隔的事件类型")] = None,
                limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100) -> dict:
    """Case events in commit order after a cursor; a key scoped to jurisdictions sees only theirs."""
    engine = request.app.state.services.policies.engine
    if jurisdiction:
        in_scope(api_key, jurisdiction)
    elif api_key.jurisdictions:
        raise Forbidden("此 API key 限于部分辖区, 请用 jurisdiction= 指定要读取的辖区", field="jurisdiction")
    if after is not None and not after.isdigit():
        raise Invalid(f"after 须为上一页返回的 next 游标 (非负整数), 收到 '{after}'", field="after")
    scope = [jurisdiction] if jurisdiction else None
    webhooks.publish(engine)
    rows = feed(engine, scope, int(after or 0), _kinds(kinds), limit + 1)
    page = rows[:limit]
    return {"items": [message(r) for r in page], "next": str(page[-1].seq) if page else (after or "0"),
            "has_more": len(rows) > limit}


def _engine(request: Request, jid: str):
    request.app.state.services.policies.router(jid)  # 404 for an unknown jurisdiction
    return request.app.state.services.policies.engine


@post("/v1/jurisdictions/{jid:str}/webhooks", **KEYED)
async def create_subscription(request: Request, jid: FromPath[str], data: JSONBody[SubscriptionRequest]) -> Response:
    """Subscribe a URL to event kinds; the answer carries the signing secret, once."""
    engine = _engine(request, jid)
    sub = await asyncio.to_thread(  # the ping waits on the network, not on the event loop
        webhooks.subscribe, engine, jid, data.url, data.kinds, data.actor, data.secret, data.description)
    return Response(subscription_json(sub, with_secret=True), status_code=201,
                    headers={"Location": f"/v1/jurisdictions/{jid}/webhooks/{sub.id}"})


@get("/v1/jurisdictions/{jid:str}/webhooks", sync_to_thread=True, **KEYED)
def list_subscriptions(request: Request, jid: FromPath[str]) -> list[dict]:
    return [subscription_json(s) for s in webhooks.subscriptions(_engine(request, jid), jid)]


@delete("/v1/jurisdictions/{jid:str}/webhooks/{sub_id:int}", sync_to_thread=True, status_code=204, **KEYED)
def delete_subscription(request: Request, jid: FromPath[str], sub_id: RowId,
                        actor: Annotated[str, QueryParameter(min_length=1, max_length=128)] = "api") -> None:
    webhooks.unsubscribe(_engine(request, jid), jid, sub_id, actor)


@get("/v1/jurisdictions/{jid:str}/webhooks/failures", sync_to_thread=True, **KEYED)
def list_failures(request: Request, jid: FromPath[str]) -> list[dict]:
    """Dead-lettered deliveries and those still retrying after a failure."""
    return [delivery_json(r) for r in webhooks.failures(_engine(request, jid), jid)]


@post("/v1/jurisdictions/{jid:str}/webhooks/deliveries/{delivery_id:int}/redeliver", sync_to_thread=True,
      status_code=200, **KEYED)
def redeliver(request: Request, jid: FromPath[str], delivery_id: RowId,
              actor: Annotated[str, QueryParameter(min_length=1, max_length=128)] = "api") -> dict:
    delivery = webhooks.redeliver(_engine(request, jid), jid, delivery_id, actor)
    return {"id": delivery.id, "status": delivery.status, "next_attempt_at": local(delivery.next_attempt_at)}


@contextlib.asynccontextmanager
async def delivery(app: Litestar):
    """Each worker delivers what is due; a round that found work is followed at once by the next. Idle, it waits
    for a commit in this process that wrote events (store.outbox.listen), or DELIVERY_SECONDS at most: for
    events other processes wrote and for retries coming due."""
    engine = app.state.services.policies.engine
    wake = asyncio.Event()
    running = asyncio.get_running_loop()

    def woken() -> None:  # from the committing thread
        running.call_soon_threadsafe(wake.set)

    stop = listen(woken)

    async def loop() -> None:
        while True:
            wake.clear()  # before the round: an event committed during it wakes the next wait at once
            try:
                counts = await asyncio.to_thread(webhooks.deliver_due, engine)
            except Exception:  # noqa: BLE001 - keep delivering; the next round retries
                log.exception("webhook delivery round failed")
                counts = {}
            if not any(counts.values()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), DELIVERY_SECONDS)
                    await asyncio.sleep(GATHER_SECONDS)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop()
        task.cancel()


ROUTES = [events_feed, create_subscription, list_subscriptions, delete_subscription, list_failures, redeliver]
