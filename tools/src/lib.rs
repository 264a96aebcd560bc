//! Operator tools for the local stack.
//!
//! # Layout
//! - `stackctl` (binary): `migrate` creates every database of the stack and applies its
//!   migrations; `instances` lists the local Postgres instances `./dev` must run, read from
//!   `shards.toml` so a shard added there gets its instance without touching the script.
