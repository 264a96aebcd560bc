//! The signing side of access tokens: the Ed25519 private key, token issuance and the JWKS
//! document other services verify with.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use platform::auth::{Claims, KeySet, Role, StaticKeys, TokenPolicy};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::UserId;
use crate::settings::JwtSettings;

/// The key accounts signs with, and what it publishes about it.
pub struct SigningKeys {
    encoding: EncodingKey,
    kid: String,
    /// base64url of the 32-byte public key: the JWK `x`.
    x: String,
    policy: TokenPolicy,
    ttl_secs: i64,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A new Ed25519 key as PKCS#8 PEM.
pub fn generate_pem() -> anyhow::Result<String> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    Ok(key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding key: {e}"))?.to_string())
}

/// Writes a new key to `path` (mode 0600) unless a file is already there; says whether it wrote.
pub fn generate_file(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let pem = generate_pem()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(path)?, pem.as_bytes())?;
    Ok(true)
}

impl SigningKeys {
    /// Loads the key the settings name. Without one the service must not start: tokens signed
    /// by a throw-away key would stop verifying at the next restart.
    pub fn from_settings(jwt: &JwtSettings) -> anyhow::Result<Self> {
        let pem = match (&jwt.private_key_pem, &jwt.private_key_file) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("jwt.private_key_file {}: {e}", path.display()))?,
            (None, None) => anyhow::bail!(
                "jwt.private_key_file is required (or TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM): \
                 create one with `accounts gen-key --out PATH`"
            ),
        };
        Self::from_pem(&pem, jwt.key_id.clone(), jwt.policy(), jwt.ttl.as_secs())
    }

    pub fn from_pem(pem: &str, kid: Option<String>, policy: TokenPolicy, ttl_secs: u64) -> anyhow::Result<Self> {
        let signing = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| anyhow::anyhow!("jwt private key is not an Ed25519 PKCS#8 PEM key: {e}"))?;
        let public = signing.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        let kid = kid.unwrap_or_else(|| URL_SAFE_NO_PAD.encode(Sha256::digest(public))[..16].to_owned());
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())?;
        let ttl_secs = i64::try_from(ttl_secs).map_err(|_| anyhow::anyhow!("jwt.ttl_secs is too large"))?;
        Ok(Self { encoding, kid, x, policy, ttl_secs })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs an access token for `user` valid from `now` for the configured lifetime.
    pub fn issue(&self, user: UserId, role: Role, now: DateTime<Utc>) -> anyhow::Result<(String, DateTime<Utc>)> {
        let iat = now.timestamp();
        let exp = iat + self.ttl_secs;
        let claims = Claims {
            sub: user.as_uuid(),
            role,
            iat,
            exp,
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        let expires_at = DateTime::from_timestamp(exp, 0).ok_or_else(|| anyhow::anyhow!("expiry out of range"))?;
        Ok((token, expires_at))
    }

    /// The JWKS document: the public key with its id, algorithm and use.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![Jwk {
                kty: "OKP",
                crv: "Ed25519",
                x: self.x.clone(),
                kid: self.kid.clone(),
                alg: "EdDSA",
                key_use: "sig",
            }],
        }
    }

    /// A verifier for this service's own tokens, with no HTTP round trip.
    pub fn verifier(&self) -> anyhow::Result<StaticKeys> {
        let mut keys = KeySet::default();
        keys.insert(self.kid.clone(), DecodingKey::from_ed_components(&self.x)?);
        Ok(StaticKeys { keys, policy: self.policy.clone() })
    }
}

/// The keys access tokens are verified with (RFC 7517), served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The signing key in use; a verifier picks the one whose `kid` the token names.
    pub keys: Vec<Jwk>,
}

/// One public key: Ed25519 (RFC 8037), for EdDSA signatures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    #[schema(example = "OKP")]
    pub kty: &'static str,
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// The key id tokens name in their header.
    pub kid: String,
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub key_use: &'static str,
}
