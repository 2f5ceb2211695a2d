package io.walletledger.client;

import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.NegotiationType;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import io.netty.handler.ssl.SslContext;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * One lazily connecting channel per node, made on first use and closed together: TLS with a
 * {@link TlsConfig}, plain text without; the token's {@code authorization: Bearer <token>} on
 * every call, streams included. Nodes learnt from leader hints (not configured) get at most
 * {@code discoveredMax} kept channels. A write client's channels ({@code write}) given more than
 * one distinct endpoint also carry {@link #NO_FORWARD} on every call: the client routes by
 * itself, following leader hints (a hop fewer); given one endpoint (a Kubernetes Service, a
 * port-forward, a load balancer) they carry nothing and the nodes forward each write.
 */
final class Channels implements AutoCloseable {
  /** The metadata key the nodes read the token from. */
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  /**
   * Request metadata (any value) asking a write node not to forward a write it does not lead to
   * the leader but to answer NOT_LEADER with the leader's address, sent by a client that routes
   * by itself. The one definition is {@code proto::NO_FORWARD_METADATA} in
   * {@code proto/src/lib.rs}.
   */
  static final Metadata.Key<String> NO_FORWARD =
      Metadata.Key.of("wallet-no-forward", Metadata.ASCII_STRING_MARSHALLER);
  /** The value sent with {@link #NO_FORWARD} (any is accepted; the Rust SDK sends the same). */
  static final String NO_FORWARD_VALUE = "sdk";

  private final List<String> endpoints;
  private final TlsConfig tls;
  private final SslContext sslContext;
  private final Metadata headers;
  private final int discoveredMax;
  private final Map<String, ManagedChannel> managed = new LinkedHashMap<>();
  private final Map<String, Channel> channels = new LinkedHashMap<>();
  private final List<ManagedChannel> unkept = new ArrayList<>();
  private boolean closed;

  Channels(List<String> endpoints, TlsConfig tls, String token, int discoveredMax, boolean write) {
    LinkedHashSet<String> normalized = new LinkedHashSet<>();
    for (String e : endpoints) {
      normalized.add(normalizeEndpoint(e, tls != null));
    }
    if (normalized.isEmpty()) {
      throw new IllegalArgumentException("at least one endpoint is required");
    }
    this.endpoints = List.copyOf(normalized);
    this.tls = tls;
    this.sslContext = tls == null ? null : tls.sslContext();
    String value = authorizationValue(token);
    // Given every write node, the client routes by leader hints (a hop fewer); given one
    // address (a Service, a port-forward, a load balancer), the nodes forward.
    boolean routesItself = write && this.endpoints.size() > 1;
    if (value == null && !routesItself) {
      headers = null;
    } else {
      headers = new Metadata();
      if (value != null) {
        headers.put(AUTHORIZATION, value);
      }
      if (routesItself) {
        headers.put(NO_FORWARD, NO_FORWARD_VALUE);
      }
    }
    this.discoveredMax = discoveredMax;
  }

  List<String> endpoints() {
    return endpoints;
  }

  synchronized Channel get(String endpoint) {
    if (closed) {
      throw new IllegalStateException("the client is closed");
    }
    Channel channel = channels.get(endpoint);
    if (channel != null) {
      return channel;
    }
    ManagedChannel raw = build(endpoint);
    channel = headers == null
        ? raw
        : ClientInterceptors.intercept(raw, MetadataUtils.newAttachHeadersInterceptor(headers));
    if (channels.size() < endpoints.size() + discoveredMax || endpoints.contains(endpoint)) {
      managed.put(endpoint, raw);
      channels.put(endpoint, channel);
    } else {
      unkept.add(raw); // closed with the others; rarely more than a few
      if (unkept.size() > 64) {
        unkept.remove(0).shutdown();
      }
    }
    return channel;
  }

  private ManagedChannel build(String endpoint) {
    NettyChannelBuilder builder = NettyChannelBuilder.forTarget(endpoint);
    if (sslContext != null) {
      builder.negotiationType(NegotiationType.TLS).sslContext(sslContext);
      tls.serverName().ifPresent(builder::overrideAuthority);
    } else {
      builder.usePlaintext();
    }
    return builder.build();
  }

  @Override
  public void close() {
    List<ManagedChannel> all;
    synchronized (this) {
      closed = true;
      all = new ArrayList<>(managed.values());
      all.addAll(unkept);
      managed.clear();
      channels.clear();
      unkept.clear();
    }
    for (ManagedChannel c : all) {
      c.shutdownNow();
    }
    for (ManagedChannel c : all) {
      try {
        c.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
  }

  /**
   * {@code "Bearer <token>"}, or null without a token. Rejects what the nodes would refuse: an
   * empty token, whitespace inside it, non-printable ASCII.
   */
  static String authorizationValue(String token) {
    if (token == null) {
      return null;
    }
    String t = token.strip();
    if (t.isEmpty()) {
      throw new IllegalArgumentException("the token is empty");
    }
    for (int i = 0; i < t.length(); i++) {
      char c = t.charAt(i);
      if (c < 0x21 || c > 0x7e) {
        throw new IllegalArgumentException(
            "the token must be printable ASCII without whitespace");
      }
    }
    return "Bearer " + t;
  }

  /**
   * {@code host:port} from {@code host:port}, {@code http://host:port} (plain text only) or
   * {@code https://host:port} (TLS only), so TLS is never silently skipped.
   */
  static String normalizeEndpoint(String endpoint, boolean tls) {
    String trimmed = endpoint.strip();
    while (trimmed.endsWith("/")) {
      trimmed = trimmed.substring(0, trimmed.length() - 1);
    }
    String scheme;
    String rest;
    int sep = trimmed.indexOf("://");
    if (sep < 0) {
      scheme = tls ? "https" : "http";
      rest = trimmed;
    } else {
      scheme = trimmed.substring(0, sep);
      rest = trimmed.substring(sep + 3);
    }
    if (!scheme.equals("http") && !scheme.equals("https")) {
      throw new IllegalArgumentException(
          "endpoint '" + endpoint + "': only http:// and https:// are supported");
    }
    if (scheme.equals("https") && !tls) {
      throw new IllegalArgumentException(
          "endpoint '" + endpoint + "' is https:// but no TLS settings (CA) are configured");
    }
    if (scheme.equals("http") && tls) {
      throw new IllegalArgumentException(
          "endpoint '" + endpoint + "' is http:// but TLS is configured: use host:port or https://");
    }
    int colon = rest.lastIndexOf(':');
    String host = colon < 0 ? "" : rest.substring(0, colon);
    String port = colon < 0 ? "" : rest.substring(colon + 1);
    if (rest.isEmpty() || rest.contains("/") || rest.chars().anyMatch(Character::isWhitespace)
        || host.isEmpty() || port.isEmpty() || !port.chars().allMatch(Character::isDigit)) {
      throw new IllegalArgumentException(
          "endpoint '" + endpoint + "' must be host:port (with an explicit port)");
    }
    return rest;
  }
}
