//! argon2id hashing on a few threads of its own, one per core.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// The hashing threads' queue. A fixed thread per core: more hashes at once add no
    /// throughput, only latency and memory, and each thread reuses the `memory_kib` block its
    /// last hash freed. On tokio's blocking pool a login burst ran dozens of hashes on dozens of
    /// threads, each keeping its freed blocks in its own allocator arena (870 MB resident).
    jobs: Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Starts `n` hashing threads; they end when the last sender of the queue is dropped.
fn start_threads(n: usize) -> anyhow::Result<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            loop {
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        })?;
    }
    Ok(tx)
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
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let mut this = Self { argon, dummy: Arc::from(""), jobs: start_threads(cores)? };
        let random = SaltString::generate(&mut rand_core::OsRng);
        this.dummy = this.hash(Password::parse(random.as_str()).map_err(|e| anyhow::anyhow!(e))?).await?.into();
        Ok(this)
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let argon = self.argon.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut rand_core::OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?
    }

    /// Runs `work` on a hashing thread, inside the caller's span.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move || {
            let _guard = span.enter();
            let _ = tx.send(work());
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("hashing threads stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("a hashing thread panicked"))
    }

    /// Whether `password` matches `hash`; `None` verifies against the dummy hash and is false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let argon = self.argon.clone();
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
                anyhow::Ok(argon.verify_password(password.expose().as_bytes(), &parsed).is_ok())
            })
            .await??;
        Ok(known && matches)
    }
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
