//! argon2id hashing, off the async threads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;
use crate::settings::Argon2Settings;

#[derive(Clone)]
pub struct Hasher {
    argon: Arc<Argon2<'static>>,
    /// A hash of a random password at the configured parameters, verified against when the
    /// email is unknown, so an unknown email costs the same time as a wrong password and timing
    /// tells nothing. Made at start-up, so the first such login is no slower than later ones.
    dummy: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    /// Checks the parameters and hashes the dummy password (one hash's time).
    pub async fn new(settings: &Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 settings (memory_kib, iterations, parallelism): {e}"))?;
        let argon = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
        let random = SaltString::generate(&mut rand_core::OsRng);
        let dummy =
            hash_blocking(argon.clone(), Password::parse(random.as_str()).map_err(|e| anyhow::anyhow!(e))?).await?;
        Ok(Self { argon, dummy: dummy.into() })
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        hash_blocking(self.argon.clone(), password).await
    }

    /// Whether `password` matches `hash`; `None` verifies against the dummy hash and is false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
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

/// Hashes on the blocking pool, inside the caller's span.
async fn hash_blocking(argon: Arc<Argon2<'static>>, password: Password) -> anyhow::Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let hasher = Hasher::new(&Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 }).await.unwrap();
        let pw = || Password::parse("correct horse").unwrap();
        let (a, b) = (hasher.hash(pw()).await.unwrap(), hasher.hash(pw()).await.unwrap());
        assert!(a.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt every time");
        assert!(hasher.verify(pw(), Some(a.clone())).await.unwrap());
        assert!(!hasher.verify(Password::parse("wrong horse").unwrap(), Some(a)).await.unwrap());
        assert!(!hasher.verify(pw(), None).await.unwrap(), "the dummy never matches");
    }

    #[tokio::test]
    async fn bad_parameters_are_refused_by_name() {
        let err = Hasher::new(&Argon2Settings { memory_kib: 1, iterations: 1, parallelism: 1 }).await.unwrap_err();
        assert!(err.to_string().contains("memory_kib"), "{err}");
    }
}
