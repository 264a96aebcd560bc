//! Settings of the accounts service (figment: defaults → `config/accounts.toml` →
//! `TICKET_HUB_ACCOUNTS__*`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use platform::auth::TokenPolicy;
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
    /// Upper bound on waiting for a database connection, in milliseconds.
    pub db_acquire_timeout_ms: u64,
    pub redis_url: String,
    /// Prefix of every Redis key this service writes, so instances of several stacks (or
    /// tests) share one Redis without meeting.
    pub redis_key_prefix: String,
    pub jwt: JwtSettings,
    pub login_throttle: ThrottleSettings,
    pub argon2: Argon2Settings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: "postgres://postgres@127.0.0.1:5440/accounts".into(),
            db_acquire_timeout_ms: 2000,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key_prefix: "accounts:".into(),
            jwt: JwtSettings::default(),
            login_throttle: ThrottleSettings::default(),
            argon2: Argon2Settings::default(),
        }
    }
}

/// Token signing. The private key is required: from `private_key_file` (PKCS#8 PEM, as
/// `accounts gen-key` writes it) or inline in `private_key_pem` (for secret stores that inject
/// environment variables: `TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    pub private_key_file: Option<PathBuf>,
    pub private_key_pem: Option<String>,
    /// Key id published in the JWKS and stamped on tokens; default derived from the public key,
    /// so a new key gets a new id by itself.
    pub key_id: Option<String>,
    /// `iss` of issued tokens (default `ticket-hub-accounts`).
    pub issuer: String,
    /// `aud` of issued tokens (default `ticket-hub`).
    pub audience: String,
    /// Lifetime of an access token, in seconds (default one hour).
    pub ttl_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        let policy = TokenPolicy::default();
        Self {
            private_key_file: None,
            private_key_pem: None,
            key_id: None,
            issuer: policy.issuer,
            audience: policy.audience,
            ttl_secs: 3600,
        }
    }
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
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// Failed logins tolerated per email within a window before answering 429.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    pub max_failures: u32,
    pub window_secs: u64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self { max_failures: 10, window_secs: 300 }
    }
}

/// argon2id cost. The default is OWASP's first recommended setting (19 MiB, 2 passes, 1 lane):
/// about 20 ms a hash here, so a login costs far more to brute-force than to serve, while two
/// cores still serve tens of logins a second.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}
