"""charts/wallet: strict lint, Kubernetes API validation for two versions, structure, schema."""

from __future__ import annotations

import re

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import (
    CHART,
    CRD_KINDS,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    REPO,
    VALUE_SETS,
    container,
    read_workload,
    render,
    validate_crd_object,
    write_workload,
)

LINT_WARNING = 2


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict_is_clean(value_set, kube_version):
    report = helm.lint(
        CHART,
        VALUE_SETS[value_set],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{kube_version}.0",
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= LINT_WARNING]
    assert problems == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(rendered, kube_version):
    kinds = {doc["kind"] for doc in rendered.docs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Pod"} <= kinds
    assert read_workload(rendered)["kind"] in kinds
    for doc in rendered.docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            # Prometheus Operator kinds: their CRDs' schemas, strictly (test_monitoring.py).
            validate_crd_object(doc)
            continue
        # strict: unknown fields (a misspelt key) are errors too.
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize(("replicas", "max_unavailable"), [(3, 1), (5, 2), (7, 3), (9, 4)])
def test_disruption_budget_keeps_a_quorum(replicas, max_unavailable):
    rendered = render({"writeNode": {"replicas": replicas}})
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == max_unavailable
    quorum = replicas // 2 + 1
    assert replicas - pdb["spec"]["maxUnavailable"] == quorum
    sts = write_workload(rendered)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_partitions_placed_on_a_subset_keep_each_partition_a_quorum():
    """Six write nodes, three replicas of each partition: the nodes are told R, and the budget
    follows R (two nodes down may both be replicas of one partition)."""
    rendered = render({"writeNode": {"replicas": 6, "config": {"replicas": 3}}})
    assert write_workload(rendered)["spec"]["replicas"] == 6
    assert rendered.config("write-node.toml")["replicas"] == 3
    assert len(rendered.config("write-node.toml")["peers"]) == 6
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # Unset: every node holds every partition, and the node count must be a replica count.
    assert render().config("write-node.toml")["replicas"] == 3
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as error:
            chart.render({"writeNode": {"replicas": 6}}, name="demo", namespace=NAMESPACE)
        assert "at '/writeNode/replicas'" in str(error.value) and ODD_REPLICAS in str(error.value)
        with pytest.raises(helm.HelmRenderError, match="more than the 3 write nodes"):
            chart.render({"writeNode": {"config": {"replicas": 5}}}, name="demo", namespace=NAMESPACE)
        with pytest.raises(helm.HelmValuesError) as error:
            chart.render({"writeNode": {"replicas": 6, "config": {"replicas": 4}}}, name="demo", namespace=NAMESPACE)
        assert "at '/writeNode/config/replicas'" in str(error.value), str(error.value)


def test_peers_are_the_stable_names_of_the_headless_service(rendered):
    sts = write_workload(rendered)
    replicas = rendered.values["writeNode"]["replicas"]
    port = rendered.values["writeNode"]["port"]
    assert sts["spec"]["replicas"] == replicas
    headless = [
        s for s in rendered.all("Service")
        if s["spec"].get("clusterIP") == "None" and s["spec"]["selector"]["app.kubernetes.io/component"] == "write"
    ]
    assert len(headless) == 1
    peers_service = headless[0]
    assert peers_service["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == peers_service["metadata"]["name"]
    selector = peers_service["spec"]["selector"]
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()

    # Pod <sts>-<i> is node i+1, reachable at <sts>-<i>.<headless>.<namespace>.svc.<domain>.
    domain = rendered.values["clusterDomain"]
    expected = {
        str(i + 1): f"{sts['metadata']['name']}-{i}.{peers_service['metadata']['name']}"
        f".{NAMESPACE}.svc.{domain}:{port}"
        for i in range(replicas)
    }
    write_config = rendered.config("write-node.toml")
    assert write_config["peers"] == expected
    assert write_config["listen"].endswith(f":{port}")
    assert write_config["partitions"] == rendered.values["writeNode"]["config"]["partitions"]
    # The read nodes follow every write node at the same addresses.
    assert rendered.config("read-node.toml")["write_nodes"] == list(expected.values())

    env = {e["name"]: e for e in container(sts)["env"]}
    assert env["WALLET_NODE_ID_FROM_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def config_fields(crate: str) -> set[str]:
    """The fields of `pub struct Config` in <crate>/src/config.rs: the keys its TOML accepts."""
    source = (REPO / crate / "src" / "config.rs").read_text()
    body = re.search(r"pub struct Config \{(.*?)\n\}", source, re.S).group(1)
    return set(re.findall(r"^\s*pub (\w+):", body, re.M))


def security_fields(values, crate: str) -> set[str]:
    """The certificate and token settings the chart renders for these values."""
    fields = set()
    if values["tls"]["enabled"]:
        fields |= {"tls", "peer_tls"} if crate == "write-node" else {"tls", "write_node_tls", "bootstrap_tls"}
    if values["auth"]["enabled"]:
        fields |= {"tokens_file"} if crate == "write-node" else {"tokens_file", "write_node_token_file"}
    return fields


ALL_SECURITY_FIELDS = {"tls", "peer_tls", "tokens_file", "write_node_tls", "write_node_token_file", "bootstrap_tls"}


@pytest.mark.parametrize(
    ("crate", "key", "per_pod"),
    [("write-node", "write-node.toml", {"node_id"}), ("read-node", "read-node.toml", set())],
)
def test_config_files_set_every_field_of_the_node_config(rendered, crate, key, per_pod):
    """Every limit explicit: the ConfigMap sets every field the node's Config has (node_id
    comes from the pod name; certificate and token files only when tls/auth are on), so a new
    field fails here until the chart renders it."""
    fields = config_fields(crate)
    assert len(fields) >= 3
    assert ALL_SECURITY_FIELDS & fields == security_fields(
        {"tls": {"enabled": True}, "auth": {"enabled": True}}, crate
    ), "the node's security settings changed: render them"
    expected = fields - per_pod - ALL_SECURITY_FIELDS | security_fields(rendered.values, crate)
    assert set(rendered.config(key)) == expected
    if crate == "write-node":
        values = rendered.values["writeNode"]["config"]
        config = rendered.config(key)
        for name in fields & set(values):
            assert config[name] == values[name], name


def test_write_nodes_start_in_parallel_on_their_own_volumes(rendered):
    sts = write_workload(rendered)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == rendered.values["writeNode"]["persistence"]["size"]
    mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
    data_dir = rendered.config("write-node.toml")["data_dir"]
    assert data_dir.startswith(mounts[claim["metadata"]["name"]] + "/")
    pod = sts["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]
    hard = rendered.values["writeNode"]["antiAffinity"] == "hard"
    assert ("requiredDuringSchedulingIgnoredDuringExecution" in anti) == hard
    assert ("preferredDuringSchedulingIgnoredDuringExecution" in anti) == (not hard)
    # The node drains for 5 s (write-node SHUTDOWN_GRACE) and then fsyncs.
    assert pod["terminationGracePeriodSeconds"] >= 10


PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def probe_targets(workload) -> dict[str, tuple[int, str]]:
    """Each probe's (port, health service name): a gRPC probe's, or what the `walletctl
    health` of an exec probe dials (loopback) and asks."""
    c = container(workload)
    targets = {}
    for kind in PROBES:
        probe = c[kind]
        if "grpc" in probe:
            targets[kind] = (probe["grpc"]["port"], probe["grpc"]["service"])
        else:
            command = probe["exec"]["command"]
            endpoint_flag = "--read-endpoint" if "--read" in command else "--endpoints"
            endpoint = command[command.index(endpoint_flag) + 1]
            assert endpoint.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]"), endpoint
            targets[kind] = (int(endpoint.rsplit(":", 1)[1]), command[command.index("--service") + 1])
    return targets


def test_probes_use_grpc_health_on_the_serving_port(rendered):
    for workload, config_key, readiness, liveness in [
        (write_workload(rendered), "write-node.toml", "wallet.v1.WalletService", "liveness"),
        (read_workload(rendered), "read-node.toml", "wallet.v1.QueryService", ""),
    ]:
        listen_port = int(rendered.config(config_key)["listen"].rsplit(":", 1)[1])
        (grpc_port,) = [p["containerPort"] for p in container(workload)["ports"] if p["name"] == "grpc"]
        assert grpc_port == listen_port
        probes = probe_targets(workload)
        assert {port for port, _ in probes.values()} == {listen_port}
        assert probes["readinessProbe"][1] == readiness
        assert probes["livenessProbe"][1] == liveness
        # Kubernetes' gRPC probes speak no TLS: with TLS every probe is walletctl over TLS.
        handlers = {h for kind in PROBES for h in container(workload)[kind] if h in ("grpc", "exec")}
        assert handlers == ({"exec"} if rendered.values["tls"]["enabled"] else {"grpc"})
    # Write liveness must not depend on a quorum (readiness does).
    write = probe_targets(write_workload(rendered))
    assert write["livenessProbe"][1] != write["readinessProbe"][1]


def test_services_reach_the_pods(rendered):
    port_of = {"write": rendered.values["writeNode"]["port"], "read": rendered.values["readNode"]["port"]}
    pods = {
        "write": write_workload(rendered)["spec"]["template"]["metadata"]["labels"],
        "read": read_workload(rendered)["spec"]["template"]["metadata"]["labels"],
    }
    by_component = {}
    for service in rendered.all("Service"):
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        assert service["spec"]["selector"].items() <= pods[component].items()
        (port,) = service["spec"]["ports"]
        assert port["port"] == port_of[component] and port["targetPort"] == "grpc"
        by_component.setdefault(component, []).append(service)
    assert len(by_component["write"]) == 2  # peers (headless) + clients
    # With persistence the read StatefulSet has its headless Service (serviceName) too.
    persistent = rendered.values["readNode"]["persistence"]["enabled"]
    assert len(by_component["read"]) == (2 if persistent else 1)
    for workload, component in [(write_workload(rendered), "write"), (read_workload(rendered), "read")]:
        if workload["kind"] == "StatefulSet":
            (governing,) = [s for s in by_component[component] if s["metadata"]["name"] == workload["spec"]["serviceName"]]
            assert governing["spec"]["clusterIP"] == "None"


def test_every_pod_runs_as_non_root(rendered):
    pod_specs = [
        write_workload(rendered)["spec"]["template"]["spec"],
        read_workload(rendered)["spec"]["template"]["spec"],
        rendered.test_pod()["spec"],
    ]
    for spec in pod_specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_read_nodes_scale_by_hand_or_by_the_autoscaler():
    manual = render()
    assert manual.all("HorizontalPodAutoscaler") == []
    assert read_workload(manual)["spec"]["replicas"] == manual.values["readNode"]["replicas"]
    auto = render({"readNode": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 7}}})
    hpa = auto.one("HorizontalPodAutoscaler")
    assert "replicas" not in read_workload(auto)["spec"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    assert hpa["spec"]["scaleTargetRef"]["name"] == read_workload(auto)["metadata"]["name"]


READ_PERSISTENCE = {"readNode": {"persistence": {"enabled": True}}}


def test_read_nodes_are_a_deployment_on_an_emptydir_by_default():
    for values in ({}, {"readNode": {"autoscaling": {"enabled": True}}}):
        rendered = render(values)
        read = read_workload(rendered)
        assert read["kind"] == "Deployment"
        assert [s["metadata"]["name"] for s in rendered.all("StatefulSet")] == [write_workload(rendered)["metadata"]["name"]]
        assert "volumeClaimTemplates" not in read["spec"] and "serviceName" not in read["spec"]
        volumes = {v["name"]: v for v in read["spec"]["template"]["spec"]["volumes"]}
        assert volumes["data"]["emptyDir"] == {"sizeLimit": rendered.values["readNode"]["dataVolume"]["sizeLimit"]}
        assert not [s for s in rendered.all("Service") if s["metadata"]["name"].endswith("-read-pods")]
        for hpa in rendered.all("HorizontalPodAutoscaler"):
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": read["metadata"]["name"]}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("autoscaling", [False, True])
def test_read_nodes_keep_their_projections_on_their_own_volumes(autoscaling, kube_version):
    """readNode.persistence.enabled: a StatefulSet (pods in parallel, volumes kept like the write
    nodes') with a claim template mounted where the emptyDir was, so the read node's data_dir is
    on it; the same pod template, labels and selector otherwise; the HPA scales it."""
    persistence = {"enabled": True, "size": "25Gi", "storageClassName": "fast-ssd", "accessModes": ["ReadWriteOncePod"]}
    plain = render({"readNode": {"autoscaling": {"enabled": autoscaling}}})
    rendered = render({"readNode": {"persistence": persistence, "autoscaling": {"enabled": autoscaling}}})
    deployment, sts = read_workload(plain), read_workload(rendered)
    assert sts["kind"] == "StatefulSet" and rendered.all("Deployment") == []
    assert sts["metadata"] == deployment["metadata"]
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert ("replicas" in spec) == (not autoscaling)
    # The claim template and its mount hold the data_dir of read-node.toml.
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOncePod"],
        "storageClassName": "fast-ssd",
        "resources": {"requests": {"storage": "25Gi"}},
    }
    mounts = {m["name"]: m["mountPath"] for m in container(sts)["volumeMounts"]}
    data_dir = rendered.config("read-node.toml")["data_dir"]
    assert data_dir.startswith(mounts[claim["metadata"]["name"]] + "/")
    assert mounts == {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    # No pod volume shadows the claim; everything else in the pod template is the Deployment's.
    pod_volumes = [v["name"] for v in spec["template"]["spec"]["volumes"]]
    assert claim["metadata"]["name"] not in pod_volumes
    expected = deployment["spec"]["template"]
    expected["spec"]["volumes"] = [v for v in expected["spec"]["volumes"] if v["name"] != claim["metadata"]["name"]]
    assert spec["template"] == expected
    # Same selector and labels: the Services, NetworkPolicy and PodMonitor select the pods as before.
    assert spec["selector"] == deployment["spec"]["selector"]
    assert claim["metadata"]["labels"] == spec["selector"]["matchLabels"]
    for kind in ("NetworkPolicy", "Service"):
        assert [d for d in plain.all(kind)] == [d for d in rendered.all(kind) if d["metadata"]["name"] != spec["serviceName"]]
    # The governing Service: headless, the read pods' selector and port.
    governing = rendered.one("Service", "-read-pods")
    assert spec["serviceName"] == governing["metadata"]["name"]
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert [p["port"] for p in governing["spec"]["ports"]] == [rendered.values["readNode"]["port"]]
    hpas = rendered.all("HorizontalPodAutoscaler")
    if autoscaling:
        (hpa,) = hpas
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]}
    else:
        assert hpas == []
    for doc in rendered.docs:
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_read_persistence_storage_class_is_optional():
    rendered = render(READ_PERSISTENCE)
    (claim,) = read_workload(rendered)["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in claim["spec"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == rendered.values["readNode"]["persistence"]["size"]
    deleted = render({"readNode": {"persistence": {"enabled": True, "retentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}}})
    policy = read_workload(deleted)["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy == {"whenDeleted": "Delete", "whenScaled": "Retain"}


def test_helm_test_hook_checks_health_then_transfers(rendered):
    pod = rendered.test_pod()
    assert pod["spec"]["restartPolicy"] == "Never"
    steps = pod["spec"]["initContainers"] + pod["spec"]["containers"]
    assert [s["args"][0] for s in steps] == ["health", "health", "account", "account", "transfer"]
    assert all(s["command"] == ["/usr/local/bin/walletctl"] for s in steps)
    client = rendered.one("Service", "-write")
    read = rendered.one("Service", "-read")
    for step in steps:
        env = {e["name"]: e["value"] for e in step["env"] if "value" in e}
        assert env["WALLET_ENDPOINTS"].startswith(f"{client['metadata']['name']}.{NAMESPACE}.svc.")
        assert env["WALLET_READ_ENDPOINT"].startswith(f"{read['metadata']['name']}.{NAMESPACE}.svc.")


def test_config_changes_roll_the_pods():
    before = render()
    after = render({"writeNode": {"config": {"partitions": 16}}})
    for kind in ("StatefulSet", "Deployment"):
        old = before.one(kind)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        new = after.one(kind)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert old != new


def with_value(path: str, value):
    """User values setting one key (dotted path); None removes the chart's default for it, as
    `--set key=null` does."""
    values = {}
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


ODD_REPLICAS = "value must be one of 3, 5, 7, 9"


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("writeNode.replicas", 1, ODD_REPLICAS),
        ("writeNode.replicas", 2, ODD_REPLICAS),
        ("writeNode.replicas", 4, ODD_REPLICAS),
        ("writeNode.replicas", 6, ODD_REPLICAS),
        ("writeNode.replicas", 11, ODD_REPLICAS),
        ("writeNode.replicas", "3", "got string, want integer"),
        ("image.repository", None, "missing property 'repository'"),
        ("image.repository", "", "minLength"),
        ("writeNode.port", 70000, "maximum: got 70,000, want 65,535"),
        ("writeNode.port", 0, "minimum: got 0, want 1"),
        ("readNode.port", 70000, "maximum: got 70,000, want 65,535"),
        ("writeNode.config.partitions", 257, "maximum: got 257, want 256"),
        ("writeNode.config.data_dir", "/tmp/data", "does not match pattern"),
        ("writeNode.config.snapshot_interval_entries", 5, "minimum: got 5, want 10"),
        ("writeNode.config.log_retain_entries", -1, "minimum: got -1, want 0"),
        ("writeNode.config.trace_sample_ratio", 1.5, "maximum: got 1.5, want 1"),
        ("readNode.config.trace_sample_ratio", -0.1, "minimum: got -0.1, want 0"),
        ("readNode.config.trace_sample_ratio", "0.5", "got string, want number"),
        ("writeNode.antiAffinity", "sometimes", "value must be one of 'soft', 'hard'"),
        ("writeNode.replica", 3, "additional properties 'replica' not allowed"),
        ("readNode.persistence.enabled", "yes", "got string, want boolean"),
        ("readNode.persistence.size", "lots", "does not match pattern"),
        ("readNode.persistence.size", "10GB", "does not match pattern"),
        ("readNode.persistence.size", 10, "got number, want string"),
        ("readNode.persistence.accessModes", [], "minItems"),
        ("readNode.persistence.storageClassName", 3, "got number, want string"),
        ("readNode.persistence.retentionPolicy.whenScaled", "Keep", "value must be one of 'Retain', 'Delete'"),
        ("readNode.persistence.sizeLimit", "10Gi", "additional properties 'sizeLimit' not allowed"),
        ("backup.enabled", "yes", "got string, want boolean"),
        ("backup.schedule", "every night", "does not match pattern"),
        ("backup.schedule", "0 3 * *", "does not match pattern"),
        ("backup.keep", 0, "minimum: got 0, want 1"),
        ("backup.keep", "7", "got string, want integer"),
        ("backup.timeZone", "Paris time", "does not match pattern"),
        ("backup.persistence.size", "lots", "does not match pattern"),
        ("backup.persistence.storageClass", "fast", "additional properties 'storageClass' not allowed"),
        ("backup.activeDeadlineSeconds", 10, "minimum: got 10, want 60"),
    ],
)
def test_schema_rejects_bad_values(path, value, complaint):
    values = with_value(path, value)
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as error:
            chart.render(values, name="demo", namespace=NAMESPACE)
    message = str(error.value)
    # The message names the key (its parent for a missing or unknown key) and the rule.
    key = "/" + "/".join(path.split(".")[: -1 if complaint.startswith(("missing", "additional")) else None])
    assert f"at '{key}'" in message and complaint in message, message
    # `helm lint` reports the same values as an error.
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert any(m["severity"] > LINT_WARNING for m in report["messages"]) or report["errors"]


def test_schema_checks_the_read_secret_name():
    """tls.readSecretName is "" (the default) or a valid Secret name."""
    tls = {"enabled": True, "secretName": "wallet-tls"}
    for name in ("", "wallet-read-tls"):
        render({"tls": tls | {"readSecretName": name}})
    with helm.Chart.load(CHART) as chart:
        for name, rule in [("Not_A_Name", "does not match pattern"), ("-read", "does not match pattern"), (3, "got number, want string")]:
            with pytest.raises(helm.HelmValuesError) as error:
                chart.render({"tls": tls | {"readSecretName": name}}, name="demo", namespace=NAMESPACE)
            assert "at '/tls/readSecretName'" in str(error.value) and rule in str(error.value), str(error.value)
        # The write nodes' own Secret under the read name would hand read pods a peer certificate.
        with pytest.raises(helm.HelmRenderError, match="other than tls.secretName"):
            chart.render({"tls": tls | {"readSecretName": "wallet-tls"}}, name="demo", namespace=NAMESPACE)


@pytest.mark.parametrize("replicas", [3, 5, 7, 9])
def test_schema_accepts_odd_replica_counts(replicas):
    assert render({"writeNode": {"replicas": replicas}}).one("StatefulSet")["spec"]["replicas"] == replicas


@pytest.mark.parametrize("feature", ["tls", "auth"])
@pytest.mark.parametrize("secret_name", [None, "", "Not_A_Name"])
def test_schema_requires_a_secret_name_when_enabled(feature, secret_name):
    """enabled without a (valid) secretName is refused by the schema, naming the key; the
    chart's default secretName "" is fine while disabled."""
    values = {feature: {"enabled": True, "secretName": secret_name}}
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as error:
            chart.render(values, name="demo", namespace=NAMESPACE)
    message = str(error.value)
    key = f"/{feature}" if secret_name is None else f"/{feature}/secretName"
    rule = "missing property 'secretName'" if secret_name is None else ("minLength" if secret_name == "" else "does not match pattern")
    assert f"at '{key}'" in message and rule in message, message
    render({feature: {"enabled": False, "secretName": ""}})


SECURED = {
    "tls": {"enabled": True, "secretName": "wallet-tls", "readSecretName": "wallet-read-tls", "requireClientCert": True},
    "auth": {"enabled": True, "secretName": "wallet-auth"},
}
# SECURED with tls.readSecretName unset: everyone gets the write nodes' Secret (development).
SHARED_CERT = SECURED | {"tls": SECURED["tls"] | {"readSecretName": ""}}


@pytest.mark.parametrize(
    ("tls", "auth"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_nodes_listen_on_all_interfaces_only_with_insecure_or_tls_and_tokens(tls, auth):
    # Without TLS and tokens a node refuses a non-loopback address unless told insecure:
    # TLS alone (or tokens alone) keeps insecure = true.
    values = {
        "tls": {"enabled": tls, "secretName": "wallet-tls"},
        "auth": {"enabled": auth, "secretName": "wallet-auth"},
    }
    rendered = render(values)
    for key in ("write-node.toml", "read-node.toml"):
        config = rendered.config(key)
        assert not config["listen"].startswith("127."), config["listen"]
        assert config["insecure"] is not (tls and auth), key
        assert ("tls" in config) == tls and ("tokens_file" in config) == auth, key


def secret_files(pod_spec: dict, c: dict) -> dict[str, tuple[str, str]]:
    """The files a container sees from Secret volumes: path -> (Secret name, key)."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    files = {}
    for mount in c.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")  # "data" is a claim template
        if secret is None:
            continue
        assert mount["readOnly"] is True, mount
        assert "items" in secret, f"{mount['name']}: mount only the keys the pod needs"
        for item in secret["items"]:
            files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return files


def toml_paths(config: dict) -> dict[str, str]:
    """Every certificate, key and token file a node config names: setting -> path (a TLS
    table's `domain` is a name to verify, not a file)."""
    paths = {}
    for name, value in config.items():
        if isinstance(value, dict) and name in ALL_SECURITY_FIELDS:
            paths |= {f"{name}.{k}": v for k, v in value.items() if k != "domain"}
        elif name in ALL_SECURITY_FIELDS:
            paths[name] = value
    return paths


@pytest.mark.parametrize(("values", "read_tls"), [(SECURED, "wallet-read-tls"), (SHARED_CERT, "wallet-tls")])
def test_secured_config_paths_are_files_the_pods_mount(values, read_tls):
    """With tls.readSecretName every TLS file of the read pods comes from that Secret and
    every one of the write pods from tls.secretName; without it, both from tls.secretName."""
    rendered = render(values)
    tls, auth = "wallet-tls", "wallet-auth"
    expected = {
        "write-node.toml": {
            "tls.cert": (tls, "tls.crt"), "tls.key": (tls, "tls.key"), "tls.client_ca": (tls, "ca.crt"),
            "peer_tls.ca": (tls, "ca.crt"), "tokens_file": (auth, "tokens.toml"),
        },
        "read-node.toml": {
            "tls.cert": (read_tls, "tls.crt"), "tls.key": (read_tls, "tls.key"), "tls.client_ca": (read_tls, "ca.crt"),
            "write_node_tls.ca": (read_tls, "ca.crt"), "write_node_tls.cert": (read_tls, "tls.crt"),
            "write_node_tls.key": (read_tls, "tls.key"), "tokens_file": (auth, "tokens.toml"),
            "write_node_token_file": (auth, "read-node.token"), "bootstrap_tls.ca": (read_tls, "ca.crt"),
            "bootstrap_tls.cert": (read_tls, "tls.crt"), "bootstrap_tls.key": (read_tls, "tls.key"),
        },
    }
    for workload, key in [(write_workload(rendered), "write-node.toml"), (read_workload(rendered), "read-node.toml")]:
        config = rendered.config(key)
        assert config["insecure"] is False
        files = secret_files(workload["spec"]["template"]["spec"], container(workload))
        paths = toml_paths(config)
        # Each path in the TOML is a file a Secret volume of this pod really provides.
        assert {name: files.get(path) for name, path in paths.items()} == expected[key]
        # ... and the pod gets no Secret file its config does not use.
        assert set(files) == set(paths.values()), key
        # The probes' certificate flags name mounted files too.
        for kind in PROBES:
            command = container(workload)[kind]["exec"]["command"]
            for flag in ("--tls-ca", "--tls-cert", "--tls-key"):
                assert command[command.index(flag) + 1] in files, (kind, flag)
    # Only the read pods hold a token (scope replicate) for the write nodes.
    write_keys = {k for _, k in secret_files(write_workload(rendered)["spec"]["template"]["spec"], container(write_workload(rendered))).values()}
    read_keys = {k for _, k in secret_files(read_workload(rendered)["spec"]["template"]["spec"], container(read_workload(rendered))).values()}
    assert "read-node.token" in read_keys and "read-node.token" not in write_keys
    assert "test.token" not in read_keys | write_keys


def secret_names(pod_spec: dict) -> set[str]:
    """Every Secret a pod spec refers to: its volumes' and its containers' secretKeyRefs."""
    names = {v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for c in pod_spec["containers"] + pod_spec.get("initContainers", []):
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    return names


@pytest.mark.parametrize("require_client_cert", [True, False])
def test_read_pods_never_hold_the_write_nodes_certificate(require_client_cert):
    """With tls.readSecretName, the write Secret (whose certificate names every peer) is in
    the write pods only and the read Secret never in them; the read pods and the helm test
    pod refer to the read Secret and never to the write one."""
    values = SECURED | {"tls": SECURED["tls"] | {"requireClientCert": require_client_cert}}
    rendered = render(values)
    write_pod = write_workload(rendered)["spec"]["template"]["spec"]
    read_pod = read_workload(rendered)["spec"]["template"]["spec"]
    assert secret_names(write_pod) == {"wallet-tls", "wallet-auth"}
    assert secret_names(read_pod) == {"wallet-read-tls", "wallet-auth"}
    assert secret_names(rendered.test_pod()["spec"]) == {"wallet-read-tls", "wallet-auth"}
    # The TLS volume is the same mount either way: the paths in the TOML files are the same.
    for workload in (write_workload(rendered), read_workload(rendered)):
        assert {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}["tls"] == "/etc/wallet-tls"
    # The read probes verify the read Service's name with the read Secret's files.
    files = secret_files(read_pod, container(read_workload(rendered)))
    for kind in PROBES:
        command = container(read_workload(rendered))[kind]["exec"]["command"]
        assert command[command.index("--tls-server-name") + 1] == "demo-wallet-read.ledger.svc.cluster.local"
        flags = ("--tls-ca", "--tls-cert", "--tls-key") if require_client_cert else ("--tls-ca",)
        assert {files[command[command.index(flag) + 1]][0] for flag in flags} == {"wallet-read-tls"}
        assert ("--tls-cert" in command) == require_client_cert
    # Unset (development): everyone uses the write Secret, and the rendered config says so.
    shared = render(SHARED_CERT)
    for spec in (read_workload(shared)["spec"]["template"]["spec"], shared.test_pod()["spec"]):
        assert secret_names(spec) == {"wallet-tls", "wallet-auth"}
    assert "development only" in shared.one("ConfigMap")["data"]["read-node.toml"]
    assert "development only" not in rendered.one("ConfigMap")["data"]["read-node.toml"]


def test_secured_probes_ask_what_the_grpc_probes_asked():
    plain, secured = render(), render(SECURED)
    names = {"StatefulSet": "demo-wallet-write.ledger.svc.cluster.local", "Deployment": "demo-wallet-read.ledger.svc.cluster.local"}
    for kind, host in names.items():
        assert probe_targets(secured.one(kind)) == probe_targets(plain.one(kind))
        for probe in PROBES:
            command = container(secured.one(kind))[probe]["exec"]["command"]
            assert command[0] == "/usr/local/bin/walletctl"
            # The name verified is a client Service's, which the certificate must carry.
            assert command[command.index("--tls-server-name") + 1] == host
            assert "--token" not in command  # health is open
    # Without client certificates the probes present none.
    tls_only = render({"tls": {"enabled": True, "secretName": "wallet-tls"}})
    command = container(write_workload(tls_only))["readinessProbe"]["exec"]["command"]
    assert "--tls-ca" in command and "--tls-cert" not in command
    assert "client_ca" not in tls_only.config("write-node.toml")["tls"]
    assert "cert" not in tls_only.config("read-node.toml")["write_node_tls"]


@pytest.mark.parametrize(("values", "client_tls"), [(SECURED, "wallet-read-tls"), (SHARED_CERT, "wallet-tls")])
def test_secured_helm_test_pod_gets_the_ca_and_its_token_from_the_secrets(values, client_tls):
    """The test pod's CA and client certificate are the read pods' (tls.readSecretName), or
    the write nodes' when that is unset."""
    rendered = render(values)
    pod = rendered.test_pod()
    steps = pod["spec"]["initContainers"] + pod["spec"]["containers"]
    for step in steps:
        env = {e["name"]: e for e in step["env"]}
        assert env["WALLET_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "wallet-auth", "key": "test.token"}
        files = secret_files(pod["spec"], step)
        assert files[env["WALLET_TLS_CA"]["value"]] == (client_tls, "ca.crt")
        assert files[env["WALLET_CLIENT_CERT"]["value"]] == (client_tls, "tls.crt")
        assert files[env["WALLET_CLIENT_KEY"]["value"]] == (client_tls, "tls.key")
        # The token comes from the environment only: no token file in the test pod.
        assert {key for _, key in files.values()} == {"ca.crt", "tls.crt", "tls.key"}
    plain = render().test_pod()
    for step in plain["spec"]["initContainers"] + plain["spec"]["containers"]:
        assert {e["name"] for e in step["env"]} == {"WALLET_ENDPOINTS", "WALLET_READ_ENDPOINT"}
        assert "volumeMounts" not in step
    assert "volumes" not in plain["spec"]


def test_metrics_port_is_on_the_pods_and_annotated():
    """metrics_listen, the container port named "metrics" and the prometheus.io annotations
    agree; disabling metrics renders metrics_listen = "off" and drops port and annotations."""
    for values, enabled in [({}, True), ({"writeNode": {"metrics": {"enabled": False}}, "readNode": {"metrics": {"enabled": False}}}, False)]:
        rendered = render(values)
        for workload, config_key, node in [
            (write_workload(rendered), "write-node.toml", "writeNode"),
            (read_workload(rendered), "read-node.toml", "readNode"),
        ]:
            metrics_listen = rendered.config(config_key)["metrics_listen"]
            ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
            annotations = workload["spec"]["template"]["metadata"]["annotations"]
            if enabled:
                port = rendered.values[node]["metrics"]["port"]
                assert metrics_listen.endswith(f":{port}") and ports["metrics"] == port
                assert annotations["prometheus.io/scrape"] == "true"
                assert annotations["prometheus.io/port"] == str(port)
                assert annotations["prometheus.io/path"] == "/metrics"
            else:
                assert metrics_listen == "off"
                assert "metrics" not in ports and "prometheus.io/scrape" not in annotations


def policy_rules(rendered, component: str) -> dict[int, list]:
    """The NetworkPolicy of one component's pods: port -> the peers its rule admits."""
    (policy,) = [
        p for p in rendered.all("NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == component
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = {}
    for rule in policy["spec"]["ingress"]:
        # No rule without ports or without sources: either would admit everyone.
        assert rule.get("ports") and rule.get("from"), rule
        for port in rule["ports"]:
            assert port["protocol"] == "TCP" and port["port"] not in rules
            rules[port["port"]] = rule["from"]
    return policy, rules


def test_default_render_is_not_open():
    """By default every port of every pod sits behind a NetworkPolicy: the write nodes' one
    gRPC port (client API, event log and raft's PeerService: OpenAccount and credits
    included) admits only the write pods, the read pods and the helm test pod of this release;
    the read nodes' only the helm test pod; the metrics ports only metricsFrom. The nodes then
    run with insecure = true because of these policies, and only then."""
    rendered = render()
    values = rendered.values
    assert values["networkPolicy"]["enabled"] is True and values["insecure"] is False
    assert not values["tls"]["enabled"] and not values["auth"]["enabled"]
    pods = {
        "write": write_workload(rendered)["spec"]["template"]["metadata"]["labels"],
        "read": read_workload(rendered)["spec"]["template"]["metadata"]["labels"],
        "test": rendered.test_pod()["metadata"]["labels"],
    }
    assert len(rendered.all("NetworkPolicy")) == 2

    def admitted(peers) -> list[str]:
        """The components a rule's peers select: only pod selectors of this release, in
        the release namespace (no namespaceSelector, no ipBlock)."""
        components = []
        for peer in peers:
            assert set(peer) == {"podSelector"}, peer
            labels = peer["podSelector"]["matchLabels"]
            assert labels["app.kubernetes.io/instance"] == RELEASE
            component = labels["app.kubernetes.io/component"]
            assert labels.items() <= pods[component].items(), (labels, component)
            components.append(component)
        return sorted(components)

    write_policy, write = policy_rules(rendered, "write")
    read_policy, read = policy_rules(rendered, "read")
    assert write_policy["spec"]["podSelector"]["matchLabels"].items() <= pods["write"].items()
    assert read_policy["spec"]["podSelector"]["matchLabels"].items() <= pods["read"].items()
    write_port, read_port = values["writeNode"]["port"], values["readNode"]["port"]
    metrics = {values["writeNode"]["metrics"]["port"], values["readNode"]["metrics"]["port"]}
    assert set(write) == {write_port} | {values["writeNode"]["metrics"]["port"]}
    assert set(read) == {read_port} | {values["readNode"]["metrics"]["port"]}
    assert admitted(write[write_port]) == ["read", "test", "write"]
    # The read pods: new ones copy a serving one's projections (readNode.bootstrapFrom).
    assert admitted(read[read_port]) == ["read", "test"]
    for port in metrics:
        for rules in (write, read):
            if port in rules and port not in (write_port, read_port):
                assert rules[port] == values["networkPolicy"]["metricsFrom"]
    # The read pods are not selected by the write policy and vice versa.
    assert not write_policy["spec"]["podSelector"]["matchLabels"].items() <= pods["read"].items()
    assert not read_policy["spec"]["podSelector"]["matchLabels"].items() <= pods["write"].items()
    for key in ("write-node.toml", "read-node.toml"):
        assert rendered.config(key)["insecure"] is True


def test_insecure_is_an_explicit_opt_in_and_clients_are_listed():
    # No TLS and tokens, no NetworkPolicy, no explicit insecure: the chart refuses to render.
    with pytest.raises(helm.HelmRenderError, match="insecure=true explicitly"):
        render({"networkPolicy": {"enabled": False}})
    opened = render({"networkPolicy": {"enabled": False}, "insecure": True})
    assert opened.all("NetworkPolicy") == []
    assert opened.config("write-node.toml")["insecure"] is True
    (notes,) = [text for path, text in opened.files.items() if path.endswith("NOTES.txt")]
    assert "NO NetworkPolicy" in notes
    # TLS and tokens need neither.
    secured = render(SECURED | {"networkPolicy": {"enabled": False}})
    assert secured.config("write-node.toml")["insecure"] is False
    # Listed clients are admitted next to the chart's own pods, each on its own port.
    payments = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}}}
    dashboard = {"podSelector": {"matchLabels": {"app": "dashboard"}}}
    listed = render({"networkPolicy": {"writeClients": [payments], "readClients": [dashboard], "metricsFrom": []}})
    _, write = policy_rules(listed, "write")
    _, read = policy_rules(listed, "read")
    assert payments in write[listed.values["writeNode"]["port"]]
    assert dashboard not in write[listed.values["writeNode"]["port"]]
    assert dashboard in read[listed.values["readNode"]["port"]]
    assert payments not in read[listed.values["readNode"]["port"]]
    # metricsFrom: [] admits nobody to the metrics ports (no rule at all).
    assert set(write) == {listed.values["writeNode"]["port"]}
    assert set(read) == {listed.values["readNode"]["port"]}
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.render({"networkPolicy": {"writeClients": [{}]}}, name="demo", namespace=NAMESPACE)


def test_new_read_pods_bootstrap_from_the_read_service_unless_told_otherwise():
    """readNode.bootstrapFrom: "" (default) is the read Service (Ready pods only), a host:port
    is taken as is, "none" renders no bootstrap_from and keeps read pods from dialling each
    other; with TLS the source's certificate is checked for the read Service's name."""
    default = render({})
    config = default.config("read-node.toml")
    assert config["bootstrap_from"] == f"demo-wallet-read.{NAMESPACE}.svc.cluster.local:{default.values['readNode']['port']}"
    assert "bootstrap_tls" not in config
    assert render({"readNode": {"bootstrapFrom": "read-0.example:50061"}}).config("read-node.toml")[
        "bootstrap_from"] == "read-0.example:50061"
    off = render({"readNode": {"bootstrapFrom": "none"}})
    assert "bootstrap_from" not in off.config("read-node.toml")
    _, read = policy_rules(off, "read")
    components = sorted(p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in read[off.values["readNode"]["port"]])
    assert components == ["test"]
    secured = render(SECURED).config("read-node.toml")
    assert secured["bootstrap_tls"]["domain"] == f"demo-wallet-read.{NAMESPACE}.svc.cluster.local"
    assert "bootstrap_tls" not in render(SECURED | {"readNode": {"bootstrapFrom": "none"}}).config("read-node.toml")
    with helm.Chart.load(CHART) as chart:
        for bad in ("read-0", "http://read-0:1", "a b:1"):
            with pytest.raises(helm.HelmValuesError):
                chart.render({"readNode": {"bootstrapFrom": bad}}, name="demo", namespace=NAMESPACE)
