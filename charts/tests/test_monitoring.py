"""charts/wallet monitoring: the PodMonitor and PrometheusRule against the Prometheus Operator
CRD schemas, the rules through promtool (check and unit tests), the Grafana dashboard, and the
series both use against what the nodes register (test_loopback.py checks them against a live
node's /metrics)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import helm_python as helm
import jsonschema
import pytest
import yaml

from conftest import (
    CRD_KINDS,
    NAMESPACE,
    REPO,
    VALUE_SETS,
    alert_rules,
    container,
    dashboard,
    dashboard_exprs,
    exported_elsewhere,
    promql_metric_names,
    referenced_metric_names,
    render,
    validate_crd_object,
)

MONITORING = VALUE_SETS["monitoring"]
RULES_TEST = REPO / "charts" / "tests" / "monitoring" / "rules-test.yaml"
# The alerts the chart promises (charts/README.md "Alerts").
ALERTS = {
    "WalletNodeDown", "WalletPartitionLeaderless", "WalletConservationNonZero",
    "WalletTransfersStuckInFlight", "WalletFsyncSlow", "WalletStoreRoundSlow",
    "WalletWriteVolumeFillingUp", "WalletWriteVolumeFull", "WalletReadNodeLagging",
    "WalletReadPartitionStuck", "WalletReadChainMismatch", "WalletSnapshotFetchFailing",
    "WalletCommitToPushSlow", "WalletPeerDataLost",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: apt-get install prometheus (charts/validate.sh installs it)"
    return path


@pytest.mark.parametrize("value_set", sorted(set(VALUE_SETS) - {"monitoring"}))
def test_monitoring_is_off_by_default(value_set):
    rendered = render(VALUE_SETS[value_set])
    assert rendered.values["monitoring"]["podMonitor"]["enabled"] is False
    assert rendered.all("PodMonitor") == [] and rendered.all("PrometheusRule") == []
    assert [c["metadata"]["name"] for c in rendered.all("ConfigMap")] == ["demo-wallet-config"]
    assert not any(d["apiVersion"].startswith("monitoring.coreos.com/") for d in rendered.docs)


@pytest.mark.parametrize(
    "toggle", ["podMonitor", "prometheusRule", "grafanaDashboard"]
)
def test_each_toggle_renders_only_its_object(toggle):
    rendered = render({"monitoring": {toggle: {"enabled": True}}})
    new = {
        (d["kind"], d["metadata"]["name"])
        for d in rendered.docs
        if d["kind"] in ("PodMonitor", "PrometheusRule") or d["metadata"]["name"].endswith("-dashboard")
    }
    expected = {
        "podMonitor": ("PodMonitor", "demo-wallet"),
        "prometheusRule": ("PrometheusRule", "demo-wallet"),
        "grafanaDashboard": ("ConfigMap", "demo-wallet-dashboard"),
    }[toggle]
    assert new == {expected}


def test_monitoring_objects_match_the_crd_schemas():
    """Every toggle on, with every optional field the values offer set: the custom resources
    conform (strictly: no unknown field) to the Prometheus Operator v0.93.0 CRD schemas, and
    the validator does reject what does not."""
    relabel = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}]
    values = copy.deepcopy(MONITORING)
    values["monitoring"]["podMonitor"] |= {"relabelings": relabel, "metricRelabelings": relabel}
    for rendered in (render(MONITORING), render(values)):
        kinds = [d for d in rendered.docs if (d["apiVersion"], d["kind"]) in CRD_KINDS]
        assert sorted(d["kind"] for d in kinds) == ["PodMonitor", "PrometheusRule"]
        for doc in kinds:
            validate_crd_object(doc)
    pod_monitor = render(values).one("PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"] == relabel
    misspelt = copy.deepcopy(pod_monitor)
    misspelt["spec"]["podMetricsEndpoints"][0]["intervall"] = "1m"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate_crd_object(misspelt)
    bad_duration = copy.deepcopy(render(MONITORING).one("PrometheusRule"))
    bad_duration["spec"]["groups"][0]["rules"][0]["for"] = "3 minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate_crd_object(bad_duration)
    # A relabeling the CRD does not know is refused too (values.schema.json only says "object").
    wrong = copy.deepcopy(values)
    wrong["monitoring"]["podMonitor"]["relabelings"] = [{"source_labels": ["a"]}]
    with pytest.raises(jsonschema.ValidationError, match="source_labels"):
        validate_crd_object(render(wrong).one("PodMonitor"))


def test_pod_monitor_scrapes_every_metrics_port_of_the_release():
    rendered = render(MONITORING)
    monitor = rendered.one("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")

    def selected(labels: dict) -> bool:
        if not spec["selector"]["matchLabels"].items() <= labels.items():
            return False
        return all(
            labels.get(e["key"]) in e["values"] for e in spec["selector"]["matchExpressions"] if e["operator"] == "In"
        )

    for workload in (rendered.one("StatefulSet"), rendered.one("Deployment")):
        assert selected(workload["spec"]["template"]["metadata"]["labels"])
        ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
        assert "metrics" in ports
    assert not selected(rendered.test_pod()["metadata"]["labels"])
    # The rules select the job this PodMonitor gives its targets: "<namespace>/<name>".
    job = f'job="{NAMESPACE}/{monitor["metadata"]["name"]}"'
    own = [r for r in alert_rules(rendered) if "kubelet_" not in r["expr"]]
    assert own and all(job in r["expr"] for r in own)
    # The NetworkPolicy lets scrapers in on the metrics port (metricsFrom, by default every pod).
    assert rendered.values["networkPolicy"]["metricsFrom"]


def test_pod_monitor_needs_a_metrics_port():
    off = {"writeNode": {"metrics": {"enabled": False}}, "readNode": {"metrics": {"enabled": False}}}
    with pytest.raises(helm.HelmRenderError, match="monitoring.podMonitor.enabled needs"):
        render(off | {"monitoring": {"podMonitor": {"enabled": True}}})
    # Only the write nodes': still useful.
    only_write = render({"readNode": {"metrics": {"enabled": False}}, "monitoring": {"podMonitor": {"enabled": True}}})
    assert only_write.one("PodMonitor")


def test_alerts_are_complete_and_documented():
    rendered = render(MONITORING)
    rules = alert_rules(rendered)
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)) and set(names) == ALERTS
    readme = (REPO / "charts" / "README.md").read_text()
    for rule in rules:
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["team"] == "ledger", "monitoring.prometheusRule.alertLabels on every alert"
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert "Runbook: " in rule["annotations"]["description"], rule["alert"]
        # charts/README.md "Alerts" has a row for it.
        assert f"| `{rule['alert']}` |" in readme, f"{rule['alert']} missing from charts/README.md"


def test_rule_thresholds_and_selector_come_from_the_values():
    values = {"monitoring": {"prometheusRule": {
        "enabled": True, "selector": 'kubernetes_namespace="wallet"',
        "thresholds": {"readLagEntries": 500, "fsyncP99Seconds": 0.01, "inFlightStuckMinutes": 30},
    }}}
    rules = {r["alert"]: r["expr"] for r in alert_rules(render(values))}
    assert 'wallet_raft_leader{kubernetes_namespace="wallet"}' in rules["WalletPartitionLeaderless"]
    assert rules["WalletReadNodeLagging"].endswith("> 500")
    assert rules["WalletFsyncSlow"].endswith("> 0.01")
    assert "[30m]" in rules["WalletTransfersStuckInFlight"]
    assert "job=" not in "".join(rules.values())
    with helm.Chart.load(REPO / "charts" / "wallet") as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.render({"monitoring": {"prometheusRule": {"thresholds": {"volumeFreeWarning": 2}}}}, name="demo", namespace=NAMESPACE)


def write_rule_file(tmp_path, values) -> str:
    groups = render(values).one("PrometheusRule")["spec"]["groups"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return str(path)


def test_promtool_checks_the_rules(tmp_path):
    for values in (MONITORING, {"monitoring": {"prometheusRule": {"enabled": True, "selector": 'namespace="wallet"'}}}):
        path = write_rule_file(tmp_path, values)
        result = subprocess.run([promtool(), "check", "rules", path], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_and_only_then(tmp_path):
    """charts/tests/monitoring/rules-test.yaml against the rules rendered with the defaults
    (release demo, namespace ledger); each alert has a case where it fires and one where it
    must not."""
    write_rule_file(tmp_path, {"monitoring": {"prometheusRule": {"enabled": True}}})
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    result = subprocess.run(
        [promtool(), "test", "rules", RULES_TEST.name], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fires == ALERTS and silent == ALERTS


def test_dashboard_is_a_grafana_dashboard_for_the_sidecar():
    rendered = render(MONITORING)
    config_map = rendered.one("ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Ledger"}
    board = dashboard(rendered)
    assert board["uid"] == "wallet-ledger" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job"} <= set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        for target in panel["targets"]:
            # Every panel follows the namespace and job chosen (the kubelet's volumes: namespace).
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
    # The panels an operator needs, by the series they read.
    exprs = "\n".join(dashboard_exprs(board))
    for needed in [
        "rate(wallet_transfers_committed_total", "rate(wallet_transfers_rejected_total",  # throughput by outcome
        "histogram_quantile(0.99, sum by (service, method, le) (rate(wallet_grpc_request_duration_seconds_bucket",
        'code!="OK"',  # errors by code
        "sum by (partition) (wallet_raft_leader", "== 0",  # leaders, leaderless partitions
        "increase(wallet_raft_leader_changes_total",  # elections, leadership transfers
        "process_resident_memory_bytes", "wallet_build_info",  # memory, versions running
        "wallet_projection_lag_entries", "wallet_fsync_duration_seconds_bucket",
        "wallet_store_round_duration_seconds_bucket", "kubelet_volume_stats_available_bytes",
        "histogram_quantile(0.99, sum by (pod, le) (rate(wallet_commit_to_push_seconds_bucket",
    ]:
        assert needed in exprs, needed
    # The label the sidecar watches is configurable, and so is the namespace.
    other = render({"monitoring": {"grafanaDashboard": {
        "enabled": True, "labelKey": "dashboards.example.com/grafana", "labelValue": "wallet", "namespace": "monitoring",
    }}}).one("ConfigMap", "-dashboard")
    assert other["metadata"]["labels"]["dashboards.example.com/grafana"] == "wallet"
    assert "grafana_dashboard" not in other["metadata"]["labels"]
    assert other["metadata"]["namespace"] == "monitoring"
    # The chart file and the ConfigMap hold the same dashboard.
    assert json.loads((REPO / "charts" / "wallet" / "dashboards" / "wallet-ledger.json").read_text()) == board


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses every panel query (as a recording rule, Grafana's variables given
    values)."""
    board = dashboard(render(MONITORING))
    grafana = {"$__rate_interval": "2m", "$namespace": "ledger", "$job": "ledger/demo-wallet"}
    rules = []
    for i, expr in enumerate(dashboard_exprs(board)):
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promql_metric_names_finds_series_only():
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (pod, le) (rate(a_bucket{job=~"x|y", le!="0.1"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert promql_metric_names(
        'max by (p) (min_over_time(b{x="1"}[15m]) > 0 unless on (p) (increase(c_total[5m]) > 0)) or vector(0)'
    ) == {"b", "c_total"}
    assert promql_metric_names("max(d) - on (p) group_right e offset 5m > bool 1e3") == {"d", "e"}


def registered_series() -> set[str]:
    """The names the nodes' sources register (write-node, read-node, telemetry), with the
    suffixes Prometheus text gives them; test_loopback.py checks the live /metrics."""
    names = set()
    for path in (
        "write-node/src/metrics.rs",
        "read-node/src/metrics.rs",
        "telemetry/src/grpc.rs",
        "telemetry/src/process.rs",
    ):
        names |= set(re.findall(r'"((?:wallet|process)_[a-z0-9_]+)"', (REPO / path).read_text()))
    return {n + suffix for n in names for suffix in ("", "_total", "_bucket", "_sum", "_count")}


def test_every_series_used_is_registered_by_the_nodes():
    used = referenced_metric_names(render(MONITORING))
    unknown = {name: where for name, where in used.items() if not exported_elsewhere(name) and name not in registered_series()}
    assert unknown == {}
    assert "kubelet_volume_stats_available_bytes" in used and "up" in used
