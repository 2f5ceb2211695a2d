"""Shared helpers: render charts/wallet offline with helm-python-sdk and parse the result."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "wallet"
RELEASE = "demo"
NAMESPACE = "ledger"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
KUBE_VERSIONS = ("1.29", "1.33")
# Value sets rendered and validated: the defaults and every ci/*-values.yaml.
VALUE_SETS = {"default": {}} | {
    path.name.removesuffix("-values.yaml"): yaml.safe_load(path.read_text())
    for path in sorted((CHART / "ci").glob("*-values.yaml"))
}


class Rendered:
    """The manifests of one render, by kind and name."""

    def __init__(self, values: dict[str, Any]):
        with helm.Chart.load(CHART) as chart:
            self.files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
            self.values = chart.merge_values(values)
        self.docs = [
            doc
            for path, text in self.files.items()
            if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in found]}"
        return found[0]

    def config(self, key: str) -> dict[str, Any]:
        """A node's TOML configuration from the ConfigMap, parsed."""
        return tomllib.loads(self.one("ConfigMap", "-config")["data"][key])

    def test_pod(self) -> dict[str, Any]:
        pods = [d for d in self.all("Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"]
        assert len(pods) == 1
        return pods[0]


def render(values: dict[str, Any] | None = None) -> Rendered:
    return Rendered(values or {})


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request) -> Rendered:
    """The chart rendered with each value set."""
    return render(VALUE_SETS[request.param])


def write_workload(rendered: Rendered) -> dict[str, Any]:
    """The write nodes' StatefulSet."""
    return rendered.one("StatefulSet", "-write")


def read_workload(rendered: Rendered) -> dict[str, Any]:
    """The read nodes' workload: a Deployment on an emptyDir, or with
    readNode.persistence.enabled a StatefulSet with a volume per pod."""
    persistent = rendered.values["readNode"]["persistence"]["enabled"]
    kind, other = ("StatefulSet", "Deployment") if persistent else ("Deployment", "StatefulSet")
    # Never both.
    assert not [d for d in rendered.all(other) if d["metadata"]["name"].endswith("-read")]
    return rendered.one(kind, "-read")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


# --- Monitoring: the Prometheus Operator objects, the rules' PromQL and the dashboard's. ---

CRD_SCHEMAS = Path(__file__).resolve().parent / "crds"
# The CRD kinds the chart renders, by apiVersion and kind: the vendored openAPIV3Schema file.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.v1.json",
}


def strict_schema(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields made errors (the API server prunes them
    silently; kubectl --validate=strict refuses them): every object that lists its properties
    and neither allows additional ones nor preserves unknown fields gets additionalProperties
    false."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    # Go's `^(?i)...` (RE2) is `(?i)^...` in Python, which wants global flags first.
    if isinstance(schema.get("pattern"), str) and schema["pattern"].startswith("^(?i)"):
        strict["pattern"] = "(?i)^" + schema["pattern"][len("^(?i)"):]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def validate_crd_object(doc: dict[str, Any]) -> None:
    """Validates a custom resource against its vendored CRD schema (jsonschema.ValidationError
    when it does not conform); metadata as the API server requires it."""
    name = CRD_KINDS[(doc["apiVersion"], doc["kind"])]
    schema = strict_schema(json.loads((CRD_SCHEMAS / name).read_text()))
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    metadata = doc["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", metadata["name"]), metadata
    assert all(isinstance(v, str) for v in metadata.get("labels", {}).values()), metadata


def alert_rules(rendered: Rendered) -> list[dict[str, Any]]:
    """Every alerting rule of the rendered PrometheusRule."""
    return [rule for group in rendered.one("PrometheusRule")["spec"]["groups"] for rule in group["rules"]]


def dashboard(rendered: Rendered) -> dict[str, Any]:
    """The Grafana dashboard of the rendered dashboard ConfigMap, parsed."""
    (data,) = rendered.one("ConfigMap", "-dashboard")["data"].values()
    return json.loads(data)


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


# PromQL words that look like metric names: keywords, and aggregation modifiers' arguments are
# removed before names are taken.
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "bool", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names (in {...}, by/on/... lists) or strings, durations and Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    # `max by (pod) (x)`: without its label list `max` is followed by its parenthesis again.
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.:])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, call = match.groups()
        if not call and word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def referenced_metric_names(rendered: Rendered) -> dict[str, set[str]]:
    """Metric name -> where it is used ("alert X", "panel Y"), for the rules and the dashboard."""
    used: dict[str, set[str]] = {}
    for rule in alert_rules(rendered):
        for name in promql_metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    for panel in dashboard(rendered)["panels"]:
        for target in panel.get("targets", []):
            for name in promql_metric_names(target["expr"]):
                used.setdefault(name, set()).add(f"panel {panel['title']!r}")
    return used


def exported_elsewhere(name: str) -> bool:
    """Series that are not the nodes' own: Prometheus' `up` and the kubelet's volume stats."""
    return name == "up" or name.startswith("kubelet_")
