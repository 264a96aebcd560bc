//! A region's logical partition: the unit a rebalance moves and every shard write is fenced by.
//!
//! Ids carry it in 12 bits ([`crate::ids`]), `shards.toml` gives each region at most
//! [`MAX_PARTITIONS`], and the shard tables keep it in a `smallint`. One type that is valid by
//! construction means no call site converts, clamps or invents a partition: a number read from a
//! row or an argument is checked once, where it enters.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most partitions a region may have (the 12 bits an id holds).
pub const MAX_PARTITIONS: u16 = 4096;

/// A partition number, below [`MAX_PARTITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Partition(u16);

/// A number that is not a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition {0} is out of range (0 to {max})", max = MAX_PARTITIONS - 1)]
pub struct OutOfRange(pub i64);

impl Partition {
    /// Partition `n`, if it is below [`MAX_PARTITIONS`].
    pub fn new(n: u16) -> Result<Self, OutOfRange> {
        if n < MAX_PARTITIONS { Ok(Self(n)) } else { Err(OutOfRange(i64::from(n))) }
    }

    /// The partition in the low 12 bits of `bits` (how an id stores it): always valid.
    pub(crate) const fn from_bits(bits: u16) -> Self {
        Self(bits & (MAX_PARTITIONS - 1))
    }

    /// The first `count` partitions of a region, `0..count` (`count` is at most
    /// [`MAX_PARTITIONS`], as the shard map guarantees; more is cut there).
    pub fn first(count: usize) -> impl DoubleEndedIterator<Item = Self> + ExactSizeIterator {
        (0..count.min(usize::from(MAX_PARTITIONS))).map(|n| Self(n as u16))
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// As a position in a region's owner table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// As the `smallint` the shard tables keep.
    pub const fn as_i16(self) -> i16 {
        // Lossless: below 4096.
        self.0 as i16
    }
}

impl TryFrom<i64> for Partition {
    type Error = OutOfRange;

    fn try_from(n: i64) -> Result<Self, OutOfRange> {
        u16::try_from(n).map_err(|_| OutOfRange(n)).and_then(Self::new)
    }
}

impl TryFrom<i16> for Partition {
    type Error = OutOfRange;

    fn try_from(n: i16) -> Result<Self, OutOfRange> {
        Self::try_from(i64::from(n))
    }
}

impl std::str::FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n: i64 = s.trim().parse().map_err(|_| format!("`{s}` is not a partition number"))?;
        Self::try_from(n).map_err(|e| e.to_string())
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Partition> for u16 {
    fn from(p: Partition) -> Self {
        p.0
    }
}

impl From<Partition> for i64 {
    fn from(p: Partition) -> Self {
        i64::from(p.0)
    }
}

impl Serialize for Partition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Partition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Self::try_from(n).map_err(serde::de::Error::custom)
    }
}

/// Stored as the `smallint` of the shard tables; a stored value out of range is a decode error
/// (it was never written by this code), not a partition made up.
impl sqlx::Type<sqlx::Postgres> for Partition {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <i16 as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Partition {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i16 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_i16(), buf)
    }
}

impl sqlx::Decode<'_, sqlx::Postgres> for Partition {
    fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Self, sqlx::error::BoxDynError> {
        let n = <i16 as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Self::try_from(n)?)
    }
}

/// `Vec<Partition>` binds as `smallint[]` (`= any($1)`).
impl sqlx::postgres::PgHasArrayType for Partition {
    fn array_type_info() -> sqlx::postgres::PgTypeInfo {
        <i16 as sqlx::postgres::PgHasArrayType>::array_type_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbers_below_the_limit_are_partitions() {
        assert_eq!(Partition::new(4095).map(Partition::get), Ok(4095));
        assert!(Partition::new(4096).is_err());
        assert!(Partition::try_from(-1_i64).is_err());
        assert!(Partition::try_from(70_000_i64).is_err());
        assert_eq!("17".parse::<Partition>().map(Partition::get), Ok(17));
        assert!("x".parse::<Partition>().unwrap_err().contains("`x`"));
        assert_eq!(Partition::from_bits(0xFFFF).get(), 4095);
        assert_eq!(Partition::first(3).map(Partition::get).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(serde_json::from_str::<Partition>("5000").is_err());
        assert_eq!(serde_json::to_string(&Partition::new(9).unwrap()).unwrap(), "9");
    }
}
