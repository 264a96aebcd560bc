//! `shards.toml`: regions, shards, and which shards serve which region.
//!
//! The file is parsed with `toml` directly rather than through figment because figment drops
//! source spans, and a shard map that is wrong must say *where* it is wrong. Figment still does
//! what it is good at: the environment layer (`TICKET_HUB_SHARD_<NAME>_URL`) on top of the file.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Prefix of the environment variables that override a shard's connection string.
pub const URL_OVERRIDE_PREFIX: &str = "TICKET_HUB_SHARD_";

pub use crate::partition::MAX_PARTITIONS;

const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const MAX_MAX_CONNECTIONS: u32 = 1000;

/// A validated shard map. Construct with [`ShardMap::load`] or [`ShardMap::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    regions: BTreeMap<RegionName, Region>,
    shards: BTreeMap<ShardName, Shard>,
}

/// A region such as `NA`: upper-case ASCII letters, digits and `_`, starting with a letter, so
/// that it is also a valid GraphQL enum value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionName(String);

/// A shard such as `na-1`: lower-case ASCII letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardName(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: RegionName,
    /// The 10-bit tag ids of this region carry (see [`crate::ids`]).
    pub tag: u16,
    /// Number of logical partitions; fixed once ids have been handed out.
    pub partitions: u16,
    /// Shards serving the region, in file order.
    pub shards: Vec<ShardName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub name: ShardName,
    /// The one region this shard serves.
    pub region: RegionName,
    pub url: DatabaseUrl,
    /// Pool size per service process.
    pub max_connections: u32,
}

/// A Postgres connection string whose password never reaches logs: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(url::Url);

/// Why a shard map was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file (or `environment`) the bad value came from.
        origin: String,
        /// Dotted path of the offending field, e.g. `shards.na-1.url`.
        field: String,
        /// 1-based line in `origin`, where known.
        line: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    /// The dotted path of the offending field, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Read { .. } => None,
        }
    }

    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::Read { .. } => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    regions: BTreeMap<Spanned<String>, RawRegion>,
    #[serde(default)]
    shards: BTreeMap<Spanned<String>, RawShard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    partitions: Spanned<i64>,
    shards: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    url: Spanned<String>,
    max_connections: Option<Spanned<i64>>,
    /// The region of a shard no region lists: one being drained by a move (decommission).
    region: Option<Spanned<String>>,
}

/// Turns spans into lines and builds errors that point into one source text.
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn error(&self, field: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            field: field.into(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        }
    }

    /// Maps a `toml` error (syntax, unknown key, wrong type) to the field it is about: the key
    /// under the span, qualified by the nearest table header above it.
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let message = err.message().trim().to_owned();
        let Some(span) = err.span() else {
            return ConfigError::Invalid {
                origin: self.origin.to_owned(),
                field: "(file)".into(),
                line: None,
                message,
            };
        };
        let line_start = self.text[..span.start.min(self.text.len())].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[line_start..].find('\n').map_or(self.text.len(), |i| line_start + i);
        let line = self.text[line_start..line_end].trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']').trim();
            return self.error(header, span, message);
        }
        let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"')).filter(|k| !k.is_empty());
        let table = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        let field = match (table, key) {
            (Some(t), Some(k)) => format!("{t}.{k}"),
            (Some(t), None) => t,
            (None, Some(k)) => k.to_owned(),
            (None, None) => "(file)".to_owned(),
        };
        self.error(field, span, message)
    }
}

/// What a client is told for a region name no shard map holds: the name and the known ones.
/// Written once, for the orders service and the gateway alike.
pub fn unknown_region<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    format!("unknown region `{name}`; known: {}", known.into_iter().collect::<Vec<_>>().join(", "))
}

impl ShardMap {
    /// Reads `path`, validates it, and applies `TICKET_HUB_SHARD_<NAME>_URL` overrides from the
    /// process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let map = Self::parse(&text, &path.display().to_string())?;
        let overrides = figment::Figment::from(figment::providers::Env::prefixed(URL_OVERRIDE_PREFIX))
            .extract::<BTreeMap<String, String>>()
            .map_err(|e| ConfigError::Invalid {
                origin: "environment".into(),
                field: format!("{URL_OVERRIDE_PREFIX}*"),
                line: None,
                message: e.to_string(),
            })?;
        map.with_url_overrides(overrides)
    }

    /// Parses and validates the text of a shard map; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let src = Source { origin, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        Self::validate(raw, &src)
    }

    /// The cross-field rules, each a named check below, run in this order (the first failure is
    /// the one reported): both tables present, shard names, each region (name, partitions, its
    /// shards, its id tag), then each shard (its region, URL, pool size).
    fn validate(raw: RawFile, src: &Source<'_>) -> Result<Self, ConfigError> {
        require_regions_and_shards(&raw, src)?;
        // Shards first, so regions can refer to them.
        let shard_defs = shard_definitions(&raw, src)?;
        let mut regions = BTreeMap::new();
        let mut owner: BTreeMap<ShardName, RegionName> = BTreeMap::new();
        for (name, region) in &raw.regions {
            let region = check_region(name, region, &shard_defs, &regions, &mut owner, src)?;
            regions.insert(region.name.clone(), region);
        }
        let mut shards = BTreeMap::new();
        for (name, (raw_shard, name_span)) in shard_defs {
            let shard = check_shard(name, raw_shard, name_span, &owner, &regions, src)?;
            shards.insert(shard.name.clone(), shard);
        }
        Ok(Self { regions, shards })
    }

    /// Applies connection-string overrides keyed as figment's `Env` provider yields them:
    /// the variable name without the prefix, lower-cased (`na_1_url`). An override for a shard
    /// that does not exist is an error, so a typo cannot silently leave the file's URL in place.
    pub fn with_url_overrides(mut self, overrides: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        for (key, value) in overrides {
            let var = format!("{URL_OVERRIDE_PREFIX}{}", key.to_ascii_uppercase());
            let invalid = |message: String| ConfigError::Invalid {
                origin: "environment".into(),
                field: var.clone(),
                line: None,
                message,
            };
            let Some(env_key) = key.to_ascii_uppercase().strip_suffix("_URL").map(str::to_owned) else {
                return Err(invalid(format!(
                    "unknown variable; shard overrides look like {URL_OVERRIDE_PREFIX}<NAME>_URL"
                )));
            };
            let Some(shard) = self.shards.values_mut().find(|s| s.name.env_key() == env_key) else {
                let known: Vec<String> = self.shards.keys().map(ShardName::env_var).collect();
                return Err(invalid(format!("no shard matches; known: {}", known.join(", "))));
            };
            shard.url = DatabaseUrl::parse(&value).map_err(invalid)?;
        }
        Ok(self)
    }

    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    pub fn region(&self, name: &RegionName) -> Option<&Region> {
        self.regions.get(name)
    }

    /// Looks a region up by its name as a client wrote it.
    pub fn region_named(&self, name: &str) -> Option<&Region> {
        self.regions.values().find(|r| r.name.as_str() == name)
    }

    /// The region a client named, or the one message for a name this map does not hold
    /// ([`unknown_region`]).
    pub fn parse_region(&self, name: &str) -> Result<&Region, String> {
        self.region_named(name).ok_or_else(|| unknown_region(name, self.regions().map(|r| r.name.as_str())))
    }

    pub fn shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.values()
    }

    pub fn shard(&self, name: &ShardName) -> Option<&Shard> {
        self.shards.get(name)
    }

    pub fn shard_named(&self, name: &str) -> Option<&Shard> {
        self.shards.values().find(|s| s.name.as_str() == name)
    }
}

/// The shards of a file by name, each with its raw table and the span of its name.
type ShardDefinitions<'a> = BTreeMap<ShardName, (&'a RawShard, Range<usize>)>;

/// A file needs at least one region and at least one shard.
fn require_regions_and_shards(raw: &RawFile, src: &Source<'_>) -> Result<(), ConfigError> {
    if raw.regions.is_empty() {
        return Err(ConfigError::Invalid {
            origin: src.origin.to_owned(),
            field: "regions".into(),
            line: None,
            message: "at least one region is required, e.g. [regions.NA]".into(),
        });
    }
    if raw.shards.is_empty() {
        return Err(ConfigError::Invalid {
            origin: src.origin.to_owned(),
            field: "shards".into(),
            line: None,
            message: "at least one shard is required, e.g. [shards.na-1]".into(),
        });
    }
    Ok(())
}

/// Every `[shards.X]` name is well formed. Duplicate table names are already refused by the
/// TOML parser, with their line.
fn shard_definitions<'a>(raw: &'a RawFile, src: &Source<'_>) -> Result<ShardDefinitions<'a>, ConfigError> {
    let mut shard_defs = BTreeMap::new();
    for (name, shard) in &raw.shards {
        let field = format!("shards.{}", name.get_ref());
        let shard_name = ShardName::parse(name.get_ref()).map_err(|m| src.error(&field, name.span(), m))?;
        shard_defs.insert(shard_name, (shard, name.span()));
    }
    Ok(shard_defs)
}

/// One `[regions.X]`: its name, its partition count, its shards (see [`check_region_shards`]),
/// and an id tag no region checked before it has.
fn check_region(
    name: &Spanned<String>,
    region: &RawRegion,
    shard_defs: &ShardDefinitions<'_>,
    regions: &BTreeMap<RegionName, Region>,
    owner: &mut BTreeMap<ShardName, RegionName>,
    src: &Source<'_>,
) -> Result<Region, ConfigError> {
    let field = format!("regions.{}", name.get_ref());
    let region_name = RegionName::parse(name.get_ref()).map_err(|m| src.error(&field, name.span(), m))?;
    let partitions = *region.partitions.get_ref();
    let partitions = u16::try_from(partitions).ok().filter(|p| (1..=MAX_PARTITIONS).contains(p)).ok_or_else(|| {
        src.error(
            format!("{field}.partitions"),
            region.partitions.span(),
            format!("must be between 1 and {MAX_PARTITIONS}, got {partitions}"),
        )
    })?;
    let shards = check_region_shards(&field, &region_name, region, shard_defs, owner, src)?;
    let tag = crate::ids::region_tag(region_name.as_str());
    if let Some(other) = regions.values().find(|r| r.tag == tag) {
        return Err(src.error(
            &field,
            name.span(),
            format!("region {region_name} has the same id tag as region {}; rename one of them", other.name),
        ));
    }
    Ok(Region { name: region_name, tag, partitions, shards })
}

/// A region's `shards` list: not empty, each name well formed, defined, listed once, and
/// serving no other region (recorded in `owner`).
fn check_region_shards(
    field: &str,
    region_name: &RegionName,
    region: &RawRegion,
    shard_defs: &ShardDefinitions<'_>,
    owner: &mut BTreeMap<ShardName, RegionName>,
    src: &Source<'_>,
) -> Result<Vec<ShardName>, ConfigError> {
    let shards_field = format!("{field}.shards");
    if region.shards.get_ref().is_empty() {
        return Err(src.error(&shards_field, region.shards.span(), "a region needs at least one shard"));
    }
    let mut shards = Vec::new();
    for shard in region.shards.get_ref() {
        let shard_name = ShardName::parse(shard.get_ref()).map_err(|m| src.error(&shards_field, shard.span(), m))?;
        if !shard_defs.contains_key(&shard_name) {
            return Err(src.error(
                &shards_field,
                shard.span(),
                format!("unknown shard `{shard_name}`: define it as [shards.{shard_name}]"),
            ));
        }
        if shards.contains(&shard_name) {
            return Err(src.error(
                &shards_field,
                shard.span(),
                format!("duplicate name: shard `{shard_name}` is listed twice"),
            ));
        }
        if let Some(other) = owner.insert(shard_name.clone(), region_name.clone()) {
            return Err(src.error(
                &shards_field,
                shard.span(),
                format!("shard `{shard_name}` already serves region {other}; a shard serves one region"),
            ));
        }
        shards.push(shard_name);
    }
    Ok(shards)
}

/// One `[shards.X]`: the region it serves (see [`shard_region`]), its URL, its pool size.
fn check_shard(
    name: ShardName,
    raw_shard: &RawShard,
    name_span: Range<usize>,
    owner: &BTreeMap<ShardName, RegionName>,
    regions: &BTreeMap<RegionName, Region>,
    src: &Source<'_>,
) -> Result<Shard, ConfigError> {
    let field = format!("shards.{name}");
    let region = shard_region(&field, &name, raw_shard, name_span, owner, regions, src)?;
    let url = DatabaseUrl::parse(raw_shard.url.get_ref())
        .map_err(|m| src.error(format!("{field}.url"), raw_shard.url.span(), m))?;
    let max_connections = match &raw_shard.max_connections {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(v) => {
            u32::try_from(*v.get_ref()).ok().filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n)).ok_or_else(|| {
                src.error(
                    format!("{field}.max_connections"),
                    v.span(),
                    format!("must be between 1 and {MAX_MAX_CONNECTIONS}, got {}", v.get_ref()),
                )
            })?
        }
    };
    Ok(Shard { name, region, url, max_connections })
}

/// The region a shard serves: the one listing it (a `region` key, if any, must agree), or, for
/// a shard no region lists, the existing region its `region` key names.
fn shard_region(
    field: &str,
    name: &ShardName,
    raw_shard: &RawShard,
    name_span: Range<usize>,
    owner: &BTreeMap<ShardName, RegionName>,
    regions: &BTreeMap<RegionName, Region>,
    src: &Source<'_>,
) -> Result<RegionName, ConfigError> {
    match (owner.get(name), &raw_shard.region) {
        (Some(listed), None) => Ok(listed.clone()),
        (Some(listed), Some(named)) if named.get_ref() == listed.as_str() => Ok(listed.clone()),
        (Some(listed), Some(named)) => Err(src.error(
            format!("{field}.region"),
            named.span(),
            format!("shard `{name}` is listed by region {listed}, not `{}`", named.get_ref()),
        )),
        // Not listed: allowed while a move drains it, and then it must say whose data it
        // still holds, so the live map can keep routing there until the move is done.
        (None, Some(named)) => match RegionName::parse(named.get_ref()).ok().and_then(|n| regions.get(&n)) {
            Some(r) => Ok(r.name.clone()),
            None => {
                Err(src.error(format!("{field}.region"), named.span(), format!("unknown region `{}`", named.get_ref())))
            }
        },
        (None, None) => Err(src.error(
            field,
            name_span,
            format!(
                "shard `{name}` is not used by any region: list it in a region's `shards`, or keep it \
                 with `region = \"NA\"` (its region) while `orders-rebalance apply` drains it, or remove it"
            ),
        )),
    }
}

impl RegionName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (1..=16).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("region name `{s}` must be 1-16 upper-case letters, digits or `_`, starting with a letter"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ShardName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("shard name `{s}` must be 1-63 lower-case letters, digits or `-`"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as it appears in environment variables: `na-1` → `NA_1`. One-to-one, since a
    /// shard name has no `_`.
    fn env_key(&self) -> String {
        self.0.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    }

    /// The variable that overrides this shard's URL.
    pub fn env_var(&self) -> String {
        format!("{URL_OVERRIDE_PREFIX}{}_URL", self.env_key())
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ShardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!("scheme must be postgres:// or postgresql://, got `{}://`", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".into());
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err("the URL names no database (postgres://host:port/DATABASE)".into());
        }
        Ok(Self(url))
    }

    /// The full connection string, password included: for drivers only, never for logs.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn database(&self) -> &str {
        self.0.path().trim_start_matches('/')
    }

    /// The same server with another database, e.g. `postgres` to create this one.
    pub fn with_database(&self, database: &str) -> Self {
        let mut url = self.0.clone();
        url.set_path(database);
        Self(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests;
