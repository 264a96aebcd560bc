//! The `users` table. Returns its own [`RepoError`]; what a client sees for it is decided once,
//! in `http.rs` (gRPC answers go through the same `ApiError`).

use platform::auth::Role;
use platform::error::ResultExt;
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

/// What a `users` statement can end in besides its value.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The normalized email is registered already (`users_email_normalized`).
    #[error("an account with this email already exists")]
    EmailTaken,
    /// A stored row this code cannot read (a role it does not know): a bug or a bad migration.
    #[error("unknown role {0} in users")]
    UnknownRole(String),
    #[error("users query failed")]
    Db(#[from] sqlx::Error),
}

impl TryFrom<Row> for User {
    type Error = RepoError;

    fn try_from(r: Row) -> Result<Self, RepoError> {
        let role = Role::parse(&r.role).ok_or(RepoError::UnknownRole(r.role))?;
        Ok(Self { id: r.id.into(), email: r.email, name: r.name, role, password_hash: r.password_hash })
    }
}

pub async fn insert(
    db: &PgPool,
    email: &Email,
    name: &UserName,
    password_hash: &str,
    role: Role,
) -> Result<UserId, RepoError> {
    let id = UserId::generate();
    sqlx::query(
        "insert into users (id, email, email_normalized, name, password_hash, role) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_uuid())
    .bind(email.as_str())
    .bind(email.normalized())
    .bind(name.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .execute(db)
    .await
    .on_constraint("users_email_normalized", || RepoError::EmailTaken)?;
    Ok(id)
}

pub async fn by_email(db: &PgPool, email: &Email) -> Result<Option<User>, RepoError> {
    let row: Option<Row> =
        sqlx::query_as("select id, email, name, role, password_hash from users where email_normalized = $1")
            .bind(email.normalized())
            .fetch_optional(db)
            .await?;
    row.map(User::try_from).transpose()
}

pub async fn by_id(db: &PgPool, id: UserId) -> Result<Option<User>, RepoError> {
    let row: Option<Row> = sqlx::query_as("select id, email, name, role, password_hash from users where id = $1")
        .bind(id.as_uuid())
        .fetch_optional(db)
        .await?;
    row.map(User::try_from).transpose()
}
