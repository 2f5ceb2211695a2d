package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.Test;

public class OptionsTest {
  @Test
  public void endpointsAreNormalized() {
    assertEquals("127.0.0.1:50051", Channels.normalizeEndpoint("127.0.0.1:50051", false));
    assertEquals("127.0.0.1:50051", Channels.normalizeEndpoint(" http://127.0.0.1:50051/ ", false));
    assertEquals("wallet.test:443", Channels.normalizeEndpoint("https://wallet.test:443", true));
    assertEquals("wallet.test:443", Channels.normalizeEndpoint("wallet.test:443", true));
    for (String[] bad : new String[][] {{"http://h:1", "tls"}, {"https://h:1", ""},
        {"h", ""}, {"h:", ""}, {":1", ""}, {"h:x", ""}, {"grpc://h:1", ""}, {"h:1/path", ""}}) {
      try {
        Channels.normalizeEndpoint(bad[0], !bad[1].isEmpty());
        fail(bad[0] + " was accepted");
      } catch (IllegalArgumentException expected) {
        // ok
      }
    }
  }

  @Test
  public void tokensBecomeBearerHeaders() {
    assertEquals("Bearer abc", Channels.authorizationValue(" abc "));
    assertNull(Channels.authorizationValue(null));
    for (String bad : new String[] {"", "a b", "tok\u00e9"}) {
      try {
        Channels.authorizationValue(bad);
        fail(bad + " was accepted");
      } catch (IllegalArgumentException expected) {
        // ok
      }
    }
  }

  @Test
  public void transferBuilder() {
    Transfer t = Transfer.builder().from("a").to("b").amount("1.00").currency("USD").build();
    assertTrue(t.transactionId().matches("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
    assertEquals("a", t.toRequest().getFromAccount());
    assertEquals("1.00", t.toRequest().getAmount());
    Transfer same = t.toBuilder().build();
    assertEquals(t, same);
    assertNotEquals(t.transactionId(), Transfer.builder().from("a").to("b").amount("1").currency("USD").build().transactionId());
    try {
      Transfer.builder().from("a").amount("1").currency("USD").build();
      fail("a transfer without a target was built");
    } catch (NullPointerException expected) {
      // ok
    }
  }

  @Test
  public void tlsConfigNeedsCaAndKeyPairs() {
    byte[] pem = "-----BEGIN CERTIFICATE-----\n".getBytes(StandardCharsets.US_ASCII);
    try {
      TlsConfig.builder().build();
      fail();
    } catch (IllegalArgumentException expected) {
      // ok
    }
    try {
      TlsConfig.builder().caPem(pem).clientCertificatePem(pem, "-----BEGIN EC PRIVATE KEY-----".getBytes(StandardCharsets.US_ASCII)).build();
      fail("a SEC1 key was accepted");
    } catch (IllegalArgumentException expected) {
      assertTrue(expected.getMessage().contains("PKCS#8"));
    }
    TlsConfig tls = TlsConfig.builder().caPem(pem).serverName("wallet.test").build();
    assertEquals("wallet.test", tls.serverName().get());
    try {
      WalletClient.builder().endpoints("http://127.0.0.1:1").tls(tls).build();
      fail("http:// with TLS was accepted");
    } catch (IllegalArgumentException expected) {
      // ok (refused before any certificate is parsed)
    }
  }

  @Test
  public void clientsNeedEndpoints() {
    try {
      WalletClient.builder().endpoints(List.of()).build();
      fail();
    } catch (IllegalArgumentException expected) {
      // ok
    }
    try (WalletClient wallet = WalletClient.builder().endpoints("127.0.0.1:1", "http://127.0.0.1:1", "127.0.0.1:2").build()) {
      assertEquals(List.of("127.0.0.1:1", "127.0.0.1:2"), wallet.endpoints());
    }
  }
}
