"""The error answers of every operation, declared once for the whole OpenAPI document.

Handlers describe their successes; what can go wrong follows from what an operation takes (a body, an API key,
an If-Match) and is the same everywhere: RFC 9457 problem+json on /v1, the GeoReport errors document on
/open311. `document_errors` adds these to the generated document, so the schema says what the server does.
"""
from __future__ import annotations

from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, Operation, Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType

PROBLEM_JSON = "application/problem+json"
ETAG_PATTERN = r'^"[0-9]{1,9}"$'  # the ETags this API sends: a draft's revision, quoted
OPEN311_MEDIA: tuple[str, ...] = ("text/xml; charset=utf-8", "application/json; charset=utf-8")

PROBLEM = Schema(
    type=OpenAPIType.OBJECT, required=["type", "title", "status", "detail"],
    description="RFC 9457 problem details; `field` names the offending input, `detail` says what is wrong (中文)",
    properties={"type": Schema(type=OpenAPIType.STRING), "title": Schema(type=OpenAPIType.STRING),
                "status": Schema(type=OpenAPIType.INTEGER), "detail": Schema(type=OpenAPIType.STRING),
                "field": Schema(type=OpenAPIType.STRING),
                "errors": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT))})
OPEN311_ERRORS = Schema(
    type=OpenAPIType.ARRAY, description="GeoReport v2 errors: code and description",
    items=Schema(type=OpenAPIType.OBJECT, properties={"code": Schema(type=OpenAPIType.INTEGER),
                                                      "description": Schema(type=OpenAPIType.STRING)}))

MEANING = {
    400: "请求格式错误: 参数或请求体不符合接口定义 (字段见 field) — invalid request",
    403: "缺少 API key、key 无效或无权访问该辖区 — API key missing, invalid or out of scope",
    404: "辖区、版本、案件或单元不存在 — not found",
    409: "状态冲突, 如已发布的版本不可修改或动作不适用于当前步骤 — conflict",
    412: "If-Match 与当前修订不符 — the draft changed since it was read",
    413: "请求体超过 256 KB — request body too large",
    422: "内容无法处理, 如无法路由或草稿校验未通过 — unprocessable",
    428: "修改草稿须带 If-Match — If-Match required",
    500: "服务器内部错误 — internal error",
}


def _codes(path: str, method: str, operation: Operation) -> list[int]:
    params = {p.name for p in operation.parameters or [] if not isinstance(p, Reference)}
    codes = [400, 404, 500]
    if operation.security or "X-API-Key" in params or path.startswith("/open311") and method == "post":
        codes.append(403)
    if path.startswith("/v1"):
        codes.append(422)
    if method in ("post", "put", "patch"):
        codes += [409, 413]
    if "If-Match" in params:
        codes += [412, 428]
    return sorted(codes)


def _closed(openapi: OpenAPI, ref: Reference) -> None:
    """A body model and the models nested in it (e.g. a case's `location`) refuse unknown fields: say so."""
    schema = openapi.components.schemas[ref.ref.rsplit("/", 1)[1]]
    if schema.additional_properties is False:
        return
    schema.additional_properties = False
    todo = list((schema.properties or {}).values())
    while todo:
        part = todo.pop()
        if isinstance(part, Reference):
            _closed(openapi, part)
        elif isinstance(part, Schema):
            todo += [*(part.one_of or []), *(part.any_of or []), *(part.all_of or [])]
            todo += [part.items] if part.items is not None else []


def document_errors(openapi: OpenAPI) -> OpenAPI:
    """Adds the error answers to every operation of `openapi` (in place) and returns it."""
    openapi.components.schemas["Problem"] = PROBLEM
    openapi.components.schemas["Open311Errors"] = OPEN311_ERRORS
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post", "put", "delete", "patch"):
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses or {}
            for parameter in operation.parameters or []:
                if not isinstance(parameter, Reference) and parameter.name == "If-Match":
                    parameter.required = True  # without it the answer is 428
                    parameter.schema = Schema(type=OpenAPIType.STRING, pattern=ETAG_PATTERN,
                                              description="GET 得到的 ETag, 如 \"3\"")
            body = operation.request_body
            if body is not None and not isinstance(body, Reference):
                for media in (body.content or {}).values():
                    if isinstance(media.schema, Reference):  # every JSON body model refuses unknown fields
                        _closed(openapi, media.schema)
            if path.startswith("/open311"):
                for success in responses.values():  # the format suffix (.xml or .json) chooses the media type
                    if isinstance(success, OpenAPIResponse) and success.content:
                        schema = next(iter(success.content.values())).schema
                        success.content = {media: OpenAPIMediaType(schema=schema) for media in OPEN311_MEDIA}
                errors = Reference("#/components/schemas/Open311Errors")
                media_types = OPEN311_MEDIA
            else:
                errors, media_types = Reference("#/components/schemas/Problem"), (PROBLEM_JSON,)
            for code in _codes(path, method, operation):
                responses[str(code)] = OpenAPIResponse(
                    description=MEANING[code], content={m: OpenAPIMediaType(schema=errors) for m in media_types})
            operation.responses = responses
    return openapi
