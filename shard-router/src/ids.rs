//! Ids that carry their own placement, so any id the API hands out routes to its shard with no
//! lookup table and no fan-out, and stays valid when partitions move between shards.
//!
//! An id is a UUIDv7 (RFC 9562: time-ordered, so B-tree inserts stay local) whose spare random
//! bits hold the region tag and the logical partition:
//!
//! ```text
//!  0        48   52         64  66        76                      128
//!  | unix ms | 7 | partition | 10 | region  |  random (52 bits)      |
//!  | 48 bits |ver| 12 bits   |var | tag 10b |                        |
//! ```
//!
//! The partition, not the shard, is in the id: a rebalance moves partitions and the map from
//! partition to shard changes, never an id.

use std::fmt;

use uuid::Uuid;

use crate::Partition;

/// Region tags are 10 bits.
pub const REGION_TAG_BITS: u32 = 10;
const REGION_TAG_MASK: u16 = (1 << REGION_TAG_BITS) - 1;

/// Where a piece of data lives logically: its region (by tag) and partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placement {
    pub region_tag: u16,
    pub partition: Partition,
}

/// Why an id does not route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a UUID")]
    Malformed,
    #[error("not a Ticket Hub id (expected a version-7 UUID)")]
    NotRoutable,
}

/// The tag of a region name: FNV-1a folded to 10 bits. Derived rather than configured so that
/// shards.toml stays a list of names; config validation refuses two regions with one tag.
pub fn region_tag(name: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h ^ (h >> 32)) as u16) & REGION_TAG_MASK
}

/// Builds an id for `placement` from a time and random bits; callers pass the clock and the
/// randomness so this stays pure (and testable against golden vectors).
pub fn compose(placement: Placement, unix_ms: u64, random: u64) -> Uuid {
    let ms = unix_ms & 0xFFFF_FFFF_FFFF;
    let hi: u64 = (ms << 16) | (0x7 << 12) | u64::from(placement.partition.get());
    let lo: u64 =
        (0b10 << 62) | (u64::from(placement.region_tag & REGION_TAG_MASK) << 52) | (random & 0x000F_FFFF_FFFF_FFFF);
    Uuid::from_u64_pair(hi, lo)
}

/// A new id for `placement`, now.
pub fn new_id(placement: Placement) -> Uuid {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let random = Uuid::new_v4().as_u64_pair().1;
    compose(placement, now, random)
}

/// The placement an id carries. Any UUID that is not version 7 with the RFC variant is refused
/// (the caller answers 404 or 400: such an id was never handed out).
pub fn placement(id: Uuid) -> Result<Placement, IdError> {
    let (hi, lo) = id.as_u64_pair();
    if (hi >> 12) & 0xF != 7 || lo >> 62 != 0b10 {
        return Err(IdError::NotRoutable);
    }
    Ok(Placement { partition: Partition::from_bits(hi as u16), region_tag: ((lo >> 52) as u16) & REGION_TAG_MASK })
}

/// Parses the text form of an id and reads its placement.
pub fn parse(text: &str) -> Result<(Uuid, Placement), IdError> {
    let id = Uuid::parse_str(text).map_err(|_| IdError::Malformed)?;
    Ok((id, placement(id)?))
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag {}/partition {}", self.region_tag, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn placement_round_trips(tag in 0u16..1024, partition in 0u16..4096, ms in 0u64..(1 << 48), random: u64) {
            let p = Placement { region_tag: tag, partition: Partition::new(partition).unwrap() };
            let id = compose(p, ms, random);
            prop_assert_eq!(id.get_version_num(), 7);
            prop_assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            prop_assert_eq!(placement(id), Ok(p));
            prop_assert_eq!(parse(&id.to_string()).map(|(_, p)| p), Ok(p));
            // The time part is the real time: ids stay ordered by creation millisecond.
            prop_assert_eq!(id.as_u64_pair().0 >> 16, ms);
        }
    }

    #[test]
    fn foreign_ids_are_refused() {
        assert_eq!(parse("not-a-uuid"), Err(IdError::Malformed));
        assert_eq!(placement(Uuid::new_v4()), Err(IdError::NotRoutable));
        assert_eq!(placement(Uuid::nil()), Err(IdError::NotRoutable));
    }

    #[test]
    fn new_ids_differ_and_route() {
        let p = Placement { region_tag: region_tag("NA"), partition: Partition::new(17).unwrap() };
        let (a, b) = (new_id(p), new_id(p));
        assert_ne!(a, b);
        assert_eq!(placement(a), Ok(p));
    }
}
