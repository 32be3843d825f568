"""What a report carries at intake (description, channel, reporter, location, attachments, time observed), shared by
`POST /v1/cases` and Open311's `POST requests`; the grid is found from the location when no unit is given."""
from __future__ import annotations

from datetime import timedelta, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from engine.router import Case
from store.boundaries import COORD_LABELS, Locators, to_wgs84
from store.errors import Invalid
from store.tables import utcnow

ATTACHMENT_URL = r"^https?://[^/?#]"  # scheme and host: one meaning in every regex engine (schema, generator, pydantic)
PHONE = r"^[0-9+\-() ]{3,32}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
CLOCK_SKEW = timedelta(minutes=5)  # an observation "in the future" by less than this is a clock difference


class Channel(str, Enum):
    """Where a report came in (信息来源)."""
    hotline = "热线"
    patrol = "网格员巡查"
    public = "公众举报"
    assigned = "上级交办"
    department = "部门移送"
    media = "媒体曝光"
    inspection = "督察检查"
    other = "其他"


class Reporter(BaseModel):
    """The reporter's contact: kept for the handling grid's call-back, never published (Open311, feed, webhooks)."""
    # Python's `$` also matches before a final newline, as the schema's generators (schemathesis) read it: a value
    # they make from the schema's pattern is not refused by pydantic's default (Rust) engine
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")
    name: str | None = Field(None, max_length=64)
    # the patterns also go into the schema by hand: Litestar leaves a pattern of an optional field out
    phone: str | None = Field(None, max_length=32, pattern=PHONE, json_schema_extra={"pattern": PHONE})
    email: str | None = Field(None, max_length=254, pattern=EMAIL, json_schema_extra={"pattern": EMAIL})


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90, description="纬度 latitude")
    long: float = Field(ge=-180, le=180, description="经度 longitude")
    coord_system: str = Field("wgs84", max_length=16, description=f"坐标系: {COORD_LABELS}")
    address: str = Field("", max_length=500, description="地址描述")


class Report(BaseModel):
    """The report fields of an intake request (every one optional)."""
    description: str = Field("", max_length=4000, description="问题描述")
    channel: Channel | None = Field(None, description="信息来源")
    reporter: Reporter | None = Field(None, description="举报人联系方式 (不公开)")
    location: Location | None = Field(None, description="位置; 未给 unit 时由它确定网格")
    attachments: list[Annotated[str, Field(pattern=ATTACHMENT_URL, max_length=2083)]] = Field(
        default_factory=list, max_length=20, description="照片/视频等附件的 http(s) URL",
        json_schema_extra={"items": {"type": "string", "pattern": ATTACHMENT_URL, "maxLength": 2083}})
    observed_at: AwareDatetime | None = Field(None, description="发现时间, 带时区, 如 2026-11-28T09:30:00+08:00")


def resolve(locators: Locators, jurisdiction: str, case: Case, report: Report) -> tuple[Case, dict[str, Any]]:
    """The case with its unit (found from the location when none is given) and the intake columns to store."""
    columns: dict[str, Any] = {"channel": report.channel.value if report.channel else None,
                               "attachments": [str(url) for url in report.attachments]}
    if report.reporter is not None:
        columns["reporter"] = report.reporter.model_dump(mode="json", exclude_none=True) or None
    if report.observed_at is not None:
        if report.observed_at > utcnow() + CLOCK_SKEW:
            raise Invalid(f"发现时间 {report.observed_at.isoformat()} 晚于当前时间 — observed_at is in the future",
                          field="observed_at")
        columns["observed_at"] = report.observed_at.astimezone(timezone.utc)
    if report.location is not None:
        where = report.location
        if case.unit is None:
            unit, lon, lat = locators.locate(jurisdiction, where.long, where.lat, where.coord_system)
            case = case.model_copy(update={"unit": unit})
        else:
            lon, lat = to_wgs84(where.long, where.lat, where.coord_system)
        columns.update(lat=lat, lon=lon, coord_system=where.coord_system.strip().lower(), address=where.address)
    return case, columns

