//! The HTTP side: the bearer token of a request, and the [`Authenticated`] extractor.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{AuthError, Claims, Verifier};
use crate::error::ApiError;

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
