"""The cadence dashboard's grid list over real HTTP: worst first, and the status filter keeps exactly that status."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from store.cadences import RANK, STATUS_LABELS
from store.ledger import CST
from tests.admin_browser import admin_http

STATUS_OF_LABEL = {label: status for status, label in STATUS_LABELS.items()}


def _statuses(page: str) -> list[str]:
    body = page[page.index('id="cadence-rows"'):]
    return [STATUS_OF_LABEL[label] for label in re.findall(r"<td>([^<]*)</td></tr>", body[:body.index("</table>")])]


def test_the_dashboard_lists_the_worst_first_and_filters_by_status(server):
    with admin_http(server, "karamay") as (http, _):
        # a feedback recorded for one grid this month meets its monthly_feedback; the other grids are behind
        at = datetime.now(CST) - timedelta(minutes=7)
        saved = http.post("/admin/j/karamay/patrols", data={
            "unit": "kmy-l2-1", "activity": "feedback", "patrolled_at": at.strftime("%Y-%m-%dT%H:%M"),
            "patrollers": "王五", "signed_by": "王五"})
        assert saved.status_code in (302, 303) and "saved=" in saved.headers["location"], saved.text[:300]
        period = f"/admin/j/karamay/cadences?period={at:%Y-%m}"
        listed = _statuses(http.get(period).text)
        assert "met" in listed and len(set(listed)) >= 2, listed
        ranks = [RANK[s] for s in listed]
        assert ranks == sorted(ranks, reverse=True), listed
        for status in set(listed):
            assert _statuses(http.get(f"{period}&status={status}").text) == [status] * listed.count(status)
