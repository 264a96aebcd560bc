//! argon2id hashing on a few threads of its own, one per core, each with its own argon2 memory.
//!
//! A hash needs `memory_kib` of working memory (12 MiB by default). `Argon2::hash_password`
//! allocates it for every hash and frees it after; glibc keeps freed blocks that size in its
//! arenas instead of unmapping them, and other allocations split them, so a burst of 600 logins
//! on two hashing threads left 163 MB resident (442 MB for signups), not 40. Here each hashing
//! thread allocates its block once, on its first hash, and hands it to every hash it runs, so
//! the service holds `threads × memory_kib` and no more, whatever the burst. (The kept blocks
//! hold the last hash's state until the next hash overwrites it, as freed ones did inside the
//! allocator before.)

use std::cell::RefCell;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{
    self, Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::domain::Password;
use crate::settings::Argon2Settings;

#[derive(Clone)]
pub struct Hasher {
    /// The configured cost, which new hashes are made at. Verification takes the cost from the
    /// stored hash, so hashes made under other settings still verify.
    params: Params,
    /// A hash of a random password at the configured parameters, verified against when the
    /// email is unknown, so an unknown email costs the same time as a wrong password and timing
    /// tells nothing. Made at start-up, so the first such login is no slower than later ones.
    dummy: Arc<str>,
    /// The hashing threads' queue. A fixed thread per core: more hashes at once add no
    /// throughput, only latency and memory (one argon2 block each). On tokio's blocking pool a
    /// login burst ran dozens of hashes on dozens of threads (870 MB resident).
    jobs: Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// One hashing thread's argon2 working memory, kept from hash to hash.
struct Memory {
    /// Empty until the thread's first hash, so a thread that never hashes costs nothing.
    blocks: Vec<Block>,
    /// The configured cost's block count: what `blocks` grows to, and no further.
    kept: usize,
}

impl Memory {
    /// Runs `f` on at least `count` blocks: the kept ones, or for a hash costlier than the
    /// configured one (made under older settings) blocks of its own, freed after.
    fn with<T>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        if count > self.kept {
            return f(&mut vec![Block::default(); count]);
        }
        if self.blocks.len() < count {
            self.blocks = vec![Block::default(); self.kept];
        }
        f(&mut self.blocks)
    }
}

/// argon2 working on a hashing thread's [`Memory`]. As a [`PasswordHasher`] it gets
/// password-hash's own `verify_password` (cost, algorithm and version from the stored hash,
/// constant-time comparison), so the PHC strings it makes and accepts are `Argon2`'s: only
/// where the memory comes from differs.
struct OnThread<'m> {
    /// The configured cost, for new hashes.
    params: Params,
    /// The thread's kept blocks; a `RefCell` because `PasswordHasher` takes `&self`.
    memory: RefCell<&'m mut Memory>,
}

impl OnThread<'_> {
    /// What `Argon2::hash_password` does, on the kept memory.
    fn compute<'a>(
        &self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: Salt<'a>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon = Argon2::new(algorithm, version, params.clone());
        let output = self.memory.borrow_mut().with(params.block_count(), |blocks| {
            Output::init_with(output_len, |out| {
                Ok(argon.hash_password_into_with_memory(password, salt_bytes, out, blocks)?)
            })
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

impl PasswordHasher for OnThread<'_> {
    type Params = Params;

    fn hash_password<'a>(&self, password: &[u8], salt: impl Into<Salt<'a>>) -> password_hash::Result<PasswordHash<'a>> {
        self.compute(Algorithm::Argon2id, Version::V0x13, self.params.clone(), password, salt.into())
    }

    /// As `Argon2`'s: a missing algorithm or version is argon2id, 0x13.
    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        algorithm: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> password_hash::Result<PasswordHash<'a>> {
        let algorithm = algorithm.map(Algorithm::try_from).transpose()?.unwrap_or_default();
        let version = version.map(Version::try_from).transpose()?.unwrap_or_default();
        self.compute(algorithm, version, params, password, salt.into())
    }
}

/// Starts `n` hashing threads, each keeping `blocks` blocks of memory once it has hashed; they
/// end when the last sender of the queue is dropped.
fn start_threads(n: usize, blocks: usize) -> anyhow::Result<Sender<Job>> {
    let (tx, rx) = channel::<Job>();
    let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            let mut memory = Memory { blocks: Vec::new(), kept: blocks };
            loop {
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match job {
                    Ok(job) => job(&mut memory),
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
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let jobs = start_threads(cores, params.block_count())?;
        let mut this = Self { params, dummy: Arc::from(""), jobs };
        let random = SaltString::generate(&mut rand_core::OsRng);
        this.dummy = this.hash(Password::parse(random.as_str()).map_err(|e| anyhow::anyhow!(e))?).await?.into();
        Ok(this)
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        self.run(move |argon| {
            let salt = SaltString::generate(&mut rand_core::OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?
    }

    /// Runs `work` on a hashing thread and its memory, inside the caller's span.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&OnThread<'_>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let params = self.params.clone();
        let job: Job = Box::new(move |memory| {
            let _guard = span.enter();
            let _ = tx.send(work(&OnThread { params, memory: RefCell::new(memory) }));
        });
        self.jobs.send(job).map_err(|_| anyhow::anyhow!("hashing threads stopped"))?;
        rx.await.map_err(|_| anyhow::anyhow!("a hashing thread panicked"))
    }

    /// Whether `password` matches `hash`; `None` verifies against the dummy hash and is false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let matches = self
            .run(move |argon| {
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

    const SMALL: Argon2Settings = Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 };

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let hasher = Hasher::new(&SMALL).await.unwrap();
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

    /// Hashes stored before the kept memory, made by `Argon2::hash_password` (commit b5be513),
    /// at the default cost and at a smaller and a larger one than the hasher's: all verify, on
    /// the kept memory, on blocks of their own, and after one another on the same thread.
    #[tokio::test]
    async fn hashes_made_before_the_kept_memory_still_verify() {
        let stored =
            [("correct horse battery", PHC_DEFAULT), ("correct horse", PHC_SMALL), ("correct horse", PHC_LARGER)];
        let hasher = Hasher::new(&SMALL).await.unwrap();
        for _ in 0..2 {
            for (password, phc) in stored {
                let ok = hasher.verify(Password::parse(password).unwrap(), Some(phc.into())).await.unwrap();
                assert!(ok, "{phc}");
                let wrong = hasher.verify(Password::parse("wrong horse").unwrap(), Some(phc.into())).await.unwrap();
                assert!(!wrong, "{phc}");
            }
        }
    }

    /// The kept memory holds the last hash's blocks; the next hash must not depend on them.
    #[test]
    fn a_hash_on_reused_memory_is_argon2s_own() {
        let params = Params::new(SMALL.memory_kib, SMALL.iterations, SMALL.parallelism, None).unwrap();
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut memory = Memory { blocks: Vec::new(), kept: params.block_count() };
        let on_thread = OnThread { params, memory: RefCell::new(&mut memory) };
        for (password, salt) in [("correct horse", "c2FsdHNhbHRzYWx0"), ("wrong horse", "b3RoZXJzYWx0c2FsdA")] {
            let salt = SaltString::from_b64(salt).unwrap();
            let ours = on_thread.hash_password(password.as_bytes(), &salt).unwrap().to_string();
            let theirs = argon.hash_password(password.as_bytes(), &salt).unwrap().to_string();
            assert_eq!(ours, theirs);
        }
    }

    /// `correct horse battery` at the defaults before issue 16 (19456 KiB, 2 passes, 1 lane): the
    /// hashes stored until then, which must keep verifying after the default moved to 12 MiB.
    const PHC_DEFAULT: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$zcxv2JbpRhNghSMkMdgDQQ$WG8413sIsQ53zBakRAebTjPPx8xCtwP+eJV/s2FYakc";
    /// `correct horse` at 1024 KiB, 1 pass.
    const PHC_SMALL: &str =
        "$argon2id$v=19$m=1024,t=1,p=1$CkfkfLB7VSkACEnqvhOxnw$SkZGtrFmECFeMoVZOZ/Le+Ga7+SdZ3tQgu+zDUaJTI8";
    /// `correct horse` at 2048 KiB, 1 pass: more than a 1024 KiB hasher keeps.
    const PHC_LARGER: &str =
        "$argon2id$v=19$m=2048,t=1,p=1$W2L7RxMDR7lvWWT+oQ1eOA$lND8QpJ/wXIHfc5bZjL+D7nUVChXLJa1UihhRxXgRV0";
}
