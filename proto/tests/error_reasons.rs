//! `wallet.v1.ErrorReason` is the one list of error reasons: every reason the nodes can answer
//! with is in it, and nothing else is. The nodes name their reasons as string literals in
//! their sources (ledger, security, proto's guard, both nodes); this test reads those sources
//! and the README's error table and compares them with the enum.

use std::collections::BTreeSet;
use std::path::Path;

use proto::v1::ErrorReason;

const PREFIX: &str = "ERROR_REASON_";

/// Reasons kept in the enum for clients of older nodes, which answer with them; no node of
/// this release does.
const RETIRED: [&str; 1] = ["LEGS_SPAN_PARTITIONS"];

/// The reasons the enum lists, without the prefix.
fn enum_reasons() -> BTreeSet<String> {
    (1..)
        .map_while(|value| ErrorReason::try_from(value).ok())
        .map(|reason| {
            let name = reason.as_str_name();
            assert!(name.starts_with(PREFIX), "{name}");
            name[PREFIX.len()..].to_owned()
        })
        .collect()
}

/// Quoted UPPER_SNAKE literals in the `.rs` files under `dir`: reasons, and a few names of
/// environment variables (left out by prefix).
fn literals(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            literals(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            // Every stretch between two quotes (not only odd ones: a quote in a comment or a
            // char literal would shift the parity); a stretch between two strings has spaces.
            for piece in text.split('"').skip(1) {
                let upper_snake = piece.len() > 3
                    && piece.starts_with(|c: char| c.is_ascii_uppercase())
                    && piece
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                // Environment variables, RocksDB's CURRENT file, words in test assertions.
                let not_a_reason = ["WALLET_", "CARGO_", "OUT_DIR", "RUST_"]
                    .iter()
                    .any(|prefix| piece.starts_with(prefix))
                    || ["CURRENT", "ORDINAL", "USDD"].contains(&piece);
                if upper_snake && !not_a_reason {
                    found.insert(piece.to_owned());
                }
            }
        }
    }
}

#[test]
fn the_nodes_answer_with_exactly_the_reasons_the_enum_lists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut used = BTreeSet::new();
    for crate_dir in ["ledger", "security", "proto", "write-node", "read-node"] {
        literals(&root.join(crate_dir).join("src"), &mut used);
    }
    let listed = enum_reasons();
    assert!(listed.len() >= 50, "{listed:?}");
    let unlisted: Vec<_> = used.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "reasons the nodes use that ErrorReason lacks: {unlisted:?}"
    );
    let unused: Vec<_> = listed
        .difference(&used)
        .filter(|reason| !RETIRED.contains(&reason.as_str()))
        .collect();
    assert!(
        unused.is_empty(),
        "ErrorReason values no node uses: {unused:?}"
    );
    let revived: Vec<_> = RETIRED
        .iter()
        .filter(|reason| used.contains(**reason) || !listed.contains(**reason))
        .collect();
    assert!(
        revived.is_empty(),
        "retired reasons a node uses again, or the enum lost: {revived:?}"
    );
}

#[test]
fn the_readme_error_table_names_only_listed_reasons() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let start = readme.find("| code | reasons |").expect("the error table");
    let table = &readme[start..start + readme[start..].find("\n\n").expect("its end")];
    let codes = [
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "ALREADY_EXISTS",
        "UNAVAILABLE",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "DATA_LOSS",
        "PERMISSION_DENIED",
        "UNIMPLEMENTED",
        "UNAUTHENTICATED",
        "DEADLINE_EXCEEDED",
        "INTERNAL",
        "CANCELLED",
    ];
    let listed = enum_reasons();
    for token in table.split('`').skip(1).step_by(2) {
        let upper_snake =
            token.contains('_') && token.chars().all(|c| c.is_ascii_uppercase() || c == '_');
        if upper_snake && !codes.contains(&token) {
            assert!(
                listed.contains(token),
                "README's {token} is not in ErrorReason"
            );
        }
    }
}
