//! argon2id hashing, off the async threads.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tracing::Instrument;

use crate::domain::Password;
use crate::settings::Argon2Settings;

#[derive(Clone)]
pub struct Hasher {
    argon: Arc<Argon2<'static>>,
    /// A hash of a random password, verified against when the email is unknown, so an unknown
    /// email costs the same time as a wrong password and timing tells nothing.
    dummy: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(settings: &Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 settings: {e}"))?;
        Ok(Self { argon: Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)), dummy: Arc::default() })
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let argon = self.argon.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _guard = span.enter();
            let salt = SaltString::generate(&mut rand_core::OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?
    }

    /// Whether `password` matches `hash`; `None` verifies against the dummy hash and is false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => match self.dummy.get() {
                Some(d) => d.clone(),
                None => {
                    let d = self
                        .hash(Password::parse("dummy-password-for-timing").map_err(|e| anyhow::anyhow!(e))?)
                        .in_current_span()
                        .await?;
                    let _ = self.dummy.set(d.clone());
                    d
                }
            },
        };
        let argon = self.argon.clone();
        let span = tracing::Span::current();
        let matches = tokio::task::spawn_blocking(move || {
            let _guard = span.enter();
            let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            anyhow::Ok(argon.verify_password(password.expose().as_bytes(), &parsed).is_ok())
        })
        .await??;
        Ok(known && matches)
    }
}
