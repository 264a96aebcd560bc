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
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
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
    /// Parses a JWKS document, keeping the Ed25519 keys that have a key id. Other keys (another
    /// algorithm, no kid) are skipped, not an error: a JWKS may carry keys for other uses.
    pub fn from_jwks_json(json: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(json)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let ed25519 =
                matches!(&jwk.algorithm, AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519);
            if let (Some(kid), true) = (&jwk.common.key_id, ed25519) {
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

/// Timing of [`JwksVerifier`]'s fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// Least time between two fetches caused by tokens naming an unknown key id, so tokens
    /// with made-up kids cannot turn every request into a call to accounts.
    pub min_refresh: Duration,
    /// Age after which the cached keys are refetched in the background while still in use
    /// (default 300 s, the JWKS's `Cache-Control: max-age`), so a key removed from the JWKS
    /// (revoked) stops verifying even though no token names an unknown kid.
    pub max_age: Duration,
    /// Upper bound on one fetch of the JWKS, whatever the HTTP client's own settings.
    pub fetch_timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            min_refresh: Duration::from_secs(10),
            max_age: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Verification against the accounts service's JWKS: fetched on first use, refetched when a
/// token names an unknown key id (one fetch at a time, at most once per `min_refresh`), and
/// in the background once the keys are older than `max_age`. A failed fetch keeps the keys
/// already known, so an accounts outage does not log everyone out.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<JwksInner>,
}

struct JwksInner {
    url: String,
    client: reqwest::Client,
    policy: TokenPolicy,
    options: JwksOptions,
    keys: RwLock<CachedKeys>,
    /// Held for the whole of a fetch (single flight: requests waiting on an unknown kid read
    /// the keys the running fetch brings instead of fetching again). Holds when the last fetch
    /// was attempted, successful or not, which is what the rate limit counts.
    fetching: Arc<Mutex<Option<Instant>>>,
}

#[derive(Default)]
struct CachedKeys {
    set: KeySet,
    /// When `set` was fetched; `None` before the first successful fetch.
    fetched_at: Option<Instant>,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksVerifier").field("url", &self.inner.url).finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// `url` is the JWKS document, e.g. `http://127.0.0.1:3001/.well-known/jwks.json`; other
    /// timings take their defaults.
    pub fn new(url: impl Into<String>, client: reqwest::Client, policy: TokenPolicy, min_refresh: Duration) -> Self {
        Self::with_options(url, client, policy, JwksOptions { min_refresh, ..JwksOptions::default() })
    }

    pub fn with_options(
        url: impl Into<String>,
        client: reqwest::Client,
        policy: TokenPolicy,
        options: JwksOptions,
    ) -> Self {
        Self {
            inner: Arc::new(JwksInner {
                url: url.into(),
                client,
                policy,
                options,
                keys: RwLock::new(CachedKeys::default()),
                fetching: Arc::new(Mutex::new(None)),
            }),
        }
    }

    /// Fetches the key set now (waiting for a fetch already running), whatever the limits.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let mut last_attempt = self.inner.fetching.lock().await;
        *last_attempt = Some(Instant::now());
        self.fetch().await
    }

    /// One GET of the JWKS; replaces the cached keys only on success. Callers hold `fetching`.
    async fn fetch(&self) -> anyhow::Result<usize> {
        let res = self
            .inner
            .client
            .get(&self.inner.url)
            .timeout(self.inner.options.fetch_timeout)
            .send()
            .await?
            .error_for_status()?;
        let set = KeySet::from_jwks_json(&res.text().await?)?;
        let n = set.len();
        *self.inner.keys.write().await = CachedKeys { set, fetched_at: Some(Instant::now()) };
        Ok(n)
    }

    fn due(&self, last_attempt: Option<Instant>) -> bool {
        last_attempt.is_none_or(|at| at.elapsed() >= self.inner.options.min_refresh)
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let cached = self.inner.keys.read().await;
            if let Some(key) = cached.set.get(kid) {
                let stale = cached.fetched_at.is_none_or(|at| at.elapsed() >= self.inner.options.max_age);
                let key = key.clone();
                drop(cached);
                if stale {
                    self.refresh_in_background();
                }
                return Ok(key);
            }
        }
        let mut last_attempt = self.inner.fetching.lock().await;
        // A fetch that ran while this request waited may have brought the key.
        if let Some(key) = self.inner.keys.read().await.set.get(kid) {
            return Ok(key.clone());
        }
        if self.due(*last_attempt) {
            *last_attempt = Some(Instant::now());
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = format!("{e:#}"), url = %self.inner.url, "fetching the JWKS failed");
            }
        }
        drop(last_attempt);
        self.inner.keys.read().await.set.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }

    /// Starts a fetch unless one is running or one was attempted within `min_refresh`; the
    /// request that noticed goes on with the keys it has.
    fn refresh_in_background(&self) {
        let Ok(mut last_attempt) = self.inner.fetching.clone().try_lock_owned() else {
            return;
        };
        if !self.due(*last_attempt) {
            return;
        }
        *last_attempt = Some(Instant::now());
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.fetch().await {
                tracing::warn!(error = format!("{e:#}"), url = %this.inner.url, "refreshing the JWKS failed");
            }
            drop(last_attempt);
        });
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;

    /// An Ed25519 key as accounts holds it, with its kid.
    struct TestKey {
        kid: String,
        encoding: EncodingKey,
        x: String,
    }

    impl TestKey {
        fn new(kid: &str) -> Self {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
            Self {
                kid: kid.into(),
                encoding: EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
                x: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            }
        }

        fn jwk(&self) -> Value {
            json!({"kty": "OKP", "crv": "Ed25519", "x": self.x, "kid": self.kid, "alg": "EdDSA", "use": "sig"})
        }

        fn sign(&self, claims: &Claims) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
        }

        fn token(&self) -> String {
            self.sign(&claims(chrono::Utc::now().timestamp()))
        }

        fn static_keys(&self) -> StaticKeys {
            let mut keys = KeySet::default();
            keys.insert(self.kid.clone(), DecodingKey::from_ed_components(&self.x).unwrap());
            StaticKeys { keys, policy: TokenPolicy::default() }
        }
    }

    fn claims(iat: i64) -> Claims {
        let policy = TokenPolicy::default();
        Claims {
            sub: Uuid::now_v7(),
            role: Role::Customer,
            iat,
            exp: iat + 600,
            iss: policy.issuer,
            aud: policy.audience,
        }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// A JWKS endpoint whose keys a test swaps, counting the fetches it serves.
    struct JwksServer {
        url: String,
        keys: Arc<std::sync::Mutex<Value>>,
        fetches: Arc<AtomicUsize>,
    }

    impl JwksServer {
        async fn start(keys: &[&TestKey]) -> Self {
            let doc = Arc::new(std::sync::Mutex::new(Value::Null));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (d, n) = (doc.clone(), fetches.clone());
            let router = axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let (d, n) = (d.clone(), n.clone());
                    async move {
                        n.fetch_add(1, Ordering::SeqCst);
                        // Slow enough that concurrent verifiers overlap with the fetch.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        axum::Json(d.lock().unwrap().clone())
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router).await });
            let server = Self { url, keys: doc, fetches };
            server.publish(keys);
            server
        }

        fn publish(&self, keys: &[&TestKey]) {
            *self.keys.lock().unwrap() = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        fn verifier(&self, min_refresh_ms: u64, max_age_ms: u64) -> JwksVerifier {
            JwksVerifier::with_options(
                &self.url,
                reqwest::Client::new(),
                TokenPolicy::default(),
                JwksOptions {
                    min_refresh: Duration::from_millis(min_refresh_ms),
                    max_age: Duration::from_millis(max_age_ms),
                    fetch_timeout: Duration::from_secs(2),
                },
            )
        }
    }

    #[tokio::test]
    async fn only_eddsa_tokens_of_our_issuer_for_our_audience_verify() {
        let key = TestKey::new("k1");
        let v = key.static_keys();
        let now = chrono::Utc::now().timestamp();
        assert!(v.verify(&key.token()).await.is_ok());

        let expired = key.sign(&Claims { exp: now - 60, ..claims(now - 700) });
        assert_eq!(v.verify(&expired).await, Err(AuthError::Expired));
        let foreign_iss = key.sign(&Claims { iss: "someone".into(), ..claims(now) });
        assert_eq!(v.verify(&foreign_iss).await, Err(AuthError::Invalid));
        let foreign_aud = key.sign(&Claims { aud: "other-app".into(), ..claims(now) });
        assert_eq!(v.verify(&foreign_aud).await, Err(AuthError::Invalid));
        let forged = TestKey::new("k1").token();
        assert_eq!(v.verify(&forged).await, Err(AuthError::Invalid), "another key under our kid");
        let unknown = TestKey::new("k2").token();
        assert_eq!(v.verify(&unknown).await, Err(AuthError::UnknownKey));

        let body = b64(&serde_json::to_value(claims(now)).unwrap());
        let none = format!("{}.{body}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})));
        assert!(v.verify(&none).await.is_err(), "alg none");
        let hs256 = format!("{}.{body}.c2ln", b64(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"})));
        assert_eq!(v.verify(&hs256).await, Err(AuthError::Algorithm));
        let no_kid = format!("{}.{body}.c2ln", b64(&json!({"alg": "EdDSA", "typ": "JWT"})));
        assert_eq!(v.verify(&no_kid).await, Err(AuthError::UnknownKey));
        assert_eq!(v.verify("garbage").await, Err(AuthError::Malformed));
    }

    #[test]
    fn jwks_keeps_ed25519_keys_with_a_kid_and_skips_others() {
        let key = TestKey::new("ed");
        let doc = json!({"keys": [
            key.jwk(),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": key.x},
        ]});
        let set = KeySet::from_jwks_json(&doc.to_string()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.get("ed").is_some() && set.get("hmac").is_none());
    }

    #[tokio::test]
    async fn fetches_once_then_serves_from_the_cache() {
        let key = TestKey::new("a");
        let server = JwksServer::start(&[&key]).await;
        let v = server.verifier(60_000, 60_000);
        for _ in 0..5 {
            assert!(v.verify(&key.token()).await.is_ok());
        }
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_for_an_unknown_kid_share_one_fetch() {
        let key = TestKey::new("a");
        let server = JwksServer::start(&[&key]).await;
        let v = server.verifier(60_000, 60_000);
        let token = key.token();
        let results = futures::future::join_all((0..20).map(|_| v.verify(&token))).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(server.fetches(), 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_fetched_on_its_first_token_but_made_up_kids_are_rate_limited() {
        let (old, new) = (TestKey::new("old"), TestKey::new("new"));
        let server = JwksServer::start(&[&old]).await;
        let v = server.verifier(1_000, 60_000);
        assert!(v.verify(&old.token()).await.is_ok());

        // Tokens with made-up kids: the first fetch of the interval was just spent.
        for i in 0..10 {
            assert_eq!(v.verify(&TestKey::new(&format!("bogus-{i}")).token()).await, Err(AuthError::UnknownKey));
        }
        assert_eq!(server.fetches(), 1);

        server.publish(&[&old, &new]);
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert!(v.verify(&new.token()).await.is_ok(), "rotated key picked up");
        assert!(v.verify(&old.token()).await.is_ok(), "old key still valid while published");
        assert_eq!(server.fetches(), 2);
    }

    #[tokio::test]
    async fn stale_keys_are_refreshed_in_the_background_so_revoked_keys_stop_verifying() {
        let (revoked, kept) = (TestKey::new("revoked"), TestKey::new("kept"));
        let server = JwksServer::start(&[&revoked, &kept]).await;
        let v = server.verifier(50, 200);
        assert!(v.verify(&revoked.token()).await.is_ok());
        server.publish(&[&kept]);

        tokio::time::sleep(Duration::from_millis(250)).await;
        // Stale: still answered from the cache, while a refresh starts behind it.
        assert!(v.verify(&revoked.token()).await.is_ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.fetches() < 2 || v.verify(&revoked.token()).await.is_ok() {
            assert!(Instant::now() < deadline, "the stale keys were never refreshed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(v.verify(&kept.token()).await.is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_jwks_keeps_the_known_keys() {
        let key = TestKey::new("a");
        let server = JwksServer::start(&[&key]).await;
        let v = server.verifier(0, 0);
        assert!(v.verify(&key.token()).await.is_ok());
        *server.keys.lock().unwrap() = json!("not a jwks");
        // Every call is stale and due; the failed refreshes must not drop the key.
        for _ in 0..5 {
            assert!(v.verify(&key.token()).await.is_ok());
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(server.fetches() >= 2);
        assert!(v.refresh().await.is_err());
        assert!(v.verify(&key.token()).await.is_ok());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let parts = |value: Option<&str>| {
            let mut req = axum::http::Request::builder();
            if let Some(v) = value {
                req = req.header(AUTHORIZATION, v);
            }
            req.body(()).unwrap().into_parts().0
        };
        assert_eq!(bearer(&parts(Some("Bearer abc.def.ghi"))), Ok("abc.def.ghi"));
        assert_eq!(bearer(&parts(Some("bearer abc"))), Ok("abc"));
        assert_eq!(bearer(&parts(None)), Err(AuthError::Missing));
        assert_eq!(bearer(&parts(Some("Bearer  "))), Err(AuthError::Missing));
        assert_eq!(bearer(&parts(Some("Basic dXNlcjpwdw=="))), Err(AuthError::Malformed));
    }
}
