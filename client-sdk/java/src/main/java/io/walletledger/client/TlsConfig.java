package io.walletledger.client;

import io.grpc.netty.GrpcSslContexts;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.OpenSsl;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import javax.net.ssl.SSLException;

/**
 * TLS settings: the CA (PEM) that signs the nodes' certificates, optionally a client
 * certificate and key (PEM) for nodes that require one (mTLS), and a name to verify in the
 * node's certificate (and send as the authority) instead of the host dialled
 * ({@code serverName}). The client key must be PKCS#8 PEM ({@code -----BEGIN PRIVATE KEY-----},
 * what {@code walletctl dev-certs} writes); convert others with
 * {@code openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.pk8.pem}. {@code toString} never
 * shows the key.
 */
public final class TlsConfig {
  private final byte[] caPem;
  private final byte[] clientCertPem;
  private final byte[] clientKeyPem;
  private final String serverName;

  private TlsConfig(Builder b) {
    if (b.caPem == null || b.caPem.length == 0) {
      throw new IllegalArgumentException("TlsConfig: the CA certificate is missing or empty");
    }
    if ((b.clientCertPem == null) != (b.clientKeyPem == null)) {
      throw new IllegalArgumentException(
          "TlsConfig: a client certificate needs its key, and a key its certificate");
    }
    if (b.clientKeyPem != null) {
      String key = new String(b.clientKeyPem, StandardCharsets.US_ASCII);
      if (!key.contains("-----BEGIN PRIVATE KEY-----")) {
        throw new IllegalArgumentException(
            "TlsConfig: the client key must be an unencrypted PKCS#8 PEM key (BEGIN PRIVATE KEY);"
                + " convert it with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8");
      }
    }
    caPem = b.caPem;
    clientCertPem = b.clientCertPem;
    clientKeyPem = b.clientKeyPem;
    serverName = b.serverName;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The name verified in the node's certificate instead of the host dialled, if set. */
  public Optional<String> serverName() {
    return Optional.ofNullable(serverName);
  }

  public boolean hasClientCertificate() {
    return clientCertPem != null;
  }

  /**
   * The Netty/gRPC client SSL context (ALPN h2). gRPC needs ALPN; Debian's netty supports it
   * only through netty-tcnative (OpenSSL), so that is used whenever it loads (see the README
   * for the classpath), else the JDK provider (fine with an upstream netty).
   */
  public SslContext sslContext() {
    SslProvider provider = OpenSsl.isAvailable() ? SslProvider.OPENSSL : SslProvider.JDK;
    try {
      SslContextBuilder builder = GrpcSslContexts.configure(SslContextBuilder.forClient(), provider)
          .trustManager(new ByteArrayInputStream(caPem));
      if (clientCertPem != null) {
        builder.keyManager(
            new ByteArrayInputStream(clientCertPem), new ByteArrayInputStream(clientKeyPem));
      }
      return builder.build();
    } catch (SSLException | IllegalArgumentException e) {
      throw new IllegalArgumentException("TlsConfig: cannot use the certificates: " + e, e);
    } catch (UnsupportedOperationException e) {
      Throwable why = OpenSsl.unavailabilityCause();
      throw new IllegalStateException("TlsConfig: no TLS provider with ALPN (which gRPC needs): "
          + "put netty-tcnative (OpenSSL) on the classpath (client-sdk/java/README.md, TLS);"
          + " tcnative: " + (why == null ? "?" : why.getMessage()), e);
    }
  }

  @Override
  public String toString() {
    return "TlsConfig{clientCertificate=" + hasClientCertificate() + ", serverName=" + serverName
        + "}";
  }

  public static final class Builder {
    private byte[] caPem;
    private byte[] clientCertPem;
    private byte[] clientKeyPem;
    private String serverName;

    /** The CA certificate(s) (PEM) that sign the nodes' certificates. */
    public Builder caFile(Path path) {
      caPem = read(path);
      return this;
    }

    public Builder caPem(byte[] pem) {
      caPem = pem.clone();
      return this;
    }

    /** A client certificate chain and its PKCS#8 key (PEM files), for mTLS. */
    public Builder clientCertificate(Path certFile, Path keyFile) {
      clientCertPem = read(certFile);
      clientKeyPem = read(keyFile);
      return this;
    }

    public Builder clientCertificatePem(byte[] certPem, byte[] keyPem) {
      clientCertPem = certPem.clone();
      clientKeyPem = keyPem.clone();
      return this;
    }

    /**
     * The name to verify in the node's certificate (and to send as {@code :authority}) instead
     * of the host dialled, e.g. when dialling an IP address.
     */
    public Builder serverName(String name) {
      serverName = name == null || name.isEmpty() ? null : name;
      return this;
    }

    /** Same as {@link #serverName(String)}. */
    public Builder authority(String name) {
      return serverName(name);
    }

    public TlsConfig build() {
      return new TlsConfig(this);
    }

    private static byte[] read(Path path) {
      try {
        return Files.readAllBytes(path);
      } catch (IOException e) {
        throw new UncheckedIOException("TlsConfig: cannot read " + path, e);
      }
    }
  }
}
