//! The account table: a flat, paged hash table of fixed-size account records, with the ids
//! stored inline in each page.
//!
//! Layout. An account is one 32-byte [`Slot`] (balance, currency, flags, where its id sits)
//! plus one tag byte, in a page of open-addressing slots; its id's bytes sit in the same
//! page's id area, end to end. A page is found through a directory indexed by the top bits of
//! the id's hash (extendible hashing): a full page splits in two by one more bit of the hash,
//! moving only its own accounts, so no insert ever rehashes the table (the work of a split is
//! bounded by the page, and the directory doubles in O(directory) pointer copies, at most
//! every 2^k pages). Within a page, slots are probed linearly from the hash's low bits; the
//! tag (7 more bits of the hash) rules out almost every non-matching slot without touching
//! it, so a lookup costs the directory entry, one tag line and one slot.
//!
//! Hash. The first 128 bits of BLAKE3 of the id ([`IdHash`]): deterministic on every replica,
//! and an attacker who opens accounts cannot cheaply aim many ids at one page. Even so, the
//! directory only doubles while it is at most [`DIRECTORY_PER_PAGE_MAX`] times the pages the
//! accounts need; a page that cannot split then grows in place, so memory stays proportional
//! to the accounts whatever ids are chosen. Two ids with one hash are both stored (every
//! lookup compares the id itself).
//!
//! Order. Nothing here is iterated where order matters: [`AccountTable::iter`] walks pages in
//! directory order, and every caller that shows or hashes accounts in order sorts them by id
//! (snapshots, audits) or sums order-independent hashes (the digest).
//!
//! Snapshots. Pages and the directory are reference-counted and copied on write: cloning the
//! table costs O(1), and after a clone the first write to a page copies that page (a few
//! KiB), and the first write at all copies the directory and the page list (8 to 12 bytes a
//! page, once per clone).

use std::sync::Arc;

use crate::domain::Account;
use crate::money::Currency;

/// Slots in a new page (a power of two). A page splits once 7/8 of its slots are used.
const PAGE_SLOTS: usize = 256;

/// The directory doubles only while it has at most this many entries per page the accounts
/// need at the split threshold; past that, a full page grows in place instead of splitting.
/// Uniformly spread ids never reach it (the directory then has 1-2 entries per page).
const DIRECTORY_PER_PAGE_MAX: usize = 8;

/// The tag of an empty slot; a used slot's tag has its top bit set.
const EMPTY: u8 = 0;

/// The hash of an account id that places it in the table: the first 128 bits of its BLAKE3
/// hash, as two halves. `high`'s top bits pick the page, its low 7 bits the tag; `low` picks
/// the first slot probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IdHash {
    high: u64,
    low: u64,
}

impl IdHash {
    pub(super) fn of(account_id: &str) -> IdHash {
        let hash = blake3::hash(account_id.as_bytes());
        let bytes = hash.as_bytes();
        IdHash {
            high: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            low: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        }
    }

    /// The whole hash as one number (a key for per-account maps that need no id).
    pub(super) fn key(self) -> u128 {
        (u128::from(self.high) << 64) | u128::from(self.low)
    }

    fn tag(self) -> u8 {
        0x80 | (self.high & 0x7f) as u8
    }

    /// The directory entry for a directory of 2^`depth` entries.
    fn directory_index(self, depth: u8) -> usize {
        if depth == 0 {
            0
        } else {
            (self.high >> (64 - u32::from(depth))) as usize
        }
    }
}

/// An open account as stored: a view of its slot and of its id in the page. Serialized as
/// [`Account`] is; deserialized borrowing the id from the input (a snapshot's accounts load
/// without an allocation each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRef<'a> {
    /// Unique account id.
    #[serde(borrow)]
    pub account_id: &'a str,
    /// The only currency the account holds.
    pub currency: Currency,
    /// Issuer/settlement accounts may go below zero; ordinary accounts may not.
    pub allow_negative_balance: bool,
    /// Balance in minor units.
    pub balance_minor: i128,
}

impl AccountRef<'_> {
    /// The account as an owned value.
    pub fn to_account(self) -> Account {
        Account {
            account_id: self.account_id.to_string(),
            currency: self.currency,
            allow_negative_balance: self.allow_negative_balance,
            balance_minor: self.balance_minor,
            settings: crate::domain::AccountSettings::default(),
        }
    }
}

impl<'a> From<&'a Account> for AccountRef<'a> {
    fn from(account: &'a Account) -> AccountRef<'a> {
        AccountRef {
            account_id: &account.account_id,
            currency: account.currency,
            allow_negative_balance: account.allow_negative_balance,
            balance_minor: account.balance_minor,
        }
    }
}

/// An account's fixed-size record: 32 bytes. The id is `id_len` bytes at `id_at` in the
/// page's id area.
#[derive(Clone, Copy, Debug)]
struct Slot {
    balance_minor: i128,
    id_at: u32,
    id_len: u16,
    currency: Currency,
    allow_negative_balance: bool,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);
const _: () = assert!(std::mem::size_of::<Option<Slot>>() == 32);
// An id's length fits `Slot::id_len`, and a page's id area its `id_at`.
const _: () = assert!(crate::ids::ACCOUNT_ID_BYTES_MAX <= u16::MAX as usize);

/// A page: open-addressing slots with their tags, and the ids of its accounts.
#[derive(Clone, Debug)]
struct Page {
    /// How many top bits of the hash all accounts of this page share.
    depth: u8,
    len: usize,
    /// One per slot: [`EMPTY`], or the tag of the account in it.
    tags: Box<[u8]>,
    slots: Box<[Option<Slot>]>,
    /// The ids of the page's accounts, end to end.
    ids: String,
}

impl Page {
    fn with_capacity(depth: u8, capacity: usize, ids_bytes: usize) -> Page {
        debug_assert!(capacity.is_power_of_two());
        Page {
            depth,
            len: 0,
            tags: vec![EMPTY; capacity].into_boxed_slice(),
            slots: vec![None; capacity].into_boxed_slice(),
            ids: String::with_capacity(ids_bytes),
        }
    }

    fn capacity(&self) -> usize {
        self.tags.len()
    }

    /// Whether one more account would take the page past 7/8 full.
    fn is_full(&self) -> bool {
        (self.len + 1) * 8 > self.capacity() * 7
    }

    fn id<'a>(&'a self, slot: &Slot) -> &'a str {
        let at = slot.id_at as usize;
        &self.ids[at..at + usize::from(slot.id_len)]
    }

    /// The position of the account with this id, if the page holds it.
    fn find(&self, hash: IdHash, account_id: &str) -> Option<usize> {
        let mask = self.capacity() - 1;
        let tag = hash.tag();
        let mut position = hash.low as usize & mask;
        loop {
            // Terminates: a page is never more than 7/8 full, so an empty slot is reached.
            match self.tags[position] {
                EMPTY => return None,
                found if found == tag => {
                    let slot = self.slots[position]
                        .as_ref()
                        .expect("a tagged slot is used");
                    if self.id(slot) == account_id {
                        return Some(position);
                    }
                }
                _ => {}
            }
            position = (position + 1) & mask;
        }
    }

    /// Stores an account the page does not hold and has room for.
    fn insert(&mut self, hash: IdHash, account: AccountRef) {
        debug_assert!(!self.is_full());
        let mask = self.capacity() - 1;
        let mut position = hash.low as usize & mask;
        while self.tags[position] != EMPTY {
            position = (position + 1) & mask;
        }
        let id_at = u32::try_from(self.ids.len()).expect("a page's ids fit 4 GiB");
        self.ids.push_str(account.account_id);
        self.tags[position] = hash.tag();
        self.slots[position] = Some(Slot {
            balance_minor: account.balance_minor,
            id_at,
            id_len: u16::try_from(account.account_id.len()).expect("checked above"),
            currency: account.currency,
            allow_negative_balance: account.allow_negative_balance,
        });
        self.len += 1;
    }

    fn account<'a>(&'a self, slot: &Slot) -> AccountRef<'a> {
        AccountRef {
            account_id: self.id(slot),
            currency: slot.currency,
            allow_negative_balance: slot.allow_negative_balance,
            balance_minor: slot.balance_minor,
        }
    }

    fn accounts(&self) -> impl Iterator<Item = AccountRef<'_>> {
        self.slots.iter().flatten().map(|slot| self.account(slot))
    }

    /// The page's accounts with their hashes (each hashed once, for a split or a growth).
    fn hashed_accounts(&self) -> Vec<(IdHash, AccountRef<'_>)> {
        self.accounts()
            .map(|account| (IdHash::of(account.account_id), account))
            .collect()
    }

    /// A new page of the given depth holding these accounts, with room for them below the
    /// split threshold.
    fn of_accounts(depth: u8, accounts: Vec<(IdHash, AccountRef)>) -> Page {
        let mut capacity = PAGE_SLOTS;
        while (accounts.len() + 1) * 8 > capacity * 7 {
            capacity *= 2;
        }
        let ids_bytes = accounts.iter().map(|(_, a)| a.account_id.len()).sum();
        let mut page = Page::with_capacity(depth, capacity, ids_bytes);
        for (hash, account) in accounts {
            page.insert(hash, account);
        }
        page
    }
}

/// The open accounts of a ledger, by id. See the module documentation.
#[derive(Clone)]
pub(super) struct AccountTable {
    /// log2 of the directory's length.
    depth: u8,
    /// Page numbers (into `pages`) by the top `depth` bits of the hash; a page of depth `d`
    /// fills the 2^(depth - d) consecutive entries that share its `d` bits.
    directory: Arc<Vec<u32>>,
    pages: Arc<Vec<Arc<Page>>>,
    len: usize,
}

impl Default for AccountTable {
    fn default() -> Self {
        AccountTable {
            depth: 0,
            directory: Arc::new(vec![0]),
            pages: Arc::new(vec![Arc::new(Page::with_capacity(0, PAGE_SLOTS, 0))]),
            len: 0,
        }
    }
}

impl AccountTable {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn page_number(&self, hash: IdHash) -> usize {
        self.directory[hash.directory_index(self.depth)] as usize
    }

    /// The account with this id.
    pub(super) fn get(&self, hash: IdHash, account_id: &str) -> Option<AccountRef<'_>> {
        let page = &self.pages[self.page_number(hash)];
        let position = page.find(hash, account_id)?;
        Some(page.account(page.slots[position].as_ref().expect("found slots are used")))
    }

    /// Adds `delta_minor` to the balance of the account with this id and returns the
    /// account as it was before and as it is after, or `None` (changing nothing) if it is
    /// not open.
    ///
    /// Panics if the balance would overflow `i128`.
    pub(super) fn add_to_balance(
        &mut self,
        hash: IdHash,
        account_id: &str,
        delta_minor: i128,
    ) -> Option<(AccountRef<'_>, AccountRef<'_>)> {
        let number = self.page_number(hash);
        let position = self.pages[number].find(hash, account_id)?;
        let page = Arc::make_mut(&mut Arc::make_mut(&mut self.pages)[number]);
        let slot = page.slots[position].as_mut().expect("found slots are used");
        let before = slot.balance_minor;
        slot.balance_minor = before
            .checked_add(delta_minor)
            .expect("balance overflows i128");
        let page = &*page;
        let after = page.account(page.slots[position].as_ref().expect("used"));
        Some((
            AccountRef {
                balance_minor: before,
                ..after
            },
            after,
        ))
    }

    /// Opens an account; `false` (changing nothing) if one with this id is already open.
    pub(super) fn insert(&mut self, hash: IdHash, account: AccountRef) -> bool {
        if self.get(hash, account.account_id).is_some() {
            return false;
        }
        loop {
            let number = self.page_number(hash);
            if !self.pages[number].is_full() {
                let page = Arc::make_mut(&mut Arc::make_mut(&mut self.pages)[number]);
                page.insert(hash, account);
                self.len += 1;
                return true;
            }
            self.make_room(number);
        }
    }

    /// Splits the full page `number` in two by one more bit of the hash (doubling the
    /// directory first if the page already uses every bit it has), or, when the directory
    /// may not grow, doubles the page's capacity.
    fn make_room(&mut self, number: usize) {
        let page_depth = self.pages[number].depth;
        if page_depth == self.depth {
            let pages_needed = self.len / (PAGE_SLOTS * 7 / 8) + 1;
            if self.directory.len() >= DIRECTORY_PER_PAGE_MAX * pages_needed || self.depth == 63 {
                // Rebuilt with room for one more: twice the capacity of a full page.
                let page = &mut Arc::make_mut(&mut self.pages)[number];
                *page = Arc::new(Page::of_accounts(page_depth, page.hashed_accounts()));
                return;
            }
            let directory: Vec<u32> = self.directory.iter().flat_map(|n| [*n, *n]).collect();
            self.directory = Arc::new(directory);
            self.depth += 1;
        }
        // The page fills 2^(depth - page_depth) consecutive entries; the first half keeps
        // it (rebuilt with the accounts whose next bit is 0), the second half gets a new one.
        let old = Arc::clone(&self.pages[number]);
        let accounts = old.hashed_accounts();
        let span = 1usize << (self.depth - page_depth);
        let (some_hash, _) = accounts.first().expect("a full page holds accounts");
        let first = some_hash.directory_index(self.depth) & !(span - 1);
        let bit = 63 - u32::from(page_depth);
        let (zero, one): (Vec<_>, Vec<_>) = accounts
            .into_iter()
            .partition(|(hash, _)| hash.high >> bit & 1 == 0);
        let pages = Arc::make_mut(&mut self.pages);
        pages[number] = Arc::new(Page::of_accounts(page_depth + 1, zero));
        let new_number = u32::try_from(pages.len()).expect("fewer than 2^32 pages");
        pages.push(Arc::new(Page::of_accounts(page_depth + 1, one)));
        let directory = Arc::make_mut(&mut self.directory);
        for entry in &mut directory[first + span / 2..first + span] {
            *entry = new_number;
        }
    }

    /// Every open account, in no meaningful order.
    pub(super) fn iter(&self) -> impl Iterator<Item = AccountRef<'_>> {
        self.pages.iter().flat_map(|page| page.accounts())
    }
}

/// Equal when the same accounts are open with the same balances, however they are laid out.
impl PartialEq for AccountTable {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.iter().all(|account| {
                other.get(IdHash::of(account.account_id), account.account_id) == Some(account)
            })
    }
}

impl Eq for AccountTable {}

/// The accounts sorted by id.
impl std::fmt::Debug for AccountTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut accounts: Vec<AccountRef> = self.iter().collect();
        accounts.sort_unstable_by(|a, b| a.account_id.cmp(b.account_id));
        f.debug_list().entries(accounts).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").expect("USD")
    }

    fn open(table: &mut AccountTable, id: &str) -> bool {
        table.insert(
            IdHash::of(id),
            AccountRef {
                account_id: id,
                currency: usd(),
                allow_negative_balance: false,
                balance_minor: 0,
            },
        )
    }

    #[test]
    fn holds_many_accounts_through_splits_and_finds_each() {
        let mut table = AccountTable::default();
        let count = 20_000;
        for n in 0..count {
            assert!(open(&mut table, &format!("acct-{n}")));
        }
        assert!(!open(&mut table, "acct-7"), "a second open of one id");
        assert_eq!(table.len(), count);
        assert!(table.pages.len() > 1 && table.depth > 0);
        for n in 0..count {
            let id = format!("acct-{n}");
            assert_eq!(
                table.get(IdHash::of(&id), &id).map(|a| a.account_id),
                Some(&*id)
            );
        }
        assert_eq!(table.get(IdHash::of("acct-x"), "acct-x"), None);
        assert_eq!(table.iter().count(), count);
        // Every page is where the directory says, and no page is past its threshold.
        for (entry, number) in table.directory.iter().enumerate() {
            let page = &table.pages[*number as usize];
            assert!(page.len * 8 <= page.capacity() * 7);
            for account in page.accounts() {
                let hash = IdHash::of(account.account_id);
                assert_eq!(
                    hash.directory_index(page.depth),
                    entry >> (table.depth - page.depth)
                );
            }
        }
    }

    #[test]
    fn a_clone_keeps_its_balances_while_the_original_changes() {
        let mut table = AccountTable::default();
        for n in 0..1_000 {
            open(&mut table, &format!("acct-{n}"));
        }
        let snapshot = table.clone();
        let hash = IdHash::of("acct-5");
        let mut add = |id: &str, delta| {
            let changed = table.add_to_balance(IdHash::of(id), id, delta);
            changed.map(|(before, after)| (before.balance_minor, after.balance_minor))
        };
        assert_eq!(add("acct-5", 7), Some((0, 7)));
        assert_eq!(add("acct-5", -2), Some((7, 5)));
        assert_eq!(add("nope", 1), None);
        for n in 1_000..2_000 {
            open(&mut table, &format!("acct-{n}"));
        }
        assert_eq!(
            snapshot.get(hash, "acct-5").map(|a| a.balance_minor),
            Some(0)
        );
        assert_eq!(table.get(hash, "acct-5").map(|a| a.balance_minor), Some(5));
        assert_eq!((snapshot.len(), table.len()), (1_000, 2_000));
        assert_ne!(snapshot, table);
    }

    #[test]
    fn tables_with_the_same_accounts_are_equal_whatever_the_order_of_opening() {
        let mut forward = AccountTable::default();
        let mut backward = AccountTable::default();
        for n in 0..3_000 {
            open(&mut forward, &format!("acct-{n}"));
            open(&mut backward, &format!("acct-{}", 2_999 - n));
        }
        assert_eq!(forward, backward);
    }

    /// Ids that all share a page's hash prefix (as someone grinding ids could choose) make
    /// that page grow in place once the directory reaches its limit: the directory stays
    /// proportional to the accounts.
    #[test]
    fn ids_aimed_at_one_page_grow_it_instead_of_the_directory() {
        let mut table = AccountTable::default();
        let aimed: Vec<String> = (0u64..)
            .map(|n| format!("aim-{n}"))
            .filter(|id| IdHash::of(id).high >> 56 == 0)
            .take(1_500)
            .collect();
        for id in &aimed {
            assert!(open(&mut table, id));
        }
        let pages_needed = table.len() / (PAGE_SLOTS * 7 / 8) + 1;
        assert!(table.directory.len() <= 2 * DIRECTORY_PER_PAGE_MAX * pages_needed);
        for id in &aimed {
            assert!(table.get(IdHash::of(id), id).is_some());
        }
    }
}
