//! The public keys tokens are verified with, by key id.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};

/// Public keys by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// Parses a JWKS document, keeping the Ed25519 keys that have a key id. Other keys (another
    /// algorithm, no kid) are skipped, not an error: a JWKS may carry keys for other uses.
    pub fn from_jwks_json(json: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(json)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let ed25519 =
                matches!(&jwk.algorithm, AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519);
            if let (Some(kid), true) = (&jwk.common.key_id, ed25519) {
                keys.insert(kid.clone(), DecodingKey::from_jwk(jwk)?);
            }
        }
        Ok(Self { keys })
    }

    pub fn insert(&mut self, kid: impl Into<String>, key: DecodingKey) {
        self.keys.insert(kid.into(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
