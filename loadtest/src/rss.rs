//! Resident memory of the stack's processes during a run, from their pid files (`.stack/run`)
//! and `/proc/<pid>/status`: the peak per process is what the memory target is about.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Samples every `every` until stopped; the peak VmRSS per process name, in kB.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl Sampler {
    pub fn start(dir: PathBuf, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peaks = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for (name, kb) in sample(&dir) {
                    let peak = peaks.entry(name).or_insert(0);
                    *peak = kb.max(*peak);
                }
                tokio::time::sleep(every).await;
            }
            peaks
        });
        Self { stop, task }
    }

    /// Stops sampling; peak RSS per process in MB.
    pub async fn finish(self) -> BTreeMap<String, f64> {
        self.stop.store(true, Ordering::Relaxed);
        let peaks = self.task.await.unwrap_or_default();
        peaks.into_iter().map(|(n, kb)| (n, kb as f64 / 1024.0)).collect()
    }
}

/// Current VmRSS (kB) of every live process with a `<name>.pid` file in `dir`.
fn sample(dir: &std::path::Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".pid")?.to_owned();
            let pid = std::fs::read_to_string(&path).ok()?.trim().parse::<u32>().ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            Some((name, vm_rss_kb(&status)?))
        })
        .collect()
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in kB.
pub fn vm_rss_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tgateway\nVmPeak:\t  123456 kB\nVmRSS:\t   23456 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_kb(status), Some(23456));
        assert_eq!(vm_rss_kb("Name:\tkthreadd\n"), None);
    }
}
