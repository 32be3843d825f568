"""Webhook subscriptions and the delivery of outbox events to them (Standard Webhooks signatures).

Delivery is at least once and in order per case and subscription: a delivery is claimed only when no earlier
delivery of the same case to the same subscription is still pending. A claim is a lease (`lease_until`), taken in a
short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE), so several workers never send
one event at the same time, and a worker killed mid-send leaves a lease that expires and is taken again.
Failures retry with exponential backoff and full jitter for 24 h, then the delivery is dead-lettered until an
admin redelivers it.
"""
from __future__ import annotations

import base64
import json
import os
import random
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, Column, Index, and_, bindparam, exists
from sqlalchemy import select as core_select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Field, Session, SQLModel, col, select
from standardwebhooks.webhooks import Webhook

from store.db import UnitOfWork, reader
from store.errors import Invalid, NotFound
from store.outbox import KINDS, Numbered, OutboxEvent, local, message, notify, sequence
from store.tables import as_utc, table_of, utcnow
from store.versions import audit

if TYPE_CHECKING:  # httpx is imported on the first send: a server start does not need it
    import httpx

RETRY_FOR = timedelta(hours=24)
RETRY_BASE = float(os.environ.get("GRIDPOLICY_WEBHOOK_RETRY_BASE", "5"))  # seconds before the first retry
RETRY_CAP = 3600.0  # no wait longer than an hour between tries
LEASE = timedelta(seconds=float(os.environ.get("GRIDPOLICY_WEBHOOK_LEASE", "60")))  # > TIMEOUT: a live send ends first
TIMEOUT = 10.0
SENDERS = 8  # concurrent sends per worker round
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUS_LABELS = {PENDING: "待投递", DELIVERED: "已投递", DEAD: "已放弃 (死信)"}


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscription"
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64, index=True)
    url: str = Field(max_length=2000)
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # [] = every kind
    secret: str = Field(max_length=200)  # whsec_…: needed in clear to sign
    description: str = Field(default="", max_length=200)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    active: bool = Field(default=True)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_delivery_due", "status", "next_attempt_at"),
                      Index("ix_delivery_order", "subscription_id", "case_id", "status", "seq"))
    id: int | None = Field(default=None, primary_key=True)
    subscription_id: int = Field(foreign_key="webhook_subscription.id", index=True)
    event_id: int = Field(foreign_key="outbox_event.id")
    case_id: int
    seq: int  # the event's commit order: deliveries of one case go out in this order
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_until: datetime | None = None
    last_error: str = Field(default="", max_length=500)
    last_status: int | None = None
    delivered_at: datetime | None = None


# --- subscriptions
def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"webhook 地址须为 http:// 或 https:// 开头的完整网址, 收到 '{url[:100]}' — only http(s) URLs",
                      field="url")
    return url.strip()


def check_kinds(kinds: list[str]) -> list[str]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise Invalid(f"未知事件类型 {', '.join(unknown)}; 可用: {', '.join(KINDS)} — unknown event kinds",
                      field="kinds", valid=list(KINDS))
    return sorted(set(kinds))


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """Standard Webhooks' form: whsec_ + base64 of 24 to 64 random bytes."""
    try:
        size = len(base64.b64decode(secret.removeprefix("whsec_"), validate=True))
    except ValueError:
        size = 0
    if not secret.startswith("whsec_") or not 24 <= size <= 64:
        raise Invalid("secret 须为 whsec_ 开头、24–64 字节的 base64 密钥 (留空则自动生成) — invalid secret",
                      field="secret")
    return secret


def signed(secret: str, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers for `body` (webhook-id stays the same on every retry of one event)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, body), "content-type": "application/json"}


def _post(client: httpx.Client, sub: WebhookSubscription, msg_id: str, payload: dict) -> httpx.Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return client.post(sub.url, content=body.encode(), headers=signed(sub.secret, msg_id, body, utcnow()))


def subscribe(engine: Engine, jid: str, url: str, kinds: list[str], actor: str, secret: str | None = None,
              description: str = "", client: httpx.Client | None = None) -> WebhookSubscription:
    """Check the URL with a signed `webhook.ping` (the receiver must answer 2xx) before storing anything."""
    url, kinds = check_url(url), check_kinds(kinds)
    secret = check_secret(secret) if secret else new_secret()
    sub = WebhookSubscription(jurisdiction=jid, url=url, kinds=kinds, secret=secret, description=description,
                              created_by=actor)
    ping = {"type": "webhook.ping", "timestamp": local(utcnow()), "data": {"jurisdiction": jid}}
    import httpx  # noqa: PLC0415 - see the module's imports
    with client or httpx.Client(timeout=TIMEOUT) as http:
        try:
            answer = _post(http, sub, f"ping_{secrets.token_hex(8)}", ping)
        except httpx.HTTPError as err:
            raise Invalid(f"无法连接 webhook 地址 {url}: {err.__class__.__name__} — unreachable; 未保存订阅",
                          field="url") from None
    if not answer.is_success:
        raise Invalid(f"webhook 地址对测试事件 webhook.ping 返回 HTTP {answer.status_code}, 须返回 2xx; 未保存订阅",
                      field="url")
    with UnitOfWork(engine) as uow:
        uow.session.add(sub)
        uow.session.flush()
        audit(uow.session, actor, "webhook_subscribed", jid, None, subscription=sub.id, url=url, kinds=kinds)
    return sub


def subscriptions(engine: Engine, jid: str) -> list[WebhookSubscription]:
    with Session(reader(engine)) as session:
        return list(session.exec(select(WebhookSubscription).where(
            WebhookSubscription.jurisdiction == jid, col(WebhookSubscription.active))
            .order_by(col(WebhookSubscription.id))))


def unsubscribe(engine: Engine, jid: str, sub_id: int, actor: str) -> None:
    """Deactivates (kept for the deliveries that refer to it); pending deliveries are dropped."""
    with UnitOfWork(engine) as uow:
        session = uow.session
        sub = session.get(WebhookSubscription, sub_id)
        if sub is None or sub.jurisdiction != jid or not sub.active:
            raise NotFound(f"辖区 {jid} 没有 webhook 订阅 {sub_id}", field="id")
        sub.active = False
        session.add(sub)
        for delivery in session.exec(select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id,
                                                                    WebhookDelivery.status == PENDING)):
            delivery.status, delivery.last_error = DEAD, "订阅已删除"
            session.add(delivery)
        audit(session, actor, "webhook_unsubscribed", jid, None, subscription=sub_id)


# --- fan-out and delivery
_SUBSCRIPTIONS = table_of(WebhookSubscription)
# built once: intake fans out each group of cases it commits
_ACTIVE = (core_select(_SUBSCRIPTIONS.c.id, _SUBSCRIPTIONS.c.jurisdiction, _SUBSCRIPTIONS.c.kinds)
           .where(_SUBSCRIPTIONS.c.active,
                  _SUBSCRIPTIONS.c.jurisdiction.in_(bindparam("jurisdictions", expanding=True))))


def fan_out(session: Session, events: list[Numbered]) -> int:
    """One pending delivery per event and matching subscription (inside the sequencer's transaction); returns how
    many."""
    subs = session.connection().execute(_ACTIVE, {"jurisdictions": list({e.jurisdiction for e in events})}).all()
    if not subs:
        return 0
    now, created = utcnow(), 0
    for event in events:
        due = min(as_utc(event.at), now)  # due from the event on; the 24-hour retry window counts from it too
        for sub in subs:
            if sub.jurisdiction == event.jurisdiction and (not sub.kinds or event.kind in sub.kinds):
                session.add(WebhookDelivery(subscription_id=sub.id, event_id=event.id, case_id=event.case_id,
                                            seq=event.seq, created_at=due, next_attempt_at=due))
                created += 1
    return created


def publish(engine: Engine) -> None:
    """Number newly committed events and create their deliveries (before the feed is read, and in each delivery
    round); deliveries it created wake this process's delivery loop as it commits."""
    sequence(engine, fan_out)


def backoff(attempts: int) -> timedelta:
    """Full jitter: a random wait up to base·2^(attempts−1), capped."""
    return timedelta(seconds=random.uniform(0.5, 1.0) * min(RETRY_CAP, RETRY_BASE * 2 ** (attempts - 1)))


@dataclass
class Claimed:
    """A leased delivery with what sending it needs, read in the claiming transaction."""
    delivery_id: int
    lease: datetime
    subscription: WebhookSubscription
    event_id: int
    payload: dict


def claim(engine: Engine, now: datetime, limit: int) -> list[Claimed]:
    """Lease the due deliveries that are first in line for their case (so one round holds at most one per case and
    subscription, and its sends may run side by side)."""
    d, earlier = WebhookDelivery, aliased(WebhookDelivery)
    first_in_line = ~exists().where(and_(col(earlier.subscription_id) == d.subscription_id,
                                         col(earlier.case_id) == d.case_id, col(earlier.status) == PENDING,
                                         col(earlier.seq) < d.seq))
    due = and_(col(d.status) == PENDING, col(d.next_attempt_at) <= now)
    query = (select(d, WebhookSubscription, OutboxEvent)
             .join(WebhookSubscription, col(WebhookSubscription.id) == d.subscription_id)
             .join(OutboxEvent, col(OutboxEvent.id) == d.event_id)
             .where(due, col(d.lease_until).is_(None) | (col(d.lease_until) < now), first_in_line)
             .order_by(col(d.seq)).limit(limit))
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    lease = now + LEASE
    with Session(reader(engine)) as session:  # most rounds find nothing due: look without the write lock first
        if session.exec(select(d.id).where(due).limit(1)).first() is None:
            return []
    with UnitOfWork(engine) as uow:  # the subscriptions are used after the commit: it keeps them loaded
        claimed: list[Claimed] = []
        for delivery, sub, event in uow.session.exec(query).all():
            assert delivery.id is not None and event.id is not None  # read from the database
            claimed.append(Claimed(delivery.id, lease, sub, event.id, message(event)))
            delivery.lease_until = lease
            uow.session.add(delivery)
    return claimed


def deliver_due(engine: Engine, now: datetime | None = None, limit: int = 100,
                client: httpx.Client | None = None) -> dict[str, int]:
    """One round: number new events, lease what is due, send it (side by side: at most one per case), and record
    the outcomes in one transaction. Returns counts of delivered, failed, dead."""
    now = now or utcnow()
    publish(engine)
    claimed = claim(engine, now, limit)
    counts = {"delivered": 0, "failed": 0, "dead": 0}
    if not claimed:
        return counts
    import httpx  # noqa: PLC0415 - see the module's imports
    with client or httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=SENDERS)) as http, \
            ThreadPoolExecutor(SENDERS) as pool:
        results = list(pool.map(lambda c: _send(http, c), claimed))
    with UnitOfWork(engine) as uow:
        for item, (status, error) in zip(claimed, results):
            counts[_record(uow.session, item, status, error, now)] += 1
    return counts


def _send(http: httpx.Client, item: Claimed) -> tuple[int | None, str]:
    """One try: (HTTP status, error or "")."""
    import httpx  # noqa: PLC0415 - see the module's imports
    try:
        answer = _post(http, item.subscription, f"evt_{item.event_id}", item.payload)
    except httpx.HTTPError as err:
        return None, f"{err.__class__.__name__}: {err}"[:500]
    return answer.status_code, "" if answer.is_success else f"HTTP {answer.status_code}"


def _record(session: Session, item: Claimed, status: int | None, error: str, now: datetime) -> str:
    """The outcome of one try, kept only while this worker still holds the lease. `now` is the round's time (the
    retry schedule counts from it; tests pass a later one to let hours pass)."""
    delivery = session.get(WebhookDelivery, item.delivery_id)
    if (delivery is None or delivery.status != PENDING or delivery.lease_until is None
            or as_utc(delivery.lease_until) != item.lease):
        return "failed" if error else "delivered"  # the lease ran out and another worker took over
    delivery.attempts += 1
    delivery.last_status, delivery.last_error, delivery.lease_until = status, error, None
    if not error:
        delivery.status, delivery.delivered_at = DELIVERED, now
        outcome = "delivered"
    else:
        retry_at = now + backoff(delivery.attempts)
        if retry_at - as_utc(delivery.created_at) > RETRY_FOR:
            delivery.status, outcome = DEAD, "dead"
        else:
            delivery.next_attempt_at, outcome = retry_at, "failed"
    session.add(delivery)
    return outcome


# --- failed deliveries
def failures(engine: Engine, jid: str, limit: int = 200) -> list[dict[str, Any]]:
    """Dead-lettered deliveries and pending ones that have failed at least once, newest first."""
    query = (select(WebhookDelivery, WebhookSubscription.url, OutboxEvent.kind)
             .join(WebhookSubscription, col(WebhookSubscription.id) == WebhookDelivery.subscription_id)
             .join(OutboxEvent, col(OutboxEvent.id) == WebhookDelivery.event_id)
             .where(WebhookSubscription.jurisdiction == jid,
                    (WebhookDelivery.status == DEAD)
                    | ((WebhookDelivery.status == PENDING) & (WebhookDelivery.attempts > 0)))
             .order_by(col(WebhookDelivery.id).desc()).limit(limit))
    with Session(reader(engine)) as session:
        return [{"delivery": d, "url": url, "kind": kind} for d, url, kind in session.exec(query)]


def redeliver(engine: Engine, jid: str, delivery_id: int, actor: str) -> WebhookDelivery:
    """A dead-lettered (or failing) delivery goes out again now, with a fresh 24-hour retry window."""
    with UnitOfWork(engine) as uow:
        session = uow.session
        delivery = session.get(WebhookDelivery, delivery_id)
        sub = session.get(WebhookSubscription, delivery.subscription_id) if delivery else None
        if delivery is None or sub is None or sub.jurisdiction != jid:
            raise NotFound(f"辖区 {jid} 没有投递记录 {delivery_id}", field="id")
        if delivery.status == DELIVERED:
            raise Invalid(f"投递 {delivery_id} 已成功, 无需重投", field="id")
        if not sub.active:
            raise Invalid(f"投递 {delivery_id} 的订阅已删除, 不能重投", field="id")
        now = utcnow()
        delivery.status, delivery.next_attempt_at, delivery.created_at, delivery.lease_until = PENDING, now, now, None
        session.add(delivery)
        audit(session, actor, "webhook_redelivered", jid, None, delivery=delivery_id)
    notify()  # due now: wake this process's delivery loop
    return delivery

