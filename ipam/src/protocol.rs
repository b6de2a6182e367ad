//! The entries allocators exchange through replicated tables: claims, asks, answers and
//! loans.
//!
//! Each entry has a table and a key; the node core writes them to NetworkDB (in the network's
//! own NetworkDB network, or the cluster's catalogue network for VNIs) and feeds the entries
//! it receives back through [`Allocator::handle_entry`](crate::Allocator::handle_entry).
//! Values are postcard-encoded.

use serde::{Deserialize, Serialize};

use crate::{BlockId, Claim, IpamError, NodeId};

/// The table of claims; key: the block's index in decimal.
pub const CLAIMS_TABLE: &str = "ipam_claims";
/// The table of asks; key: `<asker>/<seq>`.
pub const ASKS_TABLE: &str = "ipam_asks";
/// The table of answers; key: `<donor>/<asker>/<seq>`.
pub const ANSWERS_TABLE: &str = "ipam_answers";
/// The table of loans, written by their borrowers; key: `<borrower>/<value>`.
pub const LOANS_TABLE: &str = "ipam_loans";

/// What an asker wants from a donor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Want {
    /// Space: a block, or at least one value lent.
    Space,
    /// This value (a container started with a given address).
    Value(u32),
    /// The asker no longer holds this value the donor lent it.
    Release(u32),
}

/// An asker's request to one donor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    /// Who asks.
    pub asker: NodeId,
    /// The asker's sequence number of this ask (unique per asker, across restarts).
    pub seq: u64,
    /// Who is asked.
    pub donor: NodeId,
    /// What for.
    pub want: Want,
}

/// How a donor answered an ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// The block is the asker's from `epoch` on (the donor wrote the claim).
    Granted {
        /// The block given.
        block: BlockId,
        /// The claim's epoch.
        epoch: u64,
    },
    /// The value is the asker's to hold until it releases it; the block stays the donor's.
    Lent(u32),
    /// The release was taken note of.
    Released,
    /// The value asked for is held.
    Taken,
    /// The donor has nothing to give.
    Exhausted,
    /// The donor does not own the value's block (any more); with the newer claim it knows of
    /// the block, so the asker learns where to ask next.
    WrongOwner(Option<Claim>),
}

/// A donor's answer to one ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Who answers.
    pub donor: NodeId,
    /// Who asked.
    pub asker: NodeId,
    /// The ask's sequence number.
    pub seq: u64,
    /// The answer.
    pub outcome: Outcome,
}

/// A value a node holds in a block it does not own, lent by the block's owner: written by
/// the borrower while it holds the value (and again after its restarts), deleted when it
/// releases it. A loan is otherwise known only to the donor and the borrower; this entry
/// tells whoever owns the block later (an heir, after the donor's space was reclaimed) that
/// the value is not free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loan {
    /// Who holds the value.
    pub borrower: NodeId,
    /// The value.
    pub value: u32,
    /// Who lent it (the block's owner then).
    pub donor: NodeId,
}

impl Loan {
    /// The key of `borrower`'s loan of `value` in [`LOANS_TABLE`].
    pub fn key(borrower: &NodeId, value: u32) -> String {
        format!("{borrower}/{value}")
    }
}

/// The node and number of an ask's key (`<asker>/<seq>`) or a loan's (`<borrower>/<value>`).
pub(crate) fn node_and_number(key: &str) -> Option<(NodeId, u64)> {
    let (node, number) = key.split_once('/')?;
    Some((NodeId::from(node), number.parse().ok()?))
}

/// One entry of the IPAM tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A block's claim.
    Claim(BlockId, Claim),
    /// An ask.
    Ask(Ask),
    /// An answer.
    Answer(Answer),
    /// A loan, as its borrower holds it.
    Loan(Loan),
}

impl Entry {
    /// The entry's table.
    pub fn table(&self) -> &'static str {
        match self {
            Self::Claim(..) => CLAIMS_TABLE,
            Self::Ask(_) => ASKS_TABLE,
            Self::Answer(_) => ANSWERS_TABLE,
            Self::Loan(_) => LOANS_TABLE,
        }
    }

    /// The entry's key in its table.
    pub fn key(&self) -> String {
        match self {
            Self::Claim(block, _) => block.0.to_string(),
            Self::Ask(a) => format!("{}/{}", a.asker, a.seq),
            Self::Answer(a) => format!("{}/{}/{}", a.donor, a.asker, a.seq),
            Self::Loan(l) => Loan::key(&l.borrower, l.value),
        }
    }

    /// The entry's value.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = match self {
            Self::Claim(_, c) => postcard::to_allocvec(c),
            Self::Ask(a) => postcard::to_allocvec(a),
            Self::Answer(a) => postcard::to_allocvec(a),
            Self::Loan(l) => postcard::to_allocvec(l),
        };
        // Serializing these plain types into a Vec cannot fail.
        encoded.unwrap_or_default()
    }

    /// Decodes a value of `table` under `key`; an entry whose key disagrees with its value is
    /// malformed too.
    pub fn decode(table: &str, key: &str, value: &[u8]) -> Result<Self, IpamError> {
        let malformed = |table: &'static str| IpamError::Malformed {
            table,
            key: key.to_owned(),
        };
        let entry = match table {
            CLAIMS_TABLE => {
                let block = key.parse().map_err(|_| malformed(CLAIMS_TABLE))?;
                let claim = postcard::from_bytes(value).map_err(|_| malformed(CLAIMS_TABLE))?;
                Self::Claim(BlockId(block), claim)
            }
            ASKS_TABLE => {
                Self::Ask(postcard::from_bytes(value).map_err(|_| malformed(ASKS_TABLE))?)
            }
            ANSWERS_TABLE => {
                Self::Answer(postcard::from_bytes(value).map_err(|_| malformed(ANSWERS_TABLE))?)
            }
            LOANS_TABLE => {
                Self::Loan(postcard::from_bytes(value).map_err(|_| malformed(LOANS_TABLE))?)
            }
            _ => {
                return Err(IpamError::Malformed {
                    table: "unknown",
                    key: key.to_owned(),
                });
            }
        };
        if entry.key() != key {
            return Err(malformed(entry.table()));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_wrong_key_is_refused() {
        let entries = [
            Entry::Claim(
                BlockId(3),
                Claim {
                    owner: "b".into(),
                    epoch: 2,
                },
            ),
            Entry::Ask(Ask {
                asker: "b".into(),
                seq: 9,
                donor: "a".into(),
                want: Want::Value(77),
            }),
            Entry::Answer(Answer {
                donor: "a".into(),
                asker: "b".into(),
                seq: 9,
                outcome: Outcome::Granted {
                    block: BlockId(4),
                    epoch: 1,
                },
            }),
            Entry::Loan(Loan {
                borrower: "b".into(),
                value: 77,
                donor: "a".into(),
            }),
        ];
        for e in entries {
            let back = Entry::decode(e.table(), &e.key(), &e.encode()).unwrap();
            assert_eq!(back, e);
            assert!(Entry::decode(e.table(), "x/1", &e.encode()).is_err());
            assert!(Entry::decode(e.table(), &e.key(), &[0xff; 3]).is_err());
        }
        assert!(Entry::decode("other", "1", &[]).is_err());
    }
}
