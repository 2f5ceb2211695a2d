//! Currencies and amounts: parsing decimal strings from the edge into integer minor
//! units, and formatting minor units back for humans.
//!
//! Money never exists as a float anywhere in the ledger; amounts are `i64` minor units
//! on the wire and `i128` minor units in balances (so that sums can never overflow in
//! practice).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Largest transfer amount in minor units: 10^15 (10 trillion USD). Documented maximum.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;

/// Longest amount text [`parse_amount`] looks at. Anything valid is far shorter (at most
/// 16 integer digits plus a handful of fraction digits), so the cap only bounds the work
/// done on hostile input.
pub const AMOUNT_TEXT_BYTES_MAX: usize = 64;

/// An ISO 4217 currency that has minor units (from the iso_currency crate's table, not hand-typed).
///
/// Serialized as its three-letter code; deserialization goes through [`Currency::parse`],
/// so a `Currency` with an inconsistent `minor_units` can never be constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    // Field order matters: the derived `Ord` sorts by code first, which is what
    // `Ledger::totals_by_currency` promises.
    code: [u8; 3],
    minor_units: u8,
}

impl Currency {
    /// Exact uppercase alphabetic code, e.g. "USD". Unknown codes, lowercase, codes without minor units (XAU, XXX...) -> MoneyError::UnknownCurrency.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        // iso_currency's lookup is already exact-match, but checking the shape here keeps
        // the accepted language obvious and independent of that crate's internals.
        let Ok(code_bytes) = <[u8; 3]>::try_from(bytes) else {
            return Err(MoneyError::UnknownCurrency);
        };
        if !code_bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::UnknownCurrency);
        }
        let iso = iso_currency::Currency::from_code(code).ok_or(MoneyError::UnknownCurrency)?;
        // `exponent()` is `None` for precious metals, SDR-like units and "no currency":
        // they have no minor unit, so no amount in them can be expressed here.
        let exponent = iso.exponent().ok_or(MoneyError::UnknownCurrency)?;
        let minor_units = u8::try_from(exponent).map_err(|_| MoneyError::UnknownCurrency)?;
        // format_minor/parse_amount compute 10^minor_units in i128/i64; the ISO table's
        // largest exponent is 4, so anything above 18 would be a corrupt table.
        assert!(
            minor_units <= 18,
            "ISO 4217 exponent {minor_units} for {code} is implausible"
        );
        Ok(Currency {
            code: code_bytes,
            minor_units,
        })
    }

    /// The three-letter uppercase ISO 4217 code, e.g. "USD".
    pub fn code(&self) -> &str {
        // Only `parse` constructs a Currency, and it admits ASCII uppercase only.
        std::str::from_utf8(&self.code).expect("currency code is ASCII by construction")
    }

    /// Number of fraction digits of the major unit: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn minor_units(&self) -> u32 {
        u32::from(self.minor_units)
    }

    /// 10^minor_units: how many minor units make one major unit.
    fn minor_per_major(&self) -> i128 {
        10_i128.pow(self.minor_units())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Currency, MoneyError> {
        Currency::parse(code)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        struct CodeVisitor;

        impl serde::de::Visitor<'_> for CodeVisitor {
            type Value = Currency;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 4217 currency code with minor units, e.g. \"USD\"")
            }

            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Currency, E> {
                Currency::parse(code)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(code), &self))
            }
        }

        deserializer.deserialize_str(CodeVisitor)
    }
}

/// [`parse_amount`] for an amount that may be zero (an overdraft limit): a well-formed zero
/// ("0", "0.00") is 0, everything else as `parse_amount` answers it.
pub fn parse_non_negative_amount(text: &str, currency: Currency) -> Result<i64, MoneyError> {
    match parse_amount(text, currency) {
        Err(MoneyError::NotPositive) => Ok(0),
        parsed => parsed,
    }
}

/// Parses a decimal string in major units into minor units. Grammar: ^[0-9]+(\.[0-9]+)?$ (ASCII digits only; no sign, no exponent, no whitespace anywhere, no leading '.', no trailing '.', no '_', not NaN/inf). Use rust_decimal for exactness. Trailing zeros beyond the minor units are accepted only if no rounding would be needed ("1.50" and "1.500" USD ok; "1.005" USD rejected TooPrecise; "1.5" JPY rejected; "1.0" JPY ok). Zero -> NotPositive. More than AMOUNT_MINOR_MAX minor units -> TooLarge (also for absurdly long digit strings: never panic or overflow; cap input length at 64 bytes -> TooLarge or Malformed).
///
/// Checks run in this order, so each input has exactly one error:
/// `Empty` → `Malformed` (grammar) → `TooLarge` (longer than [`AMOUNT_TEXT_BYTES_MAX`])
/// → `NotPositive` → `TooPrecise` → `TooLarge` (value).
pub fn parse_amount(text: &str, currency: Currency) -> Result<i64, MoneyError> {
    if text.is_empty() {
        return Err(MoneyError::Empty);
    }
    // The grammar is checked by hand rather than left to a decimal parser because every
    // general-purpose parser accepts more than we want (signs, exponents, '_', spaces).
    let (integer_digits, fraction_digits) = match text.split_once('.') {
        Some((integer_digits, fraction_digits)) => (integer_digits, Some(fraction_digits)),
        None => (text, None),
    };
    let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(integer_digits) || !fraction_digits.is_none_or(is_digits) {
        return Err(MoneyError::Malformed);
    }
    // Grammatical but absurdly long: the only ways to get here are a huge value or
    // a wall of redundant zeros; both are refused without further work.
    if text.len() > AMOUNT_TEXT_BYTES_MAX {
        return Err(MoneyError::TooLarge);
    }

    // Leading zeros of the integer part and trailing zeros of the fraction do not change
    // the value; dropping them keeps the string within rust_decimal's 28-digit precision.
    let integer_significant = integer_digits.trim_start_matches('0');
    let fraction_significant = fraction_digits.unwrap_or("").trim_end_matches('0');
    if integer_significant.is_empty() && fraction_significant.is_empty() {
        return Err(MoneyError::NotPositive);
    }
    let minor_units = currency.minor_units();
    if fraction_significant.len() > minor_units as usize {
        return Err(MoneyError::TooPrecise { minor_units });
    }
    // AMOUNT_MINOR_MAX has 16 digits, so an integer part with more than 16 significant
    // digits is too large in every currency (minor_units >= 0); this also keeps the
    // decimal conversion below comfortably inside its 96-bit mantissa.
    if integer_significant.len() > 16 {
        return Err(MoneyError::TooLarge);
    }

    let integer_normalized = if integer_significant.is_empty() {
        "0"
    } else {
        integer_significant
    };
    let normalized = if fraction_significant.is_empty() {
        integer_normalized.to_owned()
    } else {
        format!("{integer_normalized}.{fraction_significant}")
    };
    // Cannot fail: at most 16 + 18 digits of validated ASCII, well inside the type.
    let mut amount =
        Decimal::from_str_exact(&normalized).expect("normalized amount fits rust_decimal");
    // Exact: the scale only grows (fraction digits <= minor_units), which pads zeros.
    amount.rescale(minor_units);
    assert_eq!(
        amount.scale(),
        minor_units,
        "rescale to a larger scale is exact"
    );
    let amount_minor = amount.mantissa();
    if amount_minor > i128::from(AMOUNT_MINOR_MAX) {
        return Err(MoneyError::TooLarge);
    }
    assert!(amount_minor > 0, "non-zero digits give a positive amount");
    Ok(i64::try_from(amount_minor).expect("bounded by AMOUNT_MINOR_MAX"))
}

/// Formats minor units as a decimal string with exactly `minor_units` fraction digits: (-1230, USD) -> "-12.30"; (5, JPY) -> "5"; (1, KWD) -> "0.001"; (-5, USD) -> "-0.05".
pub fn format_minor(amount_minor: i128, currency: Currency) -> String {
    // unsigned_abs so that i128::MIN formats instead of overflowing.
    let magnitude = amount_minor.unsigned_abs();
    let minor_per_major = currency.minor_per_major().unsigned_abs();
    let sign = if amount_minor < 0 { "-" } else { "" };
    let major = magnitude / minor_per_major;
    let minor = magnitude % minor_per_major;
    match currency.minor_units() {
        0 => format!("{sign}{major}"),
        width => format!("{sign}{major}.{minor:0width$}", width = width as usize),
    }
}

/// Why an amount or currency from the edge was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The amount text is empty.
    #[error("amount is empty")]
    Empty,
    /// The amount text is not plain decimal digits with an optional '.' and fraction.
    #[error("amount must be plain decimal digits with an optional fraction, like \"12.50\"")]
    Malformed,
    /// The amount is zero.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// The amount has more fraction digits than the currency's minor units.
    #[error("amount has more than {minor_units} fraction digits for this currency")]
    TooPrecise {
        /// Fraction digits the currency allows.
        minor_units: u32,
    },
    /// The amount exceeds [`AMOUNT_MINOR_MAX`] minor units.
    #[error("amount exceeds the maximum of {AMOUNT_MINOR_MAX} minor units")]
    TooLarge,
    /// Not an uppercase ISO 4217 code of a currency with minor units.
    #[error("currency is not an uppercase ISO 4217 code of a currency with minor units")]
    UnknownCurrency,
}

impl MoneyError {
    /// Stable reason: "INVALID_AMOUNT" for Empty/Malformed/NotPositive/TooPrecise/TooLarge; "UNKNOWN_CURRENCY" for UnknownCurrency.
    pub fn reason(&self) -> &'static str {
        match self {
            MoneyError::Empty
            | MoneyError::Malformed
            | MoneyError::NotPositive
            | MoneyError::TooPrecise { .. }
            | MoneyError::TooLarge => "INVALID_AMOUNT",
            MoneyError::UnknownCurrency => "UNKNOWN_CURRENCY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn currency(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    /// One parse case per line: `check(text, currency, expected)`.
    #[track_caller]
    fn check(text: &str, code: &str, expected: Result<i64, MoneyError>) {
        assert_eq!(
            parse_amount(text, currency(code)),
            expected,
            "parse_amount({text:?}, {code})"
        );
    }

    #[test]
    fn parse_amount_table() {
        use MoneyError::*;
        // Valid, across 0, 2 and 3 minor units.
        check("1", "USD", Ok(100));
        check("1.5", "USD", Ok(150));
        check("1.50", "USD", Ok(150));
        check("1.500", "USD", Ok(150));
        check("0.01", "USD", Ok(1));
        check("007.10", "EUR", Ok(710));
        check("12.34", "EUR", Ok(1234));
        check("5", "JPY", Ok(5));
        check("1.0", "JPY", Ok(1));
        check("1.000", "JPY", Ok(1));
        check("0.001", "KWD", Ok(1));
        check("1.234", "BHD", Ok(1234));
        check("1.2340", "KWD", Ok(1234));
        check("10000000000000", "USD", Ok(AMOUNT_MINOR_MAX));
        check("9999999999999.99", "USD", Ok(AMOUNT_MINOR_MAX - 1));
        check("1000000000000000", "JPY", Ok(AMOUNT_MINOR_MAX));
        check("1000000000000.000", "KWD", Ok(AMOUNT_MINOR_MAX));
        check(
            "0000000000000000000000000000000000000000000000000000000000000001",
            "USD",
            Ok(100),
        );
        check(
            "1.000000000000000000000000000000000000000000000000000000000000",
            "USD",
            Ok(100),
        );
        // Empty and malformed.
        check("", "USD", Err(Empty));
        check("-1", "USD", Err(Malformed));
        check("+1", "USD", Err(Malformed));
        check("1e3", "USD", Err(Malformed));
        check("1E3", "USD", Err(Malformed));
        check("NaN", "USD", Err(Malformed));
        check("inf", "USD", Err(Malformed));
        check(" 1", "USD", Err(Malformed));
        check("1 ", "USD", Err(Malformed));
        check("1 000", "USD", Err(Malformed));
        check("1\n", "USD", Err(Malformed));
        check("1.", "USD", Err(Malformed));
        check(".5", "USD", Err(Malformed));
        check(".", "USD", Err(Malformed));
        check("1..5", "USD", Err(Malformed));
        check("1.2.3", "USD", Err(Malformed));
        check("1,50", "EUR", Err(Malformed));
        check("1_000", "USD", Err(Malformed));
        check("0x10", "USD", Err(Malformed));
        check("\u{ff11}", "USD", Err(Malformed)); // fullwidth digit one
        check("\u{0661}", "USD", Err(Malformed)); // Arabic-Indic digit one
        check("1\u{0}", "USD", Err(Malformed));
        // Zero in every spelling.
        check("0", "USD", Err(NotPositive));
        check("0.00", "USD", Err(NotPositive));
        check("000.000000", "KWD", Err(NotPositive));
        // Too precise.
        check("1.005", "USD", Err(TooPrecise { minor_units: 2 }));
        check("0.001", "EUR", Err(TooPrecise { minor_units: 2 }));
        check("1.5", "JPY", Err(TooPrecise { minor_units: 0 }));
        check("0.0001", "KWD", Err(TooPrecise { minor_units: 3 }));
        check("1.2345", "BHD", Err(TooPrecise { minor_units: 3 }));
        // Too large, including hostile lengths.
        check("1000000000000000.01", "USD", Err(TooLarge));
        check("10000000000000.01", "USD", Err(TooLarge));
        check("1000000000000001", "JPY", Err(TooLarge));
        check("1000000000000.001", "KWD", Err(TooLarge));
        check(
            "99999999999999999999999999999999999999999",
            "USD",
            Err(TooLarge),
        );
        check(&"9".repeat(10_000), "USD", Err(TooLarge));
        check(&format!("1.{}", "0".repeat(100)), "USD", Err(TooLarge));
        check(&format!("{}x", "9".repeat(10_000)), "USD", Err(Malformed));
    }

    #[test]
    fn format_minor_table() {
        let cases: &[(i128, &str, &str)] = &[
            (0, "USD", "0.00"),
            (1, "USD", "0.01"),
            (-5, "USD", "-0.05"),
            (-1230, "USD", "-12.30"),
            (123_456, "EUR", "1234.56"),
            (5, "JPY", "5"),
            (-5, "JPY", "-5"),
            (0, "JPY", "0"),
            (1, "KWD", "0.001"),
            (-1001, "BHD", "-1.001"),
            (i128::from(AMOUNT_MINOR_MAX), "USD", "10000000000000.00"),
            (i128::MIN, "JPY", "-170141183460469231731687303715884105728"),
            (i128::MAX, "USD", "1701411834604692317316873037158841057.27"),
        ];
        for &(amount_minor, code, expected) in cases {
            assert_eq!(
                format_minor(amount_minor, currency(code)),
                expected,
                "format_minor({amount_minor}, {code})"
            );
        }
    }

    #[test]
    fn currency_table() {
        let cases: &[(&str, Result<u32, MoneyError>)] = &[
            ("USD", Ok(2)),
            ("EUR", Ok(2)),
            ("JPY", Ok(0)),
            ("KWD", Ok(3)),
            ("BHD", Ok(3)),
            ("CLF", Ok(4)),
            ("usd", Err(MoneyError::UnknownCurrency)),
            ("Usd", Err(MoneyError::UnknownCurrency)),
            ("US", Err(MoneyError::UnknownCurrency)),
            ("USDD", Err(MoneyError::UnknownCurrency)),
            (" USD", Err(MoneyError::UnknownCurrency)),
            ("", Err(MoneyError::UnknownCurrency)),
            ("AAA", Err(MoneyError::UnknownCurrency)),
            ("XAU", Err(MoneyError::UnknownCurrency)),
            ("XXX", Err(MoneyError::UnknownCurrency)),
            ("XDR", Err(MoneyError::UnknownCurrency)),
            ("ＵSD", Err(MoneyError::UnknownCurrency)),
        ];
        for (code, expected) in cases {
            let parsed = Currency::parse(code);
            assert_eq!(
                parsed.as_ref().map(Currency::minor_units),
                expected.as_ref().copied(),
                "{code:?}"
            );
            if let Ok(parsed) = parsed {
                assert_eq!(parsed.code(), *code);
                assert_eq!(parsed.to_string(), *code);
            }
        }
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(MoneyError::Empty.reason(), "INVALID_AMOUNT");
        assert_eq!(MoneyError::Malformed.reason(), "INVALID_AMOUNT");
        assert_eq!(MoneyError::NotPositive.reason(), "INVALID_AMOUNT");
        assert_eq!(
            MoneyError::TooPrecise { minor_units: 2 }.reason(),
            "INVALID_AMOUNT"
        );
        assert_eq!(MoneyError::TooLarge.reason(), "INVALID_AMOUNT");
        assert_eq!(MoneyError::UnknownCurrency.reason(), "UNKNOWN_CURRENCY");
        assert_eq!(
            MoneyError::TooPrecise { minor_units: 2 }.to_string(),
            "amount has more than 2 fraction digits for this currency"
        );
    }

    #[test]
    fn currency_serde_is_the_code() {
        let usd = currency("USD");
        let bytes = postcard::to_allocvec(&usd).unwrap();
        assert_eq!(bytes, b"\x03USD");
        assert_eq!(postcard::from_bytes::<Currency>(&bytes).unwrap(), usd);
        assert!(postcard::from_bytes::<Currency>(b"\x03XAU").is_err());
        assert!(postcard::from_bytes::<Currency>(b"\x03usd").is_err());
    }

    fn currency_strategy() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["USD", "EUR", "JPY", "KWD", "BHD", "CLF"]).prop_map(currency)
    }

    proptest! {
        /// Any positive in-range amount survives format -> parse unchanged.
        #[test]
        fn parse_inverts_format(amount_minor in 1..=AMOUNT_MINOR_MAX, currency in currency_strategy()) {
            let text = format_minor(i128::from(amount_minor), currency);
            prop_assert_eq!(parse_amount(&text, currency), Ok(amount_minor));
        }

        /// Any accepted text formats back to its normal form: same value, exactly
        /// `minor_units` fraction digits, no redundant leading zeros.
        #[test]
        fn format_normalises_parse(
            integer in "[0-9]{1,17}",
            fraction in proptest::option::of("[0-9]{1,6}"),
            currency in currency_strategy(),
        ) {
            let text = match &fraction { Some(fraction) => format!("{integer}.{fraction}"), None => integer.clone() };
            if let Ok(amount_minor) = parse_amount(&text, currency) {
                let formatted = format_minor(i128::from(amount_minor), currency);
                prop_assert_eq!(parse_amount(&formatted, currency), Ok(amount_minor));
                let canonical_integer = integer.trim_start_matches('0');
                let canonical_integer = if canonical_integer.is_empty() { "0" } else { canonical_integer };
                let (formatted_integer, formatted_fraction) = formatted.split_once('.').unwrap_or((formatted.as_str(), ""));
                prop_assert_eq!(formatted_integer, canonical_integer);
                prop_assert_eq!(formatted_fraction.len(), currency.minor_units() as usize);
                let fraction = fraction.unwrap_or_default();
                prop_assert!(formatted_fraction.starts_with(fraction.trim_end_matches('0')));
            }
        }

        /// Arbitrary text never panics, and whatever is accepted is in range.
        #[test]
        fn parse_never_panics(text in "\\PC{0,80}", currency in currency_strategy()) {
            if let Ok(amount_minor) = parse_amount(&text, currency) {
                prop_assert!((1..=AMOUNT_MINOR_MAX).contains(&amount_minor));
            }
        }
    }
}
