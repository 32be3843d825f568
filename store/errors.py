"""Store errors carry what an API answer or a CLI message needs: status, field path, Chinese message."""
from __future__ import annotations


class StoreError(Exception):
    status = 400
    title = "请求错误 Bad request"

    def __init__(self, message: str, field: str | None = None, **extra):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def __reduce__(self):  # whole again after crossing to another process (the writer's errors reach the server)
        return _restored, (type(self), self.message, self.field, self.extra)


def _restored(kind: type[StoreError], message: str, field: str | None, extra: dict) -> StoreError:
    error = kind.__new__(kind)  # not kind(...): a subclass may take other arguments
    StoreError.__init__(error, message, field, **extra)
    return error


class NotFound(StoreError):
    status = 404
    title = "未找到 Not found"


class Conflict(StoreError):
    status = 409
    title = "状态冲突 Conflict"


class PreconditionFailed(StoreError):
    status = 412
    title = "版本已被他人修改 Precondition failed"


class PreconditionRequired(StoreError):
    status = 428
    title = "需要 If-Match"


class Invalid(StoreError):
    status = 422
    title = "校验未通过 Unprocessable"


class Forbidden(StoreError):
    status = 403
    title = "无权访问 Forbidden"


class Busy(StoreError):
    status = 503
    title = "服务繁忙 Service unavailable"
