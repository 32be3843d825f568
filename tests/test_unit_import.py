"""Unit import (#14 item 6): merge by default, "replace the levels" on request, CSV and .xlsx, a template and an
export, and every problem by line and column in Chinese, once. Real server, real HTTP; plus the row checks."""
from __future__ import annotations

import asyncio
import re
import shutil
from io import BytesIO

import httpx
import pytest
from litestar.testing import TestClient
from openpyxl import Workbook, load_workbook
from playwright.sync_api import expect

from api.app import create_app
from policy.errors import PolicyError
from policy.unit_rows import RowIssue, check_rows, grouped, parse_units_csv
from store.users import create_user
from tests.admin_browser import PASSWORD, admin_http, draft_page, shot
from tests.test_admin_editing_http import _revision

HEADER = "id,name,level,parent\n"


@pytest.fixture(scope="module")
def client(server):
    with admin_http(server, "weiyang") as (http, draft):
        http.headers["HX-Request"] = "true"
        yield http, draft


def _upload(http, draft, body: bytes, name: str = "units.csv", **form) -> httpx.Response:
    return http.post(draft + "/units/import", files={"file": (name, body)}, data=form)


def _errors(response: httpx.Response) -> list[str]:
    return re.findall(r'<li class="error">([^<]+)</li>', response.text)


def test_one_row_naming_one_township_merges(client):
    http, draft = client
    before = _revision(http, draft)
    preview = _upload(http, draft, (HEADER + "wy-l3-01,未央宫街道,3,weiyang\n").encode())
    assert preview.status_code == 200, preview.text[:800]
    assert "新增 0, 删除 0,\n  改名 1, 改上级 0" in preview.text and "合并" in preview.text
    data = re.search(r'name="data" value="([^"]+)"', preview.text).group(1)
    saved = http.post(draft + "/units/import", data={"action": "apply", "name": "units.csv", "mode": "merge",
                                                     "data": data, "revision": str(before)})
    assert saved.status_code == 201 and "imported=119" in saved.headers["hx-redirect"]
    page = http.get(draft + "/units/search", params={"q": "未央宫"}).text
    assert "未央宫街道" in page
    assert _revision(http, draft) == before + 1


def test_every_problem_by_line_and_column_once(client):
    http, draft = client
    before = _revision(http, draft)
    rows = ["Bad Id,坏编号,3,weiyang", "wy-l3-02,,3,weiyang"] + [f"wy-x-{n},社区{n},9,wy-l3-01" for n in range(30)]
    rows += ["wy-l4-new,新社区,4,nowhere", "wy-l3-02,重复,3,weiyang"]
    response = _upload(http, draft, (HEADER + "\n".join(rows) + "\n").encode())
    assert response.status_code == 422
    errors = _errors(response)
    assert errors[0] == "第 2 行 · 编号 id 列: 编号只能由小写字母、数字、_ 或 - 组成 (如 kmy-l3-01), 最长 64 个字符"
    assert "第 3 行 · 名称 name 列: 名称不能为空" in errors
    flood = [e for e in errors if "层级 9 不存在" in e]
    assert flood == ["第 4、5、6、7、8、9、10、11 等 30 行 · 层级 level 列: 层级 9 不存在; 本辖区层级为 1、2、3、4"]
    assert "第 34 行 · 上级编号 parent 列: 上级单元 nowhere 不存在 (草稿中和本文件中都没有)" in errors
    assert "第 35 行 · 编号 id 列: 编号 wy-l3-02 在第 3 行已出现" not in errors  # line 3 was itself refused
    assert len(errors) == len(set(errors)) and not any("pattern" in e or "^[" in e for e in errors)
    assert _revision(http, draft) == before


def test_replace_is_an_explicit_choice(client):
    http, draft = client
    merge = _upload(http, draft, (HEADER + "wy-l3-01,未央宫街道,3,weiyang\n").encode())
    assert "删除 0" in merge.text
    replace = _upload(http, draft, (HEADER + "wy-l3-01,未央宫街道,3,weiyang\n").encode(), mode="replace")
    assert replace.status_code == 422  # the other eleven townships' communities lose their parent
    assert any("wy-l3-02" in e or "parent" in e for e in _errors(replace))


def test_export_template_and_xlsx_round_trip(client):
    http, draft = client
    exported = http.get(draft + "/units/table", params={"kind": "export", "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv") and exported.text.startswith("\ufeffid,name,level,")
    assert len(exported.text.strip().splitlines()) == 1 + 119
    again = _upload(http, draft, exported.content)
    assert "新增 0, 删除 0,\n  改名 0, 改上级 0" in again.text
    book = load_workbook(BytesIO(http.get(draft + "/units/table", params={"kind": "export", "format": "xlsx"}).content))
    sheet = book.worksheets[0]
    assert [c.value for c in sheet[1]] == ["id", "name", "level", "parent"] and sheet.max_row == 120
    template = http.get(draft + "/units/table", params={"kind": "template", "format": "xlsx"})
    row = [c.value for c in load_workbook(BytesIO(template.content)).worksheets[0][2]]
    assert row[2] == 4 and row[3].startswith("wy-l3-")
    new = Workbook()
    new.active.append(["id", "name", "level", "parent"])
    new.active.append(["wy-l3-02", "汉城街道", 3, "weiyang"])
    out = BytesIO()
    new.save(out)
    preview = _upload(http, draft, out.getvalue(), name="街道.xlsx")
    assert preview.status_code == 200 and "改名 1" in preview.text, preview.text[:600]
    broken = _upload(http, draft, b"not a workbook", name="x.xlsx")
    assert broken.status_code == 422 and "无法读取 .xlsx" in broken.text
    wrong = _upload(http, draft, "名称,层级\n".encode())
    assert "第 1 行表头须为 id,name,level,parent" in wrong.text


def test_grouping_keeps_order_and_counts():
    issues = [RowIssue(n, "level", "层级 9 不存在") for n in range(2, 12)] + [RowIssue(5, "id", "编号不能为空")]
    assert grouped(issues, first_lines=3) == ["第 2、3、4 等 10 行 · 层级 level 列: 层级 9 不存在",
                                              "第 5 行 · 编号 id 列: 编号不能为空"]


def test_a_parent_may_come_from_the_same_file():
    rows = check_rows([(2, {"id": "t1", "name": "镇", "level": "3", "parent": "d"}),
                       (3, {"id": "v1", "name": "村", "level": "4", "parent": "t1"})], [1, 2, 3, 4], {"d": 2})
    assert not rows.issues and rows.lines == {"t1": 2, "v1": 3}


def test_a_jurisdiction_units_file_is_checked_like_an_upload():
    """One parser for the admin's upload and a jurisdiction's *.units.csv: the same problems, by line and column."""
    text = HEADER + "Bad Id,坏编号,3,x\nok-1,,x,\nok-2,社区,2,p\nok-2,重复,2,p\n"
    with pytest.raises(PolicyError) as err:
        parse_units_csv(text, "jur.units.csv")
    found = {(i.line, i.path, i.message) for i in err.value.issues}
    assert found == {(2, "id", "编号只能由小写字母、数字、_ 或 - 组成 (如 kmy-l3-01), 最长 64 个字符"),
                     (3, "name", "名称不能为空"), (3, "level", "层级须为整数"), (5, "id", "编号 ok-2 在第 4 行已出现")}
    rows = check_rows([(line, dict(zip(("id", "name", "level", "parent"), row.split(","))))
                       for line, row in enumerate(text.splitlines()[1:], start=2)])
    assert {(i.line, i.column, i.message) for i in rows.issues} == found


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_the_import_checks_and_saves_off_the_event_loop(prepared_sqlite, tmp_path, monkeypatch):
    """Checking a file re-validates the whole policy (seconds on a large one) and saving waits for the write lock:
    both run in a handler thread, never on the event loop that answers every other request."""
    shutil.copy(prepared_sqlite, tmp_path / "import.db")
    app = create_app(f"sqlite:///{tmp_path / 'import.db'}", background=False)
    policies = app.state.services.policies
    create_user(policies.engine, "admin", PASSWORD, True, {}, "test")
    on_loop: list[tuple[str, bool]] = []

    def spy(name: str):
        real = getattr(type(policies), name)

        def call(*args, **kwargs):
            on_loop.append((name, _on_event_loop()))
            return real(*args, **kwargs)
        return call

    for name in ("check_draft", "update_draft"):
        monkeypatch.setattr(type(policies), name, spy(name))
    with TestClient(app) as http:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', http.get("/admin/login").text).group(1)
        http.post("/admin/login", data={"name": "admin", "password": PASSWORD, "_csrf_token": token})
        draft = http.post("/admin/j/weiyang/drafts", data={"_csrf_token": token},
                          follow_redirects=False).headers["location"]
        http.headers.update({"X-CSRFToken": http.cookies["gp_csrf"], "HX-Request": "true"})
        before = _revision(http, draft)
        preview = _upload(http, draft, (HEADER + "wy-l3-01,未央宫街道,3,weiyang\n").encode())
        data = re.search(r'name="data" value="([^"]+)"', preview.text).group(1)
        saved = http.post(draft + "/units/import", data={"action": "apply", "name": "units.csv", "mode": "merge",
                                                         "data": data, "revision": str(before)})
        assert saved.status_code == 201 and _revision(http, draft) == before + 1
    assert {name for name, _ in on_loop} == {"check_draft", "update_draft"}
    assert not any(loop for _, loop in on_loop), on_loop
    policies.engine.dispose()


@pytest.mark.browser
@pytest.mark.parametrize("width", [1366, 390])
def test_unit_import_in_the_browser(browser, server, tmp_path, width):
    page = draft_page(browser, server, "yuanquan", width)
    page.get_by_role("link", name="层级与网格").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="现有网格单元 CSV").click()
    exported = tmp_path / f"units-{width}.csv"
    download.value.save_as(exported)
    lines = exported.read_text(encoding="utf-8-sig").splitlines()
    unit_id, _, level, parent = lines[-1].split(",")
    bad = tmp_path / f"bad-{width}.csv"
    bad.write_text(HEADER + "".join(f"new-{n},新{n},9,{parent}\n" for n in range(20)) + "Bad,名,x,\n", encoding="utf-8")
    page.get_by_label("CSV 或 Excel 文件").set_input_files(bad)
    page.get_by_role("button", name="预览变更").click()
    errors = page.locator("#import-errors li")
    expect(errors.first).to_contain_text("等 20 行 · 层级 level 列: 层级 9 不存在")
    expect(errors).to_have_count(3)  # 20 rows with one wrong level: one line; the bad row: id and level
    one = tmp_path / f"one-{width}.csv"
    one.write_text(f"{HEADER}{unit_id},改过的名称{width},{level},{parent}\n", encoding="utf-8")
    page.get_by_label("CSV 或 Excel 文件").set_input_files(one)
    page.get_by_role("button", name="预览变更").click()
    preview = page.locator("#import-preview [role=status]")
    expect(preview).to_contain_text("合并")
    expect(preview).to_contain_text("删除 0")
    expect(preview).to_contain_text("改名 1")
    fits = page.locator("#import-form").bounding_box()
    assert fits and fits["x"] + fits["width"] <= width + 1
    shot(page, f"unit-import-{width}", full_page=True)
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator("p.ok[role=status]")).to_contain_text("已导入")
