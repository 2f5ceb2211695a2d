//! What a client attaches to a transfer beyond the money: its own external reference and
//! bounded key/value metadata. Stored, replicated and returned with the transfer, compared
//! on a retry like every other field; the ledger never decides anything from them.
//!
//! The limits are defined here, once: the edge, the peer handler of credits and `decide`
//! all check them through [`Annotations::check`] (via `TransferCommand::shape`).

use std::collections::BTreeMap;

/// Longest reference, in bytes of UTF-8.
pub const REFERENCE_BYTES_MAX: usize = 128;
/// Most metadata entries on one transfer.
pub const METADATA_ENTRIES_MAX: usize = 16;
/// Longest metadata key, in bytes (`[A-Za-z0-9_.:-]`, at least one).
pub const METADATA_KEY_BYTES_MAX: usize = 64;
/// Longest metadata value, in bytes of UTF-8.
pub const METADATA_VALUE_BYTES_MAX: usize = 512;
/// Most bytes of all keys and values of one transfer together.
pub const METADATA_BYTES_MAX: usize = 4096;

/// A transfer's reference and metadata. A transfer without either carries none at all
/// (`TransferCommand::annotations == None`), so plain transfers cost nothing more and
/// are encoded exactly as before annotations existed (see [`crate::wire`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Annotations {
    /// The client's own reference for the transfer (an order or invoice number); empty for
    /// none. Not unique: the transaction id is the transfer's identity.
    pub reference: String,
    /// Key/value pairs, sorted by key (a key appears once).
    pub metadata: BTreeMap<String, String>,
}

impl Annotations {
    /// The annotations a transfer carries: `None` when there is neither a reference nor
    /// metadata (the one canonical form of "none").
    pub fn boxed(self) -> Option<Box<Annotations>> {
        (!self.is_empty()).then(|| Box::new(self))
    }

    pub fn is_empty(&self) -> bool {
        self.reference.is_empty() && self.metadata.is_empty()
    }

    /// The limits, in one place. Also refuses an empty `Annotations` (only `None` means
    /// none, so that two equal transfers are equal field for field).
    pub fn check(&self) -> Result<(), AnnotationsError> {
        if self.is_empty() {
            return Err(AnnotationsError::InvalidMetadata);
        }
        let printable = |text: &str| !text.chars().any(char::is_control);
        if self.reference.len() > REFERENCE_BYTES_MAX || !printable(&self.reference) {
            return Err(AnnotationsError::InvalidReference);
        }
        if self.metadata.len() > METADATA_ENTRIES_MAX {
            return Err(AnnotationsError::InvalidMetadata);
        }
        let mut bytes = 0;
        for (key, value) in &self.metadata {
            let key_ok = !key.is_empty()
                && key.len() <= METADATA_KEY_BYTES_MAX
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
            if !key_ok || value.len() > METADATA_VALUE_BYTES_MAX || !printable(value) {
                return Err(AnnotationsError::InvalidMetadata);
            }
            bytes += key.len() + value.len();
        }
        if bytes > METADATA_BYTES_MAX {
            return Err(AnnotationsError::InvalidMetadata);
        }
        Ok(())
    }
}

/// Why annotations are refused (`crate::Malformed::InvalidReference` and `InvalidMetadata`
/// carry it to the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationsError {
    /// Longer than [`REFERENCE_BYTES_MAX`], or with control characters.
    InvalidReference,
    /// Over a metadata limit, a key outside its characters, control characters in a value,
    /// or an empty annotation.
    InvalidMetadata,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(reference: &str, metadata: &[(&str, &str)]) -> Annotations {
        Annotations {
            reference: reference.into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn none_is_the_only_form_of_nothing() {
        assert_eq!(Annotations::default().boxed(), None);
        assert_eq!(
            Annotations::default().check(),
            Err(AnnotationsError::InvalidMetadata)
        );
        assert!(with("order-7", &[]).boxed().is_some());
    }

    #[test]
    fn the_limits_hold_at_their_edges() {
        let long = |n: usize| "x".repeat(n);
        assert_eq!(with(&long(REFERENCE_BYTES_MAX), &[]).check(), Ok(()));
        assert_eq!(
            with(&long(REFERENCE_BYTES_MAX + 1), &[]).check(),
            Err(AnnotationsError::InvalidReference)
        );
        assert_eq!(
            with("a\nb", &[]).check(),
            Err(AnnotationsError::InvalidReference)
        );
        let key = long(METADATA_KEY_BYTES_MAX);
        let value = long(METADATA_VALUE_BYTES_MAX);
        assert_eq!(with("", &[(&key, &value)]).check(), Ok(()));
        let key_over = long(METADATA_KEY_BYTES_MAX + 1);
        let value_over = long(METADATA_VALUE_BYTES_MAX + 1);
        for bad in [
            with("", &[(&key_over, "v")]),
            with("", &[("k", &value_over)]),
            with("", &[("", "v")]),
            with("", &[("a b", "v")]),
            with("", &[("k", "tab\there")]),
        ] {
            assert_eq!(
                bad.check(),
                Err(AnnotationsError::InvalidMetadata),
                "{bad:?}"
            );
        }
        let keys: Vec<String> = (0..=METADATA_ENTRIES_MAX)
            .map(|i| format!("k{i}"))
            .collect();
        let many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(with("", &many[..METADATA_ENTRIES_MAX]).check(), Ok(()));
        assert_eq!(
            with("", &many).check(),
            Err(AnnotationsError::InvalidMetadata)
        );
        // Nine values of 500 bytes: each within its limit, together over the total.
        let big = long(500);
        let nine: Vec<(&str, &str)> = keys[..9]
            .iter()
            .map(|k| (k.as_str(), big.as_str()))
            .collect();
        assert_eq!(
            with("", &nine).check(),
            Err(AnnotationsError::InvalidMetadata)
        );
        assert_eq!(with("", &nine[..8]).check(), Ok(()));
        assert_eq!(with("ünïcödé ✓", &[("k", "日本")]).check(), Ok(()));
    }
}
