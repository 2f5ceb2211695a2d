//! How the ledger's values are laid out in postcard (raft entries, event blocks, stored
//! records, snapshots, peer credits), and the one thing about that layout that varies.
//!
//! postcard does not describe what it encodes, so a field added to [`TransferCommand`]
//! changes the bytes of everything that holds one. Annotations (reference and metadata) are
//! such a field, and a node of release 0.2 must keep reading what a newer node writes
//! while a cluster is upgraded one node at a time (README, "Upgrades"). Hence two layouts:
//!
//! - [`Layout::Plain`] (1): a transfer as release 0.2 lays it out, without annotations.
//! - [`Layout::Annotated`] (2): the same, then `Option<Box<Annotations>>`.
//!
//! An account's opening (`Command::OpenAccount`, `Event::AccountOpened`) has the same two
//! layouts through [`annotations_field`].
//!
//! Every encoder goes through [`to_vec`], which writes the plain layout unless the value
//! holds annotations, and records the layout in its own format byte; every decoder passes
//! that layout to [`from_slice`]. A value an older node could have written is therefore
//! written exactly as it would have, and an older node refuses (by the format byte) only
//! what holds annotations: a new kind of command, like every new command, waits for the
//! last node to be upgraded.
//!
//! The layout in force is a thread-local set only for the duration of one encode or
//! decode, because serde gives no other way to pass context into a nested `Serialize`.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use crate::domain::TransferCommand;

/// Which layout a [`TransferCommand`] is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Without annotations (what every release before annotations wrote).
    Plain,
    /// With the annotations after the other fields.
    Annotated,
}

thread_local! {
    static LAYOUT: Cell<Layout> = const { Cell::new(Layout::Plain) };
}

/// The message of the error a plain encode of an annotated transfer fails with.
const NEEDS_ANNOTATED: &str = "annotations need the annotated layout";

/// Encodes `value`, in the plain layout when it holds no annotations, else in the annotated
/// one; returns the layout used (the caller records it).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> (Layout, Vec<u8>) {
    match in_layout(Layout::Plain, || postcard::to_stdvec(value)) {
        Ok(bytes) => (Layout::Plain, bytes),
        Err(_) => (Layout::Annotated, to_vec_annotated(value)),
    }
}

/// Encodes `value` in the annotated layout, whatever it holds (for containers whose format
/// implies that layout).
pub fn to_vec_annotated<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    in_layout(Layout::Annotated, || postcard::to_stdvec(value))
        .expect("serialising to a Vec cannot fail in the annotated layout")
}

/// Decodes `bytes` written in `layout`.
pub fn from_slice<'a, T: Deserialize<'a>>(layout: Layout, bytes: &'a [u8]) -> postcard::Result<T> {
    in_layout(layout, || postcard::from_bytes(bytes))
}

/// Decodes the start of `bytes` written in `layout`; returns the rest.
pub fn take_from_slice<'a, T: Deserialize<'a>>(
    layout: Layout,
    bytes: &'a [u8],
) -> postcard::Result<(T, &'a [u8])> {
    in_layout(layout, || postcard::take_from_bytes(bytes))
}

/// The first byte of a value [`to_tagged_vec`] wrote in the annotated layout.
pub const ANNOTATED_TAG: u8 = 0xFF;

/// For values stored or sent without a format byte of their own (a stored record, a peer's
/// credit): the plain layout as is, or [`ANNOTATED_TAG`] then the annotated layout. Only for
/// types whose plain encoding never starts with `0xFF`: an enum of fewer than 128 variants
/// (its index is a one-byte varint) or a struct starting with a transaction id (its length,
/// 16). A node that predates annotations fails to decode a tagged value instead of
/// misreading it (`0xFF` starts a varint longer than any such value).
pub fn to_tagged_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    match to_vec(value) {
        (Layout::Plain, bytes) => bytes,
        (Layout::Annotated, bytes) => {
            let mut tagged = Vec::with_capacity(1 + bytes.len());
            tagged.push(ANNOTATED_TAG);
            tagged.extend(bytes);
            tagged
        }
    }
}

/// Decodes what [`to_tagged_vec`] wrote.
pub fn from_tagged_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> postcard::Result<T> {
    match bytes.split_first() {
        Some((&ANNOTATED_TAG, rest)) => from_slice(Layout::Annotated, rest),
        _ => from_slice(Layout::Plain, bytes),
    }
}

fn in_layout<R>(layout: Layout, f: impl FnOnce() -> R) -> R {
    /// Restores the outer layout even if `f` unwinds.
    struct Restore(Layout);
    impl Drop for Restore {
        fn drop(&mut self) {
            LAYOUT.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(LAYOUT.with(|cell| cell.replace(layout)));
    f()
}

fn current() -> Layout {
    LAYOUT.with(Cell::get)
}

/// The fields every layout has, borrowed for encoding.
#[derive(Serialize)]
struct PlainRef<'a> {
    #[serde(with = "crate::domain::uuid_serde")]
    transaction_id: uuid::Uuid,
    from: &'a str,
    to: &'a str,
    amount_minor: i64,
    currency: crate::Currency,
}

#[derive(Deserialize)]
struct Plain {
    #[serde(with = "crate::domain::uuid_serde")]
    transaction_id: uuid::Uuid,
    from: String,
    to: String,
    amount_minor: i64,
    currency: crate::Currency,
}

impl Serialize for TransferCommand {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let plain = PlainRef {
            transaction_id: self.transaction_id,
            from: &self.from,
            to: &self.to,
            amount_minor: self.amount_minor,
            currency: self.currency,
        };
        match current() {
            Layout::Plain if self.annotations.is_some() => {
                Err(serde::ser::Error::custom(NEEDS_ANNOTATED))
            }
            Layout::Plain => plain.serialize(serializer),
            Layout::Annotated => {
                // A tuple of the plain struct and the annotations: postcard writes a struct's
                // fields one after the other, so this is the plain layout plus a suffix.
                let mut tuple = serializer.serialize_tuple(2)?;
                tuple.serialize_element(&plain)?;
                tuple.serialize_element(&self.annotations)?;
                tuple.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for TransferCommand {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (plain, annotations) = match current() {
            Layout::Plain => (Plain::deserialize(deserializer)?, None),
            Layout::Annotated => {
                <(Plain, Option<Box<crate::Annotations>>)>::deserialize(deserializer)?
            }
        };
        Ok(TransferCommand {
            transaction_id: plain.transaction_id,
            from: plain.from,
            to: plain.to,
            amount_minor: plain.amount_minor,
            currency: plain.currency,
            annotations,
        })
    }
}

/// `#[serde(with)]` for an `annotations` field of a struct or enum variant that release 0.2
/// wrote without it (an account's opening): nothing in the plain layout (postcard writes a
/// unit as no bytes), the `Option` in the annotated one. A plain encode of `Some` fails, so
/// [`to_vec`] falls back to the annotated layout, as for a transfer.
pub mod annotations_field {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Layout, NEEDS_ANNOTATED, current};
    use crate::Annotations;

    pub fn serialize<S: Serializer>(
        annotations: &Option<Box<Annotations>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match current() {
            Layout::Plain if annotations.is_some() => {
                Err(serde::ser::Error::custom(NEEDS_ANNOTATED))
            }
            Layout::Plain => serializer.serialize_unit(),
            Layout::Annotated => annotations.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<Annotations>>, D::Error> {
        match current() {
            Layout::Plain => <()>::deserialize(deserializer).map(|()| None),
            Layout::Annotated => Option::deserialize(deserializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Annotations, Command, Currency};

    fn transfer(annotations: Option<Box<Annotations>>) -> TransferCommand {
        TransferCommand {
            transaction_id: uuid::Uuid::from_u128(0x1234),
            from: "alice".into(),
            to: "bob".into(),
            amount_minor: 250,
            currency: Currency::parse("EUR").unwrap(),
            annotations,
        }
    }

    /// What release 0.2's derived `Serialize` wrote for the same transfer.
    #[derive(Serialize)]
    struct Release02 {
        #[serde(with = "crate::domain::uuid_serde")]
        transaction_id: uuid::Uuid,
        from: String,
        to: String,
        amount_minor: i64,
        currency: Currency,
    }

    #[test]
    fn a_plain_transfer_is_written_as_release_0_2_wrote_it() {
        let plain = transfer(None);
        let old = postcard::to_stdvec(&Release02 {
            transaction_id: plain.transaction_id,
            from: plain.from.clone(),
            to: plain.to.clone(),
            amount_minor: plain.amount_minor,
            currency: plain.currency,
        })
        .unwrap();
        let (layout, bytes) = to_vec(&plain);
        assert_eq!((layout, bytes.as_slice()), (Layout::Plain, old.as_slice()));
        assert_eq!(
            from_slice::<TransferCommand>(Layout::Plain, &old).unwrap(),
            plain
        );
    }

    /// Release 0.2's `Command`, as far as its first variant.
    #[derive(Serialize)]
    enum Release02Command {
        OpenAccount {
            account_id: String,
            currency: Currency,
            allow_negative_balance: bool,
        },
    }

    #[test]
    fn a_plain_account_opening_is_written_as_release_0_2_wrote_it() {
        let open = |annotations| Command::OpenAccount {
            account_id: "alice".into(),
            currency: Currency::parse("EUR").unwrap(),
            allow_negative_balance: true,
            annotations,
        };
        let old = postcard::to_stdvec(&Release02Command::OpenAccount {
            account_id: "alice".into(),
            currency: Currency::parse("EUR").unwrap(),
            allow_negative_balance: true,
        })
        .unwrap();
        assert_eq!(to_vec(&open(None)), (Layout::Plain, old.clone()));
        let annotated = open(
            Annotations {
                reference: "cust-1".into(),
                ..Annotations::default()
            }
            .boxed(),
        );
        let (layout, bytes) = to_vec(&annotated);
        assert_eq!(layout, Layout::Annotated);
        assert!(bytes.starts_with(&old));
        assert_eq!(
            from_slice::<Command>(Layout::Annotated, &bytes).unwrap(),
            annotated
        );
        assert_eq!(
            from_slice::<Command>(Layout::Plain, &old).unwrap(),
            open(None)
        );
    }

    #[test]
    fn annotations_take_the_annotated_layout_and_round_trip_nested() {
        let annotated = transfer(
            Annotations {
                reference: "invoice 42".into(),
                metadata: [("channel".to_string(), "app".to_string())].into(),
            }
            .boxed(),
        );
        let commands = vec![
            Command::Transfer(transfer(None)),
            Command::TransferOut(annotated.clone()),
        ];
        let (layout, bytes) = to_vec(&commands);
        assert_eq!(layout, Layout::Annotated);
        let back: Vec<Command> = from_slice(Layout::Annotated, &bytes).unwrap();
        assert_eq!(back, commands);
        // The plain layout cannot read it back as the same thing, and the thread's layout
        // is plain again after every call.
        assert_ne!(
            from_slice::<Vec<Command>>(Layout::Plain, &bytes).ok(),
            Some(commands)
        );
        assert_eq!(current(), Layout::Plain);
    }

    #[test]
    fn tagged_values_start_with_the_tag_only_when_annotated() {
        let plain = transfer(None);
        assert_eq!(to_tagged_vec(&plain), to_vec(&plain).1);
        assert_ne!(to_tagged_vec(&plain)[0], ANNOTATED_TAG);
        let annotated = transfer(
            Annotations {
                reference: "r".into(),
                ..Annotations::default()
            }
            .boxed(),
        );
        let bytes = to_tagged_vec(&annotated);
        assert_eq!(bytes[0], ANNOTATED_TAG);
        assert_eq!(
            from_tagged_slice::<TransferCommand>(&bytes).unwrap(),
            annotated
        );
        assert_eq!(
            from_tagged_slice::<TransferCommand>(&to_tagged_vec(&plain)).unwrap(),
            plain
        );
        // What a node without annotations does with it: a decoding error, not a transfer.
        assert!(from_slice::<TransferCommand>(Layout::Plain, &bytes).is_err());
    }
}
