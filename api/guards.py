"""What every request passes before its handler, and the security headers every answer carries.

`request_guard` is the app's one guard (Litestar copies the handler once per guard it runs, a fifth of a route
request's CPU with two): the input limits, then the API key on every operation whose OpenAPI security names it.

`input_guard` is one check for all write endpoints instead of a patch per handler: the body must be UTF-8,
JSON at most MAX_DEPTH levels deep with numbers JSON can carry exactly (I-JSON, RFC 7493), and any date,
datetime or ISO 8601 duration (in the body, a form or the query) within what a calendar can add to. An
If-Match beyond the database's integers names no revision. Each refusal names the field (400 for malformed input,
422 for a value out of range, 412 for such an If-Match), before any handler, parser or database sees it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import SerializationException
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from pydantic import TypeAdapter, ValidationError

from store.apikeys import authenticate, authenticate_cached, in_scope
from store.budget import READ_SECONDS, RETRY_AFTER, read_budget
from store.errors import NotFound, StoreError
from store.tables import MAX_ID

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
MAX_DEPTH = 64  # a policy document is ~8 levels deep
MAX_INT = 2**53 - 1  # I-JSON: integers every JSON parser reads exactly
MAX_DURATION = timedelta(days=3660)  # ten years: no deadline or extension is longer
YEARS = range(1900, 2201)
_DURATION = re.compile(r"-?P(?=[0-9.,]+[YMWDTHS])[0-9YMWDTHS.,]+")
_DATE = re.compile(r"[+-]?\d{4,}-\d\d-\d\d([T ].*)?")
_durations = TypeAdapter(timedelta)


class InputRefused(StoreError):
    """Input that is not what it claims to be (not UTF-8, not parseable, nested too deeply): 400."""
    status = 400
    title = "请求格式错误 Invalid request"


class OutOfRange(InputRefused):
    """A well-formed number, date or duration beyond what the service can hold or compute with: 422."""
    status = 422
    title = "数值超出范围 Out of range"


def _check_text(value: str, field: str) -> None:
    """Durations and dates must lie where calendars and the database can follow them."""
    if len(value) > 64:
        return
    if _DURATION.fullmatch(value):
        try:
            duration = _durations.validate_python(value)
        except ValidationError:
            return  # not a duration after all; the handler's own model says what is wrong
        if abs(duration) > MAX_DURATION:
            raise OutOfRange(f"{field}: 时长 {value} 超出上限 {MAX_DURATION.days} 天 — duration too long", field=field)
    elif _DATE.fullmatch(value):
        year = int(value[:value.index("-", 1)])
        if year not in YEARS:
            raise OutOfRange(f"{field}: 日期 {value} 须在 {YEARS.start}–{YEARS.stop - 1} 年之间 — date out of range",
                               field=field)


def parse_moment(value: str, field: str) -> datetime:
    """A W3C/ISO 8601 date or datetime from a query or form, as an aware UTC datetime (naive = UTC)."""
    _check_text(value, field)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputRefused(f"{field} 须为 W3C 日期时间, 如 2026-05-24T00:00:00Z — not a datetime",
                           field=field) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _refuse_constant(name: str) -> Any:
    raise InputRefused(f"JSON 不允许 {name} — not a JSON number", field="body")


_lenient = json.JSONDecoder(parse_constant=_refuse_constant)


async def _check_json(request: Request, text: str) -> None:
    try:
        # Litestar's own parse, which it keeps for the handler's `data`: the body is parsed once
        document = await request.json()
    except (SerializationException, RecursionError):
        # what that parser refuses, a lenient one reads to name why (NaN, a number beyond a float, depth); what
        # neither reads, the handler's parser reports where, as it would have without this guard
        try:
            document = _lenient.decode(text)
        except RecursionError:
            raise InputRefused(f"JSON 嵌套超过 {MAX_DEPTH} 层 — nested too deeply", field="body") from None
        except ValueError:
            return
    _check_document(document)


def _check_document(document: Any) -> None:
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise InputRefused(f"{path or 'body'}: JSON 嵌套超过 {MAX_DEPTH} 层 — nested too deeply",
                                   field=path or "body")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((child, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key,
                          depth + 1) for key, child in items)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > MAX_INT:
            raise OutOfRange(f"{path}: 整数超出范围 ±{MAX_INT} — integer out of range", field=path or "body")
        elif isinstance(value, float) and not math.isfinite(value):
            raise OutOfRange(f"{path}: 数值超出范围 — number out of range", field=path or "body")
        elif isinstance(value, str):
            _check_text(value, path or "body")


@lru_cache(maxsize=1024)  # one model per handler and path; a handler is kept here, so its identity is never reused
def _query_params_taken(handler: BaseRouteHandler, path_params: tuple[str, ...]) -> dict[str, Any]:
    model = handler.create_kwargs_model(dict.fromkeys(path_params))  # type: ignore[arg-type]
    return {param.field_alias: param for param in model.expected_query_params}


def _check_query(connection: ASGIConnection) -> None:
    """A query parameter the operation does not take is refused on /v1 (a misspelt filter would otherwise be
    ignored and the answer look right); one given twice is refused unless the operation takes a list of it (the
    framework would quietly keep one of the values)."""
    params = connection.query_params
    if not params:
        return
    # the registered handler, not the guard's argument: Litestar hands each guard a copy, which no cache would know
    taken = _query_params_taken(connection.route_handler, tuple(connection.path_params))
    strict = connection.url.path.startswith("/v1/")
    for name in params:
        param = taken.get(name)
        if param is None and strict:
            raise InputRefused(f"未知的查询参数 '{name[:40]}' — unknown query parameter; 可用 accepted: "
                               f"{', '.join(sorted(taken)) or '无 none'}", field=name[:40] or "query")
        if len(params.getall(name)) > 1 and not (param is not None and param.is_sequence):
            raise InputRefused(f"查询参数 {name[:40]} 重复 — repeated query parameter", field=name[:40] or "query")


def _check_if_match(value: str | None) -> None:
    digits = (value or "").strip().strip('"')
    # beyond the schema's ETag pattern: not an ETag this API sends, so malformed (400) rather than stale (412)
    if digits.isdigit() and (len(digits) > 10 or int(digits) > MAX_ID):
        raise InputRefused(f"If-Match {digits[:40]} 不是本服务发出的 ETag (如 \"3\") — not an ETag of this API",
                           field="If-Match")


async def request_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """The app's guard: the input limits, then, on an operation whose OpenAPI security requires the API key (its
    decorator's `**KEYED`), the key: so the schema and the check cannot disagree."""
    await input_guard(connection)
    registered = connection.route_handler  # not the guard's copy of it, whose resolved security is not kept
    if isinstance(registered, HTTPRouteHandler) and API_KEY_SECURITY in registered.resolve_security():
        await require_key(connection)


async def input_guard(connection: ASGIConnection) -> None:
    """Refuses, before any handler runs, input that would otherwise reach a parser, a calendar or the
    database out of range."""
    for name, value in connection.query_params.multi_items():
        _check_text(value, name)
    _check_query(connection)
    if not isinstance(connection, Request) or connection.method not in WRITES:
        return
    _check_if_match(connection.headers.get("If-Match"))
    media = connection.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media.startswith("multipart/"):
        # file uploads: the upload's own reader decides the encoding; and the handler's form parser reads the
        # stream itself, which reading the body here would leave it waiting for
        return
    body = await connection.body()
    if not body:
        return
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InputRefused("表单内容不是有效的 UTF-8 — form is not valid UTF-8", field="body") from None
        for name, value in pairs:
            _check_text(value, name)
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputRefused(f"请求体不是有效的 UTF-8 (第 {err.start} 字节) — body is not valid UTF-8",
                           field="body") from None
    if media == "application/json" or media.endswith("+json"):
        await _check_json(connection, text)


# --- API keys
API_KEY_HEADER = "X-API-Key"
API_KEY_SECURITY: dict[str, list[str]] = {"apiKey": []}  # the OpenAPI security requirement of the keyed endpoints


async def require_key(connection: ASGIConnection) -> None:
    """The request's API key must be valid, and cover the `jid` of the path if there is one, which must exist (a
    jurisdiction named in the body or by a case is checked by the handler with `in_scope`). The handler receives
    the key as `api_key`. What this worker knows is checked on the loop; only a read of the database goes to a
    thread."""
    policies = connection.app.state.services.policies
    header = connection.headers.get(API_KEY_HEADER)
    key = authenticate_cached(policies.engine, header)
    if key is None:
        key = await asyncio.to_thread(authenticate, policies.engine, header)
    jid = connection.path_params.get("jid")
    if jid is not None:
        in_scope(key, jid)
        if not policies.serves(jid) and not await asyncio.to_thread(policies.exists, jid):
            raise NotFound(f"未知辖区 unknown jurisdiction '{jid}'", field="jid")
    connection.state.api_key = key


KEYED: dict[str, Any] = {"security": [API_KEY_SECURITY]}  # a keyed handler's decorator: request_guard checks the key


# --- response headers
ADMIN_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
ADMIN_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": ADMIN_CSP, "X-Frame-Options": "DENY"}


async def security_headers(message: Message, scope: Scope) -> None:
    """Every answer: no MIME sniffing, no referrer beyond this site. /admin also: scripts only from /admin/static
    (no inline script), never framed. (An app-level before_send hook, so error pages and 404s carry them too.)"""
    if message["type"] == "http.response.start":
        headers = MutableScopeHeaders.from_message(message)
        for name, value in (ADMIN_HEADERS if scope["path"].startswith("/admin") else COMMON_HEADERS).items():
            headers[name] = value


# --- the read budget
READS = {"GET", "HEAD"}
GRACE = 1.0  # seconds past the budget a handler has to refuse by itself (store.budget.TooSlow names what it waited for)
log = logging.getLogger("gridpolicy")


def _late(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a read answered after its budget failed", exc_info=task.exception())


def read_deadline(app: ASGIApp) -> ASGIApp:
    """A GET runs within its read budget (store.budget): what it waits for is waited for until then, and when its
    handler runs on past the budget the client gets a 503 problem+json at once (the handler's late answer is
    dropped; a read changes nothing, so nothing is half done)."""
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") not in READS:
            await app(scope, receive, send)
            return
        started = refused = False

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if not refused:
                started = True
                await send(message)

        with read_budget():  # the handler's task (and the threads it starts) inherit the deadline
            task = asyncio.ensure_future(app(scope, receive, send_unless_refused))
        await asyncio.wait({task}, timeout=READ_SECONDS + GRACE)
        if task.done() or started:
            await task
            return
        refused = True
        task.add_done_callback(_late)
        body = json.dumps({"type": "about:blank", "title": "服务繁忙 Service unavailable", "status": 503,
                           "detail": f"读取超过 {READ_SECONDS:g} 秒的时间预算, 已放弃, 请 {RETRY_AFTER} 秒后重试 — the "
                                     f"read ran past its {READ_SECONDS:g} s budget; retry in {RETRY_AFTER} s"},
                          ensure_ascii=False).encode()
        start: HTTPResponseStartEvent = {
            "type": "http.response.start", "status": 503,
            "headers": [(b"content-type", b"application/problem+json"),
                        (b"retry-after", str(RETRY_AFTER).encode()),
                        (b"content-length", str(len(body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware
