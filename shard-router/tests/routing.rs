//! Properties of the pure routing core, and golden vectors that pin it across releases.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use shard_router::ids::{self, Placement};
use shard_router::{Partition, RegionName, Router, ShardMap, ShardName};

/// A map with region NA on `na` shards and SA on `sa` shards.
fn map(na: usize, sa: usize, partitions: u16) -> ShardMap {
    let mut toml = String::new();
    for (region, n) in [("NA", na), ("SA", sa)] {
        let names: Vec<String> = (1..=n).map(|i| format!("\"{}-{i}\"", region.to_lowercase())).collect();
        writeln!(toml, "[regions.{region}]\npartitions = {partitions}\nshards = [{}]\n", names.join(", ")).unwrap();
        for i in 1..=n {
            writeln!(toml, "[shards.{}-{i}]\nurl = \"postgres://h:{}/db\"\n", region.to_lowercase(), 6000 + i).unwrap();
        }
    }
    ShardMap::parse(&toml, "test").unwrap()
}

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

fn owners(router: &Router, region_name: &str, partitions: u16) -> Vec<ShardName> {
    Partition::first(partitions.into()).map(|p| router.shard_for(&region(region_name), p).unwrap().clone()).collect()
}

#[test]
fn each_of_2_to_8_shards_gets_its_share_within_25_percent() {
    const P: u16 = 1024;
    for n in 2..=8 {
        let router = Router::new(&map(n, 1, P));
        let counts = router.partitions_by_shard(&region("NA"));
        assert_eq!(counts.len(), n, "every shard holds partitions");
        let fair = f64::from(P) / n as f64;
        for (shard, parts) in &counts {
            let ratio = parts.len() as f64 / fair;
            assert!(
                (0.75..=1.25).contains(&ratio),
                "{n} shards: {shard} holds {} of {P} ({ratio:.2} × fair)",
                parts.len()
            );
        }
    }
}

#[test]
fn adding_a_shard_moves_about_one_nth_and_only_to_the_new_shard() {
    const P: u16 = 1024;
    for n in 1..=7 {
        let before = Router::new(&map(n, 2, P));
        let after = Router::new(&map(n + 1, 2, P));
        let (old, new) = (owners(&before, "NA", P), owners(&after, "NA", P));
        let new_shard = ShardName::parse(&format!("na-{}", n + 1)).unwrap();
        let moved: Vec<usize> = (0..usize::from(P)).filter(|&p| old[p] != new[p]).collect();
        for &p in &moved {
            assert_eq!(new[p], new_shard, "partition {p} moved between old shards");
        }
        let expected = f64::from(P) / (n + 1) as f64;
        let ratio = moved.len() as f64 / expected;
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{n}→{} shards moved {} partitions, ~{expected:.0} expected",
            n + 1,
            moved.len()
        );
        assert_eq!(owners(&before, "SA", P), owners(&after, "SA", P), "another region's partitions moved");
    }
}

proptest! {
    #[test]
    fn an_id_routes_to_a_shard_of_its_region_deterministically(
        na in 1usize..=8, sa in 1usize..=8, pick_sa: bool, random: u64, ms in 0u64..(1 << 48), id_random: u64,
    ) {
        let m = map(na, sa, 256);
        let (r1, r2) = (Router::new(&m), Router::new(&m));
        let name = if pick_sa { "SA" } else { "NA" };
        let placement = r1.place(&region(name), random).unwrap();
        let id = ids::compose(placement, ms, id_random);
        let route = r1.route(id).unwrap();
        prop_assert_eq!(route.region.as_str(), name);
        prop_assert_eq!(m.shard(&route.shard).unwrap().region.as_str(), name);
        prop_assert_eq!(r2.route(id).unwrap(), route.clone());
        prop_assert_eq!(r1.route_str(&id.to_string()).unwrap().1, route);
    }
}

#[test]
fn foreign_and_unknown_ids_do_not_route() {
    let router = Router::new(&map(2, 1, 64));
    assert!(router.route_str("nope").is_err());
    assert!(router.route(uuid::Uuid::new_v4()).is_err());
    // A region tag no configured region has.
    let used: Vec<u16> = ["NA", "SA"].iter().map(|r| ids::region_tag(r)).collect();
    let tag = (0..1024).find(|t| !used.contains(t)).unwrap();
    let id = ids::compose(Placement { region_tag: tag, partition: Partition::new(0).unwrap() }, 0, 0);
    assert_eq!(router.route(id), Err(shard_router::RouteError::UnknownRegionTag(tag)));
    // A partition beyond the region's count.
    let id =
        ids::compose(Placement { region_tag: ids::region_tag("NA"), partition: Partition::new(64).unwrap() }, 0, 0);
    assert!(matches!(router.route(id), Err(shard_router::RouteError::PartitionOutOfRange { .. })));
}

/// Pins routing across releases: a change to the hash, the ring or the id layout would silently
/// send existing ids to the wrong shard. Regenerate only for a deliberate, migrated change:
/// `UPDATE_GOLDEN=1 cargo test -p shard-router --test routing golden`.
#[test]
fn golden_vectors() {
    let router = Router::new(&map(3, 2, 1024));
    let mut out = String::new();
    for r in ["NA", "SA"] {
        writeln!(out, "region {r} tag {}", ids::region_tag(r)).unwrap();
        let by_shard: BTreeMap<ShardName, Vec<Partition>> = router.partitions_by_shard(&region(r));
        for (shard, parts) in by_shard {
            let head: Vec<String> = parts.iter().take(12).map(Partition::to_string).collect();
            writeln!(out, "  {shard}: {} partitions, first {}", parts.len(), head.join(",")).unwrap();
        }
    }
    for (tag, partition, ms, random) in [
        (0u16, 0u16, 0u64, 0u64),
        (1023, 4095, (1 << 48) - 1, u64::MAX),
        (ids::region_tag("NA"), 17, 1_790_000_000_000, 42),
    ] {
        let id = ids::compose(Placement { region_tag: tag, partition: Partition::new(partition).unwrap() }, ms, random);
        writeln!(out, "id {tag}/{partition}/{ms}/{random} = {id}").unwrap();
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/routing.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &out).unwrap();
    }
    let expected = std::fs::read_to_string(path).expect("golden file (UPDATE_GOLDEN=1 to create)");
    assert_eq!(out, expected, "routing changed: existing ids would move shards");
}
