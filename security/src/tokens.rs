//! Bearer tokens: a node knows them only by their SHA-256 hash, each with a name (for logs)
//! and scopes. A tokens file is TOML:
//!
//! ```toml
//! [[token]]
//! name = "payments-backend"
//! sha256 = "<64 hex digits: sha256 of the token>"
//! scopes = ["transfer", "read"]
//! ```
//!
//! `walletctl token new --name NAME --scopes transfer,read` makes a random token and prints
//! the entry; `printf %s "$TOKEN" | sha256sum` gives the same hash.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::{Context, ensure};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens per file, so a mistaken file (a key dump, say) cannot make every request scan
/// millions of entries.
pub const TOKENS_MAX: usize = 1024;

/// Bytes of a token accepted in a request header; longer ones are rejected unhashed.
pub const TOKEN_BYTES_MAX: usize = 512;

/// Random bytes in a token made by [`generate`] (256 bits).
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// What a token allows. Scopes are independent: `admin` does not imply the others, so a
/// token gets exactly what it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Move money: `Transfer`, `SubmitTransfers`.
    Transfer,
    /// Read balances and transfers: `GetAccount`, `GetTransfer`, every `QueryService` call.
    Read,
    /// Operate the ledger: `OpenAccount` (it can create issuer accounts that go negative,
    /// i.e. mint money) and `ClusterService`.
    Admin,
    /// Follow the committed event log: `EventLogService.Subscribe` (and the cluster status a
    /// read node needs to find the partitions). For read nodes.
    Replicate,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Transfer, Scope::Read, Scope::Admin, Scope::Replicate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Transfer => "transfer",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Replicate => "replicate",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text.trim())
            .with_context(|| {
                format!("unknown scope {text:?}; scopes are transfer, read, admin, replicate")
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One known token. `Debug` shows the name and scopes, never the hash.
#[derive(Clone)]
pub struct TokenEntry {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    sha256: [u8; 32],
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLine {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
}

/// The tokens a node accepts.
#[derive(Clone, Debug)]
pub struct TokenTable {
    entries: Vec<TokenEntry>,
}

impl TokenTable {
    /// Reads a tokens file; errors name the file and the entry, never a hash.
    pub fn load(path: &Path) -> anyhow::Result<TokenTable> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading tokens file {}", path.display()))?;
        TokenTable::parse(&text).with_context(|| format!("tokens file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<TokenTable> {
        let file: TokensFile = toml::from_str(text).context("not a tokens file")?;
        ensure!(
            !file.token.is_empty(),
            "no [[token]] entries: a node with auth on and no tokens would refuse everything"
        );
        ensure!(
            file.token.len() <= TOKENS_MAX,
            "{} tokens; at most {TOKENS_MAX}",
            file.token.len()
        );
        let mut entries = Vec::with_capacity(file.token.len());
        for line in file.token {
            let sha256 = parse_hex32(&line.sha256).with_context(|| {
                format!(
                    "token {:?}: sha256 must be 64 hex digits (the SHA-256 of the token)",
                    line.name
                )
            })?;
            ensure!(
                !line.scopes.is_empty(),
                "token {:?} has no scopes",
                line.name
            );
            ensure!(
                entries
                    .iter()
                    .all(|entry: &TokenEntry| entry.sha256 != sha256),
                "token {:?}: the same token is listed twice",
                line.name
            );
            entries.push(TokenEntry {
                name: line.name,
                scopes: line.scopes.into_iter().collect(),
                sha256,
            });
        }
        Ok(TokenTable { entries })
    }

    /// The entry of `token`, if known. Every entry is compared in constant time and the scan
    /// never stops early, so timing tells nothing about how close a guess was.
    pub fn authenticate(&self, token: &str) -> Option<&TokenEntry> {
        if token.is_empty() || token.len() > TOKEN_BYTES_MAX {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.sha256.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The hex SHA-256 of a token, as a tokens file lists it.
pub fn sha256_hex(token: &str) -> String {
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A new random token: `wlt_` and 64 hex digits (256 bits from the system's secure random
/// source, through rustls' ring provider).
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(format!(
        "wlt_{}",
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    ))
}

/// One tokens-file entry for `token`, ready to append to the file.
pub fn file_entry(name: &str, token: &str, scopes: &[Scope]) -> String {
    let scopes = scopes
        .iter()
        .map(|scope| format!("{:?}", scope.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[token]]\nname = {name:?}\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
        sha256_hex(token)
    )
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_authenticate_with_their_scopes() {
        let token = generate().unwrap();
        assert!(token.starts_with("wlt_") && token.len() == 4 + 64);
        let other = generate().unwrap();
        assert_ne!(token, other);
        let text = format!(
            "{}\n{}",
            file_entry("app", &token, &[Scope::Transfer, Scope::Read]),
            file_entry("ops", &other, &[Scope::Admin])
        );
        assert!(!text.contains(&token), "a tokens file holds hashes only");
        let table = TokenTable::parse(&text).unwrap();
        let entry = table.authenticate(&token).unwrap();
        assert_eq!(entry.name, "app");
        assert_eq!(entry.scopes, BTreeSet::from([Scope::Transfer, Scope::Read]));
        assert_eq!(table.authenticate(&other).unwrap().name, "ops");
        assert!(table.authenticate("wlt_guess").is_none());
        assert!(table.authenticate("").is_none());
        assert!(!format!("{entry:?}").contains(&sha256_hex(&token)));
    }

    #[test]
    fn the_hash_is_plain_sha256() {
        // printf %s test | sha256sum
        assert_eq!(
            sha256_hex("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, expected) in [
            ("", "no [[token]]"),
            (
                "[[token]]\nname='a'\nsha256='00'\nscopes=['read']",
                "64 hex",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=[]",
                "no scopes",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['root']",
                "not a tokens file",
            ),
        ] {
            let error = format!("{:#}", TokenTable::parse(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
