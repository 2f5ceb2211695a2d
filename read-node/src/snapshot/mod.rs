//! Projection snapshots between read nodes (`wallet.internal.v1.ReadSnapshotService`): a
//! running read node serves a consistent copy of its projection database ([`serve`]), and a
//! new read node with an empty data directory and `bootstrap_from` installs one instead of
//! folding every partition's event log from genesis ([`fetch`]). See ARCHITECTURE.md, "Read
//! side", bootstrap.
//!
//! The stream (format [`FORMAT_VERSION`]): a header (database format, partition count, the
//! files in sending order with their sizes), then per file its bytes in chunks of at most
//! `limits::SNAPSHOT_CHUNK_BYTES` and its BLAKE3 digest. The receiver checks each file's size
//! and digest as it arrives, and the copy as a whole by opening it (format, partition count,
//! checkpoint) before it renames it into place.

pub mod fetch;
pub mod serve;

/// The stream format both ends speak; a request for another is FAILED_PRECONDITION.
pub const FORMAT_VERSION: u32 = 1;

/// A file's BLAKE3 digest.
pub type Digest = [u8; 32];

/// Whether `name` is a file name a snapshot may carry: a plain name within the database
/// directory, as RocksDB names its files (`000012.sst`, `MANIFEST-000005`, `OPTIONS-000007`,
/// `CURRENT`), never a path or `..`.
pub fn is_plain_file_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_accepted() {
        for good in [
            "CURRENT",
            "000012.sst",
            "MANIFEST-000005",
            "OPTIONS-000007",
            "a_b",
        ] {
            assert!(is_plain_file_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "x y",
            "é",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
        assert!(!is_plain_file_name(&"a".repeat(256)));
    }
}
