"""`netpol-guard audit --output html`, rendered by a real headless Chromium: counts, rows, filters, screenshot."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.browser.chromium import dump_dom, screenshot
from tests.browser.sample import NOW, sample_objects, sample_page, sample_run
from webhook.audit import audit_run
from webhook.core.config import config_from_data
from webhook.report_html import render_html

pytestmark = pytest.mark.browser


class Dom(HTMLParser):
    """Just enough of the DOM: elements by id, and the rows of each table with their attributes and text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[str, list[dict[str, str | None]]] = {}
        self._table: str | None = None
        self._open_id: str | None = None
        self._row: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id")
        elif tag == "tr" and self._table and ("data-namespace" in attributes or "data-rule" in attributes):
            self._row = {**attributes, "text": ""}
            self.rows.setdefault(self._table or "", []).append(self._row)
        if attributes.get("id"):
            self._open_id = attributes["id"]
            self.by_id[self._open_id or ""] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        if tag in ("b", "span"):
            self._open_id = None

    def handle_data(self, data: str) -> None:
        if self._open_id is not None:
            self.by_id[self._open_id] += data
        if self._row is not None:
            self._row["text"] = (self._row["text"] or "") + data


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "coverage.html"
    path.write_text(sample_page())
    return path


def visible(rows: list[dict[str, str | None]]) -> list[str]:
    return [str(r.get("data-namespace")) for r in rows if "hidden" not in r]


def test_page_renders_summary_and_namespace_coverage(page: Path) -> None:
    dom = Dom(dump_dom(page.as_uri()))
    counts = {key: int(dom.by_id[f"count-{key}"]) for key in
              ("namespaces", "covered", "partial", "uncovered", "exempt", "violations", "objects-denied")}
    assert counts == {"namespaces": 5, "covered": 2, "partial": 1, "uncovered": 1, "exempt": 1,
                      "violations": 9, "objects-denied": 5}
    rows = {r["data-namespace"]: r for r in dom.rows["namespaces"]}
    assert {n: r["data-coverage"] for n, r in rows.items()} == {
        "half": "partial", "kube-system": "exempt", "legacy": "uncovered", "payments": "covered", "shop": "covered"}
    # Covered: which policy isolates each direction; uncovered: both open, with its violations.
    payments = str(rows["payments"]["text"])
    assert re.search(r"isolated\s+by deny-ingress.*isolated\s+by deny-egress, to-internet", payments)
    assert "open" in str(rows["legacy"]["text"]) and "deny-all-coverage: 2" in str(rows["legacy"]["text"])
    assert visible(dom.rows["namespaces"]) == ["half", "kube-system", "legacy", "payments", "shop"]
    assert dom.by_id["shown"] == "5" and dom.by_id["vshown"] == "9"
    rules = {r["data-rule"]: r for r in dom.rows["rules"]}
    assert sorted(rules) == ["allow-all-ingress", "broad-cidr", "deny-all-coverage", "host-network",
                             "metadata-endpoint"]
    assert rules["deny-all-coverage"]["text"] == "deny-all-coverageIsolationhigh2"  # legacy: cron, old-web


def test_filters_from_the_url_fragment_run_in_the_browser(page: Path) -> None:
    dom = Dom(dump_dom(page.as_uri() + "#coverage=uncovered"))
    assert visible(dom.rows["namespaces"]) == ["legacy"]
    assert dom.by_id["shown"] == "1" and dom.by_id["vshown"] == "2"
    dom = Dom(dump_dom(page.as_uri() + "#rule=broad-cidr"))
    assert visible(dom.rows["namespaces"]) == ["payments"]
    assert [r["data-name"] for r in dom.rows["violations"] if "hidden" not in r] == ["to-internet"]
    dom = Dom(dump_dom(page.as_uri() + "#q=sho"))
    assert visible(dom.rows["namespaces"]) == ["shop"]


def test_screenshot(page: Path, tmp_path: Path) -> None:
    out = tmp_path / "coverage.png"
    screenshot(page, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real rendering, not a blank page


def test_page_is_self_contained_and_escapes_cluster_text() -> None:
    config = config_from_data({})
    run = sample_run(config)
    text = render_html(run, config, now=NOW)
    # Nothing to fetch: no URLs, no external scripts, styles, images or fonts; CSP forbids any anyway.
    assert not re.search(r"https?://|\bsrc=|<link|@import|url\(", text)
    assert "default-src 'none'" in text
    hostile = sample_run(config)
    hostile.report.results[0].manifest.obj["metadata"]["name"] = "<script>alert(1)</script>"  # type: ignore[index]
    assert "<script>alert(1)" not in render_html(hostile, config, now=NOW)


def test_unreadable_objects_are_listed_as_errors() -> None:
    config = config_from_data({})
    objects = sample_objects()
    objects["Deployment"].append({"apiVersion": "apps/v1", "kind": "Deployment",
                                  "metadata": {"name": "odd", "namespace": "legacy"}, "spec": {"template": 7}})
    text = render_html(audit_run(config, objects), config, now=NOW)
    assert '<b id="count-unreadable">1</b>' in text
    assert 'data-name="odd" data-rule="unreadable-object"' in text and "cannot be read: spec.template" in text
