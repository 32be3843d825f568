"""An assessment as an Excel workbook (openpyxl): the ranking, every deduction with its rule, and the summaries."""
from __future__ import annotations

from policy.words import label
from store import xlsx


def _provenance(p: dict, documents: dict[str, str]) -> str:
    """A quote named by its document's title and clause (not the seed file's name)."""
    return (f"{documents.get(p['seed'], p['seed'])} {p['clause']}: {p['quote']}" if "seed" in p
            else f"假设: {p['assumption']}")


def _sheet(sections: list[dict], title: str, headers: list[str], rows: list[list]) -> None:
    sections.append({"title": title, "headers": headers, "rows": rows})


def workbook(result: dict) -> bytes:
    ind_keys, rate_keys = list(result["indicator_labels"]), list(result["rate_labels"])
    ind_names = [result["indicator_labels"][k] for k in ind_keys]
    rate_names = [result["rate_labels"][k] for k in rate_keys]
    sections: list[dict] = []
    documents = result.get("documents", {})
    _sheet(sections, "排名", ["层级", "排名", "网格单元", "名称", "得分", "扣分", "一票否决", "自评", "上级评价",
                              *ind_names, *rate_names],
           [[u["level"], u["rank"], u["unit"], u["name"], u["score"], u["loss"], ", ".join(u["vetoed"]),
             u["records"].get("self", {}).get("score"), u["records"].get("upper", {}).get("score"),
             *[u["indicators"][k] for k in ind_keys], *[u["rates"][k] for k in rate_keys]]
            for u in result["units"]]
           + ([[None, None, None, un["name"], None, un["deducted"], "", None, None,
                *[un["indicators"][k] for k in ind_keys], *[un["rates"][k] for k in rate_keys]]]
              if (un := result["unassigned"]) else []))
    deductions = {d["id"]: d for d in (result["scheme"] or {}).get("deductions", [])}
    _sheet(sections, "扣分明细", ["网格单元", "名称", "扣分项", "触发事件", "次数", "每次扣分", "扣分", "依据"],
           [[u["unit"], u["name"], d["name"], label(d["trigger"], "trigger"), d["count"], d["points_each"], d["points"],
             _provenance(deductions[d["id"]]["provenance"], documents)]
            for u in [*result["units"], *([result["unassigned"]] if result["unassigned"] else [])]
            for d in u["deductions"]])
    _sheet(sections, "层级汇总", ["层级", "名称", "网格数", "平均得分", *ind_names, *rate_names],
           [[lv["level"], lv["name"], lv["units"], lv["average_score"], *[lv["indicators"].get(k) for k in ind_keys],
             *[lv["rates"][k] for k in rate_keys]] for lv in result["levels"]])
    _sheet(sections, "职能部门", ["部门", "名称", *ind_names, *rate_names],
           [[d["id"], d["name"], *[d["indicators"].get(k) for k in ind_keys], *[d["rates"][k] for k in rate_keys]]
            for d in result["departments"]])
    _sheet(sections, "步骤用时", ["流程", "步骤", "名称", "完成数", "其中超时", "平均小时", "P90 小时"],
           [[s["workflow_name"], s["step"], s["name"], s["count"], s["late"], s["avg_hours"], s["p90_hours"]]
            for s in result["steps"]])
    scheme = result["scheme"]
    if scheme:
        _sheet(sections, "考核方案", ["项目", "名称", "分值/触发", "依据"],
               [["方案", scheme["scheme_label"], f"{scheme['total']:g} 分 / {label(scheme['period'], 'period')}",
                 _provenance(scheme["provenance"], documents)]]
               + [["扣分项", d["name"], f"{d['points']:g} 分/次 · {d['trigger_label']}",
                   _provenance(d["provenance"], documents)]
                  for d in scheme["deductions"]]
               + [["一票否决", v["name"], v["trigger_label"], _provenance(v["provenance"], documents)]
                  for v in scheme["vetoes"]])
    return xlsx.workbook(sections)
