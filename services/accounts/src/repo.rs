//! The `users` table.

use platform::auth::Role;
use platform::error::ApiError;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{Email, UserId, UserName};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    password_hash: String,
}

impl TryFrom<Row> for User {
    type Error = ApiError;

    fn try_from(r: Row) -> Result<Self, ApiError> {
        let role = Role::parse(&r.role)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("unknown role {} in users", r.role)))?;
        Ok(Self { id: r.id.into(), email: r.email, name: r.name, role, password_hash: r.password_hash })
    }
}

fn db_error(e: sqlx::Error) -> ApiError {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            ApiError::Unavailable { message: "the accounts database is unavailable".into(), retry_after_secs: 2 }
        }
        _ => ApiError::internal(e),
    }
}

pub async fn insert(
    db: &PgPool,
    email: &Email,
    name: &UserName,
    password_hash: &str,
    role: Role,
) -> Result<UserId, ApiError> {
    let id = UserId::generate();
    let res = sqlx::query(
        "insert into users (id, email, email_normalized, name, password_hash, role) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_uuid())
    .bind(email.as_str())
    .bind(email.normalized())
    .bind(name.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .execute(db)
    .await;
    match res {
        Ok(_) => Ok(id),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(ApiError::Conflict {
            code: "CONFLICT",
            message: "an account with this email already exists".into(),
            details: Some(serde_json::json!({"fields": [{"field": "email", "message": "is already registered"}]})),
        }),
        Err(e) => Err(db_error(e)),
    }
}

pub async fn by_email(db: &PgPool, email: &Email) -> Result<Option<User>, ApiError> {
    let row: Option<Row> =
        sqlx::query_as("select id, email, name, role, password_hash from users where email_normalized = $1")
            .bind(email.normalized())
            .fetch_optional(db)
            .await
            .map_err(db_error)?;
    row.map(User::try_from).transpose()
}

pub async fn by_id(db: &PgPool, id: UserId) -> Result<Option<User>, ApiError> {
    let row: Option<Row> = sqlx::query_as("select id, email, name, role, password_hash from users where id = $1")
        .bind(id.as_uuid())
        .fetch_optional(db)
        .await
        .map_err(db_error)?;
    row.map(User::try_from).transpose()
}
