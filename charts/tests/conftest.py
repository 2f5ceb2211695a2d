"""Shared helpers: render charts/wallet offline with helm-python-sdk and parse the result."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
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
        return tomllib.loads(self.one("ConfigMap")["data"][key])

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


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only
