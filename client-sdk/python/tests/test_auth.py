"""Unit tests of TLS, tokens and endpoints: the token reaches the node on every kind of call,
and a TLS client (CA, server name override, client certificate) talks to a TLS node made
here with openssl."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import unittest
from concurrent import futures
from pathlib import Path

import grpc

from fake_node import FakeNode
from wallet_ledger import AsyncWalletClient, RetryPolicy, TlsConfig, WalletClient, authorization_metadata, new_transaction_id
from wallet_ledger._proto.wallet.v1 import wallet_pb2_grpc
from wallet_ledger.auth import NO_FORWARD_METADATA_KEY, normalize_endpoint

FAST = RetryPolicy(call_timeout=2.0, total_deadline=4.0, attempts_max=2, backoff_base=0.001, backoff_max=0.004)
SERVER_NAME = "write-0.wallet.test"


class TokenTest(unittest.TestCase):
    def test_metadata_format_and_validation(self) -> None:
        self.assertEqual(authorization_metadata(" s3cr3t "), (("authorization", "Bearer s3cr3t"),))
        self.assertEqual(authorization_metadata(None), ())
        for bad in ("", "   ", "a b", "tök"):
            with self.assertRaises(ValueError):
                authorization_metadata(bad)
        with self.assertRaises(ValueError):
            WalletClient(["127.0.0.1:1"], token="a b")

    def test_the_token_goes_with_every_call(self) -> None:
        with FakeNode() as node, WalletClient([node.endpoint], FAST, token="s3cr3t") as wallet:
            wallet.transfer(
                transaction_id=new_transaction_id(), from_account="a", to_account="b", amount="1.00", currency="USD"
            )
            wallet.get_account("a")
        self.assertEqual(len(node.metadata), 2)  # SubmitTransfers, GetAccount
        self.assertEqual(len(node.streams), 1)
        for metadata in node.metadata:
            self.assertEqual(metadata.get("authorization"), "Bearer s3cr3t")

    def test_without_a_token_none_is_sent(self) -> None:
        with FakeNode(stream=None) as node, WalletClient([node.endpoint], FAST) as wallet:
            wallet.get_account("a")
        self.assertNotIn("authorization", node.metadata[0])


def _transfer_and_read(wallet: WalletClient) -> None:
    wallet.transfer(transaction_id=new_transaction_id(), from_account="a", to_account="b", amount="1.00", currency="USD")
    wallet.get_account("a")


class NoForwardTest(unittest.TestCase):
    """Given more than one distinct write endpoint the client routes by itself and asks the
    nodes not to forward (``wallet-no-forward``); given one, it sends nothing and they forward."""

    def test_several_endpoints_send_no_forward_on_every_call(self) -> None:
        with FakeNode() as node, FakeNode() as other, WalletClient([node.endpoint, other.endpoint], FAST) as wallet:
            _transfer_and_read(wallet)
        self.assertEqual(len(node.metadata), 2)  # SubmitTransfers, GetAccount (the first endpoint)
        for metadata in node.metadata:
            self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")

    def test_one_endpoint_sends_nothing(self) -> None:
        with FakeNode() as node:
            # The same node twice (spelt two ways) is still one endpoint.
            with WalletClient([node.endpoint, f"http://{node.endpoint}/"], FAST, token="t0k") as wallet:
                _transfer_and_read(wallet)
        self.assertEqual(len(node.metadata), 2)
        for metadata in node.metadata:
            self.assertNotIn(NO_FORWARD_METADATA_KEY, metadata)
            self.assertEqual(metadata.get("authorization"), "Bearer t0k")

    def test_asyncio_client_follows_the_same_rule(self) -> None:
        async def run(endpoints: list[str]) -> None:
            async with AsyncWalletClient(endpoints, FAST, token="t0k") as wallet:
                await wallet.transfer(
                    transaction_id=new_transaction_id(), from_account="a", to_account="b", amount="1.00", currency="USD"
                )
                await wallet.get_account("a")

        with FakeNode() as node, FakeNode() as other:
            asyncio.run(run([node.endpoint, other.endpoint]))
            self.assertEqual(len(node.metadata), 2)
            for metadata in node.metadata:
                self.assertEqual(metadata.get(NO_FORWARD_METADATA_KEY), "sdk")
                self.assertEqual(metadata.get("authorization"), "Bearer t0k")
        with FakeNode() as node:
            asyncio.run(run([node.endpoint]))
            self.assertEqual(len(node.metadata), 2)
            for metadata in node.metadata:
                self.assertNotIn(NO_FORWARD_METADATA_KEY, metadata)


class EndpointTest(unittest.TestCase):
    def test_schemes_must_match_the_tls_setting(self) -> None:
        self.assertEqual(normalize_endpoint(" http://h:1/ ", tls=False), "h:1")
        self.assertEqual(normalize_endpoint("h:1", tls=True), "h:1")
        self.assertEqual(normalize_endpoint("https://h:1", tls=True), "h:1")
        for endpoint, tls in [("https://h:1", False), ("http://h:1", True), ("h", False), ("h:x", False),
                              ("ftp://h:1", False), ("", False), ("h:1/x", False)]:
            with self.assertRaises(ValueError, msg=endpoint):
                normalize_endpoint(endpoint, tls)

    def test_tls_config_checks_and_hides_the_key(self) -> None:
        with self.assertRaises(ValueError):
            TlsConfig(ca_pem=b"")
        with self.assertRaises(ValueError):
            TlsConfig(ca_pem=b"x", client_cert_pem=b"c")
        self.assertNotIn("KEY", repr(TlsConfig(ca_pem=b"x", client_cert_pem=b"c", client_key_pem=b"KEY")))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@unittest.skipUnless(shutil.which("openssl"), "needs openssl to make certificates")
class TlsTest(unittest.TestCase):
    """A CA, a node certificate for SERVER_NAME only, and a client certificate."""

    dir: Path

    @classmethod
    def setUpClass(cls) -> None:
        cls.dir = Path(tempfile.mkdtemp(prefix="wallet-tls-test-"))
        d = cls.dir
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wallet test CA", cwd=d)
        for name, ext in [("server", f"subjectAltName=DNS:{SERVER_NAME}"), ("client", "extendedKeyUsage=clientAuth")]:
            _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
            (d / f"{name}.ext").write_text(ext + "\n")
            _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=d)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.dir, ignore_errors=True)

    def _node(self, require_client_cert: bool) -> FakeNode:
        node = FakeNode()
        d = self.dir
        credentials = grpc.ssl_server_credentials(
            [((d / "server.key").read_bytes(), (d / "server.pem").read_bytes())],
            root_certificates=(d / "ca.pem").read_bytes() if require_client_cert else None,
            require_client_auth=require_client_cert,
        )
        # A second, TLS-only server with the same servicer.
        node.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        wallet_pb2_grpc.add_WalletServiceServicer_to_server(node, node.server)
        node.port = node.server.add_secure_port("127.0.0.1:0", credentials)
        node.endpoint = f"127.0.0.1:{node.port}"
        return node

    def test_tls_with_server_name_and_token(self) -> None:
        tls = TlsConfig.from_files(self.dir / "ca.pem", server_name=SERVER_NAME)
        with self._node(False) as node, WalletClient([node.endpoint], FAST, tls=tls, token="t0k") as wallet:
            self.assertEqual(wallet.get_account("a").account.balance, "1.00")
            wallet.transfer(
                transaction_id=new_transaction_id(), from_account="a", to_account="b", amount="1.00", currency="USD"
            )
        self.assertEqual(len(node.streams), 1)  # the transfer went down a stream, over TLS
        self.assertTrue(all(m.get("authorization") == "Bearer t0k" for m in node.metadata))

    def test_asyncio_client_with_tls_and_token(self) -> None:
        tls = TlsConfig.from_files(self.dir / "ca.pem", server_name=SERVER_NAME)

        async def run(endpoint: str) -> str:
            async with AsyncWalletClient([endpoint], FAST, tls=tls, token="t0k") as wallet:
                await wallet.transfer(
                    transaction_id=new_transaction_id(), from_account="a", to_account="b", amount="1.00", currency="USD"
                )
                return (await wallet.get_account("a")).account.balance

        with self._node(False) as node:
            self.assertEqual(asyncio.run(run(node.endpoint)), "1.00")
        self.assertEqual((len(node.metadata), len(node.streams)), (2, 1))  # SubmitTransfers, GetAccount
        self.assertTrue(all(m.get("authorization") == "Bearer t0k" for m in node.metadata))

    def test_mutual_tls(self) -> None:
        d = self.dir
        tls = TlsConfig.from_files(
            d / "ca.pem", client_cert_file=d / "client.pem", client_key_file=d / "client.key", server_name=SERVER_NAME
        )
        with self._node(True) as node, WalletClient([node.endpoint], FAST, tls=tls) as wallet:
            self.assertEqual(wallet.get_account("a").account.balance, "1.00")
        without_cert = TlsConfig.from_files(d / "ca.pem", server_name=SERVER_NAME)
        with self._node(True) as node, WalletClient([node.endpoint], FAST, tls=without_cert) as wallet:
            with self.assertRaises(Exception):
                wallet.get_account("a")

    def test_the_wrong_name_is_refused(self) -> None:
        tls = TlsConfig.from_files(self.dir / "ca.pem")  # verifies 127.0.0.1: not in the certificate
        with self._node(False) as node, WalletClient([node.endpoint], FAST, tls=tls) as wallet:
            with self.assertRaises(Exception):
                wallet.get_account("a")
            self.assertEqual(node.metadata, [])


if __name__ == "__main__":
    unittest.main()
