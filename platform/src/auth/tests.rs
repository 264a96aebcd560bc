use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

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
    Claims { sub: Uuid::now_v7(), role: Role::Customer, iat, exp: iat + 600, iss: policy.issuer, aud: policy.audience }
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
