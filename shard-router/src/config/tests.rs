use super::*;

const GOOD: &str = r#"
[regions.NA]
partitions = 64
shards = ["na-1", "na-2"]

[regions.SA]
partitions = 32
shards = ["sa-1"]

[shards.na-1]
url = "postgres://postgres@127.0.0.1:5441/ticket_hub"
max_connections = 16

[shards.na-2]
url = "postgres://app:secret@127.0.0.1:5443/ticket_hub"

[shards.sa-1]
url = "postgres://postgres@127.0.0.1:5442/ticket_hub"
"#;

fn invalid(text: &str) -> (String, Option<usize>, String) {
    match ShardMap::parse(text, "shards.toml") {
        Ok(map) => panic!("accepted an invalid map: {map:?}"),
        Err(e @ ConfigError::Invalid { .. }) => (e.field().unwrap_or_default().to_owned(), e.line(), e.to_string()),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn the_repository_map_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shards.toml")).unwrap();
    let map = ShardMap::parse(&text, "shards.toml").unwrap();
    let names: Vec<_> = map.regions().map(|r| r.name.as_str().to_owned()).collect();
    assert_eq!(names, ["NA", "SA"]);
    assert_eq!(map.shard_named("na-1").unwrap().region.as_str(), "NA");
    assert_eq!(map.shard_named("sa-1").unwrap().url.database(), "ticket_hub");
}

#[test]
fn parses_regions_shards_and_defaults() {
    let map = ShardMap::parse(GOOD, "shards.toml").unwrap();
    let na = map.region_named("NA").unwrap();
    assert_eq!(na.partitions, 64);
    assert_eq!(na.shards.iter().map(ShardName::as_str).collect::<Vec<_>>(), ["na-1", "na-2"]);
    assert_eq!(map.shard_named("na-1").unwrap().max_connections, 16);
    assert_eq!(map.shard_named("na-2").unwrap().max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(map.shard_named("sa-1").unwrap().region.as_str(), "SA");
}

#[test]
fn unknown_key_names_field_and_line() {
    let text = GOOD.replace("max_connections = 16", "max_conections = 16");
    let (field, line, msg) = invalid(&text);
    assert_eq!(field, "shards.na-1.max_conections");
    assert_eq!(line, Some(12));
    assert!(msg.contains("unknown field"), "{msg}");
    assert!(msg.starts_with("shards.toml:12: "), "{msg}");
}

#[test]
fn unknown_top_level_table_is_refused() {
    let (field, line, _) = invalid(&format!("{GOOD}\n[regionz.EU]\npartitions = 1\n"));
    assert_eq!(field, "regionz.EU");
    assert_eq!(line, Some(20));
}

#[test]
fn region_with_no_shard() {
    let text = GOOD.replace(r#"shards = ["sa-1"]"#, "shards = []");
    let (field, line, msg) = invalid(&text);
    assert_eq!(field, "regions.SA.shards");
    assert_eq!(line, Some(8));
    assert!(msg.contains("at least one shard"), "{msg}");
}

#[test]
fn shard_no_region_uses() {
    let text = GOOD.replace(r#"shards = ["na-1", "na-2"]"#, r#"shards = ["na-1"]"#);
    let (field, line, msg) = invalid(&text);
    assert_eq!(field, "shards.na-2");
    assert_eq!(line, Some(14));
    assert!(msg.contains("not used by any region"), "{msg}");
}

#[test]
fn a_draining_shard_names_its_region() {
    // Removed from the region's list but kept, with its region, while a move drains it.
    let text = GOOD
        .replace(r#"shards = ["na-1", "na-2"]"#, r#"shards = ["na-1"]"#)
        .replace("[shards.na-2]\n", "[shards.na-2]\nregion = \"NA\"\n");
    let map = ShardMap::parse(&text, "test").unwrap();
    let na2 = map.shard_named("na-2").unwrap();
    assert_eq!(na2.region.as_str(), "NA");
    assert_eq!(map.region_named("NA").unwrap().shards.len(), 1);
    let wrong = text
        .replace("region = \"NA\"", "region = \"SA\"")
        .replace(r#"shards = ["na-1"]"#, r#"shards = ["na-1", "na-2"]"#);
    let (field, _, msg) = invalid(&wrong);
    assert_eq!(field, "shards.na-2.region");
    assert!(msg.contains("listed by region NA"), "{msg}");
    let (field, _, msg) = invalid(&text.replace("region = \"NA\"", "region = \"EU\""));
    assert_eq!(field, "shards.na-2.region");
    assert!(msg.contains("unknown region `EU`"), "{msg}");
}

#[test]
fn unknown_shard_in_region() {
    let text = GOOD.replace(r#"shards = ["sa-1"]"#, r#"shards = ["sa-9"]"#);
    let (field, _, msg) = invalid(&text);
    assert_eq!(field, "regions.SA.shards");
    assert!(msg.contains("unknown shard `sa-9`"), "{msg}");
}

#[test]
fn duplicate_names_are_refused() {
    // Twice in one region's list.
    let text = GOOD.replace(r#"shards = ["na-1", "na-2"]"#, r#"shards = ["na-1", "na-2", "na-1"]"#);
    let (field, line, msg) = invalid(&text);
    assert_eq!((field.as_str(), line), ("regions.NA.shards", Some(4)));
    assert!(msg.contains("duplicate name"), "{msg}");

    // In two regions.
    let text = GOOD.replace(r#"shards = ["sa-1"]"#, r#"shards = ["sa-1", "na-2"]"#);
    let (field, _, msg) = invalid(&text);
    assert_eq!(field, "regions.SA.shards");
    assert!(msg.contains("already serves region NA"), "{msg}");

    // The same table twice: the TOML parser's own error, with its line.
    let (field, line, msg) = invalid(&format!("{GOOD}\n[shards.sa-1]\nurl = \"postgres://h/db\"\n"));
    assert_eq!(field, "shards.sa-1");
    assert_eq!(line, Some(20));
    assert!(msg.contains("duplicate"), "{msg}");
}

#[test]
fn bad_urls_name_the_field() {
    for (bad, expect) in [
        ("not a url", "not a valid URL"),
        ("mysql://h/db", "scheme must be postgres"),
        ("postgres://127.0.0.1:5441", "names no database"),
    ] {
        let text = GOOD.replace("postgres://postgres@127.0.0.1:5442/ticket_hub", bad);
        let (field, line, msg) = invalid(&text);
        assert_eq!(field, "shards.sa-1.url", "{bad}");
        assert_eq!(line, Some(18), "{bad}");
        assert!(msg.contains(expect), "{bad}: {msg}");
    }
}

#[test]
fn wrong_types_and_ranges() {
    let (field, line, _) = invalid(&GOOD.replace("partitions = 64", "partitions = \"64\""));
    assert_eq!((field.as_str(), line), ("regions.NA.partitions", Some(3)));
    let (field, _, msg) = invalid(&GOOD.replace("partitions = 64", "partitions = 0"));
    assert_eq!(field, "regions.NA.partitions");
    assert!(msg.contains("between 1 and 4096"), "{msg}");
    let (field, _, _) = invalid(&GOOD.replace("max_connections = 16", "max_connections = -1"));
    assert_eq!(field, "shards.na-1.max_connections");
}

#[test]
fn bad_names() {
    let (field, _, msg) = invalid(&GOOD.replace("[regions.SA]", "[regions.sa]"));
    assert_eq!(field, "regions.sa");
    assert!(msg.contains("upper-case"), "{msg}");
    let (field, _, _) = invalid(&GOOD.replace("[shards.sa-1]", "[shards.SA_1]"));
    assert_eq!(field, "shards.SA_1");
}

#[test]
fn empty_file_needs_regions() {
    let (field, _, _) = invalid("");
    assert_eq!(field, "regions");
}

#[test]
fn syntax_error_has_a_line() {
    let (_, line, _) = invalid("[regions.NA]\npartitions = \n");
    assert_eq!(line, Some(2));
}

#[test]
fn url_overrides_apply_and_typos_are_refused() {
    let map = ShardMap::parse(GOOD, "shards.toml").unwrap();
    let o = BTreeMap::from([("na_2_url".to_owned(), "postgres://other:5999/x".to_owned())]);
    let map2 = map.clone().with_url_overrides(o).unwrap();
    assert_eq!(map2.shard_named("na-2").unwrap().url.expose(), "postgres://other:5999/x");
    assert_eq!(map2.shard_named("na-1").unwrap().url, map.shard_named("na-1").unwrap().url);

    let typo = BTreeMap::from([("na_3_url".to_owned(), "postgres://h/x".to_owned())]);
    let err = map.clone().with_url_overrides(typo).unwrap_err();
    assert_eq!(err.field(), Some("TICKET_HUB_SHARD_NA_3_URL"));
    assert!(err.to_string().contains("TICKET_HUB_SHARD_NA_1_URL"), "{err}");

    let bad = BTreeMap::from([("sa_1_url".to_owned(), "http://h/x".to_owned())]);
    let err = map.with_url_overrides(bad).unwrap_err();
    assert_eq!(err.field(), Some("TICKET_HUB_SHARD_SA_1_URL"));
}

#[test]
#[allow(clippy::result_large_err, reason = "figment::Jail fixes the closure's error type")]
fn load_reads_overrides_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("shards.toml", GOOD)?;
        jail.set_env("TICKET_HUB_SHARD_SA_1_URL", "postgres://elsewhere:6000/sa");
        let map = ShardMap::load("shards.toml").map_err(|e| e.to_string())?;
        assert_eq!(map.shard_named("sa-1").unwrap().url.expose(), "postgres://elsewhere:6000/sa");
        Ok(())
    });
}

#[test]
fn passwords_never_print() {
    let map = ShardMap::parse(GOOD, "shards.toml").unwrap();
    let shard = map.shard_named("na-2").unwrap();
    assert!(!format!("{shard:?}").contains("secret"));
    assert!(!shard.url.to_string().contains("secret"));
    assert!(shard.url.expose().contains("secret"));
}
