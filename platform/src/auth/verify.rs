//! Verifying one token: why it is refused ([`AuthError`]), the EdDSA-only header check, the
//! signature and claims check, and the [`TokenVerifier`] seam with its fixed-keys form.

use std::sync::Arc;

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{Claims, KeySet, TokenPolicy};
use crate::error::ApiError;

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
