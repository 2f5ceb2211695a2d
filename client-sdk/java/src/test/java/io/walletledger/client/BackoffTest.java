package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.time.Duration;
import org.junit.Test;

public class BackoffTest {
  static final Duration BASE = Duration.ofMillis(20);
  static final Duration MAX = Duration.ofSeconds(1);

  @Test
  public void ceilingDoublesThenCaps() {
    assertEquals(Duration.ofMillis(20), Backoff.ceiling(0, BASE, MAX));
    assertEquals(Duration.ofMillis(40), Backoff.ceiling(1, BASE, MAX));
    assertEquals(Duration.ofMillis(640), Backoff.ceiling(5, BASE, MAX));
    assertEquals(MAX, Backoff.ceiling(6, BASE, MAX));
    assertEquals(MAX, Backoff.ceiling(Integer.MAX_VALUE, BASE, MAX));
    Duration huge = Duration.ofSeconds(Long.MAX_VALUE / 2);
    Duration hugeMax = Duration.ofSeconds(Long.MAX_VALUE);
    assertEquals(hugeMax, Backoff.ceiling(40, huge, hugeMax));
  }

  @Test
  public void jitterStaysWithinBounds() {
    for (int attempt = 0; attempt < 50; attempt++) {
      for (int i = 0; i < 100; i++) {
        Duration sleep = Backoff.fullJitter(attempt, BASE, MAX);
        assertTrue("attempt " + attempt + ": " + sleep,
            !sleep.isNegative() && sleep.compareTo(Backoff.ceiling(attempt, BASE, MAX)) <= 0);
      }
    }
    assertEquals(Duration.ZERO, Backoff.fullJitter(3, Duration.ZERO, Duration.ZERO));
  }

  @Test
  public void jitterIsSpread() {
    boolean low = false;
    boolean high = false;
    for (int i = 0; i < 200; i++) {
      Duration d = Backoff.fullJitter(10, BASE, MAX);
      low |= d.compareTo(MAX.dividedBy(2)) < 0;
      high |= d.compareTo(MAX.dividedBy(2)) > 0;
    }
    assertTrue(low && high);
  }
}
