//! Verification against the accounts JWKS, fetched and refreshed over HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::DecodingKey;
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, Claims, KeySet, TokenPolicy, TokenVerifier, token_kid, verify_with};

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

    /// The verifier a service runs with: tokens of `issuer` for `audience`, checked against
    /// the JWKS at `url`, fetched over a client of its own whose calls give up after 3 s.
    pub fn for_service(url: &str, issuer: &str, audience: &str, min_refresh: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
        let policy = TokenPolicy { issuer: issuer.to_owned(), audience: audience.to_owned() };
        Ok(Self::new(url, client, policy, min_refresh))
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
