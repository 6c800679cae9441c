"""`netpol-guard check` through its real entry point: exit codes, JSON shape, inputs and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.unit.helpers import deny_all, netpol, pod


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook", "check", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def write(path: Path, *objects: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(objects))
    return path


def results(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(proc.stdout)
    return list(data["results"])


def test_all_admitted_exits_0_with_the_json_contract(tmp_path: Path) -> None:
    file = write(tmp_path / "ok.yaml", pod(), deny_all())
    proc = run("--output", "json", str(file))
    assert proc.returncode == 0, proc.stderr
    assert results(proc) == [
        {"kind": "Pod", "namespace": "shop", "name": "web", "allowed": True, "violations": [],
         "isolation": {"ingress": True, "egress": True}},
        {"kind": "NetworkPolicy", "namespace": "shop", "name": "default-deny-all", "allowed": True,
         "violations": [], "isolation": None},
    ]


def test_a_denial_exits_1(tmp_path: Path) -> None:
    file = write(tmp_path / "bad.yaml", pod())
    proc = run("-o", "json", str(file))
    assert proc.returncode == 1
    (result,) = results(proc)
    assert result["allowed"] is False
    assert [(v["rule"], v["action"]) for v in result["violations"]] == [("deny-all-coverage", "deny")]
    assert result["isolation"] == {"ingress": False, "egress": False}


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    file = write(tmp_path / "warn.yaml", netpol("np", ingress=[{"from": [{"podSelector": {}}]}]))
    proc = run("-o", "json", str(file))
    assert proc.returncode == 0
    assert [(v["rule"], v["action"]) for v in results(proc)[0]["violations"]] == [("explicit-policy-types", "warn")]


def test_directories_stdin_lists_and_default_namespace(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "a.yml", deny_all("team"))
    (tmp_path / "notes.txt").write_text("not a manifest")
    unnamespaced = pod()
    del unnamespaced["metadata"]["namespace"]
    listed = {"apiVersion": "v1", "kind": "List", "items": [unnamespaced]}
    proc = run("-o", "json", "--namespace", "team", str(tmp_path), "-", stdin=yaml.safe_dump(listed))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(r["kind"], r["namespace"]) for r in results(proc)] == [("NetworkPolicy", "team"), ("Pod", "team")]


def test_audit_mode_from_config_never_denies(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mode: audit\n")
    proc = run("--config", str(config), "-o", "json", str(write(tmp_path / "p.yaml", pod())))
    assert proc.returncode == 0
    assert results(proc)[0]["violations"][0]["action"] == "warn"


def test_table_output_is_readable(tmp_path: Path) -> None:
    proc = run(str(write(tmp_path / "p.yaml", pod())))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].split() == ["RESULT", "KIND", "NAMESPACE/NAME", "ISOLATION", "RULES"]
    assert "DENY    Pod   shop/web        ingress:no egress:no  deny-all-coverage" in proc.stdout
    assert "1 object: 1 denied, 0 with warnings" in proc.stdout


def test_bad_yaml_names_file_and_document(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: [\n")
    proc = run(str(file))
    assert proc.returncode == 2
    assert f"{file}: document 2: invalid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_objects_name_file_document_and_field(tmp_path: Path) -> None:
    file = write(tmp_path / "np.yaml", deny_all(), netpol("np", ingress=[{"from": [{"ipBlock": {"cidr": "1.2.3.4"}}]}]))
    proc = run(str(file))
    assert proc.returncode == 2
    assert f"{file}: document 2: NetworkPolicy np: spec.ingress[0].from[0].ipBlock.cidr: must be a CIDR" in proc.stderr
    missing_kind = tmp_path / "nokind.yaml"
    missing_kind.write_text("metadata: {name: x}\n")
    assert "document 1: missing 'kind'" in run(str(missing_kind)).stderr


def test_missing_file_and_bad_config_exit_2(tmp_path: Path) -> None:
    proc = run(str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "nope.yaml: no such file or directory" in proc.stderr
    config = tmp_path / "c.yaml"
    config.write_text("rules: {no-such-rule: {}}\n")
    proc = run("--config", str(config), str(write(tmp_path / "p.yaml", pod())))
    assert proc.returncode == 2 and "rules.no-such-rule: unknown key (not a rule id)" in proc.stderr


def test_usage_error_exits_2() -> None:
    assert run().returncode == 2
    assert run("--output", "xml", "x").returncode == 2


def test_console_script_and_module_agree(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("netpol-guard")
    file = str(write(tmp_path / "p.yaml", pod()))
    via_script = subprocess.run([str(script), "check", "-o", "json", file], capture_output=True, text=True)
    assert via_script.returncode == 1
    assert via_script.stdout == run("-o", "json", file).stdout


def test_json_files_are_read_and_bad_json_is_named(tmp_path: Path) -> None:
    good = tmp_path / "pod.json"
    good.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod(), deny_all()]}))
    proc = run("-o", "json", str(good))
    assert proc.returncode == 0, proc.stderr
    assert [r["kind"] for r in results(proc)] == ["Pod", "NetworkPolicy"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "Pod",\n "metadata": }')
    proc = run(str(bad))
    assert proc.returncode == 2
    assert f"{bad}: document 1: invalid JSON (line 2, column 14)" in proc.stderr


def test_absurd_nesting_is_bad_input_not_a_crash(tmp_path: Path) -> None:
    deep_yaml = tmp_path / "deep.yaml"
    deep_yaml.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * 50_000 + "]" * 50_000)
    for file in (deep_yaml, deep_json):
        proc = run(str(file))
        assert proc.returncode == 2, proc.stderr
        assert "nested" in proc.stderr and "Traceback" not in proc.stderr


def test_cluster_scoped_kinds_have_no_namespace_and_cidr_notes_show(tmp_path: Path) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}
    policy = netpol("p", policyTypes=["Ingress"], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.1/24"}}]}])
    file = write(tmp_path / "x.yaml", role, policy, deny_all())
    first = results(run("-o", "json", str(file)))[0]
    assert (first["kind"], first["namespace"]) == ("ClusterRole", "")
    table = run(str(file)).stdout
    assert "NetworkPolicy shop/p: spec.ingress[0].from[0].ipBlock.cidr 10.0.0.1/24 has host bits set; " \
           "it means 10.0.0.0/24" in table


def test_inputs_without_objects_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "only-docs.yaml").write_text("---\n---\n# nothing\n")
    for target in ("empty.yaml", "emptydir", "only-docs.yaml"):
        proc = run(str(tmp_path / target))
        assert proc.returncode == 2, (target, proc.stdout, proc.stderr)
        assert "no Kubernetes objects found in" in proc.stderr and "Traceback" not in proc.stderr
    assert run("-", stdin="").returncode == 2


def test_manifest_suffixes_are_matched_case_insensitively(tmp_path: Path) -> None:
    write(tmp_path / "POD.YAML", pod())
    (tmp_path / "Policy.JSON").write_text(json.dumps(deny_all()))
    write(tmp_path / "other.Yml", pod("api"))
    proc = run("-o", "json", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted((r["kind"], r["name"]) for r in results(proc)) == [
        ("NetworkPolicy", "default-deny-all"), ("Pod", "api"), ("Pod", "web")]


def test_manifests_are_judged_as_creations_whatever_their_deletion_timestamp(tmp_path: Path) -> None:
    hostile = pod(host_network=True)
    hostile["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    leaving = deny_all()
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # still counts: it is being created
    proc = run("-o", "json", str(write(tmp_path / "a.yaml", hostile, leaving)))
    assert proc.returncode == 1
    assert [v["rule"] for v in results(proc)[0]["violations"]] == ["host-network"]


def test_yaml_is_read_as_kubernetes_reads_it(tmp_path: Path) -> None:
    # A timestamp-looking scalar stays a string (sigs.k8s.io/yaml), never a date.
    (tmp_path / "dated.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: 2020-01-01\n  labels: {since: 2021-02-03}\n")
    proc = run("-o", "json", str(tmp_path / "dated.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert [(r["kind"], r["name"]) for r in results(proc)] == [("Namespace", "2020-01-01")]


def test_a_named_port_that_is_not_a_service_name_is_bad_input(tmp_path: Path) -> None:
    bad = netpol("np", policyTypes=["Ingress"], ingress=[{"ports": [{"port": "²"}]}])
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(bad, allow_unicode=True))
    proc = run(str(file))
    assert proc.returncode == 2
    assert "document 1: NetworkPolicy np: spec.ingress[0].ports[0].port: '²' is not a port number or an IANA " \
        "service name" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lists_inside_lists_are_flattened_and_judged(tmp_path: Path) -> None:
    # kubectl flattens nested Lists all the way down: the host-network Pod inside must be judged, not waved through.
    nested = {"apiVersion": "v1", "kind": "List", "items": [
        deny_all(),
        {"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "PodList",
                                                         "items": [pod("hn", host_network=True)]}]},
    ]}
    proc = run("-o", "json", str(write(tmp_path / "nested.yaml", nested)))
    assert proc.returncode == 1, proc.stderr
    assert [(r["kind"], r["name"], r["allowed"]) for r in results(proc)] == [
        ("NetworkPolicy", "default-deny-all", True), ("Pod", "hn", False)]
    proc = run(str(tmp_path / "nested.yaml"))
    assert "nested.yaml: document 1, items[1].items[0].items[0]" in proc.stdout


def test_a_list_item_that_is_not_an_object_names_its_path(tmp_path: Path) -> None:
    nested = {"apiVersion": "v1", "kind": "List", "items": [deny_all(), {"kind": "List", "items": [pod(), "x"]}]}
    proc = run(str(write(tmp_path / "bad.yaml", nested)))
    assert proc.returncode == 2
    assert "bad.yaml: document 1, items[1].items[1]: expected a Kubernetes object (a mapping), got str" in proc.stderr
    deep: dict[str, Any] = pod()
    for _ in range(40):
        deep = {"kind": "List", "items": [deep]}
    proc = run(str(write(tmp_path / "deep.yaml", deep)))
    assert proc.returncode == 2
    assert "Lists nested more than 32 deep" in proc.stderr
    assert "Traceback" not in proc.stderr


BASE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n" + yaml.safe_dump(deny_all())
POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  hostNetwork: %s\n" \
    "  containers: [{name: c, image: nginx}]\n"


def test_host_network_spelled_the_yaml_1_1_way_is_judged(tmp_path: Path) -> None:
    for spelling in ("y", "Y", "yes", "on"):
        (tmp_path / "x.yaml").write_text(BASE + "---\n" + POD % spelling)
        proc = run("-o", "json", str(tmp_path / "x.yaml"))
        assert proc.returncode == 1, spelling
        assert [v["rule"] for v in results(proc)[2]["violations"]] == ["host-network"]
    (tmp_path / "x.yaml").write_text(BASE + "---\n" + POD % "n")
    assert run(str(tmp_path / "x.yaml")).returncode == 0


def test_host_network_that_is_not_a_boolean_is_bad_input(tmp_path: Path) -> None:
    for spelling, shown in (('"true"', "'true'"), ("1", "1"), ("[true]", "[True]")):
        (tmp_path / "x.yaml").write_text(BASE + "---\n" + POD % spelling)
        proc = run(str(tmp_path / "x.yaml"))
        assert proc.returncode == 2, spelling
        assert f"document 3: Pod p: spec.hostNetwork: must be true or false, not {shown}" in proc.stderr


def test_ports_in_go_integer_spellings_are_numbers(tmp_path: Path) -> None:
    # An egress rule with no `to` on port 80 reaches the metadata endpoint; a named port would not.
    for spelling in ("0o120", "8e1", "0X50", "0120", "8_0"):
        policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n" \
            f"spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{ports: [{{port: {spelling}}}]}}]\n"
        (tmp_path / "x.yaml").write_text(BASE + "---\n" + policy)
        proc = run("-o", "json", str(tmp_path / "x.yaml"))
        assert proc.returncode == 1, spelling
        violations = results(proc)[2]["violations"]
        assert [v["rule"] for v in violations] == ["allow-all-egress", "metadata-endpoint"], spelling
        assert "opens 80/TCP" in violations[1]["message"]


def test_metadata_the_api_server_refuses_is_bad_input(tmp_path: Path) -> None:
    cases = [
        ("Pod", "  name: '[x]'\n  namespace: shop\n", "Pod [x]: metadata.name: '[x]' is not a DNS-1123 subdomain"),
        ("Pod", "  name: p\n  namespace: shop\n  labels: []\n", "Pod p: metadata.labels: must map label keys"),
        ("Namespace", "  name: a.b\n", "Namespace a.b: metadata.name: 'a.b' is not a DNS-1123 label"),
        ("Namespace", "  name: ns\n  labels: []\n", "Namespace ns: metadata.labels: must map label keys"),
        ("Pod", "  name: p\n  namespace: [shop]\n", "Pod p: metadata.namespace: must be a string, not ['shop']"),
        ("Pod", "  name: p\n  namespace: 5\n", "Pod p: metadata.namespace: must be a string, not 5"),
        ("NetworkPolicy", "  name: p\n  namespace: [shop]\n",
         "NetworkPolicy p: metadata.namespace: must be a string, not ['shop']"),
    ]
    for kind, metadata, expected in cases:
        spec = "spec: {podSelector: {}}\n" if kind == "NetworkPolicy" else ""
        api = "networking.k8s.io/v1" if kind == "NetworkPolicy" else "v1"
        (tmp_path / "x.yaml").write_text(BASE + f"---\napiVersion: {api}\nkind: {kind}\nmetadata:\n{metadata}{spec}")
        proc = run(str(tmp_path / "x.yaml"))
        assert proc.returncode == 2, (kind, metadata, proc.stdout)
        assert f"x.yaml: document 3: {expected}" in proc.stderr, proc.stderr
    # Valid names still pass, generateName's trailing '-' included.
    (tmp_path / "x.yaml").write_text(BASE + "---\napiVersion: v1\nkind: Pod\nmetadata: {generateName: web-, "
                                     "namespace: shop}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a.b-1, "
                                     "namespace: shop}\n")
    assert run(str(tmp_path / "x.yaml")).returncode == 0


def test_quoted_number_port_and_bad_excepts_are_bad_input(tmp_path: Path) -> None:
    policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n" \
        "spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [%s]\n"
    cases = [
        ("{ports: [{port: '80'}]}", "spec.egress[0].ports[0].port: '80' is a quoted number"),
        ("{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}",
         "spec.egress[0].to[0].ipBlock.except[0]: 10.0.0.0/8 must be a strict subset of cidr 10.0.0.0/8"),
        ("{to: [{ipBlock: {cidr: 'fd00:ec2::254%eth0/128'}}]}", "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR"),
    ]
    for rule, expected in cases:
        (tmp_path / "x.yaml").write_text(BASE + "---\n" + policy % rule)
        proc = run(str(tmp_path / "x.yaml"))
        assert proc.returncode == 2, rule
        assert f"document 3: NetworkPolicy np: {expected}" in proc.stderr, proc.stderr


# ----- check --generate -----

def _deployment(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def _ns(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def test_generate_judges_namespaces_in_the_inputs_as_if_generated(tmp_path: Path) -> None:
    file = write(tmp_path / "app.yaml", _ns("shop"), _deployment("shop"), _ns("own"), deny_all("own"),
                 _deployment("own"), _deployment("elsewhere"))
    assert run("-o", "json", str(file)).returncode == 1  # without --generate: shop and elsewhere are denied
    proc = run("--generate", "-o", "json", str(file))
    data = json.loads(proc.stdout)
    assert data["generated"] == [{"namespace": "shop",
                                  "policies": ["netpol-guard-default-deny", "netpol-guard-allow-dns"]}]
    verdicts = {(r["kind"], r["namespace"]): (r["allowed"], r["generated"]) for r in data["results"]}
    assert verdicts == {
        ("Namespace", ""): (True, []),
        ("Deployment", "shop"): (True, ["netpol-guard-default-deny", "netpol-guard-allow-dns"]),
        ("NetworkPolicy", "own"): (True, []),
        ("Deployment", "own"): (True, []),  # covered by its own deny-all: nothing generated
        ("Deployment", "elsewhere"): (False, []),  # no Namespace in the inputs: not covered by generation
    }
    assert proc.returncode == 1


def test_generate_skips_opted_out_and_exempt_namespaces_and_says_so_in_the_table(tmp_path: Path) -> None:
    file = write(tmp_path / "app.yaml", _ns("out", {"netpol-guard.io/generate": "false"}), _deployment("out"),
                 _ns("kube-public"), _ns("shop"), _deployment("shop"))
    proc = run("--generate", "--group", "system:masters", str(file))
    assert proc.returncode == 1, proc.stdout
    assert "Generation (--generate) would create:\n  shop: netpol-guard-default-deny, netpol-guard-allow-dns\n" \
        in proc.stdout
    assert "judged as if netpol-guard had generated netpol-guard-default-deny, netpol-guard-allow-dns in " \
           "namespace shop (--generate)" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines()[1:6]]
    assert rows == [["ok", "Namespace", "out", "-", "-"],  # an admin may opt out
                    ["DENY", "Deployment", "out/web", "ingress:no", "egress:no", "deny-all-coverage"],
                    ["ok", "Namespace", "kube-public", "-", "-"],  # an admin may create it
                    ["ok", "Namespace", "shop", "-", "-"],
                    ["ok", "Deployment", "shop/web", "ingress:yes", "egress:yes", "-"]]


def test_generate_refuses_a_dns_target_our_rules_would_refuse(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("generate: {dns: {namespaceSelector: {}, podSelector: {}}}\n")
    proc = run("--generate", "--config", str(config), str(write(tmp_path / "a.yaml", _ns("shop"))))
    assert proc.returncode == 2
    assert "generated NetworkPolicy netpol-guard-allow-dns: any-namespace" in proc.stderr
