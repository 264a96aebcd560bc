//! Settings of the accounts service (figment: defaults → `config/accounts.toml` →
//! `TICKET_HUB_ACCOUNTS__*`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use platform::auth::TokenPolicy;
use platform::settings::{millis, secs};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3001`).
    pub http_addr: SocketAddr,
    /// gRPC listen address (default `127.0.0.1:50051`).
    pub grpc_addr: SocketAddr,
    /// The `accounts` database on the global instance.
    pub database_url: String,
    /// Upper bound on waiting for a database connection, in milliseconds (default 2000); past
    /// it a request answers 503 with `Retry-After`.
    #[serde(rename = "db_acquire_timeout_ms", with = "millis")]
    pub db_acquire_timeout: Duration,
    /// Redis, where failed logins are counted (default `redis://127.0.0.1:6379`).
    pub redis_url: String,
    /// Prefix of every Redis key this service writes, so instances of several stacks (or
    /// tests) share one Redis without meeting (default `accounts:`).
    pub redis_key_prefix: String,
    /// Access tokens: signing key, claims, lifetime.
    pub jwt: JwtSettings,
    /// Failed-login limits per email.
    pub login_throttle: ThrottleSettings,
    /// Password hashing cost.
    pub argon2: Argon2Settings,
}

impl Settings {
    /// Rules serde cannot express; the error names the setting. Called by
    /// [`crate::Application::build`], so a bad value stops the service before it listens.
    pub fn validate(&self) -> anyhow::Result<()> {
        let jwt = &self.jwt;
        if jwt.private_key_file.is_some() && jwt.private_key_pem.is_some() {
            anyhow::bail!("jwt.private_key_file and jwt.private_key_pem are both set; set one");
        }
        if jwt.ttl.is_zero() {
            anyhow::bail!("jwt.ttl_secs must be at least 1");
        }
        if jwt.issuer.trim().is_empty() || jwt.audience.trim().is_empty() {
            anyhow::bail!("jwt.issuer and jwt.audience must not be empty");
        }
        if jwt.key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
            anyhow::bail!("jwt.key_id must not be empty when set");
        }
        if self.login_throttle.max_failures == 0 {
            anyhow::bail!("login_throttle.max_failures must be at least 1");
        }
        if self.login_throttle.window.is_zero() {
            anyhow::bail!("login_throttle.window_secs must be at least 1");
        }
        Ok(())
    }
}

platform::defaults_from!(Settings, "defaults/accounts.toml");

/// Token signing. The private key is required: from `private_key_file` (PKCS#8 PEM, as
/// `accounts gen-key` writes it) or inline in `private_key_pem` (for secret stores that inject
/// environment variables: `TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// Path of the Ed25519 private key, PKCS#8 PEM (`TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE`).
    pub private_key_file: Option<PathBuf>,
    /// The same key inline, for secret stores that inject variables; never logged.
    pub private_key_pem: Option<String>,
    /// Key id published in the JWKS and stamped on tokens; default derived from the public key,
    /// so a new key gets a new id by itself.
    pub key_id: Option<String>,
    /// `iss` of issued tokens (default `ticket-hub-accounts`).
    pub issuer: String,
    /// `aud` of issued tokens (default `ticket-hub`).
    pub audience: String,
    /// Lifetime of an access token, in seconds (default one hour).
    #[serde(rename = "ttl_secs", with = "secs")]
    pub ttl: Duration,
}

impl JwtSettings {
    pub fn policy(&self) -> TokenPolicy {
        TokenPolicy { issuer: self.issuer.clone(), audience: self.audience.clone() }
    }
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("private_key_file", &self.private_key_file)
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "<redacted>"))
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl.as_secs())
            .finish()
    }
}

/// Failed logins tolerated per email within a window before answering 429.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Failed attempts allowed per email within the window (default 10); the next gets 429.
    pub max_failures: u32,
    /// Length of the window, in seconds, counted from its first failure (default 300).
    #[serde(rename = "window_secs", with = "secs")]
    pub window: Duration,
}

/// argon2id cost. The default is the OWASP cheat sheet's 12 MiB, 3 passes, 1 lane, which it
/// lists as equal in strength to its first row (19 MiB, 2 passes): the memory each hashing thread
/// keeps resident is what sets the service's footprint (issue 16: 53.8 MB peak with 19 MiB
/// blocks, 39.5 MB with 12 MiB, under `mixed` plus 600 logins at c=64), and the extra pass costs
/// less time than the larger block did. A login still costs far more to brute-force than to
/// serve. Hashes made at another cost keep verifying: the PHC string carries its parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Settings {
    /// Memory per hash, in KiB (default 12288 = 12 MiB). Each hashing thread (one per core)
    /// keeps that much resident from its first hash on: most of the service's memory.
    pub memory_kib: u32,
    /// Passes over that memory (default 3).
    pub iterations: u32,
    /// Lanes (default 1: one core per hash, so concurrent logins use the other cores).
    pub parallelism: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(Settings::default().validate().is_ok());
        type Tweak = fn(&mut Settings);
        let cases: [(&str, Tweak); 5] = [
            ("jwt.ttl_secs", |s| s.jwt.ttl = Duration::ZERO),
            ("login_throttle.max_failures", |s| s.login_throttle.max_failures = 0),
            ("login_throttle.window_secs", |s| s.login_throttle.window = Duration::ZERO),
            ("jwt.private_key_pem", |s| {
                s.jwt.private_key_file = Some("k.pem".into());
                s.jwt.private_key_pem = Some("pem".into());
            }),
            ("jwt.key_id", |s| s.jwt.key_id = Some(" ".into())),
        ];
        for (name, tweak) in cases {
            let mut s = Settings::default();
            tweak(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn the_inline_key_never_shows_in_debug() {
        let mut s = Settings::default();
        s.jwt.private_key_pem = Some("-----BEGIN PRIVATE KEY-----secret".into());
        let shown = format!("{s:?}");
        assert!(!shown.contains("secret") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment::Jail fixes the closure's error type")]
    fn env_layering_reaches_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE", "/keys/jwt.pem");
            jail.set_env("TICKET_HUB_ACCOUNTS__LOGIN_THROTTLE__MAX_FAILURES", "3");
            let s: Settings = platform::settings::load("accounts", None).map_err(|e| e.to_string())?;
            assert_eq!(s.jwt.private_key_file.as_deref(), Some(std::path::Path::new("/keys/jwt.pem")));
            assert_eq!(s.login_throttle.max_failures, 3);
            Ok(())
        });
    }
}
