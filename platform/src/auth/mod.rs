//! Access tokens: the claims accounts signs, and their verification everywhere else.
//!
//! Accounts signs EdDSA (Ed25519) JWTs and publishes its public keys at
//! `/.well-known/jwks.json`, each with a key id. Services verify locally with those keys, so no
//! request costs a call to accounts; an unknown key id triggers a (rate-limited) refetch, which
//! is how a rotated key is picked up. Only EdDSA is accepted: a token naming any other
//! algorithm, `none` included, is refused before any key is looked at.
//!
//! # Layout
//! - `claims`: [`Role`], [`Claims`], [`TokenPolicy`] (expected issuer and audience).
//! - `keys`: [`KeySet`], public keys by key id, parsed from a JWKS document.
//! - `verify`: [`AuthError`], [`token_kid`], [`verify_with`], the [`TokenVerifier`] seam and
//!   [`StaticKeys`].
//! - `jwks`: [`JwksVerifier`], the accounts JWKS fetched, cached and refreshed ([`JwksOptions`]).
//! - `extract`: [`bearer`] and the [`Authenticated`] extractor.

mod claims;
mod extract;
mod jwks;
mod keys;
mod verify;

pub use claims::{Claims, Role, TokenPolicy};
pub use extract::{Authenticated, bearer};
pub use jwks::{JwksOptions, JwksVerifier};
pub use keys::KeySet;
pub use verify::{AuthError, StaticKeys, TokenVerifier, Verifier, token_kid, verify_with};

#[cfg(test)]
mod tests;
