//! Service settings: defaults, then the service's TOML file, then the environment.
//!
//! Each service owns a `Settings` struct (serde, `deny_unknown_fields`) whose `Default` is its
//! `defaults/<service>.toml`, embedded at build time by [`embedded`]: the local-stack values,
//! written once, under the keys a file or variable uses. The environment layer is namespaced per service so one shell can run
//! the whole stack: `TICKET_HUB_ORDERS__HTTP_ADDR=0.0.0.0:3002`, nested keys with `__`
//! (`TICKET_HUB_ORDERS__REDIS__URL`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment prefix of a service: `orders-relay` → `TICKET_HUB_ORDERS_RELAY__`.
pub fn env_prefix(service: &str) -> String {
    let upper: String =
        service.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("TICKET_HUB_{upper}__")
}

/// Where a service looks for its TOML file when none is named: `config/<service>.toml`.
pub fn default_file(service: &str) -> PathBuf {
    PathBuf::from("config").join(format!("{service}.toml"))
}

/// The layered figment of a service, for callers that add layers of their own.
pub fn figment<T: Serialize + Default>(service: &str, file: Option<&Path>) -> Figment {
    let file = file.map_or_else(|| default_file(service), Path::to_path_buf);
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::file(file))
        .merge(Env::prefixed(&env_prefix(service)).split("__"))
}

/// Loads a service's settings. A missing file is fine (defaults and env apply); a file or
/// variable with an unknown key or a bad value is an error naming it.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    service: &str,
    file: Option<&Path>,
) -> Result<T, Box<figment::Error>> {
    figment::<T>(service, file).extract().map_err(Box::new)
}

/// `impl Default` for a settings type from a TOML file of its crate, compiled in:
/// `platform::defaults_from!(Settings, "defaults/orders.toml");` (the path from the crate's
/// root).
///
/// The file is the service's reference settings file (every key, with the value the local
/// stack runs with), so defaults are read where users write settings, in the same words,
/// rather than in a `Default` impl. It is part of the binary, so a mistake in it is a
/// programming error: the test of the services' defaults (`testkit/stack/tests/defaults.rs`)
/// parses every one of them, and [`embedded`] panics.
#[macro_export]
macro_rules! defaults_from {
    ($settings:ty, $file:literal) => {
        impl Default for $settings {
            fn default() -> Self {
                $crate::settings::embedded(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $file)))
            }
        }
    };
}

/// The settings in `toml`, a file compiled in (see [`defaults_from!`]); panics naming the key
/// that is wrong.
pub fn embedded<T: DeserializeOwned>(toml: &str) -> T {
    Figment::from(Toml::string(toml)).extract().unwrap_or_else(|e| panic!("embedded defaults: {e}"))
}

/// Refuses a duration under `min_ms`, naming `key` as files and the environment spell it
/// (`lease_retry_ms: must be at least 1`). Settings are refused, never clamped.
pub fn at_least_ms(key: &str, value: Duration, min_ms: u64) -> anyhow::Result<()> {
    anyhow::ensure!(value >= Duration::from_millis(min_ms), "{key}: must be at least {min_ms}");
    Ok(())
}

/// [`at_least_ms`] with an upper bound too.
pub fn between_ms(key: &str, value: Duration, min_ms: u64, max_ms: u64) -> anyhow::Result<()> {
    let range = Duration::from_millis(min_ms)..=Duration::from_millis(max_ms);
    anyhow::ensure!(range.contains(&value), "{key}: must be between {min_ms} and {max_ms}");
    Ok(())
}

/// A `Duration` kept under a key that names its unit in milliseconds (`lock_ttl_ms = 2000`):
/// `#[serde(rename = "lock_ttl_ms", with = "platform::settings::millis")] lock_ttl: Duration`.
/// Files and `TICKET_HUB_*` variables keep their keys; code gets a typed duration.
pub mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The same as [`millis`] for keys in seconds (`reservation_ttl_secs = 900`).
pub mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err, reason = "figment::Jail fixes the closures' error type")]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        http_addr: String,
        redis: Redis,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Redis {
        url: String,
        pool_size: u32,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self { http_addr: "127.0.0.1:1".into(), redis: Redis { url: "redis://a".into(), pool_size: 4 } }
        }
    }

    #[test]
    fn layers_defaults_file_then_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/demo-svc.toml", "http_addr = \"127.0.0.1:2\"\n[redis]\npool_size = 8\n")?;
            jail.set_env("TICKET_HUB_DEMO_SVC__REDIS__URL", "redis://b");
            let s: Demo = load("demo-svc", None).map_err(|e| e.to_string())?;
            assert_eq!(
                s,
                Demo { http_addr: "127.0.0.1:2".into(), redis: Redis { url: "redis://b".into(), pool_size: 8 } }
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TICKET_HUB_DEMO__REDIS__POOL_SIZE", "many");
            let err = load::<Demo>("demo", None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("redis.pool_size"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("d.toml", "http_adr = \"x\"\n")?;
            let err = load::<Demo>("demo", Some(Path::new("d.toml"))).unwrap_err().to_string();
            assert!(err.contains("http_adr"), "{err}");
            Ok(())
        });
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Timed {
        #[serde(rename = "wait_ms", with = "millis")]
        wait: std::time::Duration,
        #[serde(rename = "ttl_secs", with = "secs")]
        ttl: std::time::Duration,
    }

    impl Default for Timed {
        fn default() -> Self {
            Self { wait: std::time::Duration::from_millis(300), ttl: std::time::Duration::from_secs(900) }
        }
    }

    #[test]
    fn durations_keep_their_unit_keys() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(load::<Timed>("timed", None).map_err(|e| e.to_string())?, Timed::default());
            jail.set_env("TICKET_HUB_TIMED__WAIT_MS", "1500");
            jail.create_dir("config")?;
            jail.create_file("config/timed.toml", "ttl_secs = 60\n")?;
            let s: Timed = load("timed", None).map_err(|e| e.to_string())?;
            assert_eq!(s.wait, std::time::Duration::from_millis(1500));
            assert_eq!(s.ttl, std::time::Duration::from_secs(60));
            Ok(())
        });
    }
}
