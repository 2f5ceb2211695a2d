"""The rendered chart run for real, on loopback: write and read nodes started with the exact
command, arguments, environment and configuration file of the rendered pod specs (only the
addresses and data directories are overridden by flags), their probes' health service names
asked of the running nodes, then the `helm test` pod's commands run in order against them."""

from __future__ import annotations

import json
import urllib.request
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VALUE_SETS, container, exported_elsewhere, referenced_metric_names, render

STARTUP_TIMEOUT_S = 60
STEP_TIMEOUT_S = 60


def bin_dir() -> Path:
    directory = os.environ.get("WALLET_BIN_DIR")
    assert directory, "set WALLET_BIN_DIR to the directory of the built binaries (validate.sh does)"
    directory = Path(directory)
    for binary in ("wallet-write-node", "wallet-read-node", "walletctl"):
        assert (directory / binary).is_file(), f"{directory / binary} missing: run `cargo build --bins`"
    return directory


_ports_given: set[int] = set()


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range (so no outgoing connection of an
    earlier process, e.g. a peer dialling before the read node binds, takes it) and never
    handed out twice in this session."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port


def map_paths(text: str, mounts: dict[str, Path]) -> str:
    """The image's paths under each mount replaced by the local directory standing in for it."""
    for mount_path, local in mounts.items():
        text = text.replace(mount_path + "/", f"{local}/")
    return text


def local_command(spec: dict, mounts: dict[str, Path], binaries: Path) -> list[str]:
    """The container's command + args with the image's paths mapped to local ones."""
    command = [str(binaries / Path(spec["command"][0]).name), *spec["command"][1:]]
    return command + [map_paths(arg, mounts) for arg in spec.get("args", [])]


def local_env(
    spec: dict,
    pod_name: str,
    overrides: dict[str, str] | None = None,
    mounts: dict[str, Path] | None = None,
    secrets: dict[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = map_paths(item["value"], mounts or {})
        elif "secretKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = (secrets or {})[ref["name"]][ref["key"]]
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.name", f"no local stand-in for {field}"
            env[item["name"]] = pod_name
    env.update(overrides or {})
    return env


def local_mounts(
    pod_spec: dict, c: dict, root: Path, config_map: dict, secrets: dict[str, dict[str, str]]
) -> dict[str, Path]:
    """A local directory for each ConfigMap and Secret volume the container mounts, holding
    exactly the items the volume projects (paths inside config files mapped like the args).
    The data volumes are left out: flags point the nodes at temporary directories."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts, files = {}, {}
    for mount in c.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            source, items = config_map["data"], volume["configMap"]["items"]
        elif "secret" in volume:
            source, items = secrets[volume["secret"]["secretName"]], volume["secret"]["items"]
        else:
            continue
        local = root / mount["mountPath"].strip("/").replace("/", "_")
        local.mkdir(parents=True)
        mounts[mount["mountPath"]] = local
        files |= {local / item["path"]: source[item["key"]] for item in items}
    for path, text in files.items():
        path.write_text(map_paths(text, mounts))
    return mounts


class LocalCluster:
    def __init__(self, tmp: Path, binaries: Path, values: dict | None = None, secrets: dict | None = None):
        self.rendered = render(values)
        self.binaries = binaries
        self.tmp = tmp
        self.secrets = secrets or {}
        self.processes: list[tuple[str, subprocess.Popen]] = []
        config_map = self.rendered.one("ConfigMap", "-config")
        self.sts = self.rendered.one("StatefulSet")
        self.deployment = self.rendered.one("Deployment")
        self.mounts = {}
        for name, workload in [("write", self.sts), ("read", self.deployment)]:
            mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
            assert mounts["config"] == "/etc/wallet"
            self.mounts[name] = local_mounts(
                workload["spec"]["template"]["spec"], container(workload), tmp / f"{name}-pod", config_map, self.secrets
            )
        replicas = self.sts["spec"]["replicas"]
        self.write_ports = [free_port() for _ in range(replicas)]
        self.read_port = free_port()
        # The rendered metrics_listen is one port for every pod: give each process its own.
        self.write_metrics_ports = [free_port() for _ in range(replicas)]
        self.read_metrics_port = free_port()
        self.write_endpoints = [f"127.0.0.1:{p}" for p in self.write_ports]
        self.read_endpoint = f"127.0.0.1:{self.read_port}"

    def spawn(self, name: str, command: list[str], env: dict[str, str]):
        log = open(self.tmp / f"{name}.log", "wb")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append((name, process))

    def start(self):
        spec = container(self.sts)
        peers = ",".join(f"{i + 1}={e}" for i, e in enumerate(self.write_endpoints))
        for i, endpoint in enumerate(self.write_endpoints):
            pod = f"{self.sts['metadata']['name']}-{i}"
            command = local_command(spec, self.mounts["write"], self.binaries) + [
                f"--listen={endpoint}",
                f"--peers={peers}",
                f"--data-dir={self.tmp / pod}",
                f"--metrics-listen=127.0.0.1:{self.write_metrics_ports[i]}",
            ]
            self.spawn(pod, command, local_env(spec, pod))
        spec = container(self.deployment)
        command = local_command(spec, self.mounts["read"], self.binaries) + [
            f"--listen={self.read_endpoint}",
            f"--write-nodes={','.join(self.write_endpoints)}",
            f"--data-dir={self.tmp / 'read'}",
            f"--metrics-listen=127.0.0.1:{self.read_metrics_port}",
        ]
        self.spawn("read", command, local_env(spec, "read-0"))

    def stop(self):
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (exit {p.poll()})\n" + (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
            for name, p in self.processes
        )

    def walletctl(self, *args: str, env: dict[str, str] | None = None, timeout=STEP_TIMEOUT_S):
        return subprocess.run(
            [str(self.binaries / "walletctl"), *args],
            env=env or {
                "WALLET_ENDPOINTS": ",".join(self.write_endpoints),
                "WALLET_READ_ENDPOINT": self.read_endpoint,
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_serving(self, service: str, read: bool):
        """Polls `walletctl health` until every node answers SERVING for `service`."""
        args = ["health", "--service", service] + (["--read"] if read else [])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            exited = [name for name, p in self.processes if p.poll() is not None]
            assert not exited, f"{exited} exited\n{self.logs()}"
            result = self.walletctl(*args)
            if result.returncode == 0:
                return result.stdout
            assert time.monotonic() < deadline, f"{service!r} not SERVING:\n{result.stdout}{result.stderr}\n{self.logs()}"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    binaries = bin_dir()
    local = LocalCluster(tmp_path_factory.mktemp("loopback"), binaries)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def probe_services(workload) -> list[str]:
    c = container(workload)
    return [c[kind]["grpc"]["service"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")]


def test_probes_ask_for_health_names_the_nodes_serve(cluster):
    # In the order Kubernetes asks: start-up, liveness, readiness.
    for service in probe_services(cluster.sts):
        out = cluster.wait_serving(service, read=False)
        assert out.count("SERVING") == len(cluster.write_endpoints), out
    for service in probe_services(cluster.deployment):
        cluster.wait_serving(service, read=True)
    # The check is not vacuous: a name the nodes do not report fails.
    unknown = cluster.walletctl("health", "--service", "wallet.v1.NoSuchService")
    assert unknown.returncode == 1 and "SERVICE_UNKNOWN" in unknown.stdout, unknown


def test_helm_test_pod_commands_pass(cluster):
    for service in probe_services(cluster.sts)[-1:]:
        cluster.wait_serving(service, read=False)
    pod = cluster.rendered.test_pod()
    steps = pod["spec"]["initContainers"] + pod["spec"]["containers"]
    loopback = {
        "WALLET_ENDPOINTS": ",".join(cluster.write_endpoints),
        "WALLET_READ_ENDPOINT": cluster.read_endpoint,
    }
    for step in steps:
        env = local_env(step, pod["metadata"]["name"], loopback)
        assert set(loopback) <= {e["name"] for e in step["env"]}
        command = local_command(step, {}, cluster.binaries)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
        assert result.returncode == 0, f"{step['name']}: {command}\n{result.stdout}{result.stderr}\n{cluster.logs()}"

    # The transfer really moved the money: the test account holds exactly one test amount.
    test_values = cluster.rendered.values["test"]
    account = f"{test_values['accountPrefix']}-account"
    result = cluster.walletctl("--json", "account", "get", account)
    assert result.returncode == 0, result.stderr
    balance = json.loads(result.stdout)["account"]
    assert (balance["balance"], balance["currency"]) == (test_values["amount"], test_values["currency"])


def test_metrics_endpoints_answer(cluster):
    """Every process serves Prometheus text on /metrics (the port the pod annotations name)."""
    for service in probe_services(cluster.sts)[-1:]:
        cluster.wait_serving(service, read=False)
    ports = [*cluster.write_metrics_ports, cluster.read_metrics_port]
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            text = response.read().decode()
        assert text.endswith("# EOF\n"), text[-200:]
        assert "# TYPE wallet_grpc_requests counter" in text, text[:2000]
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5) as response:
        assert "wallet_raft_applied_index{" in response.read().decode()


def exposed_series(text: str) -> set[str]:
    """The series names a /metrics page (OpenMetrics text) can be queried by: every sample's
    name, and for each `# TYPE` family the names its type gives it (counter `_total`,
    histogram `_bucket`/`_sum`/`_count`), so a family with no sample yet still counts."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(kind, ("",))
            names |= {family + suffix for suffix in suffixes}
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def test_every_series_the_rules_and_dashboard_use_is_exported(cluster):
    """Each metric name the chart's PrometheusRule and Grafana dashboard read (ci/monitoring-
    values.yaml) is on a live write node's or read node's /metrics; `up` (Prometheus) and
    `kubelet_*` (the kubelet's volume stats) come from elsewhere."""
    cluster.wait_serving(probe_services(cluster.sts)[-1], read=False)
    cluster.wait_serving(probe_services(cluster.deployment)[-1], read=True)
    # wallet_ledger_conservation_minor has a series only for currencies a partition holds a
    # non-zero total or outflow of: move money from one issuer to accounts spread over the
    # partitions, so some transfers cross partitions.
    steps = [("account", "open", "monitoring-issuer", "--currency", "USD", "--allow-negative-balance")]
    for i in range(8):
        steps += [
            ("account", "open", f"monitoring-{i}", "--currency", "USD"),
            ("transfer", "--from", "monitoring-issuer", "--to", f"monitoring-{i}", "--amount", "0.01", "--currency", "USD"),
        ]
    for step in steps:
        result = cluster.walletctl(*step)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
    used = referenced_metric_names(render(VALUE_SETS["monitoring"]))
    wanted = {name for name in used if not exported_elsewhere(name)}
    assert len(wanted) >= 20, wanted
    ports = {"write": cluster.write_metrics_ports[0], "read": cluster.read_metrics_port}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        # The read node's per-partition series appear once it knows the partitions.
        exported = {}
        for kind, port in ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                exported[kind] = exposed_series(response.read().decode())
        missing = {name: sorted(used[name]) for name in wanted if name not in exported["write"] | exported["read"]}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert missing == {}, f"not on any node's /metrics: {missing}"
    # Node-specific series come from the node they describe.
    assert "wallet_raft_leader" in exported["write"] and "wallet_projection_lag_entries" in exported["read"]
