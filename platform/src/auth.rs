//! Access tokens: the claims accounts signs, and their verification everywhere else.
//!
//! Accounts signs EdDSA (Ed25519) JWTs and publishes its public keys at
//! `/.well-known/jwks.json`, each with a key id. Services verify locally with those keys, so no
//! request costs a call to accounts; an unknown key id triggers a (rate-limited) refetch, which
//! is how a rotated key is picked up. Only EdDSA is accepted: a token naming any other
//! algorithm, `none` included, is refused before any key is looked at.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use futures::future::BoxFuture;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::error::ApiError;

/// What a user may do. Serialised as `CUSTOMER`, `ORGANIZER`, `ADMIN` in tokens and APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Customer,
    Organizer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "CUSTOMER",
            Self::Organizer => "ORGANIZER",
            Self::Admin => "ADMIN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CUSTOMER" => Some(Self::Customer),
            "ORGANIZER" => Some(Self::Organizer),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Who may issue tokens and for whom: every verifier checks both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPolicy {
    /// Expected `iss` (default `ticket-hub-accounts`).
    pub issuer: String,
    /// Expected `aud` (default `ticket-hub`).
    pub audience: String,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self { issuer: "ticket-hub-accounts".into(), audience: "ticket-hub".into() }
    }
}

impl TokenPolicy {
    fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        v.leeway = 5;
        v
    }
}

/// Public keys by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// Parses a JWKS document, keeping the Ed25519 signing keys that have a key id.
    pub fn from_jwks_json(json: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(json)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if let Some(kid) = &jwk.common.key_id {
                keys.insert(kid.clone(), DecodingKey::from_jwk(jwk)?);
            }
        }
        Ok(Self { keys })
    }

    pub fn insert(&mut self, kid: impl Into<String>, key: DecodingKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a token was refused. Each maps to a 401; the message says which without helping an
/// attacker (no key material, no claim values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

/// The key id of a token whose header names EdDSA; anything else is refused here, before a key
/// is chosen.
pub fn token_kid(token: &str) -> Result<String, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(AuthError::Algorithm);
    }
    header.kid.ok_or(AuthError::UnknownKey)
}

/// Verifies `token` with `key` under `policy`.
pub fn verify_with(token: &str, key: &DecodingKey, policy: &TokenPolicy) -> Result<Claims, AuthError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<Claims>(token, key, &policy.validation()).map(|d| d.claims).map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            AuthError::Malformed
        }
        _ => AuthError::Invalid,
    })
}

/// Anything that turns a bearer token into verified claims.
pub trait TokenVerifier: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, AuthError>>;
}

/// The verifier a service's state holds.
pub type Verifier = Arc<dyn TokenVerifier>;

/// Verification with keys known up front (accounts verifying its own tokens, tests).
#[derive(Debug, Clone)]
pub struct StaticKeys {
    pub keys: KeySet,
    pub policy: TokenPolicy,
}

impl TokenVerifier for StaticKeys {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, AuthError>> {
        Box::pin(async move {
            let kid = token_kid(token)?;
            let key = self.keys.get(&kid).ok_or(AuthError::UnknownKey)?;
            verify_with(token, key, &self.policy)
        })
    }
}

/// Verification against the accounts service's JWKS, fetched on first use, refetched when a
/// token names an unknown key id (at most once per `min_refresh`) and on every `refresh()`.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<JwksInner>,
}

struct JwksInner {
    url: String,
    client: reqwest::Client,
    policy: TokenPolicy,
    keys: RwLock<KeySet>,
    /// When the keys were last fetched: bounds refetches caused by tokens with made-up kids.
    last_fetch: Mutex<Option<Instant>>,
    min_refresh: Duration,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksVerifier").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// `url` is the JWKS document, e.g. `http://127.0.0.1:3001/.well-known/jwks.json`.
    pub fn new(url: impl Into<String>, client: reqwest::Client, policy: TokenPolicy, min_refresh: Duration) -> Self {
        Self {
            inner: Arc::new(JwksInner {
                url: url.into(),
                client,
                policy,
                keys: RwLock::new(KeySet::default()),
                last_fetch: Mutex::new(None),
                min_refresh,
            }),
        }
    }

    /// Fetches the key set now.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let res = self.inner.client.get(&self.inner.url).send().await?.error_for_status()?;
        let keys = KeySet::from_jwks_json(&res.text().await?)?;
        let n = keys.len();
        *self.inner.keys.write().await = keys;
        *self.inner.last_fetch.lock().await = Some(Instant::now());
        Ok(n)
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.inner.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        let due = self.inner.last_fetch.lock().await.is_none_or(|at| at.elapsed() >= self.inner.min_refresh);
        if due && let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "fetching the JWKS failed");
        }
        self.inner.keys.read().await.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }
}

impl TokenVerifier for JwksVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, AuthError>> {
        Box::pin(async move {
            let kid = token_kid(token)?;
            let key = self.key_for(&kid).await?;
            verify_with(token, &key, &self.inner.policy)
        })
    }
}

/// The bearer token of a request, if it carries one.
pub fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts.headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if token.is_empty() { Err(AuthError::Missing) } else { Ok(token) }
}

/// An authenticated caller: extract it in a handler to require a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Verifier: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<Claims>() {
            return Ok(Self(claims.clone()));
        }
        let verifier = Verifier::from_ref(state);
        let claims = verifier.verify(bearer(parts)?).await?;
        parts.extensions.insert(claims.clone());
        Ok(Self(claims))
    }
}
