"""The secured pod specs (ci/secured-values.yaml: TLS, client certificates, tokens) run for
real on loopback, as test_loopback.py runs the defaults: real certificates from `walletctl
dev-certs` and tokens from `walletctl token` stand in for the two Secrets; every Secret and
ConfigMap volume a container mounts becomes a local directory holding exactly its items, and
the mount paths in args, env and config files are mapped to those directories. The nodes
then start from the rendered secured configuration, each rendered exec probe is run, the
`helm test` steps run with the Secret's token, and calls without a token, TLS or client
certificate are refused. The write nodes and the read nodes get certificates of their own
(tls.secretName, tls.readSecretName): a peer call presenting the read one is refused. A
module of its own, so this cluster and test_loopback's never run at once."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from conftest import NAMESPACE, VALUE_SETS, container
from test_loopback import (
    STARTUP_TIMEOUT_S,
    STEP_TIMEOUT_S,
    LocalCluster,
    bin_dir,
    local_command,
    local_env,
    local_mounts,
    map_paths,
)

VALUES = VALUE_SETS["secured"]
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def make_secrets(binaries: Path, out: Path, hosts: list[str], read_hosts: list[str]) -> tuple[dict, dict[str, str]]:
    """The three Secrets' data, as charts/README.md tells operators to make them, and the
    tokens by name (a `read` one for this test's own checks)."""
    walletctl = str(binaries / "walletctl")
    subprocess.run(
        [walletctl, "dev-certs", "--out", str(out), *(a for h in hosts for a in ("--host", h)),
         *(a for h in read_hosts for a in ("--read-host", h))],
        check=True, capture_output=True, timeout=STEP_TIMEOUT_S,
    )
    tokens, entries = {}, []
    for name, scopes in [("read-nodes", "replicate"), ("helm-test", "admin,transfer,issue"), ("checker", "read")]:
        result = subprocess.run(
            [walletctl, "--json", "token", "--name", name, "--scopes", scopes],
            check=True, capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
        )
        token = json.loads(result.stdout)
        tokens[name] = token["token"]
        scope_list = ", ".join(f'"{s}"' for s in token["scopes"])
        entries.append(f'[[token]]\nname = "{name}"\nsha256 = "{token["sha256"]}"\nscopes = [{scope_list}]\n')
    secrets = {
        VALUES["tls"]["secretName"]: {
            "tls.crt": (out / "node.crt").read_text(),
            "tls.key": (out / "node.key").read_text(),
            "ca.crt": (out / "ca.crt").read_text(),
        },
        VALUES["tls"]["readSecretName"]: {
            "tls.crt": (out / "read.crt").read_text(),
            "tls.key": (out / "read.key").read_text(),
            "ca.crt": (out / "ca.crt").read_text(),
        },
        VALUES["auth"]["secretName"]: {
            "tokens.toml": "\n".join(entries),
            "read-node.token": tokens["read-nodes"] + "\n",
            "test.token": tokens["helm-test"],
        },
    }
    return secrets, tokens


class SecuredCluster(LocalCluster):
    def __init__(self, tmp: Path, binaries: Path):
        # The names each certificate must carry for the probes and the helm test pod (its
        # client Service's), and the loopback names the local nodes are dialled by. Every
        # local peer is 127.0.0.1:port, so the write certificate names 127.0.0.1 (as the
        # chart's names the peers) and the read one must not: it names `localhost`, which
        # clients dial the read node by, and the read Service only.
        release = "demo-wallet"
        self.write_host, self.read_host = (
            f"{release}-{component}.{NAMESPACE}.svc.cluster.local" for component in ("write", "read")
        )
        certs = tmp / "certs"
        secrets, self.tokens = make_secrets(
            binaries, certs, ["127.0.0.1", "localhost", self.write_host], ["localhost", self.read_host]
        )
        super().__init__(tmp, binaries, VALUES, secrets)
        self.ca = certs / "ca.crt"
        self.client = (certs / "client.crt", certs / "client.key")
        self.write_cert = (certs / "node.crt", certs / "node.key")
        self.read_cert = (certs / "read.crt", certs / "read.key")
        # The read node listens on 127.0.0.1 (read_endpoint); clients dial it by a name its
        # certificate carries.
        self.read_client_endpoint = f"localhost:{self.read_port}"

    def wait_serving(self, service: str, read: bool):
        raise NotImplementedError("secured nodes are polled through their rendered exec probes")

    def probe(self, command: list[str], mounts: dict[str, Path], rendered_port: int, port: int):
        """A rendered exec probe's command, run with local paths against the local port."""
        local = [str(self.binaries / Path(command[0]).name)] + [
            map_paths(arg, mounts).replace(f"127.0.0.1:{rendered_port}", f"127.0.0.1:{port}")
            for arg in command[1:]
        ]
        assert f"127.0.0.1:{port}" in local, local
        return subprocess.run(local, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, env=local_env({}, ""))

    def wait_probe(self, workload, kind, mounts, rendered_port, port):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            exited = [name for name, p in self.processes if p.poll() is not None]
            assert not exited, f"{exited} exited\n{self.logs()}"
            result = self.probe(container(workload)[kind]["exec"]["command"], mounts, rendered_port, port)
            if result.returncode == 0:
                return result
            assert time.monotonic() < deadline, f"{kind} of {port} fails:\n{result.stdout}{result.stderr}\n{self.logs()}"
            time.sleep(0.3)

    def wait_ready(self):
        """Every write node's and the read node's rendered readiness probe passes."""
        self.all_probes(kinds=("readinessProbe",))

    def all_probes(self, kinds=PROBES):
        write_port = self.rendered.values["writeNode"]["port"]
        read_port = self.rendered.values["readNode"]["port"]
        for kind in kinds:
            for port in self.write_ports:
                self.wait_probe(self.sts, kind, self.mounts["write"], write_port, port)
        for kind in kinds:
            self.wait_probe(self.deployment, kind, self.mounts["read"], read_port, self.read_port)

    def secured_walletctl(self, *args: str, token: str | None, client_cert: bool = True):
        env = {"WALLET_ENDPOINTS": ",".join(self.write_endpoints), "WALLET_READ_ENDPOINT": self.read_client_endpoint,
               "WALLET_TLS_CA": str(self.ca)}
        if client_cert:
            env |= {"WALLET_CLIENT_CERT": str(self.client[0]), "WALLET_CLIENT_KEY": str(self.client[1])}
        if token:
            env["WALLET_TOKEN"] = token
        return self.walletctl(*args, env=local_env({}, "", env))


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    local = SecuredCluster(tmp_path_factory.mktemp("loopback-secured"), bin_dir())
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_secured_nodes_run_without_insecure(secured):
    for key in ("write-node.toml", "read-node.toml"):
        assert secured.rendered.config(key)["insecure"] is False
    # Listening on loopback would not need it anyway: the point is that the rendered TLS,
    # peer TLS and token settings, read from the mapped Secret files, start the nodes.
    secured.wait_ready()
    for name, _ in secured.processes:
        lines = [json.loads(line) for line in (secured.tmp / f"{name}.log").read_text().splitlines() if line.startswith("{")]
        (security,) = [line["fields"] for line in lines if line["fields"].get("message") == "security"]
        assert security["tls"] is True and security["tokens"] == 3, (name, security)
        if name == "read":
            assert security["write_node_tls"] is True and security["write_node_token"] is True, security
        else:
            assert security["client_certificates_required"] is True, (name, security)


def test_secured_exec_probes_pass(secured):
    """Each rendered exec probe (start-up, liveness, readiness) of every node exits 0: TLS
    to 127.0.0.1 verifying the client Service's name, with the client certificate."""
    secured.all_probes()
    # Not vacuous: the same probe for a health name the nodes do not report fails.
    command = container(secured.sts)["readinessProbe"]["exec"]["command"]
    assert command[-2] == "--service"
    result = secured.probe([*command[:-1], "wallet.v1.NoSuchService"], secured.mounts["write"],
                           secured.rendered.values["writeNode"]["port"], secured.write_ports[0])
    assert result.returncode == 1 and "SERVICE_UNKNOWN" in result.stdout, result


def test_secured_helm_test_pod_commands_pass(secured):
    secured.wait_ready()
    pod = secured.rendered.test_pod()
    mounts = local_mounts(pod["spec"], pod["spec"]["containers"][0], secured.tmp / "test-pod",
                          {"data": {}}, secured.secrets)
    steps = pod["spec"]["initContainers"] + pod["spec"]["containers"]
    loopback = {
        "WALLET_ENDPOINTS": ",".join(secured.write_endpoints),
        "WALLET_READ_ENDPOINT": secured.read_client_endpoint,
    }
    for step in steps:
        env = local_env(step, pod["metadata"]["name"], loopback, mounts, secured.secrets)
        assert env["WALLET_TOKEN"] == secured.tokens["helm-test"]
        assert Path(env["WALLET_TLS_CA"]).is_file() and Path(env["WALLET_CLIENT_KEY"]).is_file()
        # The test pod presents the read pods' certificate, not the write nodes'.
        assert Path(env["WALLET_CLIENT_CERT"]).read_text() == secured.read_cert[0].read_text()
        command = local_command(step, mounts, secured.binaries)
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
        assert result.returncode == 0, f"{step['name']}: {command}\n{result.stdout}{result.stderr}\n{secured.logs()}"

    test_values = secured.rendered.values["test"]
    account = f"{test_values['accountPrefix']}-account"
    result = secured.secured_walletctl("--json", "account", "get", account, token=secured.tokens["checker"])
    assert result.returncode == 0, result.stderr
    balance = json.loads(result.stdout)["account"]
    assert (balance["balance"], balance["currency"]) == (test_values["amount"], test_values["currency"])


def test_secured_nodes_refuse_calls_without_token_tls_or_client_certificate(secured):
    secured.wait_ready()
    account = f"{secured.rendered.values['test']['accountPrefix']}-account"
    # TLS and a client certificate, but no token: UNAUTHENTICATED.
    result = secured.secured_walletctl("account", "get", account, token=None)
    assert result.returncode != 0 and "UNAUTHENTICATED" in result.stdout + result.stderr, result
    # The helm test token lacks `read`: PERMISSION_DENIED.
    result = secured.secured_walletctl("account", "get", account, token=secured.tokens["helm-test"])
    assert result.returncode != 0 and "PERMISSION_DENIED" in result.stdout + result.stderr, result
    # Plaintext: neither the write nodes nor the read node answer, not even health.
    for args in (["health"], ["health", "--read"]):
        result = secured.walletctl(*args, timeout=STEP_TIMEOUT_S)
        assert result.returncode != 0, (args, result)
    # TLS without a client certificate (requireClientCert): refused too.
    for args in (["health"], ["health", "--read"]):
        result = secured.secured_walletctl(*args, token=None, client_cert=False)
        assert result.returncode != 0, (args, result)
    # With everything, the same health check passes.
    assert secured.secured_walletctl("health", token=None).returncode == 0


def peer_credit(secured, cert: tuple[Path, Path]) -> grpc.RpcError | bytes:
    """A raw PeerService.Credit call (no generated stubs) to write node 1 over TLS, presenting
    `cert`: the answer's bytes or the error. The request names partition 2^32-1, which no
    node has: a caller the auth layer lets through is refused INVALID_ARGUMENT and nothing is
    credited."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=secured.ca.read_bytes(),
        private_key=cert[1].read_bytes(),
        certificate_chain=cert[0].read_bytes(),
    )
    # The write certificate names the write Service; verify that name on 127.0.0.1.
    options = [("grpc.ssl_target_name_override", secured.write_host)]
    with grpc.secure_channel(secured.write_endpoints[0], credentials, options=options) as channel:
        credit = channel.unary_unary("/wallet.internal.v1.PeerService/Credit")
        request = b"\x08\xff\xff\xff\xff\x0f"  # CreditRequest{partition: 4294967295}
        try:
            return credit(request, timeout=STEP_TIMEOUT_S)
        except grpc.RpcError as error:
            return error


def test_read_certificate_is_not_a_peer_certificate(secured):
    """The read pods' certificate (tls.readSecretName) chains to the CA the write nodes trust
    for peers but names no configured peer: PeerService refuses it UNAUTHENTICATED, while the
    cluster (whose read node presents that certificate to the write nodes) works."""
    secured.wait_ready()
    refused = peer_credit(secured, secured.read_cert)
    assert isinstance(refused, grpc.RpcError), refused
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, (refused.code(), refused.details())
    assert "PeerService is for write nodes" in refused.details(), refused.details()
    assert "none of the configured peers" in refused.details(), refused.details()
    # Not vacuous: the write nodes' certificate gets past authentication to the handler,
    # which refuses the unknown partition.
    passed = peer_credit(secured, secured.write_cert)
    assert isinstance(passed, grpc.RpcError), passed
    assert passed.code() == grpc.StatusCode.INVALID_ARGUMENT, (passed.code(), passed.details())
    assert "unknown partition" in passed.details(), passed.details()
    # The read node, which presents that certificate to the write nodes (it learnt the
    # partition count from them before serving), still serves.
    assert secured.secured_walletctl("health", "--read", token=None).returncode == 0
    log = (secured.tmp / f"{secured.sts['metadata']['name']}-0.log").read_text()
    assert "peer call refused" in log, "the refusal is logged"
