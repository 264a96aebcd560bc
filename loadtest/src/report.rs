//! The report: the terminal table, the JSON file and the SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::cli::Scenario;
use crate::flash::FlashSale;
use crate::pgbench::PgbenchRun;
use crate::relay::RelayResult;
use crate::rss::Usage;
use crate::stats::{Point, Row};

/// Everything one run measured, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub started_at: String,
    pub machine: Machine,
    /// `closed`, `open`, or `burst` (the flash sale: every buyer at once).
    pub mode: String,
    pub concurrency: Option<usize>,
    pub rate_per_s: Option<u32>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub mix: Vec<(String, f64)>,
    pub hot: bool,
    pub ticket_types_per_region: usize,
    pub gateway: String,
    pub rows: Vec<Row>,
    pub timeline: Vec<Point>,
    /// Measured requests (the sum of the per-shard rows).
    pub requests: u64,
    pub warmup_requests: u64,
    pub late_sends: u64,
    pub flash_sale: Option<FlashSale>,
    pub pgbench: Vec<PgbenchRun>,
    pub ratios: Vec<Ratio>,
    pub relay: Vec<RelayResult>,
    /// Memory and CPU of the stack's processes during the load (warm-up included).
    pub usage: Usage,
    /// `rebalance`: what the apply did while the load ran, and the audit afterwards.
    pub rebalance: Option<RebalanceReport>,
    /// `--chaos`: each fault, the errors per region while it lasted and the time to recover.
    pub chaos: Vec<crate::chaos::Mark>,
    /// Answers and error codes per region per second (what the chaos figures are made of).
    pub region_timeline: Vec<crate::stats::RegionPoint>,
    /// `browse --read-ceiling`: the same reads against the read ceiling, after the gateway's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_ceiling: Vec<Row>,
    /// `browse --uncached`: the same reads through a second gateway without a reachable Redis.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uncached: Vec<Row>,
    /// `--logins N`: the burst of logins after the scenario (inside the memory window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logins: Option<crate::logins::Burst>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    pub apply: crate::rebalance::Apply,
    pub audit: crate::rebalance::Audit,
    /// createOrder p99 per phase and label (`moving` / `staying` partitions), ms.
    pub p99_ms: Vec<(String, String, f64)>,
}

/// A shard's `createOrder` throughput next to the pgbench ceiling of the same transaction on
/// the same shard, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub shard: String,
    pub ok_per_s: f64,
    pub pgbench_tps: f64,
    pub pgbench_clients: usize,
    pub pgbench_ticket_types: usize,
    /// ok_per_s / pgbench_tps.
    pub ratio: f64,
    pub p99_ms: f64,
    pub pgbench_p99_ms: f64,
}

impl Ratio {
    /// For each shard with `createOrder` rows and a pgbench run: the best pgbench run is the
    /// ceiling.
    pub fn all(rows: &[Row], pgbench: &[PgbenchRun]) -> Vec<Self> {
        rows.iter()
            .filter(|r| r.op == "createOrder" && r.shard != "*")
            .filter_map(|r| {
                let best = pgbench.iter().filter(|p| p.shard == r.shard).max_by(|a, b| a.tps.total_cmp(&b.tps))?;
                Some(Self {
                    shard: r.shard.clone(),
                    ok_per_s: r.ok_per_s,
                    pgbench_tps: best.tps,
                    pgbench_clients: best.clients,
                    pgbench_ticket_types: best.ticket_types,
                    ratio: if best.tps > 0.0 { r.ok_per_s / best.tps } else { 0.0 },
                    p99_ms: r.latency.p99_ms,
                    pgbench_p99_ms: best.latency.p99_ms,
                })
            })
            .collect()
    }
}

/// The machine the figures belong to.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mb: u64,
}

impl Machine {
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
                .unwrap_or_else(|| "unknown".into()),
            memory_mb: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb / 1024),
        }
    }
}

impl Report {
    /// The terminal summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{} — {} on {} × {} ({} MB)",
            serde_plain(&self.scenario),
            self.mode_line(),
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_mb
        );
        if !self.rows.is_empty() {
            let _ = writeln!(
                out,
                "{:<12} {:<6} {:<6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
                "op", "region", "shard", "requests", "ok", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms"
            );
            for r in &self.rows {
                let errors: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
                let _ = writeln!(
                    out,
                    "{:<12} {:<6} {:<6} {:>9} {:>9} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}",
                    r.op,
                    r.region,
                    r.shard,
                    r.requests,
                    r.ok,
                    r.ok_per_s,
                    r.latency.p50_ms,
                    r.latency.p90_ms,
                    r.latency.p99_ms,
                    r.latency.p999_ms,
                    r.latency.max_ms,
                    if errors.is_empty() { "-".to_owned() } else { errors.join(" ") }
                );
            }
            // The same reads against a reference: the read ceiling (the gateway's share of it)
            // and the uncached gateway (the cached gateway's multiple of it).
            type Compare = fn(f64, f64) -> String;
            let references: [(&str, &[Row], Compare); 2] = [
                ("read ceiling", &self.read_ceiling, |g, c| {
                    format!("; the gateway reached {:.1} % of it", 100.0 * g / c)
                }),
                ("uncached", &self.uncached, |g, u| format!("; the cached gateway gave {:.2}× it", g / u)),
            ];
            for (name, rows, compare) in references {
                for c in rows {
                    let gateway = self.rows.iter().find(|r| r.op == c.op && r.region == c.region && r.shard == c.shard);
                    let _ = writeln!(
                        out,
                        "{name:<12} {:<8} {:<6} {:>9.1} ok/s, p50 {:.2} ms, p99 {:.2} ms{}",
                        c.op,
                        c.region,
                        c.ok_per_s,
                        c.latency.p50_ms,
                        c.latency.p99_ms,
                        gateway.map_or(String::new(), |g| compare(g.ok_per_s, c.ok_per_s.max(f64::MIN_POSITIVE)))
                    );
                }
            }
            if let Some(b) = &self.logins {
                let _ = writeln!(
                    out,
                    "logins       {} at c={}: {} ok, {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
                    b.logins, b.concurrency, b.ok, b.per_s, b.latency.p50_ms, b.latency.p99_ms, b.failed
                );
            }
            if self.late_sends > 0 {
                let _ = writeln!(out, "open loop: {} sends more than 1 ms behind schedule", self.late_sends);
            }
        }
        if let Some(r) = &self.rebalance {
            let a = &r.apply;
            let _ = writeln!(
                out,
                "rebalance: apply from {:.1} s to {} ({}); {} moves, {} partitions, {} rows copied ({:.0} rows/s of copy)",
                a.started_s,
                a.finished_s.map_or("—".into(), |s| format!("{s:.1} s")),
                if a.exit_ok { "ok" } else { "FAILED" },
                a.moves.len(),
                a.moves.iter().map(|m| i64::from(m.partitions)).sum::<i64>(),
                a.rows_copied,
                a.copy_rows_per_s
            );
            let _ = writeln!(
                out,
                "write pause per partition: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                a.pause_p50_ms, a.pause_p99_ms, a.pause_max_ms
            );
            for m in &a.moves {
                let _ = writeln!(
                    out,
                    "  move {}: {} partitions, {} rows, copy {:.1} s, pause {:.0} ms, whole move {:.1} s",
                    m.id, m.partitions, m.rows_copied, m.copy_s, m.freeze_ms, m.total_s
                );
            }
            let p99: Vec<String> =
                r.p99_ms.iter().map(|(phase, label, ms)| format!("{phase}/{label} {ms:.1}")).collect();
            let _ = writeln!(out, "createOrder p99 ms by phase/partitions: {}", p99.join(", "));
            let au = &r.audit;
            let _ = writeln!(
                out,
                "audit ({}): {} acknowledged orders; missing at home {}, also on another shard {}; stock mismatches {}; \
                 oversold or lost ticket types {}; events missing {}, repeated or out of order {}; notifications {}/{}; \
                 leftovers [{}]",
                if au.ok() { "PASSED" } else { "FAILED" },
                au.acknowledged_orders,
                au.missing_at_home,
                au.on_another_shard,
                au.stock_mismatches,
                au.oversold_or_lost,
                au.events_missing,
                au.events_out_of_order_or_repeated,
                au.notifications,
                au.notifications_expected,
                au.leftovers.join(", ")
            );
        }
        if let Some(f) = &self.flash_sale {
            let rejected: Vec<String> = f.rejected.iter().map(|(c, n)| format!("{c}={n}")).collect();
            let _ = writeln!(
                out,
                "flash sale on {} ({}): {} buyers, {} tickets → sold {}, rejected [{}], oversold {} \
                 (shard: {} orders, {} left), sold out in {}, answered within 1 s: {}/{}, p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
                f.shard,
                f.region,
                f.buyers,
                f.tickets,
                f.sold,
                rejected.join(" "),
                f.oversold,
                f.orders_in_db,
                f.remaining_in_db,
                f.sell_out_ms.map_or("— (not sold out)".into(), |ms| format!("{ms:.1} ms")),
                f.answered_within_1s,
                f.buyers,
                f.latency.p50_ms,
                f.latency.p99_ms,
                f.latency.max_ms
            );
        }
        for p in &self.pgbench {
            let _ = writeln!(
                out,
                "pgbench {} ({}): {} clients, {} ticket type(s), {:.0} s → {:.1} tps, p50 {:.2} ms p99 {:.2} ms max {:.2} ms, {} failed",
                p.shard,
                p.region,
                p.clients,
                p.ticket_types,
                p.duration_s,
                p.tps,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.max_ms,
                p.failed
            );
        }
        for r in &self.ratios {
            let _ = writeln!(
                out,
                "ratio {}: createOrder {:.1}/s through the gateway = {:.1} % of pgbench's {:.1} tps ({} clients); p99 {:.2} ms vs {:.2} ms",
                r.shard,
                r.ok_per_s,
                r.ratio * 100.0,
                r.pgbench_tps,
                r.pgbench_clients,
                r.p99_ms,
                r.pgbench_p99_ms
            );
        }
        for r in &self.relay {
            let _ = writeln!(
                out,
                "relay {}: {} outbox rows, {} sent, {} pending, {} failed; {:.1} rows/s; lag p50 {:.1} ms p99 {:.1} ms max {:.1} ms; {}",
                r.shard,
                r.rows,
                r.sent,
                r.pending,
                r.failed,
                r.sent_per_s,
                r.lag_p50_ms,
                r.lag_p99_ms,
                r.lag_max_ms,
                r.drained_after_ms
                    .map_or("not drained in time".into(), |ms| format!("drained {ms:.0} ms after the load"))
            );
        }
        for m in &self.chaos {
            let errors: Vec<String> = m
                .errors
                .iter()
                .filter(|(_, codes)| !codes.is_empty())
                .map(|(region, codes)| {
                    let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
                    format!("{region} {}", codes.join(" "))
                })
                .collect();
            let recovered = match (m.restores, m.recovered_after_s) {
                (false, _) => String::new(),
                (true, Some(s)) => format!("; clean again {s:.1} s after it ended"),
                (true, None) => "; not clean again within the window".into(),
            };
            let _ = writeln!(
                out,
                "chaos {:>5.1}–{:<5.1} s {}{}: errors until the next fault: {}{recovered}",
                m.started_s,
                m.ended_s,
                m.fault,
                if m.succeeded { String::new() } else { format!(" (FAILED: {})", m.said) },
                if errors.is_empty() { "none".into() } else { errors.join("; ") },
            );
        }
        let u = &self.usage;
        if !u.peak_rss_mb.is_empty() {
            let rss: Vec<String> = u.peak_rss_mb.iter().map(|(n, mb)| format!("{n} {mb:.1} MB")).collect();
            let _ = writeln!(out, "peak RSS: {}", rss.join(", "));
        }
        if u.window_s > 0.0 {
            let requests = self.requests + self.warmup_requests;
            let mut cpu: Vec<(&String, &f64)> = u.cpu_s.iter().filter(|(_, s)| **s > 0.0).collect();
            cpu.sort_by(|a, b| b.1.total_cmp(a.1));
            let per: Vec<String> = cpu
                .iter()
                .map(|(n, s)| {
                    let per_req = if requests > 0 {
                        format!(", {:.2} ms/req", *s * 1000.0 / requests as f64)
                    } else {
                        String::new()
                    };
                    format!("{n} {:.2}{per_req}", *s / u.window_s)
                })
                .collect();
            let _ = writeln!(
                out,
                "CPU in cores over {:.1} s: {}; machine busy {:.2} of {:.2}",
                u.window_s,
                per.join(", "),
                u.machine_busy_s / u.window_s,
                u.machine_capacity_s / u.window_s
            );
        }
        out
    }

    fn mode_line(&self) -> String {
        if self.scenario == Scenario::Pgbench {
            return "the pgbench reference alone".into();
        }
        match (self.mode.as_str(), self.rate_per_s, self.concurrency) {
            ("burst", _, Some(c)) => format!("{c} requests at once"),
            ("open", Some(rate), _) => {
                format!("open loop {rate}/s, {:.0} s (+{:.0} s warm-up)", self.duration_s, self.warmup_s)
            }
            (_, _, Some(c)) => format!("closed loop c={c}, {:.0} s (+{:.0} s warm-up)", self.duration_s, self.warmup_s),
            _ => self.mode.clone(),
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// Throughput (ok/s) and p99 per second, one line per shard.
    pub fn write_chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;

        let window = self.duration_s.ceil() as u64;
        let mut shards: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
        for p in self.timeline.iter().filter(|p| p.second < window) {
            shards.entry(p.shard.as_str()).or_default().push(p);
        }
        let max_rate = self.timeline.iter().map(|p| p.ok).max().unwrap_or(1).max(1) as f64 * 1.15;
        let max_p99 = self.timeline.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.15;
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());

        let height = if self.chaos.is_empty() { 720 } else { 1060 };
        let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let title = format!("loadtest {} — {}", serde_plain(&self.scenario), self.mode_line());
        let root = root.titled(&title, ("sans-serif", 20)).map_err(|e| err(&e))?;
        let (upper, rest) = root.split_vertically(340);
        let (lower, errors) = rest.split_vertically(if self.chaos.is_empty() { height } else { 340 });
        if !self.chaos.is_empty() {
            self.draw_errors(&errors, window).map_err(|e| err(&e))?;
        }
        for (area, is_rate) in [(upper, true), (lower, false)] {
            let (ymax, ydesc) = if is_rate { (max_rate, "ok requests / s") } else { (max_p99, "p99 latency (ms)") };
            let mut chart = ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(34)
                .y_label_area_size(64)
                .build_cartesian_2d(0f64..window.max(1) as f64, 0f64..ymax)
                .map_err(|e| err(&e))?;
            chart.configure_mesh().x_desc("second of the measured window").y_desc(ydesc).draw().map_err(|e| err(&e))?;
            for (i, (shard, points)) in shards.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let line = points.iter().map(|p| (p.second as f64 + 0.5, if is_rate { p.ok as f64 } else { p.p99_ms }));
                chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(shard.to_string())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            if let Some(r) = &self.rebalance {
                // The apply's span (dashed ends) and each switch (red): the phases on the chart.
                let mut lines: Vec<(f64, RGBAColor)> = vec![(r.apply.started_s, BLACK.to_rgba())];
                lines.extend(r.apply.finished_s.map(|s| (s, BLACK.to_rgba())));
                for m in &r.apply.marks {
                    if m.text.contains("switched") {
                        lines.push((m.second, RED.to_rgba()));
                    } else if m.text.contains("copied") {
                        lines.push((m.second, BLUE.mix(0.6)));
                    }
                }
                for (x, color) in lines {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(x, 0.0), (x, ymax)],
                            color.stroke_width(1),
                        )))
                        .map_err(|e| err(&e))?;
                }
            }
            for m in &self.chaos {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(m.started_s, 0.0), (m.started_s, ymax)],
                        RGBColor(230, 120, 0).stroke_width(2),
                    )))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

impl Report {
    /// The chaos panel: error answers per second per region, each fault marked (orange) and
    /// named at its start.
    fn draw_errors<DB: plotters::prelude::DrawingBackend>(
        &self,
        area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
        window: u64,
    ) -> Result<(), plotters::drawing::DrawingAreaErrorKind<DB::ErrorType>> {
        use plotters::prelude::*;

        let mut regions: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for p in self.region_timeline.iter().filter(|p| p.second < window) {
            let errors: u64 = p.errors.values().sum();
            regions.entry(p.region.as_str()).or_default().push((p.second as f64 + 0.5, errors as f64));
        }
        let ymax = regions.values().flatten().map(|(_, e)| *e).fold(1.0, f64::max) * 1.25;
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(34)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..window.max(1) as f64, 0f64..ymax)?;
        chart.configure_mesh().x_desc("second of the measured window").y_desc("error answers / s").draw()?;
        for (i, (region, points)) in regions.iter().enumerate() {
            let color = Palette99::pick(i + 5).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
                .label(format!("{region} errors"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        let orange = RGBColor(230, 120, 0);
        for (i, m) in self.chaos.iter().enumerate() {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(m.started_s, 0.0), (m.started_s, ymax)],
                orange.stroke_width(2),
            )))?;
            // Staggered so the names of faults close together do not overlap.
            let y = ymax * (0.95 - 0.07 * (i % 4) as f64);
            chart.draw_series(std::iter::once(Text::new(
                m.fault.clone(),
                (m.started_s + 0.3, y),
                ("sans-serif", 13).into_font().color(&orange),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// A value's serde name (`flash-sale`).
fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    fn row(shard: &str, ok_per_s: f64) -> Row {
        Row {
            op: "createOrder".into(),
            region: "NA".into(),
            shard: shard.into(),
            requests: 10,
            ok: 10,
            errors: BTreeMap::new(),
            ok_per_s,
            requests_per_s: ok_per_s,
            latency: Percentiles::ZERO,
        }
    }

    fn bench(shard: &str, clients: usize, tps: f64) -> PgbenchRun {
        PgbenchRun {
            shard: shard.into(),
            region: "NA".into(),
            clients,
            ticket_types: 50,
            duration_s: 10.0,
            tps,
            transactions: 1,
            failed: 0,
            latency: Percentiles::ZERO,
        }
    }

    #[test]
    fn ratios_take_the_best_pgbench_run_of_the_same_shard() {
        let rows = [row("na-1", 1000.0), row("sa-1", 500.0), row("*", 1500.0)];
        let pg = [bench("na-1", 16, 2000.0), bench("na-1", 64, 2500.0), bench("sa-1", 16, 2000.0)];
        let ratios = Ratio::all(&rows, &pg);
        let got: Vec<_> = ratios.iter().map(|r| (r.shard.as_str(), r.ratio, r.pgbench_clients)).collect();
        assert_eq!(got, [("na-1", 0.4, 64), ("sa-1", 0.25, 16)]);
        assert!(Ratio::all(&rows, &[]).is_empty());
    }
}
