package io.walletledger.client;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import io.walletledger.v1.ErrorReason;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.HashSet;
import java.util.Set;
import org.junit.Test;

/** {@link Reasons} is the generated {@link ErrorReason} enum: nothing more, nothing less. */
public class ReasonsTest {
  /** The SDK's own reasons (no node sends them). */
  static final Set<String> NOT_FROM_THE_ENUM = Set.of("TRANSPORT_ERROR", "DEADLINE_EXCEEDED");

  static Set<String> enumReasons() {
    Set<String> reasons = new HashSet<>();
    for (ErrorReason value : ErrorReason.values()) {
      if (value != ErrorReason.ERROR_REASON_UNSPECIFIED && value != ErrorReason.UNRECOGNIZED) {
        reasons.add(value.name().substring("ERROR_REASON_".length()));
      }
    }
    return reasons;
  }

  @Test
  public void everyReasonConstantIsAnEnumValueAndEveryEnumValueIsExposed() throws Exception {
    Set<String> exposed = new HashSet<>();
    for (Field field : Reasons.class.getFields()) {
      int modifiers = field.getModifiers();
      if (field.getType() != String.class || !Modifier.isStatic(modifiers)
          || field.getName().equals("DOMAIN") || field.getName().startsWith("METADATA_")) {
        continue;
      }
      String value = (String) field.get(null);
      assertEquals("a constant is named after its reason", field.getName(), value);
      if (NOT_FROM_THE_ENUM.contains(value)) {
        assertFalse(value, Reasons.isKnown(value));
        continue;
      }
      assertTrue(value + " is not a value of ErrorReason", enumReasons().contains(value));
      assertEquals(ErrorReason.valueOf("ERROR_REASON_" + value), Reasons.toEnum(value));
      exposed.add(value);
    }
    assertEquals(enumReasons(), exposed);
    assertEquals(enumReasons(), Reasons.ALL);
    assertTrue(Reasons.ALL.size() > 50);
  }

  @Test
  public void theReasonsOfTransferLegs() {
    assertEquals("LEGS_OUT_OF_RANGE", Reasons.LEGS_OUT_OF_RANGE);
    assertEquals("REPEATED_LEG", Reasons.REPEATED_LEG);
    assertEquals("MIXED_CURRENCIES", Reasons.MIXED_CURRENCIES);
    assertEquals("LEGS_SPAN_PARTITIONS", Reasons.LEGS_SPAN_PARTITIONS);
    assertEquals(ErrorReason.ERROR_REASON_LEGS_SPAN_PARTITIONS, Reasons.toEnum(Reasons.LEGS_SPAN_PARTITIONS));
    assertTrue(Reasons.ALL.containsAll(Set.of(Reasons.LEGS_OUT_OF_RANGE, Reasons.REPEATED_LEG,
        Reasons.MIXED_CURRENCIES, Reasons.LEGS_SPAN_PARTITIONS)));
  }

  @Test
  public void ofAndToEnum() {
    assertEquals("INSUFFICIENT_FUNDS", Reasons.of(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS));
    assertEquals(Reasons.INSUFFICIENT_FUNDS, Reasons.of(ErrorReason.ERROR_REASON_INSUFFICIENT_FUNDS));
    assertEquals("", Reasons.of(ErrorReason.ERROR_REASON_UNSPECIFIED));
    assertEquals("", Reasons.of(ErrorReason.UNRECOGNIZED));
    assertEquals(ErrorReason.UNRECOGNIZED, Reasons.toEnum("NOT_A_REASON"));
    assertEquals(ErrorReason.UNRECOGNIZED, Reasons.toEnum(""));
    assertFalse(Reasons.isKnown("UNSPECIFIED"));
    assertTrue(Reasons.isKnown(Reasons.NOT_LEADER));
  }
}
