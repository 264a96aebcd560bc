//! The HTTP API: signup, login, me, and the JWKS.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::Utc;
use platform::auth::{Authenticated, Verifier};
use platform::code;
use platform::error::{ApiError, FieldErrors};
use platform::http::Json;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::domain::{Email, Password, UserName, signup_role};
use crate::keys::SigningKeys;
use crate::password::Hasher;
use crate::repo;
use crate::throttle::Throttle;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub hasher: Hasher,
    pub keys: Arc<SigningKeys>,
    /// Verifies this service's own tokens with its public key: no HTTP round trip.
    pub verifier: Verifier,
    pub throttle: Throttle,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/signup", post(signup))
        .route("/api/v1/login", post(login))
        .route("/api/v1/me", get(me))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

/// Every field optional here so a missing one is reported by name with the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

/// Written by hand so that logging a body can never print the password.
impl fmt::Debug for SignupBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignupBody")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("role", &self.role)
            .finish()
    }
}

#[tracing::instrument(skip_all)]
async fn signup(State(s): State<AppState>, Json(body): Json<SignupBody>) -> Result<impl IntoResponse, ApiError> {
    let mut fields = FieldErrors::default();
    let email = fields.check("email", Email::parse(body.email.as_deref().unwrap_or_default()));
    let name = fields.check("name", UserName::parse(body.name.as_deref().unwrap_or_default()));
    let password = fields.check("password", Password::parse(body.password.as_deref().unwrap_or_default()));
    let role = fields.check("role", signup_role(body.role.as_deref()));
    let (Some(email), Some(name), Some(password), Some(role)) = (email, name, password, role) else {
        return Err(fields.into_error());
    };
    let hash = s.hasher.hash(password).await.map_err(ApiError::Internal)?;
    let id = repo::insert(&s.db, &email, &name, &hash, role).await?;
    metrics::counter!("accounts_signups_total", "role" => role.as_str()).increment(1);
    tracing::info!(user_id = %id, %role, "signed up");
    Ok((StatusCode::CREATED, axum::Json(json!({ "userId": id }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

impl fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginBody")
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[tracing::instrument(skip_all)]
async fn login(State(s): State<AppState>, Json(body): Json<LoginBody>) -> Result<axum::Json<Value>, ApiError> {
    let mut fields = FieldErrors::default();
    let email = fields.check("email", Email::parse(body.email.as_deref().unwrap_or_default()));
    let password = fields.check("password", Password::for_login(body.password.as_deref().unwrap_or_default()));
    let (Some(email), Some(password)) = (email, password) else {
        return Err(fields.into_error());
    };
    let normalized = email.normalized();
    if let Err(e) = s.throttle.admit(&normalized).await {
        metrics::counter!("accounts_logins_total", "outcome" => "throttled").increment(1);
        return Err(e);
    }
    let user = repo::by_email(&s.db, &email).await?;
    let matches =
        s.hasher.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await.map_err(ApiError::Internal)?;
    match user {
        Some(user) if matches => {
            s.throttle.succeeded(&normalized).await;
            let (token, expires_at) = s.keys.issue(user.id, user.role, Utc::now()).map_err(ApiError::Internal)?;
            metrics::counter!("accounts_logins_total", "outcome" => "success").increment(1);
            tracing::info!(user_id = %user.id, "logged in");
            Ok(axum::Json(json!({ "accessToken": token, "expiresAt": expires_at.to_rfc3339() })))
        }
        _ => {
            // Already counted by `admit`.
            metrics::counter!("accounts_logins_total", "outcome" => "failure").increment(1);
            // One answer for an unknown email and a wrong password: no account enumeration.
            Err(ApiError::Unauthorized("invalid email or password".into()))
        }
    }
}

#[tracing::instrument(skip_all, fields(user_id = %claims.sub))]
async fn me(State(s): State<AppState>, Authenticated(claims): Authenticated) -> Result<axum::Json<Value>, ApiError> {
    let user = repo::by_id(&s.db, claims.sub.into())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token's user no longer exists".into()))?;
    Ok(axum::Json(json!({ "id": user.id, "email": user.email, "name": user.name, "role": user.role })))
}

async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    // Verifiers cache keys and refetch on an unknown kid, so a short max-age is enough.
    ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(s.keys.jwks()))
}

/// The one mapping of a `users` error to an answer (HTTP here; gRPC through `ApiError`).
impl From<repo::RepoError> for ApiError {
    fn from(e: repo::RepoError) -> Self {
        match e {
            repo::RepoError::EmailTaken => ApiError::Conflict {
                code: code::CONFLICT,
                message: e.to_string(),
                details: Some(json!({"fields": [{"field": "email", "message": "is already registered"}]})),
            },
            repo::RepoError::UnknownRole(_) => ApiError::internal(e),
            repo::RepoError::Db(e) => ApiError::from_db(e, "the accounts database"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_never_show_the_password_in_debug() {
        let signup: SignupBody =
            serde_json::from_value(json!({"email": "a@b.org", "name": "A", "password": "hunter2hunter2"})).unwrap();
        let login: LoginBody =
            serde_json::from_value(json!({"email": "a@b.org", "password": "hunter2hunter2"})).unwrap();
        for shown in [format!("{signup:?}"), format!("{login:?}")] {
            assert!(!shown.contains("hunter2") && shown.contains("<redacted>") && shown.contains("a@b.org"), "{shown}");
        }
    }
}
