//! Identifier validation for the edge: account ids and transaction ids.

/// Maximum account id length in bytes.
pub const ACCOUNT_ID_BYTES_MAX: usize = 256;

/// 1..=256 bytes of UTF-8; rejects empty, too long, and any char that is whitespace or control (char::is_whitespace || char::is_control).
///
/// Whitespace and control characters are refused because they make ids that look equal
/// on screen (or in logs) differ in bytes; the ledger compares ids byte for byte.
pub fn validate_account_id(account_id: &str) -> Result<(), IdError> {
    if account_id.is_empty() {
        return Err(IdError::Empty);
    }
    if account_id.len() > ACCOUNT_ID_BYTES_MAX {
        return Err(IdError::TooLong);
    }
    if account_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(IdError::InvalidCharacter);
    }
    Ok(())
}

/// Only the canonical 36-char hyphenated form (lowercase or uppercase hex), not nil (all zeros). Returns the Uuid.
///
/// The uuid crate alone also accepts the simple, braced and URN forms; those are refused
/// so that one transaction has exactly one spelling modulo hex case (the ledger keys by
/// the parsed value, so case never matters).
pub fn parse_transaction_id(text: &str) -> Result<uuid::Uuid, IdError> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return Err(IdError::NotUuid);
    }
    let is_canonical = bytes
        .iter()
        .enumerate()
        .all(|(position, byte)| match position {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        });
    if !is_canonical {
        return Err(IdError::NotUuid);
    }
    let transaction_id = uuid::Uuid::try_parse_ascii(bytes).map_err(|_| IdError::NotUuid)?;
    if transaction_id.is_nil() {
        return Err(IdError::NilUuid);
    }
    Ok(transaction_id)
}

/// Why an account id or transaction id from the edge was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The account id is empty.
    #[error("account id is empty")]
    Empty,
    /// The account id is longer than [`ACCOUNT_ID_BYTES_MAX`] bytes.
    #[error("account id is longer than {ACCOUNT_ID_BYTES_MAX} bytes")]
    TooLong,
    /// The account id contains whitespace or a control character.
    #[error("account id contains whitespace or a control character")]
    InvalidCharacter,
    /// The transaction id is not a canonical hyphenated UUID.
    #[error("transaction id is not a UUID in the 8-4-4-4-12 hyphenated hex form")]
    NotUuid,
    /// The transaction id is the nil UUID.
    #[error("transaction id must not be the nil UUID")]
    NilUuid,
}

impl IdError {
    /// "INVALID_ACCOUNT_ID" for Empty/TooLong/InvalidCharacter and "INVALID_TRANSACTION_ID" for NotUuid/NilUuid.
    pub fn reason(&self) -> &'static str {
        match self {
            IdError::Empty | IdError::TooLong | IdError::InvalidCharacter => "INVALID_ACCOUNT_ID",
            IdError::NotUuid | IdError::NilUuid => "INVALID_TRANSACTION_ID",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_account(account_id: &str, expected: Result<(), IdError>) {
        assert_eq!(
            validate_account_id(account_id),
            expected,
            "validate_account_id({account_id:?})"
        );
    }

    #[track_caller]
    fn check_transaction(text: &str, expected: Result<u128, IdError>) {
        let parsed = parse_transaction_id(text).map(|id| id.as_u128());
        assert_eq!(parsed, expected, "parse_transaction_id({text:?})");
    }

    #[test]
    fn account_id_table() {
        use IdError::*;
        check_account("alice", Ok(()));
        check_account("a", Ok(()));
        check_account("acct:alice/eur-1", Ok(()));
        check_account("zoë", Ok(()));
        check_account("账户", Ok(()));
        check_account(&"a".repeat(ACCOUNT_ID_BYTES_MAX), Ok(()));
        check_account(&"é".repeat(ACCOUNT_ID_BYTES_MAX / 2), Ok(())); // 256 bytes, 128 chars
        check_account("", Err(Empty));
        check_account(&"a".repeat(ACCOUNT_ID_BYTES_MAX + 1), Err(TooLong));
        check_account(&"é".repeat(ACCOUNT_ID_BYTES_MAX / 2 + 1), Err(TooLong)); // bytes, not chars
        check_account(" alice", Err(InvalidCharacter));
        check_account("alice ", Err(InvalidCharacter));
        check_account("al ice", Err(InvalidCharacter));
        check_account("al\tice", Err(InvalidCharacter));
        check_account("alice\n", Err(InvalidCharacter));
        check_account("al\u{0}ice", Err(InvalidCharacter));
        check_account("al\u{7f}ice", Err(InvalidCharacter));
        check_account("al\u{85}ice", Err(InvalidCharacter)); // NEL: C1 control
        check_account("al\u{a0}ice", Err(InvalidCharacter)); // no-break space
        check_account("al\u{3000}ice", Err(InvalidCharacter)); // ideographic space
        check_account("al\u{2028}ice", Err(InvalidCharacter)); // line separator
    }

    #[test]
    fn transaction_id_table() {
        use IdError::*;
        let value = 0x6ba7b810_9dad_11d1_80b4_00c04fd430c8_u128;
        check_transaction("6ba7b810-9dad-11d1-80b4-00c04fd430c8", Ok(value));
        check_transaction("6BA7B810-9DAD-11D1-80B4-00C04FD430C8", Ok(value));
        check_transaction("00000000-0000-0000-0000-000000000001", Ok(1));
        check_transaction("ffffffff-ffff-ffff-ffff-ffffffffffff", Ok(u128::MAX));
        check_transaction("", Err(NotUuid));
        check_transaction("00000000-0000-0000-0000-000000000000", Err(NilUuid));
        check_transaction("6ba7b8109dad11d180b400c04fd430c8", Err(NotUuid));
        check_transaction("{6ba7b810-9dad-11d1-80b4-00c04fd430c8}", Err(NotUuid));
        check_transaction(
            "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            Err(NotUuid),
        );
        check_transaction(" 6ba7b810-9dad-11d1-80b4-00c04fd430c8", Err(NotUuid));
        check_transaction("6ba7b810-9dad-11d1-80b4-00c04fd430c", Err(NotUuid));
        check_transaction("6ba7b810-9dad-11d1-80b4-00c04fd430c8a", Err(NotUuid));
        check_transaction("6ba7b810-9dad-11d1-80b4-00c04fd430cg", Err(NotUuid));
        check_transaction("6ba7b8109-dad-11d1-80b4-00c04fd430c8", Err(NotUuid));
        check_transaction("6ba7b810-9dad-11d1-80b4_00c04fd430c8", Err(NotUuid));
        check_transaction("6ba7b810-9dad-11d1-80b4-00c04fd430c８", Err(NotUuid));
        check_transaction("+ba7b810-9dad-11d1-80b4-00c04fd430c8", Err(NotUuid));
    }

    #[test]
    fn reasons_are_stable() {
        assert_eq!(IdError::Empty.reason(), "INVALID_ACCOUNT_ID");
        assert_eq!(IdError::TooLong.reason(), "INVALID_ACCOUNT_ID");
        assert_eq!(IdError::InvalidCharacter.reason(), "INVALID_ACCOUNT_ID");
        assert_eq!(IdError::NotUuid.reason(), "INVALID_TRANSACTION_ID");
        assert_eq!(IdError::NilUuid.reason(), "INVALID_TRANSACTION_ID");
    }
}
