//! PartitionMap maps as values: which shard owns each logical partition of each region.
//!
//! Two maps, never confused: the **desired** placement is what `shards.toml` implies by
//! consistent hashing ([`PartitionMap::desired`]); the **live** placement is which shard owns each
//! partition right now, with an epoch, as stored in the `placement` database ([`crate::live`]).
//! Services route by the live one; a move is the difference between the two
//! ([`PartitionMap::moves_to`]). Everything here is pure: no IO.

use std::collections::{BTreeMap, BTreeSet};

use crate::route::assign_partitions;
use crate::{Partition, RegionName, ShardMap, ShardName};

/// The owner of every partition of every region, and the epoch of the map it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    /// Raised by every change of the live map; 0 for a desired placement.
    pub epoch: i64,
    /// `regions[r][p]` owns partition `p` of region `r`.
    regions: BTreeMap<RegionName, Vec<ShardName>>,
}

/// One partition that must change shard to go from one placement to another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Move {
    pub region: RegionName,
    pub partition: Partition,
    pub from: ShardName,
    pub to: ShardName,
}

/// How many partitions of a region one shard owns now, and how many a target asks it to own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    pub live: usize,
    pub target: usize,
}

/// Why stored placement rows do not make a placement the shard map can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "the live map places region {region} partition {partition} on shard `{shard}`, which shards.toml does not define; keep [shards.{shard}] until a move has drained it"
    )]
    UnknownShard { region: RegionName, partition: Partition, shard: String },
    #[error(
        "the live map places region {region} partition {partition} on shard `{shard}`, which serves region {other} in shards.toml"
    )]
    ForeignShard { region: RegionName, partition: Partition, shard: ShardName, other: RegionName },
    #[error(
        "the live map holds {stored} partitions of region {region}, shards.toml says regions.{region}.partitions = {configured}; the partition count is fixed once ids exist"
    )]
    PartitionCount { region: RegionName, stored: usize, configured: u16 },
    #[error("the live map lacks partition {partition} of region {region}")]
    Missing { region: RegionName, partition: Partition },
    #[error("the live map holds region `{0}`, which shards.toml does not define")]
    UnknownRegion(String),
}

impl PartitionMap {
    /// What `shards.toml` asks for: each region's partitions spread over its listed shards.
    pub fn desired(map: &ShardMap) -> Self {
        let regions =
            map.regions().map(|r| (r.name.clone(), assign_partitions(&r.name, r.partitions, &r.shards))).collect();
        Self { epoch: 0, regions }
    }

    /// Builds a placement from stored `(region, partition, shard)` rows, checked against the
    /// shard map: every shard must be defined there and serve that region, and every partition
    /// of a stored region must be present exactly as many times as the file's partition count
    /// says. Regions the file has but the rows lack are absent from the result (not seeded yet).
    pub fn from_rows(
        map: &ShardMap,
        epoch: i64,
        rows: impl IntoIterator<Item = (String, Partition, String)>,
    ) -> Result<Self, PlacementError> {
        let mut partial: BTreeMap<RegionName, BTreeMap<Partition, ShardName>> = BTreeMap::new();
        for (region, partition, shard) in rows {
            let region_cfg = map.region_named(&region).ok_or_else(|| PlacementError::UnknownRegion(region.clone()))?;
            let name = region_cfg.name.clone();
            let shard_cfg = map.shard_named(&shard).ok_or_else(|| PlacementError::UnknownShard {
                region: name.clone(),
                partition,
                shard: shard.clone(),
            })?;
            if shard_cfg.region != name {
                return Err(PlacementError::ForeignShard {
                    region: name,
                    partition,
                    shard: shard_cfg.name.clone(),
                    other: shard_cfg.region.clone(),
                });
            }
            partial.entry(name).or_default().insert(partition, shard_cfg.name.clone());
        }
        let mut regions = BTreeMap::new();
        for (name, owners) in partial {
            let configured = map.region(&name).map_or(0, |r| r.partitions);
            let in_range = owners.keys().all(|p| p.get() < configured);
            if owners.len() != usize::from(configured) || !in_range {
                if in_range
                    && let Some(partition) = Partition::first(configured.into()).find(|p| !owners.contains_key(p))
                {
                    return Err(PlacementError::Missing { region: name, partition });
                }
                return Err(PlacementError::PartitionCount { region: name, stored: owners.len(), configured });
            }
            regions.insert(name, owners.into_values().collect());
        }
        Ok(Self { epoch, regions })
    }

    /// The owner of `partition` of `region`.
    pub fn owner(&self, region: &RegionName, partition: Partition) -> Option<&ShardName> {
        self.regions.get(region)?.get(partition.index())
    }

    /// Every partition's owner in `region`, by partition number.
    pub fn owners(&self, region: &RegionName) -> Option<&[ShardName]> {
        self.regions.get(region).map(Vec::as_slice)
    }

    pub fn has_region(&self, region: &RegionName) -> bool {
        self.regions.contains_key(region)
    }

    pub fn regions(&self) -> impl Iterator<Item = (&RegionName, &[ShardName])> {
        self.regions.iter().map(|(r, o)| (r, o.as_slice()))
    }

    /// The shards holding at least one partition of `region`: what a region's fan-out reads.
    pub fn shards_of(&self, region: &RegionName) -> BTreeSet<ShardName> {
        self.regions.get(region).map(|o| o.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many partitions each shard of `region` holds.
    pub fn counts(&self, region: &RegionName) -> BTreeMap<ShardName, usize> {
        let mut out = BTreeMap::new();
        for shard in self.regions.get(region).into_iter().flatten() {
            *out.entry(shard.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Each shard's share of `region` here and in `target`: what `plan` and the placement
    /// endpoint show side by side.
    pub fn shares(&self, target: &Self, region: &RegionName) -> BTreeMap<ShardName, Share> {
        let mut out: BTreeMap<ShardName, Share> = BTreeMap::new();
        for (shard, n) in self.counts(region) {
            out.entry(shard).or_default().live = n;
        }
        for (shard, n) in target.counts(region) {
            out.entry(shard).or_default().target = n;
        }
        out
    }

    /// The partitions this shard owns in `region`.
    pub fn partitions_of(&self, region: &RegionName, shard: &ShardName) -> Vec<Partition> {
        self.regions
            .get(region)
            .map(|o| Partition::first(o.len()).zip(o).filter(|(_, s)| *s == shard).map(|(p, _)| p).collect())
            .unwrap_or_default()
    }

    /// The partitions whose owner differs between `self` and `target`, in region and partition
    /// order; regions only one side has are not compared.
    pub fn moves_to(&self, target: &Self) -> Vec<Move> {
        let mut moves = Vec::new();
        for (region, owners) in &self.regions {
            let Some(wanted) = target.regions.get(region) else { continue };
            for (partition, (from, to)) in Partition::first(owners.len()).zip(owners.iter().zip(wanted)) {
                if from != to {
                    moves.push(Move { region: region.clone(), partition, from: from.clone(), to: to.clone() });
                }
            }
        }
        moves
    }

    /// This placement with `moves` applied and the given epoch: what a switch publishes.
    pub fn with_moves(&self, moves: &[Move], epoch: i64) -> Self {
        let mut next = self.clone();
        next.epoch = epoch;
        for m in moves {
            if let Some(slot) = next.regions.get_mut(&m.region).and_then(|o| o.get_mut(m.partition.index())) {
                *slot = m.to.clone();
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn map(na: &[&str]) -> ShardMap {
        let list: Vec<String> = na.iter().map(|s| format!("\"{s}\"")).collect();
        let mut text = format!("[regions.NA]\npartitions = 64\nshards = [{}]\n", list.join(", "));
        for s in na {
            text.push_str(&format!("[shards.{s}]\nurl = \"postgres://h/db\"\n"));
        }
        ShardMap::parse(&text, "test").unwrap()
    }

    fn rows(p: &PartitionMap) -> Vec<(String, Partition, String)> {
        p.regions()
            .flat_map(|(r, o)| Partition::first(o.len()).zip(o).map(|(i, s)| (r.to_string(), i, s.to_string())))
            .collect()
    }

    #[test]
    fn adding_a_shard_moves_only_partitions_onto_it() {
        let live = PartitionMap::desired(&map(&["na-1"]));
        let wanted = PartitionMap::desired(&map(&["na-1", "na-2"]));
        let moves = live.moves_to(&wanted);
        assert!(!moves.is_empty() && moves.len() < 64);
        assert!(moves.iter().all(|m| m.from.as_str() == "na-1" && m.to.as_str() == "na-2"));
        assert_eq!(live.with_moves(&moves, 2).moves_to(&wanted), vec![]);
    }

    #[test]
    fn stored_rows_round_trip_and_are_checked_against_the_file() {
        let two = map(&["na-1", "na-2"]);
        let live = PartitionMap::desired(&map(&["na-1"]));
        let back = PartitionMap::from_rows(&two, 7, rows(&live)).unwrap();
        assert_eq!(back.epoch, 7);
        assert_eq!(back.moves_to(&live), vec![]);
        // A live owner the file no longer defines is refused, naming it.
        let err = PartitionMap::from_rows(&map(&["na-2"]), 7, rows(&live)).unwrap_err();
        assert!(err.to_string().contains("[shards.na-1]"), "{err}");
        // A missing partition is refused.
        let mut short = rows(&live);
        short.remove(3);
        assert_eq!(
            PartitionMap::from_rows(&two, 1, short),
            Err(PlacementError::Missing {
                region: RegionName::parse("NA").unwrap(),
                partition: Partition::new(3).unwrap()
            })
        );
    }
}
