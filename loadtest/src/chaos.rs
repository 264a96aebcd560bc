//! `--chaos`: faults injected into the running stack at set seconds of the measured window,
//! each carried out by `./dev chaos` (the same command a person types), and what the load saw
//! around each: error answers per region and how long after the fault ended answers were clean
//! again.
//!
//! `--chaos 'at=10s stop-shard sa-1; at=20s start-shard sa-1; at=30s pause-broker 40'`: every
//! fault starts at its second of the measured window (0 = the end of the warm-up) whether or not
//! the one before has finished, so a pause can overlap the faults after it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::stats::RegionPoint;

/// One scheduled fault: when, and the words after `./dev chaos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub at: Duration,
    pub words: Vec<String>,
}

impl Fault {
    /// Whether the stack is whole again once the command returns (a restart, the end of a
    /// pause): the faults a recovery time is measured for.
    fn restores(&self) -> bool {
        !matches!(self.words[0].as_str(), "stop-shard")
    }
}

/// The faults of one `--chaos` schedule, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Fault>);

/// `--chaos`'s parser.
pub fn schedule(text: &str) -> Result<Schedule, String> {
    parse(text).map(Schedule)
}

/// Parses a schedule: `;`-separated `at=<duration> <fault> [<argument>]`, sorted by time. Each
/// error names the part it is about.
pub fn parse(schedule: &str) -> Result<Vec<Fault>, String> {
    let mut faults = Vec::new();
    for part in schedule.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let at = words
            .next()
            .and_then(|w| w.strip_prefix("at="))
            .ok_or_else(|| format!("`{part}`: must start with at=<time>, e.g. at=10s"))?;
        let at = crate::cli::parse_duration(at).map_err(|e| format!("`{part}`: {e}"))?;
        let words: Vec<String> = words.map(str::to_owned).collect();
        let arity = match words.first().map(String::as_str) {
            Some("stop-shard" | "start-shard" | "kill") => 1,
            Some("pause-broker" | "stop-redis") => {
                let secs = words.get(1).map(|w| w.parse::<u32>());
                if !matches!(secs, Some(Ok(_))) {
                    return Err(format!("`{part}`: {} takes whole seconds", words[0]));
                }
                1
            }
            Some("kill-relay") => 0,
            Some(other) => {
                return Err(format!(
                    "`{part}`: unknown fault `{other}` (stop-shard, start-shard, pause-broker, kill-relay, kill, \
                     stop-redis)"
                ));
            }
            None => return Err(format!("`{part}`: no fault after the time")),
        };
        if words.len() != arity + 1 {
            return Err(format!("`{part}`: {} takes {arity} argument(s)", words[0]));
        }
        faults.push(Fault { at, words });
    }
    if faults.is_empty() {
        return Err("no fault in the schedule".into());
    }
    faults.sort_by_key(|f| f.at);
    Ok(faults)
}

/// What one fault did, in seconds of the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub fault: String,
    pub started_s: f64,
    /// When `./dev chaos` returned (a pause or a restart takes a while).
    pub ended_s: f64,
    pub succeeded: bool,
    /// Whether the stack is whole again when the command returns (a restart, the end of a
    /// pause, a start); not for a stop.
    pub restores: bool,
    /// The command's last line of output, for the report.
    pub said: String,
    /// Error answers per region from `started_s` to the next fault (or the end of the window).
    pub errors: BTreeMap<String, BTreeMap<String, u64>>,
    /// For a fault that ends whole (a restart, a pause), seconds from `ended_s` to the first
    /// second with answers and no errors in every region; `None` if that never came in the
    /// window, or for a stop.
    pub recovered_after_s: Option<f64>,
}

/// Runs every fault at its time, each with `dev chaos <words>`, and waits for all of them.
pub async fn drive(faults: Vec<Fault>, origin: Instant, dev: PathBuf) -> Vec<Mark> {
    let tasks: Vec<_> = faults
        .into_iter()
        .map(|f| {
            let dev = dev.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(origin + f.at).await;
                let started_s = origin.elapsed().as_secs_f64();
                let out = tokio::process::Command::new(&dev).arg("chaos").args(&f.words).output().await;
                let ended_s = origin.elapsed().as_secs_f64();
                let (succeeded, said) = match out {
                    Ok(o) => {
                        let text =
                            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
                        (o.status.success(), text.lines().last().unwrap_or_default().trim().to_owned())
                    }
                    Err(e) => (false, format!("{}: {e}", dev.display())),
                };
                eprintln!(
                    "chaos at {started_s:.1}s: {} -> {}",
                    f.words.join(" "),
                    if succeeded { "ok" } else { &said }
                );
                Mark {
                    fault: f.words.join(" "),
                    started_s,
                    ended_s,
                    succeeded,
                    restores: f.restores(),
                    said,
                    errors: BTreeMap::new(),
                    recovered_after_s: None,
                }
            })
        })
        .collect();
    let mut marks = Vec::new();
    for t in tasks {
        if let Ok(m) = t.await {
            marks.push(m);
        }
    }
    marks
}

/// Fills each mark's errors and recovery time from the per-region timeline.
pub fn assess(marks: &mut [Mark], points: &[RegionPoint], window_s: f64) {
    let starts: Vec<f64> = marks.iter().map(|m| m.started_s).collect();
    for (i, m) in marks.iter_mut().enumerate() {
        let until = starts.get(i + 1).copied().unwrap_or(window_s);
        for p in points.iter().filter(|p| (p.second as f64 + 1.0) > m.started_s && (p.second as f64) < until) {
            let region = m.errors.entry(p.region.clone()).or_default();
            for (code, n) in &p.errors {
                *region.entry(code.clone()).or_default() += n;
            }
        }
        if m.restores {
            m.recovered_after_s = first_clean_second(points, m.ended_s).map(|s| (s - m.ended_s).max(0.0));
        }
    }
}

/// The start of the first whole second at or after `from` in which every region answered and
/// none with an error.
fn first_clean_second(points: &[RegionPoint], from: f64) -> Option<f64> {
    let mut by_second: BTreeMap<u64, Vec<&RegionPoint>> = BTreeMap::new();
    for p in points.iter().filter(|p| p.second as f64 >= from.floor()) {
        by_second.entry(p.second).or_default().push(p);
    }
    let regions = points.iter().map(|p| p.region.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    by_second
        .into_iter()
        .find(|(_, ps)| ps.len() == regions && ps.iter().all(|p| p.ok > 0 && p.errors.is_empty()))
        .map(|(s, _)| s as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_takes_a_whole_schedule() {
        use clap::Parser;
        let args = crate::cli::Args::try_parse_from([
            "loadtest",
            "mixed",
            "--chaos",
            "at=10s stop-shard sa-1; at=20s start-shard sa-1",
        ])
        .unwrap();
        assert_eq!(args.chaos.map(|s| s.0.len()), Some(2));
        let err = crate::cli::Args::try_parse_from(["loadtest", "mixed", "--chaos", "at=1s explode"]).unwrap_err();
        assert!(err.to_string().contains("unknown fault `explode`"), "{err}");
    }

    #[test]
    fn a_schedule_is_sorted_and_every_mistake_is_named() {
        let got =
            parse("at=20s start-shard sa-1; at=10s stop-shard sa-1;at=30s pause-broker 40; at=1m kill-relay").unwrap();
        let words: Vec<(u64, String)> = got.iter().map(|f| (f.at.as_secs(), f.words.join(" "))).collect();
        assert_eq!(
            words,
            [
                (10, "stop-shard sa-1".into()),
                (20, "start-shard sa-1".into()),
                (30, "pause-broker 40".into()),
                (60, "kill-relay".into())
            ]
        );
        for (bad, says) in [
            ("stop-shard sa-1", "must start with at="),
            ("at=soon stop-shard sa-1", "at=soon"),
            ("at=1s explode", "unknown fault `explode`"),
            ("at=1s stop-shard", "takes 1 argument"),
            ("at=1s kill-relay now", "takes 0 argument"),
            ("at=1s pause-broker x", "whole seconds"),
            ("at=1s", "no fault"),
            (" ; ", "no fault in the schedule"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    fn point(region: &str, second: u64, ok: u64, errors: &[(&str, u64)]) -> RegionPoint {
        RegionPoint {
            region: region.into(),
            second,
            ok,
            errors: errors.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn errors_are_counted_per_fault_and_recovery_from_its_end() {
        let points = [
            point("NA", 0, 10, &[]),
            point("SA", 0, 10, &[]),
            point("NA", 1, 10, &[]),
            point("SA", 1, 2, &[("UNAVAILABLE", 8)]),
            point("NA", 2, 10, &[]),
            point("SA", 2, 0, &[("UNAVAILABLE", 9)]),
            point("NA", 3, 10, &[]),
            point("SA", 3, 5, &[("UNAVAILABLE", 1)]),
            point("NA", 4, 10, &[]),
            point("SA", 4, 10, &[]),
        ];
        let mark = |fault: &str, started_s: f64, ended_s: f64, restores: bool| Mark {
            fault: fault.into(),
            started_s,
            ended_s,
            succeeded: true,
            restores,
            said: String::new(),
            errors: BTreeMap::new(),
            recovered_after_s: None,
        };
        let mut marks = [mark("stop-shard sa-1", 1.2, 1.4, false), mark("start-shard sa-1", 2.5, 3.2, true)];
        assess(&mut marks, &points, 5.0);
        assert_eq!(marks[0].errors["SA"]["UNAVAILABLE"], 17, "seconds 1 and 2");
        assert!(!marks[0].errors.contains_key("NA") || marks[0].errors["NA"].is_empty());
        assert_eq!(marks[1].errors["SA"]["UNAVAILABLE"], 10, "seconds 2 to 4");
        assert_eq!(marks[0].recovered_after_s, None, "a stop is not a recovery");
        let after = marks[1].recovered_after_s.unwrap();
        assert!((after - 0.8).abs() < 1e-9, "clean from second 4, 0.8 s after the start ended: {after}");
    }
}
