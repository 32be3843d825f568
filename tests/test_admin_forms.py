"""Admin forms are pydantic models (admin/forms.py): every problem of every part of a form at once, each next to its
field, in Chinese; anything a browser can send is read or refused, never an unhandled error."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st
from litestar.datastructures import FormMultiDict

from admin.common import FormInvalid
from admin.editing import DeductionForm, RuleForm, StepForm, TypeForm, UnitForm
from admin.forms import (BoundaryForm, CaseForm, LoginForm, NewId, PatrolForm, PinForm, PublishForm, RollbackForm,
                         WebhookForm, provenance, read)

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_problem_of_every_part_is_named_by_its_field():
    data = FormMultiDict({"id": "Bad Id", "name": "", "level": "x", "parent": "kmy", "d_prov": "source", "d_seed": "",
                          "prov": "assumption", "assumption": " "})
    with pytest.raises(FormInvalid) as err:
        read(data, (NewId, ""), (UnitForm, ""), provenance(data), provenance(data, "d_"),
             context={"taken": (), "label": "网格单元"})
    assert err.value.errors == {
        "id": "编号只能由小写字母、数字、_ 或 - 组成 (如 water_bureau), 而非 “Bad Id”",
        "name": "名称不能为空", "level": "层级须为 1–6 的整数, 而非 “x”", "assumption": "假设说明不能为空",
        "d_seed": "出处文件不能为空", "d_clause": "条款不能为空", "d_quote": "原文引文不能为空"}
    assert err.value.status == 422


def test_values_are_read_as_the_document_wants_them():
    data = FormMultiDict([("level", " 3 "), ("departments", "water, ecology_bureau"), ("departments", "water"),
                          ("persuade_first", "on")])
    (ptype,) = read(data, (TypeForm, ""))
    assert ptype.model_dump() == {"level": 3, "departments": ["water", "ecology_bureau"], "persuade_first": True}
    (deduction,) = read(FormMultiDict({"trigger": "late_report", "points": "2.5", "max_points": ""}),
                        (DeductionForm, ""))
    assert deduction.model_dump() == {"trigger": "late_report", "points": 2.5, "max_points": None}
    step, prov = read(FormMultiDict({"name": "整改", "actor": "乡镇", "d_duration": "3", "d_unit": "working_days",
                                     "prov": "source", "seed": "a.txt", "clause": "五", "quote": "原文"}),
                      (StepForm, ""), provenance(FormMultiDict({"prov": "source"})))
    assert step.deadline() == {"duration": "P3D", "calendar": "working"} and not step.handling
    assert prov.document() == {"source": {"seed": "a.txt", "clause": "五", "quote": "原文"}, "assumption": None}


@pytest.mark.parametrize(("form", "model", "field", "message"), [
    ({"trigger": "late_report", "points": "-1"}, DeductionForm, "points", "每次扣分须为正数, 而非 '-1'"),
    ({"trigger": "late_report", "points": "inf"}, DeductionForm, "points", "每次扣分须为正数, 而非 'inf'"),
    ({"trigger": "nope", "points": "1"}, DeductionForm, "trigger", "未知的扣分触发事件"),
    ({"name": "a", "priority": "1", "mode": "down", "target": "1"}, RuleForm, "mode", "升级方式须为 up, level 之一"),
    ({"name": "a" * 201, "priority": "1", "mode": "up", "target": "1"}, RuleForm, "name",
     "规则名称最多 200 个字符, 现有 201 个"),
    ({"name": "a", "actor": "b", "d_duration": "0", "d_unit": "days"}, StepForm, "d_duration", "时限须为正数"),
    ({"level": "2", "departments": "水务局"}, TypeForm, "departments", "职能部门只能由小写字母"),
])
def test_one_message_per_field_in_chinese(form, model, field, message):
    with pytest.raises(FormInvalid) as err:
        read(FormMultiDict(form), (model, ""))
    assert message in err.value.errors[field]


def test_a_new_id_must_be_new():
    with pytest.raises(FormInvalid) as err:
        read(FormMultiDict({"id": "water"}), (NewId, ""), context={"taken": {"water"}, "label": "职能部门"})
    assert err.value.errors == {"id": "职能部门编号 water 已存在"}


MODELS = (TypeForm, DeductionForm, RuleForm, UnitForm, StepForm, LoginForm, PublishForm, RollbackForm, CaseForm,
          PinForm, BoundaryForm, WebhookForm, PatrolForm)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["level", "departments", "persuade_first", "trigger", "points", "max_points",
                                        "name", "priority", "mode", "target", "applies", "parent", "actor",
                                        "d_duration", "d_unit", "password", "note", "accept", "revision", "reason",
                                        "confirm", "jurisdiction", "problem_type", "unit", "enterprise_class",
                                        "fact_major", "clause", "geojson", "action", "url", "kinds", "description",
                                        "patrolled_at", "objects", "finding", "photos", "patrollers"]),
                       st.one_of(st.text(max_size=30), st.lists(st.text(max_size=5), min_size=2, max_size=3),
                                 st.sampled_from(["1", "3", "on", "days", "hours", "up", "A", "none", "x" * 2001,
                                                  "2026-11-20T09:30", "1, 2", "１"]))))
def test_any_submission_is_read_or_refused_in_chinese(form):
    data = FormMultiDict([(k, v) for k, values in form.items()
                          for v in (values if isinstance(values, list) else [values])])
    for model in MODELS:
        try:
            (value,) = read(data, (model, ""))
        except FormInvalid as err:
            assert set(err.errors) <= set(model.model_fields) and all(map(CJK.search, err.errors.values()))
        else:
            if isinstance(value, StepForm):
                assert value.deadline()["duration"].startswith("P")
            if isinstance(value, CaseForm):
                assert set(value.facts()) <= {"major", "enterprise_class"}


def test_the_simulated_case_reads_its_facts_and_a_revision_is_a_number_or_stale():
    (case,) = read(FormMultiDict({"jurisdiction": "karamay", "problem_type": " 扬尘 ", "unit": " ", "fact_major": "on",
                                  "fact_suspected_crime": "off", "fact_unknown": "on", "enterprise_class": "B"}),
                   (CaseForm, ""))
    assert (case.problem_type, case.unit, case.facts()) == ("扬尘", None, {"major": True, "enterprise_class": "B"})
    for given_, read_ in (("7", 7), ("7x", 0), ("²", 0), ("", 0)):
        (publish,) = read(FormMultiDict({"note": "说明", "revision": given_, "accept": "用例"}), (PublishForm, ""))
        assert (publish.revision, publish.accept) == (read_, ["用例"])
    (signing,) = read(FormMultiDict({"name": " admin ", "password": " pass word "}), (LoginForm, ""))
    assert (signing.name, signing.password) == ("admin", " pass word ")  # a password is taken as typed
