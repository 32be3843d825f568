"""Admin forms as pydantic models: each form's fields, limits and Chinese labels (`title`) in one place, read from
the submitted form by one function, their validation errors turned into a Chinese message next to each field by
another."""
from __future__ import annotations

import re
import typing
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le
from litestar.datastructures import FormMultiDict, UploadFile
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic_core import ErrorDetails

from admin.common import FormInvalid, revision_number
from policy.facts import CASE_FACTS, ENUM_FACTS
from policy.models import SLUG
from store.users import MAX_PASSWORD


CJK = re.compile(r"[\u4e00-\u9fff]")


def blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Checkbox = Annotated[bool, BeforeValidator(lambda value: value == "on")]  # an unticked box is not sent at all
Lines = Annotated[list[str], BeforeValidator(lambda value: [line.strip() for line in str(value).splitlines()
                                                            if line.strip()])]


Revision = Annotated[int, BeforeValidator(revision_number)]
Many = BeforeValidator(lambda value: value if isinstance(value, list) else [value])  # one value is sent bare


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


class LoginForm(FormModel):
    model_config = ConfigDict(str_strip_whitespace=False)  # a password is taken as typed
    name: Annotated[str, StringConstraints(strip_whitespace=True)] = text("用户名", 200)
    password: str = Field(title="密码", min_length=1, max_length=MAX_PASSWORD)


class PublishForm(FormModel):
    """Publishing a draft, first accepting the new outcomes of the pinned cases ticked (at the draft's revision)."""
    note: str = text("变更说明", 2000)
    accept: Annotated[list[Annotated[str, Field(max_length=200)]], Many] = Field([], title="接受的测试用例",
                                                                              max_length=500)
    revision: Revision = 0


class RollbackForm(FormModel):
    reason: str = text("回滚原因", 2000)
    confirm: Checkbox = Field(False, title="确认回滚", validate_default=True)  # an unticked box is not sent

    @field_validator("confirm")
    @classmethod
    def _confirmed(cls, value: bool) -> bool:
        if not value:
            raise ValueError("请勾选“确认回滚”后再提交")
        return value


class JurisdictionForm(FormModel):
    jurisdiction: str = text("辖区", 64)


ENTERPRISE_CLASSES = ENUM_FACTS["enterprise_class"][1]


class CaseForm(JurisdictionForm):
    """The simulator's case: a problem type as typed (code, name or pinyin), a unit and the facts: the ticked
    `fact_*` boxes and the enterprise class."""
    problem_type: str = text("问题类型", 200)
    unit: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(None, title="发现网格", max_length=200)
    enterprise_class: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(
        None, title=ENUM_FACTS["enterprise_class"][0])
    ticked: list[str] = []  # the CASE_FACTS whose box is ticked

    @model_validator(mode="before")
    @classmethod
    def _ticked(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, "ticked": [name for name in CASE_FACTS if data.get(f"fact_{name}") == "on"]}
        return data

    @field_validator("enterprise_class")
    @classmethod
    def _known_class(cls, value: str | None) -> str | None:
        if value is not None and value not in ENTERPRISE_CLASSES:
            raise ValueError(f"{ENUM_FACTS['enterprise_class'][0]}须为 {', '.join(ENTERPRISE_CLASSES)} 之一")
        return value

    def facts(self) -> dict[str, bool | str]:
        facts: dict[str, bool | str] = dict.fromkeys(self.ticked, True)
        if self.enterprise_class is not None:
            facts["enterprise_class"] = self.enterprise_class
        return facts


NO_CLAUSE = "请选择用例依据的条款原文"


class PinForm(CaseForm):
    """A simulated case saved as a pinned test case: its name and the quoted clause it rests on (an index into the
    clauses the decision followed)."""
    name: str = text("用例名称", 200)
    clause: int = Field(title="依据的条款原文", ge=0, le=10_000)

    @field_validator("clause", mode="before")
    @classmethod
    def _chosen(cls, value: Any) -> Any:
        if not (isinstance(value, str) and value.isascii() and value.isdigit()):
            raise ValueError(NO_CLAUSE)
        return value


class BoundaryForm(FormModel):
    """GeoJSON boundaries: an uploaded file, or (on confirming a preview) the same text sent back."""
    model_config = ConfigDict(arbitrary_types_allowed=True)
    file: Annotated[UploadFile | None, BeforeValidator(lambda value: value if isinstance(value, UploadFile) else None)
                    ] = Field(None, title="GeoJSON 文件")
    geojson: str = ""
    action: str = ""
    revision: Revision = 0

    async def content(self) -> bytes:
        content = await self.file.read() if self.file is not None else self.geojson.encode()
        if not content.strip():
            raise FormInvalid({"file": "请选择 GeoJSON 文件"})
        return content


class WebhookForm(FormModel):
    url: str = text("接收地址", 2000)
    kinds: Annotated[list[Annotated[str, Field(max_length=64)]], Many] = Field([], title="事件", max_length=50)
    description: str = text("说明", 200, required=False)


def _object_ids(value: Any) -> Any:
    parts = [p for p in str(value).replace("，", ",").replace(" ", ",").split(",") if p]
    if not all(p.isascii() and p.isdigit() and len(p) < 10 for p in parts):
        raise ValueError(f"对象编号须为数字, 以逗号分隔: '{value}'")
    return [int(p) for p in parts]


ObjectIds = Annotated[list[int], BeforeValidator(_object_ids)]


class PatrolForm(FormModel):
    """A patrol record (巡查记录); its finding, if any, opens a case of `problem_type`. The ledger checks the unit,
    the activity and the objects."""
    unit: str = Field("", title="网格", max_length=200)
    activity: str = Field("patrol", title="巡查类型", max_length=32)
    patrolled_at: datetime = Field(title="巡查时间")
    patrollers: Annotated[list[str], BeforeValidator(lambda value: [p.strip() for p in re.split(r"[,，、]", str(value))
                                                                    if p.strip()])] = Field([], title="巡查人员")
    signed_by: str = Field("", title="签字人", max_length=200)
    objects: ObjectIds = Field([], title="检查对象")
    finding_object: ObjectIds = Field([], title="问题所属对象")
    problem_type: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(None, title="立案问题类型",
                                                                                max_length=200)
    finding: str = Field("", title="发现的问题", max_length=2000, validate_default=True)
    photos: Annotated[list[str], BeforeValidator(lambda value: str(value).split())] = Field([], title="照片")

    @field_validator("finding")
    @classmethod
    def _case_needs_finding(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.data.get("problem_type"):
            raise ValueError("立案须填写发现的问题")
        return value


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
    if kind.startswith("datetime_"):
        return f"{label} '{shown}' 格式不正确 (如 2026-03-01T09:30)"
    if kind == "string_type":  # a field sent more than once
        return f"{label}只能填写一个值"
    message = error["msg"].removeprefix("Value error, ")
    return message if CJK.search(message) else f"{label}无效: {message}"
