//! Operator tools for the local stack.
//!
//! # Layout
//! - [`audit`] (and the `audit` binary): the invariants across the shards, the relay, the
//!   consumers and the read models.
//! - `stackctl` (binary): `migrate` creates every database of the stack and applies its
//!   migrations; `instances` lists the local Postgres instances `./dev` must run, read from
//!   `shards.toml` so a shard added there gets its instance without touching the script.
//! - [`traces`] (and the `trace-viewer` binary): the local trace viewer `./dev up` starts, an
//!   in-memory OTLP receiver with browser pages.

pub mod audit;
pub mod traces;
