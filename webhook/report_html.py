"""`netpol-guard audit --output html`: one self-contained page to open or attach to a ticket.

Everything is inline (styles, a few lines of script for the filters, no fonts,
images or links to fetch), so the page renders the same offline, in a mail
attachment or behind a strict proxy. Every value from the cluster is escaped:
namespace labels and policy names are user input. The page shows the same audit
results as `--output json` plus, per namespace, which default-deny policies
cover Ingress and Egress; filters can also be preset from the URL fragment
(`coverage.html#coverage=uncovered&rule=broad-cidr&q=shop`) to share a view.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass
from html import escape

from webhook.audit import AuditRun
from webhook.core.config import Config
from webhook.core.reports import CATEGORIES, DEFAULT_SEVERITY


@dataclass(frozen=True)
class NamespaceRow:
    name: str
    status: str  # covered | partial | uncovered | exempt
    ingress_by: tuple[str, ...]
    egress_by: tuple[str, ...]
    violations: Counter[str]


def namespace_rows(run: AuditRun, config: Config) -> list[NamespaceRow]:
    exempt = config.exempt_namespace_names()
    selector = config.exemptions.namespace_selector
    compiled = selector.compiled() if selector is not None else None
    per_namespace: dict[str, Counter[str]] = {}
    for result in run.report.results:
        if result.namespace:
            counts = per_namespace.setdefault(result.namespace, Counter())
            counts.update(v.rule for v in result.decision.violations)
    rows = []
    for name in sorted(run.namespace_uids):
        info = run.state.namespace(name)
        coverage = run.state.coverage(name)
        if name in exempt or (info is not None and compiled is not None and compiled.matches(info.labels)):
            status = "exempt"
        elif coverage.complete:
            status = "covered"
        elif coverage.ingress or coverage.egress:
            status = "partial"
        else:
            status = "uncovered"
        rows.append(NamespaceRow(name, status, coverage.ingress_by, coverage.egress_by,
                                 per_namespace.get(name, Counter())))
    return rows


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc;font-size:12px}main{padding:16px 24px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.card{background:#fff;border-radius:6px;padding:10px 16px;box-shadow:0 1px 2px #0002;min-width:110px}
.card b{display:block;font-size:24px}.card span{color:#5b6475;font-size:12px}
.covered b{color:#17803d}.partial b{color:#b26b00}.uncovered b{color:#c4262e}.exempt b{color:#5b6475}
.filters{display:flex;gap:12px;align-items:center;margin:12px 0;flex-wrap:wrap}
input,select{font:inherit;padding:4px 6px;border:1px solid #c5cad3;border-radius:4px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002;margin-bottom:24px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{background:#eef0f3;font-weight:600}td.msg{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.b-covered,.b-yes{background:#dcf3e3;color:#17803d}.b-partial{background:#fdf0d5;color:#8a5300}
.b-uncovered,.b-no,.b-deny{background:#fbe0e1;color:#a61d24}.b-exempt{background:#e6e8ec;color:#5b6475}
.b-warn{background:#fdf0d5;color:#8a5300}.by{color:#5b6475;font-size:12px}
h2{font-size:16px;margin:20px 0 8px}
"""

# Filters: plain DOM, no libraries. Rows carry data-* attributes; the URL fragment presets the filters.
_SCRIPT = """
(function(){
  var q=document.getElementById('q'),cov=document.getElementById('coverage'),rule=document.getElementById('rule');
  function apply(){
    var text=q.value.toLowerCase(),c=cov.value,r=rule.value,shown=0,vshown=0;
    document.querySelectorAll('#namespaces tbody tr').forEach(function(tr){
      var ok=(!text||tr.dataset.namespace.indexOf(text)>=0)&&(!c||tr.dataset.coverage===c)&&
        (!r||(' '+tr.dataset.rules+' ').indexOf(' '+r+' ')>=0);
      tr.hidden=!ok;if(ok)shown++;});
    document.querySelectorAll('#violations tbody tr').forEach(function(tr){
      var ok=(!text||(tr.dataset.namespace+' '+tr.dataset.name).toLowerCase().indexOf(text)>=0)&&
        (!c||tr.dataset.coverage===c)&&(!r||tr.dataset.rule===r);
      tr.hidden=!ok;if(ok)vshown++;});
    document.getElementById('shown').textContent=shown;
    document.getElementById('vshown').textContent=vshown;
  }
  var params=new URLSearchParams(location.hash.slice(1));
  if(params.has('q'))q.value=params.get('q');
  if(params.has('coverage'))cov.value=params.get('coverage');
  if(params.has('rule'))rule.value=params.get('rule');
  [q,cov,rule].forEach(function(el){el.addEventListener('input',apply);});
  apply();
})();
"""


def render_html(run: AuditRun, config: Config, *, now: datetime.datetime | None = None) -> str:
    rows = namespace_rows(run, config)
    status = {row.name: row.status for row in rows}
    statuses = Counter(row.status for row in rows)
    by_rule: Counter[str] = Counter()
    violations = []
    for result in run.report.results:
        for violation in result.decision.violations:
            by_rule[violation.rule] += 1
            violations.append((result, violation))
    unreadable = [r for r in run.report.results if r.error is not None]
    objects = len(run.report.results)
    denied = sum(1 for r in run.report.results if not r.decision.allowed)
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    out: list[str] = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        # No network at all, even if someone edits the page: scripts and styles inline only.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        "<title>netpol-guard coverage</title>", f"<style>{_STYLE}</style></head><body>",
        "<header><h1>netpol-guard: deny-all coverage and NetworkPolicy rules</h1>",
        f"<p>audit of {objects} objects at {escape(stamp)} &middot; mode {escape(config.mode)} &middot; "
        f"coverage {escape(config.coverage)}</p></header><main>",
        "<section id=\"summary\" class=\"cards\">",
    ]
    cards = [("namespaces", len(rows), ""), ("covered", statuses["covered"], "covered"),
             ("partial", statuses["partial"], "partial"), ("uncovered", statuses["uncovered"], "uncovered"),
             ("exempt", statuses["exempt"], "exempt"), ("violations", len(violations), "uncovered"),
             ("objects denied", denied, "uncovered"), ("unreadable", len(unreadable), "partial")]
    for label, count, css in cards:
        key = label.replace(" ", "-")
        out.append(f"<div class=\"card {css}\" data-card=\"{key}\"><b id=\"count-{key}\">{count}</b>"
                   f"<span>{escape(label)}</span></div>")
    out.append("</section>")

    out.append("<h2>Violations by rule</h2><table id=\"rules\"><thead><tr><th>rule</th><th>category</th>"
               "<th>severity</th><th>violations</th></tr></thead><tbody>")
    for rule, count in sorted(by_rule.items(), key=lambda item: (-item[1], item[0])):
        severity = config.audit.severity.get(rule, DEFAULT_SEVERITY.get(rule, "medium"))
        out.append(f"<tr data-rule=\"{escape(rule)}\"><td>{escape(rule)}</td>"
                   f"<td>{escape(CATEGORIES.get(rule, ''))}</td><td>{escape(severity)}</td>"
                   f"<td class=\"count\">{count}</td></tr>")
    if not by_rule:
        out.append("<tr><td colspan=\"4\">no violations</td></tr>")
    out.append("</tbody></table>")

    options = "".join(f"<option value=\"{escape(r)}\">{escape(r)}</option>" for r in sorted(by_rule))
    out.append(
        "<div class=\"filters\"><label>namespace <input id=\"q\" type=\"search\" placeholder=\"filter\"></label>"
        "<label>coverage <select id=\"coverage\"><option value=\"\">all</option><option>covered</option>"
        "<option>partial</option><option>uncovered</option><option>exempt</option></select></label>"
        f"<label>rule <select id=\"rule\"><option value=\"\">all</option>{options}</select></label>"
        f"<span><span id=\"shown\">{len(rows)}</span> namespaces, <span id=\"vshown\">{len(violations)}</span>"
        " violations shown</span></div>"
    )

    out.append("<h2>Namespaces</h2><table id=\"namespaces\"><thead><tr><th>namespace</th><th>coverage</th>"
               "<th>Ingress</th><th>Egress</th><th>violations</th></tr></thead><tbody>")
    for row in rows:
        rules = " ".join(sorted(row.violations))
        listed = ", ".join(f"{escape(r)}: {n}" for r, n in sorted(row.violations.items())) or "-"
        out.append(
            f"<tr data-namespace=\"{escape(row.name)}\" data-coverage=\"{row.status}\" data-rules=\"{escape(rules)}\">"
            f"<td>{escape(row.name)}</td><td><span class=\"badge b-{row.status}\">{row.status}</span></td>"
            f"{_direction(row.ingress_by, 'ingress')}{_direction(row.egress_by, 'egress')}"
            f"<td class=\"violations\" data-count=\"{sum(row.violations.values())}\">{listed}</td></tr>"
        )
    out.append("</tbody></table>")

    out.append("<h2>Violations</h2><table id=\"violations\"><thead><tr><th>action</th><th>rule</th><th>object</th>"
               "<th>message</th></tr></thead><tbody>")
    for result, violation in violations:
        where = f"{result.namespace}/{result.manifest.name}" if result.namespace else result.manifest.name
        out.append(
            f"<tr data-namespace=\"{escape(result.namespace)}\" data-name=\"{escape(result.manifest.name)}\" "
            f"data-rule=\"{escape(violation.rule)}\" data-coverage=\"{status.get(result.namespace, '')}\">"
            f"<td><span class=\"badge b-{violation.action}\">{violation.action}</span></td>"
            f"<td>{escape(violation.rule)}</td><td>{escape(result.manifest.kind)} {escape(where)}</td>"
            f"<td class=\"msg\">{escape(violation.text)}</td></tr>"
        )
    for result in unreadable:  # objects the engine could not read: nothing was judged, say so
        where = f"{result.namespace}/{result.manifest.name}" if result.namespace else result.manifest.name
        out.append(
            f"<tr data-namespace=\"{escape(result.namespace)}\" data-name=\"{escape(result.manifest.name)}\" "
            f"data-rule=\"unreadable-object\" data-coverage=\"{status.get(result.namespace, '')}\">"
            f"<td><span class=\"badge b-warn\">error</span></td><td>unreadable-object</td>"
            f"<td>{escape(result.manifest.kind)} {escape(where)}</td>"
            f"<td class=\"msg\">{escape(result.error or '')}</td></tr>"
        )
    out.append("</tbody></table></main>")
    out.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "".join(out)


def _direction(policies: tuple[str, ...], direction: str) -> str:
    if not policies:
        return f"<td class=\"{direction}\" data-covered=\"no\"><span class=\"badge b-no\">open</span></td>"
    names = escape(", ".join(policies))
    return (f"<td class=\"{direction}\" data-covered=\"yes\"><span class=\"badge b-yes\">isolated</span>"
            f" <span class=\"by\">by {names}</span></td>")
