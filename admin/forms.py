"""Admin forms as pydantic models: each form's fields, limits and Chinese labels (`title`) in one place, read from
the submitted form by one function, their validation errors turned into a Chinese message next to each field by
another."""
from __future__ import annotations

import typing
from functools import cache
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le
from litestar.datastructures import FormMultiDict
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from admin.common import FormInvalid
from policy.models import SLUG


def blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Checkbox = Annotated[bool, BeforeValidator(lambda value: value == "on")]  # an unticked box is not sent at all
Lines = Annotated[list[str], BeforeValidator(lambda value: [line.strip() for line in str(value).splitlines()
                                                            if line.strip()])]


def text(title: str, limit: int, required: bool = True) -> Any:
    return Field(... if required else "", title=title, min_length=int(required), max_length=limit)


def slug(title: str) -> Any:
    return Field(title=title, min_length=1, max_length=64, pattern=SLUG)


class FormModel(BaseModel):
    """A submitted form: text trimmed; fields it does not declare (CSRF token, revision, other parts) ignored."""
    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore")


class NewId(FormModel):
    """A new item's id, which must be none of `taken` (the validation context, with the kind's `label`)."""
    id: str = slug("编号")

    @field_validator("id")
    @classmethod
    def _new(cls, value: str, info: ValidationInfo) -> str:
        context = info.context or {"taken": (), "label": ""}
        if value in context["taken"]:
            raise ValueError(f"{context['label']}编号 {value} 已存在")
        return value


class SourceForm(FormModel):
    seed: str = text("出处文件", 500)
    clause: str = text("条款", 500)
    quote: str = text("原文引文", 2000)

    def document(self) -> dict:
        return {"source": self.model_dump(), "assumption": None}


class AssumptionForm(FormModel):
    assumption: str = text("假设说明", 2000)

    def document(self) -> dict:
        return {"source": None, "assumption": self.assumption}


def provenance(data: FormMultiDict, prefix: str = "") -> tuple[type[FormModel], str]:
    """The provenance part of a form: a `source` (seed, clause, quote) or an `assumption` note, as the admin chose
    with the `prov` radio."""
    return (SourceForm if data.get(prefix + "prov") == "source" else AssumptionForm), prefix


def read(data: FormMultiDict, *parts: tuple[type[FormModel], str], context: dict | None = None) -> list[Any]:
    """Each part (a form model and the prefix of its field names in the form) read from the submitted form; every
    problem of every part at once, as FormInvalid. `context` goes to the models' validators."""
    values: list[Any] = []
    errors: dict[str, str] = {}
    for model, prefix in parts:
        fields = {}
        for key in data.keys():
            if key.startswith(prefix):
                given = data.getall(key)
                fields[key[len(prefix):]] = given if len(given) > 1 else given[0]
        try:
            values.append(model.model_validate(fields, context=context))
        except ValidationError as err:
            errors |= {prefix + name: message for name, message in form_errors(model, err).items()
                       if prefix + name not in errors}
    if errors:
        raise FormInvalid(errors)
    return values


def form_errors(model: type[BaseModel], err: ValidationError) -> dict[str, str]:
    """Each field's first problem, in Chinese, named by the field's title."""
    out: dict[str, str] = {}
    for error in err.errors():
        name = next((part for part in error["loc"] if isinstance(part, str)), "general")
        out.setdefault(name, _message(model, name, error))
    return out


@cache
def _positive(model: type[BaseModel], name: str) -> bool:
    return any(isinstance(m, Gt) and m.gt == 0 for m in model.model_fields[name].metadata)


@cache
def _bounds(model: type[BaseModel], name: str) -> tuple[Any, Any]:
    metadata = model.model_fields[name].metadata if name in model.model_fields else []
    return (next((m.ge for m in metadata if isinstance(m, Ge)), None),
            next((m.le for m in metadata if isinstance(m, Le)), None))


def _message(model: type[BaseModel], name: str, error: ErrorDetails) -> str:
    field = model.model_fields.get(name)
    label = field.title if field and field.title else name
    kind, ctx, given = error["type"], error.get("ctx") or {}, error.get("input")
    shown = str(given)[:20]
    if kind in ("missing", "string_too_short"):
        return f"{label}不能为空"
    if kind == "string_too_long":
        return f"{label}最多 {ctx['max_length']} 个字符, 现有 {len(str(given))} 个"
    if kind == "string_pattern_mismatch":
        return f"{label}只能由小写字母、数字、_ 或 - 组成 (如 water_bureau), 而非 “{shown}”"
    if kind.startswith("int_") or (kind in ("greater_than_equal", "less_than_equal") and None not in
                                   _bounds(model, name)):
        low, high = _bounds(model, name)
        return f"{label}须为 {low}–{high} 的整数, 而非 “{shown}”"
    if kind.startswith("float_") or kind in ("greater_than", "greater_than_equal", "less_than_equal", "finite_number"):
        low, high = _bounds(model, name)
        what = "正数" if _positive(model, name) else f"{low}–{high} 之间的数" if None not in (low, high) else "数字"
        return f"{label}须为{what}, 而非 '{shown}'"
    if kind == "literal_error" and field is not None:
        options = typing.get_args(field.annotation)
        return f"{label}须为 {', '.join(map(str, options))} 之一"
    return error["msg"].removeprefix("Value error, ")
