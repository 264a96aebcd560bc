//! The stack's processes during a run: peak resident memory (the memory target) and CPU time
//! (where the time goes on a machine whose cores everything shares), from their pid files
//! (`.stack/run`), every `postgres` process, this process, and `/proc/stat` for the machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc` CPU times (USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_S: f64 = 100.0;

/// What the processes used over the sampled window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Peak VmRSS per process, MB.
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// CPU seconds per process (`postgres` = every postgres process together, `loadtest` = the
    /// load generator itself).
    pub cpu_s: BTreeMap<String, f64>,
    /// Busy CPU seconds of the whole machine, and its capacity, over the window.
    pub machine_busy_s: f64,
    pub machine_capacity_s: f64,
    pub window_s: f64,
}

/// Samples memory every `every` until finished; CPU is read at both ends.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
    dir: PathBuf,
    cpu_start: BTreeMap<String, u64>,
    postgres_start: BTreeMap<u32, u64>,
    machine_start: Option<(u64, u64)>,
    started: std::time::Instant,
}

impl Sampler {
    pub fn start(dir: PathBuf, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampled = dir.clone();
        let task = tokio::spawn(async move {
            let mut peaks = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                for (name, pid) in pid_files(&sampled) {
                    if let Some(kb) = read(pid, "status").as_deref().and_then(vm_rss_kb) {
                        let peak = peaks.entry(name).or_insert(0);
                        *peak = kb.max(*peak);
                    }
                }
                tokio::time::sleep(every).await;
            }
            peaks
        });
        Self {
            stop,
            task,
            cpu_start: cpu_by_name(&dir),
            postgres_start: postgres_cpu(),
            machine_start: machine_cpu(),
            dir,
            started: std::time::Instant::now(),
        }
    }

    /// Stops sampling and returns the window's usage.
    pub async fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        let window_s = self.started.elapsed().as_secs_f64();
        let peaks = self.task.await.unwrap_or_default();
        let mut cpu_s = BTreeMap::new();
        for (name, end) in cpu_by_name(&self.dir) {
            let start = self.cpu_start.get(&name).copied().unwrap_or(0);
            cpu_s.insert(name, end.saturating_sub(start) as f64 / TICKS_PER_S);
        }
        let pg: u64 = postgres_cpu()
            .iter()
            .map(|(pid, end)| end.saturating_sub(self.postgres_start.get(pid).copied().unwrap_or(0)))
            .sum();
        cpu_s.insert("postgres".into(), pg as f64 / TICKS_PER_S);
        let (machine_busy_s, machine_capacity_s) = match (self.machine_start, machine_cpu()) {
            (Some((b0, t0)), Some((b1, t1))) => {
                let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
                let busy = b1.saturating_sub(b0) as f64 / TICKS_PER_S;
                let total = t1.saturating_sub(t0) as f64 / TICKS_PER_S;
                // /proc/stat sums every core; capacity in core-seconds is the wall time × cores.
                (busy, total.max(window_s * cores))
            }
            _ => (0.0, 0.0),
        };
        Usage {
            peak_rss_mb: peaks.into_iter().map(|(n, kb)| (n, kb as f64 / 1024.0)).collect(),
            cpu_s,
            machine_busy_s,
            machine_capacity_s,
            window_s,
        }
    }
}

fn read(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// `(name, pid)` of every `<name>.pid` file in `dir`.
fn pid_files(dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".pid")?.to_owned();
            let pid = std::fs::read_to_string(&path).ok()?.trim().parse::<u32>().ok()?;
            Some((name, pid))
        })
        .collect()
}

/// CPU ticks of the pid-file processes and of this one.
fn cpu_by_name(dir: &Path) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> =
        pid_files(dir).into_iter().filter_map(|(name, pid)| Some((name, cpu_ticks(&read(pid, "stat")?)?))).collect();
    if let Some(me) = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(cpu_ticks) {
        out.insert("loadtest".into(), me);
    }
    out
}

/// CPU ticks of every process named `postgres`, by pid.
fn postgres_cpu() -> BTreeMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = read(pid, "stat")?;
            (comm(&stat)? == "postgres").then_some(())?;
            Some((pid, cpu_ticks(&stat)?))
        })
        .collect()
}

/// `(busy, total)` ticks of all cores from `/proc/stat`.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    machine_ticks(&stat)
}

/// The `cpu` line: busy = everything but idle and iowait.
pub fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The command name in `/proc/<pid>/stat` (between the first `(` and the last `)`).
fn comm(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// utime + stime from `/proc/<pid>/stat`, in ticks.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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

    #[test]
    fn reads_cpu_ticks_even_with_odd_names() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 700 55 0 0 20 0 9 0 12345 1000 2000";
        assert_eq!(cpu_ticks(stat), Some(755));
        assert_eq!(comm(stat), Some("tokio (rt) x"));
        assert_eq!(cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn reads_machine_ticks() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some((160, 980)));
    }
}
