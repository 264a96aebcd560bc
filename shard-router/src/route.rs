//! The pure routing core: (region, partition) → shard, and id → shard. No IO.
//!
//! Each region's logical partitions are spread over that region's shards by consistent hashing
//! (`consistent_hash`, virtual nodes): adding a shard to a region moves about 1/n of its
//! partitions, all of them to the new shard, and nothing of any other region. The table is
//! computed once per shard map, so routing a request is two array lookups.

use std::collections::BTreeMap;

use consistent_hash::{DefaultHash, Node, StaticHashRing};
use uuid::Uuid;

use crate::ids::{self, IdError};
use crate::placement::PartitionMap;
use crate::{Partition, RegionName, ShardMap, ShardName};

/// Virtual nodes per shard on a region's ring: enough that each shard's share of the ring is
/// within a few percent of 1/n.
pub const VIRTUAL_NODES_PER_SHARD: usize = 256;

/// Routes keys of a validated [`ShardMap`].
#[derive(Debug, Clone)]
pub struct Router {
    regions: BTreeMap<RegionName, RegionTable>,
    by_tag: BTreeMap<u16, RegionName>,
    /// The epoch of the placement this router was built from (0: the desired one).
    epoch: i64,
}

#[derive(Debug, Clone)]
struct RegionTable {
    tag: u16,
    /// `owner[p]` is the shard holding partition `p`.
    owner: Vec<ShardName>,
}

/// Where one id lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub region: RegionName,
    pub partition: Partition,
    pub shard: ShardName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("unknown region `{0}`")]
    UnknownRegion(String),
    /// A well-formed id whose region is not (or no longer) configured.
    #[error("the id belongs to no configured region")]
    UnknownRegionTag(u16),
    #[error("partition {partition} is out of range for region {region}")]
    PartitionOutOfRange { region: RegionName, partition: Partition },
}

/// The shard of every partition of one region: the first candidate on the region's ring.
pub fn assign_partitions(region: &RegionName, partitions: u16, shards: &[ShardName]) -> Vec<ShardName> {
    let nodes = shards.iter().map(|s| Node::new(s.as_str().to_owned()).quantity(VIRTUAL_NODES_PER_SHARD));
    let ring = StaticHashRing::new(DefaultHash, nodes);
    (0..partitions)
        .map(|p| {
            let key = (region.as_str(), p);
            let owner = ring.calc_candidates(&key).next().map(|n| n.key.clone()).unwrap_or_default();
            ShardName::parse(&owner).unwrap_or_else(|_| shards[0].clone())
        })
        .collect()
}

impl Router {
    /// Routes by the placement `shards.toml` asks for: what the live map is seeded with, and
    /// what tools compare it to. Services route by [`Router::with_placement`].
    pub fn new(map: &ShardMap) -> Self {
        Self::with_placement(map, &PartitionMap::desired(map))
    }

    /// Routes by `placement` (the live map). A region of `map` that `placement` lacks does not
    /// route: it is refused as unknown rather than guessed.
    pub fn with_placement(map: &ShardMap, placement: &PartitionMap) -> Self {
        let mut regions = BTreeMap::new();
        let mut by_tag = BTreeMap::new();
        for region in map.regions() {
            let Some(owner) = placement.owners(&region.name) else { continue };
            by_tag.insert(region.tag, region.name.clone());
            regions.insert(region.name.clone(), RegionTable { tag: region.tag, owner: owner.to_vec() });
        }
        Self { regions, by_tag, epoch: placement.epoch }
    }

    /// The epoch of the placement this router follows.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The shard holding `partition` of `region`.
    pub fn shard_for(&self, region: &RegionName, partition: Partition) -> Result<&ShardName, RouteError> {
        let table = self.regions.get(region).ok_or_else(|| RouteError::UnknownRegion(region.to_string()))?;
        table
            .owner
            .get(partition.index())
            .ok_or_else(|| RouteError::PartitionOutOfRange { region: region.clone(), partition })
    }

    /// Where an id lives, from the id alone.
    pub fn route(&self, id: Uuid) -> Result<Route, RouteError> {
        let placement = ids::placement(id)?;
        let region =
            self.by_tag.get(&placement.region_tag).ok_or(RouteError::UnknownRegionTag(placement.region_tag))?;
        let shard = self.shard_for(region, placement.partition)?.clone();
        Ok(Route { region: region.clone(), partition: placement.partition, shard })
    }

    /// Parses an id as a client sent it and routes it.
    pub fn route_str(&self, text: &str) -> Result<(Uuid, Route), RouteError> {
        let (id, _) = ids::parse(text)?;
        Ok((id, self.route(id)?))
    }

    /// A placement for new data in `region`: a partition picked from `random`.
    pub fn place(&self, region: &RegionName, random: u64) -> Result<ids::Placement, RouteError> {
        let table = self.regions.get(region).ok_or_else(|| RouteError::UnknownRegion(region.to_string()))?;
        // The owner table has one entry per partition, at most MAX_PARTITIONS of them.
        let partition = Partition::from_bits((random % table.owner.len() as u64) as u16);
        Ok(ids::Placement { region_tag: table.tag, partition })
    }

    /// The partitions each shard of `region` holds: what a rebalance compares.
    pub fn partitions_by_shard(&self, region: &RegionName) -> BTreeMap<ShardName, Vec<Partition>> {
        let mut out: BTreeMap<ShardName, Vec<Partition>> = BTreeMap::new();
        if let Some(table) = self.regions.get(region) {
            for (p, shard) in Partition::first(table.owner.len()).zip(&table.owner) {
                out.entry(shard.clone()).or_default().push(p);
            }
        }
        out
    }
}
