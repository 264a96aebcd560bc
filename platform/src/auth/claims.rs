//! Who a token says the caller is ([`Claims`], [`Role`]) and who may issue it ([`TokenPolicy`]).

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defined with the other wire types (the gateway needs it without token verification).
pub use crate::contract::Role;

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
    pub(super) fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        v.leeway = 5;
        v
    }
}
