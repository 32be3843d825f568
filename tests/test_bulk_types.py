"""Bulk editing of the problem-type table (#14 item 5): filters, one revision-checked save for many rows, and the
table as .xlsx out and back in (preview, errors by row and column, nothing saved until a clean preview).
Real server and HTTP, and headless Chromium at 1366 and 390 px."""
from __future__ import annotations

import re
from io import BytesIO

import httpx
import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.admin_browser import admin_http, draft_page, shot


@pytest.fixture(scope="module")
def client(server):
    with admin_http(server, "weiyang") as (http, draft):
        yield http, draft


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-code="([^"]+)">', html)


def _revision(html: str) -> int:
    return int(re.search(r'name="revision" value="(\d+)"', html).group(1))


def _row(html: str, code: str) -> str:
    return re.search(rf'<tr data-code="{re.escape(code)}">(.*?)</tr>', html, re.S).group(1)


def test_filters_narrow_the_table(client):
    http, draft = client
    everything = http.get(draft + "/types/bulk").text
    total = len(_rows(everything))
    assert total == 102 and f"显示 {total} / {total} 个问题类型" in everything
    level2 = _rows(http.get(draft + "/types/bulk", params={"level": "2"}).text)
    level3 = _rows(http.get(draft + "/types/bulk", params={"level": "3"}).text)
    assert level2 and level3 and not set(level2) & set(level3)
    air = _rows(http.get(draft + "/types/bulk", params={"category": "air.dust"}).text)
    assert air and all(code.startswith("air.dust.") for code in air)
    quoted = _rows(http.get(draft + "/types/bulk", params={"prov": "quoted"}).text)
    assumed = _rows(http.get(draft + "/types/bulk", params={"prov": "assumption"}).text)
    assert len(quoted) + len(assumed) == total
    dept = re.search(r'<td class="departments">([a-z_]+)', everything).group(1)
    with_dept = http.get(draft + "/types/bulk", params={"department": dept}).text
    assert _rows(with_dept) and all(dept in _row(with_dept, c) for c in _rows(with_dept))


def test_one_save_sets_many_rows_or_nothing(client):
    http, draft = client
    page = http.get(draft + "/types/bulk", params={"category": "air.dust"}).text
    codes, revision = _rows(page)[:3], _revision(page)
    form = {"code": codes, "set_level": "3", "set_persuade": "yes", "dept_mode": "keep", "revision": str(revision)}
    saved = http.post(draft + "/types/bulk", data=form)
    assert saved.status_code == 200 and f"已更新 {len(codes)} 个问题类型" in saved.text
    assert _revision(saved.text) == revision + 1
    for code in codes:
        row = _row(http.get(draft + "/types/bulk").text, code)
        assert "第3级" in row and ">是<" in row
    stale = http.post(draft + "/types/bulk", data={**form, "set_level": "2"})  # the old revision
    assert stale.status_code == 412 and "已被他人修改" in stale.text
    bad = http.post(draft + "/types/bulk", data={**form, "set_level": "9", "revision": str(revision + 1)})
    assert bad.status_code == 422 and "处置层级 level" in bad.text and "9" in bad.text
    nothing = http.post(draft + "/types/bulk", data={"code": codes, "revision": str(revision + 1)})
    assert nothing.status_code == 422 and "请至少设置一项" in nothing.text
    assert _revision(http.get(draft + "/types/bulk").text) == revision + 1  # refused saves wrote nothing
    departments = re.findall(r'<option value="([a-z_]+)">', re.search(r'id="set-departments".*?</select>',
                                                                      page, re.S).group(0))[:2]
    added = http.post(draft + "/types/bulk", data={"code": codes[:1], "dept_mode": "add",
                                                   "set_departments": departments, "revision": str(revision + 1)})
    assert added.status_code == 200
    assert all(d in _row(added.text, codes[0]) for d in departments)


def _workbook(http, draft):
    book = load_workbook(BytesIO(http.get(draft + "/types.xlsx").content))
    return book, book.worksheets[0]


def _import(http, draft, book, **form) -> httpx.Response:
    out = BytesIO()
    book.save(out)
    return http.post(draft + "/types/import", files={"file": ("问题类型.xlsx", out.getvalue())}, data=form)


def test_xlsx_round_trip_preview_errors_then_apply(client):
    http, draft = client
    book, sheet = _workbook(http, draft)
    assert [c.value for c in sheet[1]][:4] == ["编码 code", "名称 name", "类别 category", "处置层级 level"]
    assert sheet.max_row == 103
    unchanged = _import(http, draft, book)
    assert unchanged.status_code == 200 and "0 个问题类型将改变" in unchanged.text
    sheet["D2"] = 9
    sheet["E3"] = "不存在的部门"
    sheet["F4"] = "也许"
    sheet["A5"] = "air.nothing.here"
    for row in range(6, 20):
        sheet[f"D{row}"] = "第七级"
    errors = _import(http, draft, book)
    assert errors.status_code == 422
    shown = re.findall(r'<li class="error">([^<]+)</li>', errors.text)
    # the same problem on many rows is said once, naming the rows
    assert shown[0] == "第 2、6、7、8、9、10、11、12 等 15 行 · 处置层级 level 列: 处置层级须为 1、2、3、4 之一"
    assert "第 3 行 · 职能部门 departments 列: 未声明的职能部门 不存在的部门" in shown
    assert "第 4 行 · 先告知劝阻 persuade_first 列: 先告知劝阻须填 是 或 否" in shown
    assert "第 5 行 · 编码 code 列: 问题类型 air.nothing.here 不在草稿中 (导入只修改已有的问题类型)" in shown
    assert len(shown) == 4
    book, sheet = _workbook(http, draft)
    code, level = sheet["A2"].value, sheet["D2"].value
    sheet["D2"] = 4 if level != 4 else 3
    name = sheet["E2"].value
    preview = _import(http, draft, book)
    assert preview.status_code == 200 and "1 个问题类型将改变" in preview.text and f"第 2 行 {code}" in preview.text
    before = _revision(http.get(draft + "/types/bulk").text)
    data = re.search(r'name="data" value="([^"]+)"', preview.text).group(1)
    applied = http.post(draft + "/types/import", data={"action": "apply", "name": "问题类型.xlsx", "data": data,
                                                        "revision": str(before)})
    assert applied.status_code == 200 and "已导入: 1 个问题类型" in applied.text
    row = _row(http.get(draft + "/types/bulk").text, code)
    assert f"第{sheet['D2'].value}级" in row and (name or "—").split(",")[0] in row
    again = http.post(draft + "/types/import", data={"action": "apply", "name": "问题类型.xlsx", "data": data,
                                                      "revision": str(before)})
    assert again.status_code == 412  # a stale confirmation changes nothing


@pytest.mark.browser
@pytest.mark.parametrize("width", [1366, 390])
def test_bulk_edit_in_the_browser(browser, server, tmp_path, width):
    page = draft_page(browser, server, "karamay", width)
    page.get_by_role("link", name="批量编辑问题类型 / Excel").click()
    page.get_by_label("类别").select_option(label="医疗废物与医疗废水")
    page.get_by_role("button", name="筛选").click()
    expect(page.locator("#bulk-table tbody tr")).to_have_count(2)
    page.get_by_label("全选").check()
    page.get_by_label("先告知劝阻").select_option("yes")
    page.get_by_label("设处置层级").select_option("3")
    shot(page, f"bulk-types-{width}", full_page=True)
    page.get_by_role("button", name="保存到草稿").click()
    expect(page.locator("#bulk-done")).to_have_text("已更新 2 个问题类型")
    expect(page.locator("#bulk-table td.persuade")).to_have_text(["是", "是"])
    expect(page.locator("#bulk-table td.level")).to_have_text(["第3级", "第3级"])
    box = page.locator("#bulk-actions").bounding_box()
    assert box and box["x"] + box["width"] <= width + 1
    with page.expect_download() as download:
        page.get_by_role("link", name="导出问题类型表 (.xlsx)").click()
    path = tmp_path / f"types-{width}.xlsx"
    download.value.save_as(path)
    book = load_workbook(path)
    book.worksheets[0]["F2"] = "不知道"
    book.save(path)
    page.get_by_label("导入编辑过的工作簿 (.xlsx)").set_input_files(path)
    page.get_by_role("button", name="预览导入").click()
    expect(page.locator("#types-import-errors")).to_contain_text("第 2 行 · 先告知劝阻 persuade_first 列")
    book.worksheets[0]["F2"] = "否"
    book.save(path)
    page.get_by_label("导入编辑过的工作簿 (.xlsx)").set_input_files(path)
    page.get_by_role("button", name="预览导入").click()
    expect(page.locator("#types-import-preview")).to_contain_text("1 个问题类型将改变")
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator("#types-import-done")).to_contain_text("已导入: 1 个问题类型")
