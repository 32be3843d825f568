"""The declarative policy language: pydantic models of one jurisdiction's rules.

Every rule-bearing item carries provenance: a `source` (seed file, clause, exact quote) or an
`assumption` (why a value the documents do not give was chosen). The item's provenance vouches for the
item itself; each judgement field (`JUDGED`) may carry its own under `fields:`, and one without it is
not vouched for by the item's quote (policy/provenance.py says what each field counts as).
"""
from __future__ import annotations

import difflib
from datetime import timedelta
from enum import Enum
from typing import Annotated, ClassVar, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from policy.facts import ALL_FACTS, BOOLEAN_FACTS, CASE_FACTS, ENUM_FACTS

SLUG = r"^[a-z0-9_][a-z0-9_\-]*$"
Slug = Annotated[str, StringConstraints(pattern=SLUG, max_length=64)]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+){1,4}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    seed: NonEmpty
    clause: NonEmpty
    quote: NonEmpty


class Provenance(Strict):
    """Exactly one of a seed quote or an assumption's note."""
    source: Source | None = None
    assumption: NonEmpty | None = None

    @model_validator(mode="after")
    def _one_provenance(self):
        if (self.source is None) == (self.assumption is None):
            raise ValueError("每条规则须有且仅有一种出处: source(原文出处) 或 assumption(假设说明) "
                             "— exactly one of `source` or `assumption` is required")
        return self

    @property
    def provenance(self) -> dict:
        if self.source is not None:
            return {"seed": self.source.seed, "clause": self.source.clause, "quote": self.source.quote}
        return {"assumption": self.assumption}


class Provenanced(Provenance):
    # Judgement fields: each may carry its own provenance under `fields`; numeric ones are in NUMERIC.
    JUDGED: ClassVar[tuple[str, ...]] = ()
    NUMERIC: ClassVar[tuple[str, ...]] = ()
    # a factory: a literal {} default is deep-copied for every item (a second per unit at 200,000 units)
    fields: dict[str, Provenance] = Field(default_factory=dict, description="逐字段出处 (判断性字段)")
    inherited_from: Slug | None = Field(None, description="由加载器标注: 原样继承自哪个模板")

    @model_validator(mode="after")
    def _judged_fields(self):
        if not self.fields:  # most items (every imported unit): nothing to check
            return self
        unknown = sorted(set(self.fields) - set(self.JUDGED))
        if unknown:
            raise ValueError(f"fields 中的 {unknown} 不是可单独注明出处的字段; 可用 valid: {list(self.JUDGED) or '无'}"
                             " — only judgement fields take their own provenance")
        return self


class SeedDocument(Strict):
    seed: NonEmpty
    title: NonEmpty
    sections: list[str] = []


class StatedCount(Provenanced):
    JUDGED = NUMERIC = ("count",)
    count: Annotated[int, Field(gt=0)]
    scope: str = ""


class Level(Provenanced):
    number: Annotated[int, Field(ge=1, le=6)]
    name: NonEmpty
    unit_kind: NonEmpty
    head_role: NonEmpty
    staff_roles: list[NonEmpty] = []
    unit_counts: list[StatedCount] = []

    @property
    def stated_count(self) -> int | None:
        return sum(c.count for c in self.unit_counts) if self.unit_counts else None


class Unit(Provenanced):
    id: Slug
    name: NonEmpty
    level: int
    parent: Slug | None = None
    placeholder: bool = False


class UnitGroup(Provenanced):
    """Placeholder units where the document gives only a count; replaced by a CSV import."""
    generate: Annotated[int, Field(gt=0)]
    level: int
    parents: list[Slug]
    id_prefix: Slug
    name: NonEmpty = Field(description="名称模板, {n} 为序号")

    @field_validator("name")
    @classmethod
    def _has_counter(cls, v: str) -> str:
        if "{n" not in v:
            raise ValueError("名称模板须包含 {n} 序号 — the name template must contain {n}")
        return v


class Department(Provenanced):
    id: Slug
    name: NonEmpty
    duties: list[NonEmpty] = []


class ProblemType(Provenanced):
    JUDGED = ("level", "departments", "persuade_first", "assist_only")
    code: Code
    name: str | None = Field(None, description="默认取基础目录中的名称")
    level: int | None = Field(None, description="有处置权的网格层级")
    departments: list[Slug] = []
    persuade_first: bool = False
    assist_only: bool = Field(False, description="该层级网格只报告并协助上级或部门处置, 自身不处置")


class CalendarKind(str, Enum):
    natural = "natural"
    working = "working"


class Deadline(Provenanced):
    JUDGED = NUMERIC = ("duration",)
    duration: timedelta
    calendar: CalendarKind = CalendarKind.natural

    @field_validator("duration")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("时限必须为正 — a deadline must be positive (ISO 8601, e.g. P3D or PT24H)")
        return v


FactValue = Union[bool, int, str]


class Condition(Strict):
    """Conjunction of fact tests, with an optional disjunction of further conjunctions."""
    model_config = ConfigDict(extra="allow", frozen=True)
    any: list[dict[str, FactValue]] = []

    @model_validator(mode="after")
    def _known_facts(self):
        for group in [self.tests, *self.any]:
            for name, value in group.items():
                _check_fact(name, value)
        return self

    @property
    def tests(self) -> dict[str, FactValue]:
        return dict(self.model_extra or {})

    def facts(self) -> set[str]:
        return set(self.tests).union(*[set(g) for g in self.any])


def _check_fact(name: str, value: FactValue) -> None:
    if name not in ALL_FACTS:
        raise ValueError(f"未知的事实 unknown fact '{name}'; 可用 valid: {', '.join(ALL_FACTS)}")
    if name in BOOLEAN_FACTS and not isinstance(value, bool):
        raise ValueError(f"事实 '{name}' 须为 true/false — fact '{name}' takes true or false")
    if name in ENUM_FACTS and value not in ENUM_FACTS[name][1]:
        raise ValueError(f"事实 '{name}' 的取值须为 {sorted(ENUM_FACTS[name][1])} 之一, 而非 {value!r}")
    if name == "handler_level" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("handler_level 须为整数层级 — handler_level takes a level number")


class ActionKind(str, Enum):
    persuade = "persuade"
    report = "report"
    assign = "assign"
    dispose = "dispose"
    dispatch = "dispatch"
    joint_enforcement = "joint_enforcement"
    transfer = "transfer"
    record_close = "record_close"
    re_report = "re_report"
    escalate = "escalate"
    notify = "notify"
    consult = "consult"
    assist = "assist"


ACTION_LABELS = {
    "persuade": "告知劝阻", "report": "上报", "assign": "交办", "dispose": "处置", "dispatch": "派遣",
    "joint_enforcement": "联合执法", "transfer": "移交移送", "record_close": "记录结案",
    "re_report": "再次上报", "escalate": "超期升级", "notify": "通报", "consult": "协商共同处置",
    "assist": "协助",
}

# Who acts / who receives: a role in the case, a named department, a level, the grids a cross-boundary
# case involves, the body competent for what the grid may not decide (移交移送), or the head (网格长) of
# the grid that found the case.
Party = Annotated[str, StringConstraints(
    pattern=r"^(finder|handler|upper|departments|department:[a-z0-9_\-]+|level:[1-6]|leader|involved|competent|head)$")]


class Action(Strict):
    kind: ActionKind
    by: Party = "handler"
    to: Party | None = None
    note: str = ""
    parallel: bool = Field(False, description="与前一动作同时进行 (同时), 而非其后")
    within: "Deadline | None" = Field(None, description="动作本身的时限 (如 立即报告), 有出处或假设")


class HandlerChange(Strict):
    """Moves the case to another grid: the units' common ancestor, the grid that found it, a fixed level,
    or up N levels (from wherever the rules applied so far left it)."""
    to: Literal["common_ancestor", "finder"] | None = None
    level: int | None = None
    up: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        if sum(x is not None for x in (self.to, self.level, self.up)) != 1:
            raise ValueError("handler 须恰好指定 to: common_ancestor|finder、level 或 up 之一")
        return self


class Effect(Strict):
    handler: HandlerChange | None = None
    actions: list[Action] = []
    stop: bool = Field(False, description="命中后不再评估优先级更低的规则")


class Rule(Provenanced):
    id: Slug
    name: NonEmpty
    priority: Annotated[int, Field(ge=1, le=999)]
    when: Condition
    then: Effect


class WorkflowStep(Provenanced):
    id: Slug
    name: NonEmpty
    actor: NonEmpty
    deadline: Deadline
    on_failure: Slug | None = Field(None, description="失败时回到的步骤 (如核查未通过→再次上报)")
    handling: bool = Field(False, description="处置时限步骤: 超期即触发升级")


class Workflow(Provenanced):
    id: Slug
    name: NonEmpty
    when: Condition | None = None
    steps: list[WorkflowStep]


class PeriodKind(str, Enum):
    """A period's length (a cadence's or a scheme's); a concrete calendar period is store.assessment.Period."""
    day = "day"
    week = "week"
    half_month = "half_month"
    month = "month"
    quarter = "quarter"
    half_year = "half_year"
    year = "year"


PERIOD_LABELS = {"day": "日", "week": "周", "half_month": "半月", "month": "月", "quarter": "季度",
                 "half_year": "半年", "year": "年"}


# What a cadence asks for; a patrol record (store/ledger.py) names the activity it fulfils.
ACTIVITY_LABELS = {"patrol": "巡查", "leader_contact": "领导包抓联系", "leader_inspection": "领导实地督查",
                   "source_inspection": "污染源检查", "report": "报告/申报", "meeting": "会议",
                   "assessment": "考核评价", "feedback": "反馈交流", "summary": "巡查记录汇总表报送"}

# The kinds of supervised objects a ledger holds (监管对象台账); a cadence may apply to each object of a kind.
OBJECT_KINDS = {"pollution_source": "污染源", "risk_source": "环境风险源", "water_source": "饮用水水源地",
                "livestock_farm": "畜禽养殖场", "medical": "医疗废物和废水产生单位", "auto_repair": "汽修企业",
                "construction_project": "建设期建设项目", "trial_production_project": "试生产期建设项目",
                "other": "其他环境对象"}


class Cadence(Provenanced):
    JUDGED = ("times", "per", "level")
    NUMERIC = ("times", "per")
    id: Slug
    name: NonEmpty
    activity: Literal[tuple(ACTIVITY_LABELS)]  # type: ignore[valid-type]  # the labels' keys, one list
    level: int | None = None
    times: Annotated[int, Field(ge=1)] = 1
    per: PeriodKind
    at_least: bool = True
    # Either set: one obligation per supervised object of that class / kind (store/cadences.py), not per grid unit.
    source_class: str | None = None
    object_kind: str | None = None

    @field_validator("object_kind")
    @classmethod
    def _known_kind(cls, v: str | None) -> str | None:
        if v is not None and v not in OBJECT_KINDS:
            raise ValueError(f"未知的监管对象类型 unknown object kind '{v}'; 可用 valid: {', '.join(OBJECT_KINDS)}")
        return v


class SourceClass(Provenanced):
    id: Annotated[str, StringConstraints(pattern=r"^[A-Z]$")]
    name: NonEmpty
    description: str = ""


# What a deduction or veto can be derived from: case events, or cadence obligations missed (store/assessment.py
# TRIGGER_RULES says how each counts).
TRIGGERS: dict[str, str] = {
    "late_report": "迟报 (上报步骤超时)",
    "late_dispatch": "派遣超时",
    "late_handling": "处置超期",
    "overdue": "任一步骤超期",
    "escalated": "超期升级至上级网格",
    "verification_failed": "核查未通过返工",
    "returned": "回退 (非本部门职责)",
    "extended": "延期",
    "found_by_upper": "应发现未发现, 被上级网格发现",
    "major_overdue": "重大问题超期",
    "cadence_missed": "巡查/检查频次未完成",
    "summary_late": "巡查记录汇总表未按时报送",
}


def _check_trigger(value: str) -> str:
    if value not in TRIGGERS:
        close = difflib.get_close_matches(value, list(TRIGGERS), n=3)
        raise ValueError(f"未知的扣分触发事件 unknown trigger '{value}'"
                         + (f"; 相近 close: {', '.join(close)}" if close else "")
                         + f"; 可用 valid: {', '.join(TRIGGERS)}")
    return value


Trigger = Annotated[str, AfterValidator(_check_trigger)]


class Deduction(Provenanced):
    JUDGED = ("points", "trigger", "max_points")
    NUMERIC = ("points", "max_points")
    id: Slug
    name: NonEmpty
    points: Annotated[float, Field(gt=0, description="每次扣分")]
    trigger: Trigger
    max_points: Annotated[float, Field(gt=0)] | None = Field(None, description="本项每期扣分上限")


class Veto(Provenanced):
    """一票否决: the trigger happening `at_least` times in the period sets the unit's score to 0."""
    JUDGED = ("trigger", "at_least")
    NUMERIC = ("at_least",)
    id: Slug
    name: NonEmpty
    trigger: Trigger | None = Field(None, description="无 trigger 的否决项由人工评定")
    at_least: Annotated[int, Field(ge=1)] = 1


class Assessment(Provenanced):
    kind: Literal["self", "upper", "daily", "annual"]
    per: PeriodKind


class Scoring(Provenanced):
    JUDGED = ("total", "level")
    NUMERIC = ("total",)
    scheme: Literal["deduction", "points"]
    total: Annotated[float, Field(gt=0)]
    level: int | None = Field(None, description="评分对象所在的网格层级; 未设定时各级网格均评分")
    period: PeriodKind
    publish: PeriodKind | None = None
    deductions: list[Deduction] = []
    vetoes: list[Veto] = []
    assessments: list[Assessment] = []


Action.model_rebuild()


class PinnedGiven(Strict):
    """A pinned case's inputs, as the simulator takes them."""
    problem_type: Code = Field(description="问题类型代码")
    unit: Slug | None = Field(None, description="发现问题的网格单元")
    found_at_level: int | None = Field(None, ge=1, le=6, description="发现层级")
    facts: dict[str, bool | str] = Field({}, description="案件事实, 如 persuasion_failed: true")

    @field_validator("facts")
    @classmethod
    def _known_facts(cls, facts: dict) -> dict:
        classes = ENUM_FACTS["enterprise_class"][1]
        for name, value in facts.items():
            if name == "enterprise_class":
                if value not in classes:
                    raise ValueError(f"enterprise_class 须为 {', '.join(classes)} 之一, 而非 '{value}'")
            elif name not in CASE_FACTS:
                raise ValueError(f"未知的事实 '{name}' — unknown fact; 可用 valid: "
                                 f"{', '.join([*CASE_FACTS, 'enterprise_class'])}")
            elif not isinstance(value, bool):
                raise ValueError(f"事实 {name} 须为 true/false")
        return facts


class PinnedExpect(Strict):
    """The decision a pinned case expects (what the impact preview compares, plus the escalation levels)."""
    level: int = Field(ge=1, le=6, description="处置层级")
    unit: Slug | None = Field(None, description="处置网格单元 (无法确定时为空)")
    first_action: str | None = Field(None, description="首个动作, 如 assign、persuade")
    departments: list[Slug] = Field([], description="配合处置的职能部门")
    escalation: list[int] = Field([], description="超时后依次升级到的层级")


class PinnedCase(Strict):
    """One pinned test case (固定测试用例): inputs, the expected decision, and the clause it follows."""
    name: NonEmpty
    clause: Source = Field(description="依据的条款原文 (seed, clause, quote)")
    given: PinnedGiven
    expect: PinnedExpect


class Publishing(Strict):
    four_eyes: bool = Field(False, description="四眼原则: 发布人不得是草稿的最后编辑人")


class Policy(Strict):
    """A resolved jurisdiction (inheritance applied)."""
    id: Slug
    name: NonEmpty
    template: bool = False
    extends: Slug | None = None
    sources: list[SeedDocument]
    levels: list[Level]
    units: list[Unit] = []
    unit_groups: list[UnitGroup] = []
    departments: list[Department] = []
    problem_types: list[ProblemType] = []
    workflows: list[Workflow] = []
    rules: list[Rule] = []
    cadences: list[Cadence] = []
    source_classes: list[SourceClass] = []
    scoring: Scoring | None = None
    publishing: Publishing = Publishing()
    tests: list[PinnedCase] = Field([], description="固定测试用例, 来自 <id>.tests.yaml")
