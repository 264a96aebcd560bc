//! The HTTP API: signup, login, me, and the JWKS; each handler's `#[utoipa::path]` is its part
//! of the OpenAPI document (`openapi/accounts.json`, served at `/openapi.json`).

use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;
use platform::auth::{Authenticated, Role, Verifier};
use platform::code;
use platform::error::{ApiError, ErrorBody, FieldErrors};
use platform::http::Json;
use platform::openapi::{About, DependencyFailures, JsonBody, TooManyRequests, Unauthorized};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Email, Password, UserName, signup_role};
use crate::keys::{Jwks, SigningKeys};
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

/// What the OpenAPI document says about this API.
pub const API: About = About {
    title: "Ticket Hub accounts",
    version: env!("CARGO_PKG_VERSION"),
    description: "Users, passwords and access tokens. Sign up, log in for an EdDSA access token \
        (valid for the other services too), read yourself back, and fetch the public keys tokens \
        are verified with. Errors are JSON `{error, message, details?}` with a stable `error` code.",
};

/// Every route of the API, documented; the caller gives the state.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(signup)).routes(routes!(login)).routes(routes!(me)).routes(routes!(jwks))
}

/// Every field optional here so a missing one is reported by name with the others; the
/// document says what a valid body holds.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    /// Unique (compared case-insensitively); surrounding spaces are ignored.
    #[schema(value_type = String, required = true, format = Email, max_length = 254, example = "ann@example.org")]
    email: Option<String>,
    /// A display name on one line; surrounding spaces are ignored.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, example = "Ann Lee")]
    name: Option<String>,
    /// 8 to 128 bytes of UTF-8, no control characters; kept as typed (spaces count).
    #[schema(value_type = String, required = true, format = Password, min_length = 8, max_length = 128)]
    password: Option<String>,
    /// CUSTOMER (when absent or empty) or ORGANIZER; ADMIN is refused.
    #[schema(value_type = Option<SignupRole>)]
    role: Option<String>,
}

/// The roles a signup may ask for (ADMINs are made with `accounts create-admin`).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code, reason = "a schema only: the body's role is parsed by `signup_role`")]
enum SignupRole {
    Customer,
    Organizer,
}

/// The answer to a signup.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct SignedUp {
    user_id: Uuid,
}

/// The answer to a login: a bearer token for every Ticket Hub API.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct LoggedIn {
    access_token: String,
    /// When the token stops verifying (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: String,
}

/// The caller, as accounts knows them.
#[derive(Serialize, utoipa::ToSchema)]
struct Me {
    id: Uuid,
    email: String,
    name: String,
    role: Role,
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

/// Sign up
///
/// Creates a user. The body names every field that is wrong at once.
#[utoipa::path(post, path = "/api/v1/signup", tag = "accounts", operation_id = "signup", request_body = SignupBody,
    responses(
        (status = 201, description = "Signed up; log in next", body = SignedUp),
        JsonBody,
        (status = 409, description = "`CONFLICT`: the email is already registered (`details.fields` names it)",
         body = ErrorBody),
        DependencyFailures,
    ))]
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
    Ok((StatusCode::CREATED, axum::Json(SignedUp { user_id: id.as_uuid() })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[schema(value_type = String, required = true, max_length = 254, example = "ann@example.org")]
    email: Option<String>,
    /// As typed at signup (1 to 128 bytes).
    #[schema(value_type = String, required = true, format = Password, min_length = 1, max_length = 128)]
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

/// Log in
///
/// Trades an email and password for an access token. After too many failed attempts for one
/// email, further attempts are refused (429) until the window ends.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", operation_id = "login", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = LoggedIn),
        JsonBody,
        (status = 401, description = "`UNAUTHORIZED`: unknown email or wrong password (one answer for both)",
         body = ErrorBody),
        TooManyRequests,
        DependencyFailures,
    ))]
#[tracing::instrument(skip_all)]
async fn login(State(s): State<AppState>, Json(body): Json<LoginBody>) -> Result<axum::Json<LoggedIn>, ApiError> {
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
            Ok(axum::Json(LoggedIn { access_token: token, expires_at: expires_at.to_rfc3339() }))
        }
        _ => {
            // Already counted by `admit`.
            metrics::counter!("accounts_logins_total", "outcome" => "failure").increment(1);
            // One answer for an unknown email and a wrong password: no account enumeration.
            Err(ApiError::Unauthorized("invalid email or password".into()))
        }
    }
}

/// Who am I
///
/// The user the access token was issued to (401 as well when that user no longer exists).
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", operation_id = "me", security(("bearerAuth" = [])),
    responses((status = 200, description = "The caller", body = Me), Unauthorized, DependencyFailures))]
#[tracing::instrument(skip_all, fields(user_id = %claims.sub))]
async fn me(State(s): State<AppState>, Authenticated(claims): Authenticated) -> Result<axum::Json<Me>, ApiError> {
    let user = repo::by_id(&s.db, claims.sub.into())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token's user no longer exists".into()))?;
    Ok(axum::Json(Me { id: user.id.as_uuid(), email: user.email, name: user.name, role: user.role }))
}

/// Token keys
///
/// The public keys access tokens are verified with. Verifiers cache them and fetch again on a
/// token naming an unknown key id.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "accounts", operation_id = "jwks", responses(
    (status = 200, description = "The JWKS", body = Jwks,
     headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
))]
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
