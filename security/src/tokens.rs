//! Bearer tokens: a node knows them only by their SHA-256 hash, each with a name (for logs)
//! and scopes. A tokens file is TOML:
//!
//! ```toml
//! [[token]]
//! name = "payments-backend"
//! sha256 = "<64 hex digits: sha256 of the token>"
//! scopes = ["transfer", "read"]
//!
//! [[token]]
//! name = "tenant-a"
//! sha256 = "<64 hex digits>"
//! scopes = ["transfer", "read"]
//! # Optional: this token debits, opens and reads only accounts whose id starts with one of
//! # these prefixes (byte for byte), and cannot call methods that are not about one account.
//! account_prefixes = ["tenant-a/"]
//! ```
//!
//! `walletctl token --name NAME --scopes transfer,read [--account-prefix tenant-a/]` makes a
//! random token and prints the entry; `printf %s "$TOKEN" | sha256sum` gives the same hash.
//! Files written before `account_prefixes` existed mean the same as before (unbound tokens).

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

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
    /// Move money out of ordinary accounts (those that cannot go negative): `Transfer`,
    /// `SubmitTransfers`, `TransferBatch`, `TransferLegs`, holds.
    Transfer,
    /// Read balances and transfers: `GetAccount`, `GetTransfer`, every `QueryService` call.
    Read,
    /// Operate the ledger: `OpenAccount` (it can create issuer accounts that go negative,
    /// i.e. mint money) and `ClusterService`.
    Admin,
    /// Follow the committed event log: `EventLogService.Subscribe` (and the cluster status a
    /// read node needs to find the partitions). For read nodes.
    Replicate,
    /// Debit accounts opened with `allow_negative_balance` (issuer accounts: debiting one
    /// mints money) in `Transfer` and `SubmitTransfers`. Independent of `transfer`: a token
    /// with only `issue` can debit issuer accounts and nothing else.
    Issue,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Transfer,
        Scope::Read,
        Scope::Admin,
        Scope::Replicate,
        Scope::Issue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Transfer => "transfer",
            Scope::Read => "read",
            Scope::Admin => "admin",
            Scope::Replicate => "replicate",
            Scope::Issue => "issue",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text.trim())
            .with_context(|| {
                format!(
                    "unknown scope {text:?}; scopes are transfer, issue, read, admin, replicate"
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of an account prefix: an account id is at most 256 bytes (ledger's
/// `ACCOUNT_ID_BYTES_MAX`), so a longer prefix could match nothing.
pub const ACCOUNT_PREFIX_BYTES_MAX: usize = 256;

/// Prefixes per token.
pub const ACCOUNT_PREFIXES_MAX: usize = 64;

/// One known token. `Debug` shows the name, scopes and prefixes, never the hash.
#[derive(Clone)]
pub struct TokenEntry {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// `None`: every account. `Some`: only accounts whose id starts with one of these.
    pub account_prefixes: Option<Arc<[String]>>,
    sha256: [u8; 32],
}

impl TokenEntry {
    /// Whether this token may touch `account_id` (always, for an unbound token).
    pub fn allows_account(&self, account_id: &str) -> bool {
        allows_account(self.account_prefixes.as_deref(), account_id)
    }
}

/// Whether `account_id` starts with one of `prefixes` (`None`: no binding, every account).
/// Byte-for-byte, as the ledger compares ids.
pub fn allows_account(prefixes: Option<&[String]>, account_id: &str) -> bool {
    prefixes.is_none_or(|prefixes| {
        prefixes
            .iter()
            .any(|prefix| account_id.starts_with(prefix.as_str()))
    })
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("account_prefixes", &self.account_prefixes)
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
    /// Optional (absent in files written before it existed): binds the token to accounts.
    #[serde(default)]
    account_prefixes: Option<Vec<String>>,
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
            let scopes: BTreeSet<Scope> = line.scopes.into_iter().collect();
            let account_prefixes = match line.account_prefixes {
                None => None,
                Some(prefixes) => {
                    check_prefixes(&prefixes, &scopes)
                        .with_context(|| format!("token {:?}: account_prefixes", line.name))?;
                    Some(Arc::from(prefixes))
                }
            };
            entries.push(TokenEntry {
                name: line.name,
                scopes,
                account_prefixes,
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

/// An `account_prefixes` list: 1 to [`ACCOUNT_PREFIXES_MAX`] prefixes, each a possible start
/// of an account id (1 to 256 bytes, no whitespace or control character, as account ids);
/// never on a `replicate` token (the event log carries every account).
fn check_prefixes(prefixes: &[String], scopes: &BTreeSet<Scope>) -> anyhow::Result<()> {
    ensure!(
        !prefixes.is_empty(),
        "an empty list would allow no account; leave account_prefixes out for every account"
    );
    ensure!(
        prefixes.len() <= ACCOUNT_PREFIXES_MAX,
        "{} prefixes; at most {ACCOUNT_PREFIXES_MAX}",
        prefixes.len()
    );
    for prefix in prefixes {
        ensure!(
            !prefix.is_empty(),
            "an empty prefix would allow every account; leave account_prefixes out instead"
        );
        ensure!(
            prefix.len() <= ACCOUNT_PREFIX_BYTES_MAX,
            "a prefix is longer than {ACCOUNT_PREFIX_BYTES_MAX} bytes (no account id is)"
        );
        ensure!(
            !prefix.chars().any(|c| c.is_whitespace() || c.is_control()),
            "prefix {prefix:?} holds whitespace or a control character, which no account id does"
        );
    }
    ensure!(
        !scopes.contains(&Scope::Replicate),
        "a token with scope replicate follows the whole event log (every account): it cannot \
         be bound to account prefixes"
    );
    Ok(())
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
    file_entry_bound(name, token, scopes, &[])
}

/// [`file_entry`] with `account_prefixes` (none: an unbound token, no such line).
pub fn file_entry_bound(
    name: &str,
    token: &str,
    scopes: &[Scope],
    account_prefixes: &[String],
) -> String {
    let scopes = scopes
        .iter()
        .map(|scope| toml_string(scope.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut entry = format!(
        "[[token]]\nname = {}\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
        toml_string(name),
        sha256_hex(token)
    );
    if !account_prefixes.is_empty() {
        let prefixes = account_prefixes
            .iter()
            .map(|prefix| toml_string(prefix))
            .collect::<Vec<_>>()
            .join(", ");
        entry.push_str(&format!("account_prefixes = [{prefixes}]\n"));
    }
    entry
}

/// A TOML basic string holding exactly `text` (TOML's escapes, not Rust's `{:?}`).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
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
    fn account_prefixes_are_optional_and_bind_a_token() {
        let (bound, free, minter) = (
            generate().unwrap(),
            generate().unwrap(),
            generate().unwrap(),
        );
        let text = [
            file_entry_bound(
                "tenant-a",
                &bound,
                &[Scope::Transfer, Scope::Read],
                &["tenant-a/".into(), r#"shared-"q"\"#.into()],
            ),
            // The format of files written before prefixes existed: still unbound.
            file_entry("ops", &free, &[Scope::Admin]),
            file_entry("mint", &minter, &[Scope::Issue]),
        ]
        .join("\n");
        assert!(text.contains("account_prefixes = ["), "{text}");
        let table = TokenTable::parse(&text).unwrap();
        let entry = table.authenticate(&bound).unwrap();
        assert_eq!(
            entry.account_prefixes.as_deref(),
            Some(&["tenant-a/".to_owned(), r#"shared-"q"\"#.to_owned()][..])
        );
        assert!(entry.allows_account("tenant-a/alice"));
        assert!(entry.allows_account(r#"shared-"q"\x"#));
        assert!(!entry.allows_account("tenant-b/alice"));
        assert!(
            !entry.allows_account("tenant-a"),
            "a prefix matches byte for byte"
        );
        assert!(!entry.allows_account("TENANT-A/alice"));
        let ops = table.authenticate(&free).unwrap();
        assert!(ops.account_prefixes.is_none() && ops.allows_account("anything"));
        assert_eq!(
            table.authenticate(&minter).unwrap().scopes,
            BTreeSet::from([Scope::Issue])
        );
        // Hand-written, as an operator would.
        let table = TokenTable::parse(
            "[[token]]\nname='t'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['transfer','issue']\naccount_prefixes=['t/']",
        )
        .unwrap();
        let entry = table.authenticate("test").unwrap();
        assert!(entry.allows_account("t/x") && !entry.allows_account("u/x"));
        assert!(format!("{entry:?}").contains("t/"));
    }

    #[test]
    fn scopes_parse_by_name() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
        }
        assert_eq!(Scope::parse(" issue ").unwrap(), Scope::Issue);
        assert!(format!("{:#}", Scope::parse("mint").unwrap_err()).contains("issue"));
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
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['read']\naccount_prefixes=[]",
                "an empty list would allow no account",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['read']\naccount_prefixes=['']",
                "an empty prefix would allow every account",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['read']\naccount_prefixes=['a b']",
                "whitespace",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['replicate']\naccount_prefixes=['a/']",
                "cannot be bound",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['read']\naccount_prefixes='a/'",
                "not a tokens file",
            ),
            (
                "[[token]]\nname='a'\nsha256='9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'\nscopes=['read']\naccount_prefix=['a/']",
                "not a tokens file",
            ),
        ] {
            let error = format!("{:#}", TokenTable::parse(text).unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
