"""`make bench` (admin part): render every main admin page over real HTTP from a real server on SQLite holding
a few thousand cases, and write p50/p95 per page (and the first, cold request) to bench/admin_results.json."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.router import Case  # noqa: E402
from policy.loader import Loader  # noqa: E402
from store.cases import CaseService, Transition  # noqa: E402
from store.sweeper import sweep  # noqa: E402
from store.tables import AuditEntry  # noqa: E402
from store.versions import open_policy_store  # noqa: E402
from store.users import create_user  # noqa: E402
from tests.admin_browser import running_server  # noqa: E402

PASSWORD = "bench-password-1"
TARGET_MS = 200
AUDIT_ROWS = 5000
FACTS = [{}, {"persuasion_failed": True}, {"suspected_crime": True}, {}]
CLOSE = Transition("close", "bench", "劝阻有效, 结案")


def seed(database_url: str, per_jurisdiction: int) -> dict[str, int]:
    """Cases spread over the last 60 days in Hefei and Weiyang, routed and stored like real intake."""
    policies = open_policy_store(database_url)
    engine, cases = policies.engine, CaseService(policies)
    now = datetime.now(timezone.utc)
    made = {}
    for jid in ("hefei", "weiyang"):
        jur = policies.router(jid).jur
        units = sorted(jur.units)
        combos = itertools.cycle(itertools.product(jur.policy.problem_types, FACTS))
        for i in range(per_jurisdiction):
            ptype, facts = next(combos)
            record = cases.create(jid, Case(problem_type=ptype.code, unit=units[(i * 7919) % len(units)], facts=facts),
                                  "bench", now=now - timedelta(minutes=(i * 60 * 24 * 60) // per_jurisdiction))
            made[jid] = made.get(jid, 0) + 1
            if i % 5 == 0 and record.status != "closed":  # some cases closed, as in real life
                cases.transition(record.id, CLOSE, now=now)
    # settle the deadlines now, so the server's sweeper stays idle while measured
    while any(sweep(cases, now).values()):
        pass
    drafts = {jid: policies.create_draft(jid, "bench").number for jid in ("hefei", "weiyang")}
    with Session(engine) as session:  # a year of draft saves in the audit log (the audit page pages through them)
        session.add_all(AuditEntry(actor=f"editor{i % 7}", action="draft_updated", jurisdiction=jid,
                                   version_number=drafts[jid], detail={"revision": i},
                                   at=now - timedelta(minutes=i * 100))
                        for i, jid in zip(range(AUDIT_ROWS), itertools.cycle(drafts)))
        session.commit()
    create_user(engine, "bench", PASSWORD, True, {}, "bench")
    engine.dispose()
    return drafts


def sign_in(client: httpx.Client) -> None:
    form = client.get("/admin/login").text
    token = re.search(r'name="_csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/admin/login", data={"name": "bench", "password": PASSWORD, "_csrf_token": token})
    assert answer.status_code in (200, 302, 303) and "gp_admin" in client.cookies, answer.text[:200]


def pages(drafts: dict[str, int], ids: list[str]) -> dict[str, str]:
    out = {"index": "/admin/", "jurisdiction hefei": "/admin/j/hefei"}
    for jid, number in drafts.items():
        out[f"editor {jid}"] = f"/admin/j/{jid}/v/{number}"
        out[f"verify {jid}"] = f"/admin/j/{jid}/v/{number}/verify"
        out[f"impact {jid} 30d"] = f"/admin/j/{jid}/v/{number}/impact?days=30"
    hefei = f"/admin/j/hefei/v/{drafts['hefei']}"  # the draft editors on 1,649 units
    out.update({"units page hefei": f"{hefei}/units", "units children of the city": f"{hefei}/units/children?parent=hf",
                "units children of a township": f"{hefei}/units/children?parent=hf-l3c-01",
                "units search (pinyin)": f"{hefei}/units/search?q=baohe",
                "unit form": f"{hefei}/units/form?id=hf-l4-0001",
                "departments hefei": f"{hefei}/departments", "workflows hefei": f"{hefei}/workflows"})
    weiyang = f"/admin/j/weiyang/v/{drafts['weiyang']}"  # #14 items 5 and 6: bulk types (102 rows), tables
    out.update({"bulk types weiyang": f"{weiyang}/types/bulk",
                "bulk types filtered": f"{weiyang}/types/bulk?level=3&prov=assumption",
                "types .xlsx weiyang": f"{weiyang}/types.xlsx",
                "units export csv hefei": f"{hefei}/units/table?kind=export&format=csv",
                "units export xlsx hefei": f"{hefei}/units/table?kind=export&format=xlsx"})
    out["simulator"] = "/admin/simulate?jurisdiction=hefei"
    out["cases dashboard hefei"] = "/admin/cases/hefei"
    out["cases dashboard 90d"] = "/admin/cases/hefei?days=90"
    out["cases list open p2"] = "/admin/cases/hefei/list?state=open&page=2"
    out["case page"] = "/admin/cases/hefei/1"
    out["compare all"] = "/admin/compare?" + "&".join(f"ids={i}" for i in ids)
    out["jurisdiction weiyang (levels)"] = "/admin/j/weiyang"
    out["audit log"] = "/admin/audit"
    out["audit log hefei, page 20"] = "/admin/audit?jurisdiction=hefei&page=20"
    out["audit log by action"] = "/admin/audit?action=draft_updated&actor=editor3"
    out["assessment drill-down"] = "/admin/j/hefei/assessment/units/hf-l4-0001"
    return out


def measure(client: httpx.Client, path: str, repeats: int, form: dict | None = None) -> dict:
    def once() -> float:
        t0 = time.perf_counter()
        answer = client.post(path, data=form, headers=htmx_headers(client)) if form else client.get(path)
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.status_code != 200:
            raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:300]}")
        return elapsed
    cold = once()
    times = sorted(once() for _ in range(repeats))
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    return {"path": path, "cold_ms": round(cold, 1), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(p95, 1), "meets_target": p95 < TARGET_MS}


def htmx_headers(client: httpx.Client) -> dict:
    return {"X-CSRFToken": client.cookies["gp_csrf"], "HX-Request": "true"}


def validate_as_typed(drafts: dict[str, int]) -> tuple[str, dict]:
    """A unit form's check request on the Hefei draft: the whole policy is validated as the admin types."""
    return (f"/admin/j/hefei/v/{drafts['hefei']}/e/units/hf-yaohai/check",
            {"name": "瑶海区", "level": "2", "parent": "hf", "prov": "assumption", "assumption": "bench"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/admin_results.json"))
    parser.add_argument("--cases", type=int, default=2000, help="cases per jurisdiction (Hefei, Weiyang)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        t0 = time.perf_counter()
        drafts = seed(url, args.cases)
        seeded = time.perf_counter() - t0
        ids = sorted(j for j in Loader().load_all()[0])
        with running_server(url) as base, httpx.Client(base_url=base, timeout=60) as client:
            sign_in(client)
            results = {name: measure(client, path, args.repeats) for name, path in pages(drafts, ids).items()}
            check_path, check_form = validate_as_typed(drafts)
            results["validate as typed (unit, hefei)"] = measure(client, check_path, args.repeats, form=check_form)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "cases_per_jurisdiction": args.cases, "repeats": args.repeats,
              "seed_seconds": round(seeded, 1), "target_ms": TARGET_MS, "pages": results}
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"{'page':<24}{'cold ms':>9}{'p50 ms':>9}{'p95 ms':>9}  < {TARGET_MS} ms")
    for name, r in results.items():
        print(f"{name:<24}{r['cold_ms']:>9}{r['p50_ms']:>9}{r['p95_ms']:>9}  {'yes' if r['meets_target'] else 'NO'}")


if __name__ == "__main__":
    main()
