//! The invariant audit: what must hold across every shard, the relay, the consumers and the
//! read models, whatever happened (faults, moves, redeliveries). `./dev audit` after a load
//! run, with or without `--chaos`; docs/audit.md lists the checks and their reasoning.
//!
//! The shards are the truth; everything else must agree with them once the pipeline has
//! drained. The pipeline is eventually consistent, so [`run`] reads and checks again until
//! every check passes or `wait` has passed, and reports the last pass.
//!
//! # Layout
//! - [`facts`]: one read of every source ([`Sources::read`]) into plain data.
//! - [`checks`]: each invariant ([`Check`]) a pure function of the facts (unit-tested on
//!   hand-made facts in `checks/tests.rs`).

pub mod checks;
pub mod facts;

use std::time::{Duration, Instant};

pub use checks::{Check, Outcome};
pub use facts::{Facts, Sources};

/// One audit's result: every check's outcome, in the order asked.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// How many passes it took (1 when everything agreed at once).
    pub passes: u32,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.violations.is_empty())
    }

    pub fn violations(&self) -> usize {
        self.outcomes.iter().map(|o| o.violations.len()).sum()
    }

    /// The outcome of `check`, when it was run.
    pub fn outcome(&self, check: Check) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.check == check)
    }

    /// The report as the CLI prints it: a line per check, then its first `max_listed`
    /// violations, then the verdict.
    pub fn render(&self, max_listed: usize) -> String {
        let mut out = String::new();
        for o in &self.outcomes {
            let verdict = if o.violations.is_empty() { "ok  " } else { "FAIL" };
            out.push_str(&format!("{verdict} {:<16} {}\n", o.check.name(), o.checked));
            for v in o.violations.iter().take(max_listed) {
                out.push_str(&format!("     VIOLATION {v}\n"));
            }
            if o.violations.len() > max_listed {
                out.push_str(&format!("     … and {} more\n", o.violations.len() - max_listed));
            }
        }
        if self.passed() {
            out.push_str(&format!("audit passed: {} checks, 0 violations\n", self.outcomes.len()));
        } else {
            out.push_str(&format!(
                "audit failed: {} violations in {} of {} checks (after {} passes)\n",
                self.violations(),
                self.outcomes.iter().filter(|o| !o.violations.is_empty()).count(),
                self.outcomes.len(),
                self.passes
            ));
        }
        out
    }
}

/// One pass: read what `checks` need and run them.
pub async fn audit_once(sources: &Sources, checks: &[Check]) -> anyhow::Result<Vec<Outcome>> {
    let facts = sources.read(checks::needs(checks)).await?;
    Ok(checks.iter().map(|c| c.run(&facts)).collect())
}

/// Audits until every check passes or `wait` has passed; the last pass is the report. An
/// error means a source could not be read: nothing was judged.
pub async fn run(sources: &Sources, checks: &[Check], wait: Duration) -> anyhow::Result<Report> {
    let deadline = Instant::now() + wait;
    let mut passes = 0;
    loop {
        passes += 1;
        let report = Report { outcomes: audit_once(sources, checks).await?, passes };
        if report.passed() || Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
