"""TLS and bearer tokens for the SDK's channels: the Python twin of the Rust SDK's
``client-sdk/src/auth.rs``.

A node started with a tokens file wants ``authorization: Bearer <token>`` on every call
(``security/src/auth.rs``); a node with TLS wants the client to trust its CA, and, in mTLS
mode, a client certificate.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import grpc

#: The metadata key the nodes read the token from (lower case, as gRPC requires).
AUTHORIZATION_METADATA_KEY = "authorization"
#: Request metadata (any value) asking a write node not to forward a write it does not lead to
#: the leader but to answer NOT_LEADER with the leader's address, for a client that routes by
#: itself. The one definition is ``proto::NO_FORWARD_METADATA`` in ``proto/src/lib.rs``.
NO_FORWARD_METADATA_KEY = "wallet-no-forward"
#: Its value (any is accepted; the Rust SDK sends the same).
NO_FORWARD_METADATA_VALUE = "sdk"

PathLike = Union[str, Path]


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """TLS settings: the CA (PEM) that signs the nodes' certificates, optionally a client
    certificate and key (PEM) for nodes that require one (mTLS), and a name to verify in the
    node's certificate instead of the host dialled (``server_name``). ``repr`` never shows
    the key."""

    ca_pem: bytes
    client_cert_pem: Optional[bytes] = None
    client_key_pem: Optional[bytes] = dataclasses.field(default=None, repr=False)
    server_name: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.ca_pem:
            raise ValueError("TlsConfig: ca_pem is empty")
        if (self.client_cert_pem is None) != (self.client_key_pem is None):
            raise ValueError("TlsConfig: a client certificate needs its key, and a key its certificate")

    @classmethod
    def from_files(
        cls,
        ca_file: PathLike,
        *,
        client_cert_file: Optional[PathLike] = None,
        client_key_file: Optional[PathLike] = None,
        server_name: Optional[str] = None,
    ) -> "TlsConfig":
        """Reads the PEM files (the CA; optionally a client certificate and its key)."""
        return cls(
            ca_pem=Path(ca_file).read_bytes(),
            client_cert_pem=Path(client_cert_file).read_bytes() if client_cert_file else None,
            client_key_pem=Path(client_key_file).read_bytes() if client_key_file else None,
            server_name=server_name,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.client_key_pem,
            certificate_chain=self.client_cert_pem,
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


def authorization_metadata(token: Optional[str]) -> tuple[tuple[str, str], ...]:
    """``(("authorization", "Bearer <token>"),)``, or nothing without a token. Rejects what
    the nodes would refuse: an empty token, whitespace inside it, non-printable ASCII."""
    if token is None:
        return ()
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError("the token is empty or contains whitespace")
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise ValueError("the token must be printable ASCII")
    return ((AUTHORIZATION_METADATA_KEY, f"Bearer {token}"),)


def call_metadata(token: Optional[str], routes_itself: bool = False) -> tuple[tuple[str, str], ...]:
    """The metadata of every call: the token's ``authorization``, and, for a write client that
    routes by itself (given more than one write endpoint), ``wallet-no-forward: sdk``, so the
    nodes answer NOT_LEADER with the leader's address instead of forwarding the write."""
    metadata = authorization_metadata(token)
    if routes_itself:
        metadata += ((NO_FORWARD_METADATA_KEY, NO_FORWARD_METADATA_VALUE),)
    return metadata


def normalize_endpoint(endpoint: str, tls: bool) -> str:
    """``host:port`` from ``host:port``, ``http://host:port`` (plain text only) or
    ``https://host:port`` (TLS only), so TLS is never silently skipped."""
    trimmed = endpoint.strip().rstrip("/")
    scheme, sep, rest = trimmed.partition("://")
    if not sep:
        scheme, rest = ("https" if tls else "http"), trimmed
    if scheme not in ("http", "https"):
        raise ValueError(f"endpoint {endpoint!r}: only http:// and https:// are supported")
    if scheme == "https" and not tls:
        raise ValueError(f"endpoint {endpoint!r} is https:// but no TLS settings (CA) are configured")
    if scheme == "http" and tls:
        raise ValueError(f"endpoint {endpoint!r} is http:// but TLS is configured: use host:port or https://")
    host, colon, port = rest.rpartition(":")
    if not rest or "/" in rest or any(c.isspace() for c in rest) or not colon or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} must be host:port (with an explicit port)")
    return rest


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata (the token) to every call made on the channel, streams included."""

    def __init__(self, metadata: Sequence[tuple[str, str]]):
        self._metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), *self._metadata]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def make_channel(
    endpoint: str, tls: Optional[TlsConfig], token: Optional[str], routes_itself: bool = False
) -> grpc.Channel:
    """A lazily connecting channel to ``endpoint`` (``host:port``): TLS with ``tls``, plain
    text without; the token's ``authorization`` metadata on every call, and with
    ``routes_itself`` the no-forward metadata (``call_metadata``)."""
    if tls is not None:
        channel = grpc.secure_channel(endpoint, tls.channel_credentials(), options=tls.channel_options())
    else:
        channel = grpc.insecure_channel(endpoint)
    metadata = call_metadata(token, routes_itself)
    if metadata:
        channel = grpc.intercept_channel(channel, _MetadataInterceptor(metadata))
    return channel


class Channels:
    """One channel per node, made on first use and closed together. Nodes learnt from leader
    hints (not configured) get at most ``discovered_max`` kept channels. ``write``: the
    channels of a write client, which, given more than one distinct endpoint, routes by itself
    (every call carries the no-forward metadata); given one (a Service, a port-forward, a load
    balancer), the nodes forward each write to its leader."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: Optional[TlsConfig] = None,
        token: Optional[str] = None,
        discovered_max: int = 16,
        write: bool = False,
    ):
        self.tls = tls
        self.endpoints = list(dict.fromkeys(normalize_endpoint(e, tls is not None) for e in endpoints))
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        authorization_metadata(token)  # validates it now, not on the first call
        self._token = token
        #: Whether calls ask the nodes not to forward (the client follows leader hints).
        self.routes_itself = write and len(self.endpoints) > 1
        self._discovered_max = discovered_max
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = make_channel(endpoint, self.tls, self._token, self.routes_itself)
                if len(self._channels) < len(self.endpoints) + self._discovered_max:
                    self._channels[endpoint] = channel
            return channel

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
