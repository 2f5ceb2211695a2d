"""Checks against a secured write node (run by client-sdk/test-sdks.sh): TLS with the
cluster's CA, a client certificate (the node requires one: mTLS), a server name override (the
certificate names only ``--server-name``; the node is dialled by IP address), and bearer
tokens: with the right token transfers work, pipelined and unary; without one, or with a wrong
one, calls are UNAUTHENTICATED; a token without the scope is PERMISSION_DENIED; without the
client certificate or the server name override no connection is made.

    WALLET_TOKEN=... WALLET_READ_TOKEN=... PYTHONPATH=src python tests/secured_check.py \\
        --write 127.0.0.1:PORT --certs DIR --server-name NAME

DIR holds ca.crt, client.crt and client.key (``walletctl dev-certs --out DIR --host NAME``);
WALLET_TOKEN has the admin, issue, transfer and read scopes, WALLET_READ_TOKEN only read.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from concurrent import futures
from pathlib import Path
from typing import Callable, Optional

import grpc

from wallet_ledger import Indefinite, Rejected, RetryPolicy, TlsConfig, WalletClient, new_transaction_id

QUICK = RetryPolicy(call_timeout=2.0, total_deadline=3.0, attempts_max=3, backoff_base=0.01, backoff_max=0.1)


def expect(call: Callable[[], object], kind: type, code: grpc.StatusCode, reason: Optional[str] = None) -> None:
    try:
        call()
    except (Rejected, Indefinite) as error:
        assert isinstance(error, kind), f"expected {kind.__name__}, got {error!r}"
        assert error.code == code, f"expected {code.name}, got {error!r}"
        assert reason is None or error.reason == reason, f"expected {reason}, got {error!r}"
        return
    raise AssertionError(f"expected {code.name}, the call succeeded")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", required=True)
    parser.add_argument("--certs", required=True, type=Path)
    parser.add_argument("--server-name", required=True)
    args = parser.parse_args()
    token, read_token = os.environ["WALLET_TOKEN"], os.environ["WALLET_READ_TOKEN"]
    certs: Path = args.certs
    tls = TlsConfig.from_files(
        certs / "ca.crt",
        client_cert_file=certs / "client.crt",
        client_key_file=certs / "client.key",
        server_name=args.server_name,
    )
    prefix = f"pysecure-{uuid.uuid4().hex[:8]}-"
    issuer, alice = prefix + "issuer", prefix + "alice"
    checks = 0

    def pay(wallet: WalletClient, amount: str = "1.00") -> str:
        return wallet.transfer(
            transaction_id=new_transaction_id(), from_account=issuer, to_account=alice, amount=amount, currency="USD"
        ).status

    with WalletClient([args.write], QUICK, tls=tls, token=token) as wallet:
        ready_by = time.monotonic() + 60  # the node may still be electing itself
        while True:
            try:
                wallet.open_account(issuer, "USD", allow_negative_balance=True)
                break
            except Indefinite:
                if time.monotonic() > ready_by:
                    raise
                time.sleep(0.2)
        wallet.open_account(alice, "USD")
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: pay(wallet), range(20)))
        assert statuses == ["success"] * 20, statuses
        stats = wallet.pipeline_stats()
        assert stats.streams == 1 and stats.transfers == 20, stats  # down one stream, over TLS
        balance = wallet.get_account(alice).account.balance
        assert balance == "20.00", balance
        checks += 1
    with WalletClient([args.write], QUICK, tls=tls, token=token, pipeline_transfers=False) as wallet:
        assert pay(wallet) == "success"
        stats = wallet.pipeline_stats()
        assert (stats.streams, stats.unary_transfers) == (0, 1), stats
        checks += 1

    with WalletClient([args.write], QUICK, tls=tls) as wallet:
        expect(lambda: pay(wallet), Rejected, grpc.StatusCode.UNAUTHENTICATED, "MISSING_TOKEN")
        expect(lambda: wallet.get_account(alice), Rejected, grpc.StatusCode.UNAUTHENTICATED, "MISSING_TOKEN")
    with WalletClient([args.write], QUICK, tls=tls, token="wrong-" + token) as wallet:
        expect(lambda: pay(wallet), Rejected, grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN")
    with WalletClient([args.write], QUICK, tls=tls, token=read_token) as wallet:
        assert wallet.get_account(alice).account.balance == "21.00"
        expect(lambda: pay(wallet), Rejected, grpc.StatusCode.PERMISSION_DENIED, "SCOPE_DENIED")
    checks += 4

    no_client_cert = TlsConfig.from_files(certs / "ca.crt", server_name=args.server_name)
    no_server_name = TlsConfig.from_files(
        certs / "ca.crt", client_cert_file=certs / "client.crt", client_key_file=certs / "client.key"
    )
    for settings in (no_client_cert, no_server_name):
        with WalletClient([args.write], QUICK, tls=settings, token=token) as wallet:
            expect(lambda: wallet.get_account(alice), Indefinite, grpc.StatusCode.UNAVAILABLE)
    try:
        WalletClient([f"http://{args.write}"], tls=tls)
        raise AssertionError("http:// with TLS settings was accepted")
    except ValueError:
        pass
    checks += 3
    print(f"python secured checks: {checks} passed")


if __name__ == "__main__":
    main()
