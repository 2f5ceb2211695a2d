//! The end of a run: the summary (ghz-style text or JSON), the verification result, and the
//! HTML report with SVG plots drawn by plotters.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::limits;
use crate::recorder::{Inner, OVERLOAD_CODES, Tick};

/// What verification found. `passed` is false as soon as one violation is recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub passed: bool,
    pub accounts_total: u64,
    pub accounts_checked: u64,
    /// "checked": the sum of every account's balance was read and is zero; "inferred": only
    /// a subset was read (each matched its expected balance, and the expectations sum to 0).
    pub conservation: String,
    pub balance_sum_minor: i64,
    pub balance_mismatches: u64,
    pub negative_accounts: u64,
    pub transfers_checked: u64,
    pub transfer_mismatches: u64,
    pub unknown_outcomes: u64,
    pub unknown_applied: u64,
    pub unknown_not_applied: u64,
    pub read_node_checked: u64,
    pub read_node_mismatches: u64,
    pub violations_total: u64,
    /// The first few violations, as sentences.
    pub violations: Vec<String>,
}

impl Verification {
    pub fn new(accounts_total: u64) -> Verification {
        Verification {
            passed: true,
            accounts_total,
            accounts_checked: 0,
            conservation: "not checked".into(),
            balance_sum_minor: 0,
            balance_mismatches: 0,
            negative_accounts: 0,
            transfers_checked: 0,
            transfer_mismatches: 0,
            unknown_outcomes: 0,
            unknown_applied: 0,
            unknown_not_applied: 0,
            read_node_checked: 0,
            read_node_mismatches: 0,
            violations_total: 0,
            violations: Vec::new(),
        }
    }

    pub fn violation(&mut self, what: String) {
        self.passed = false;
        self.violations_total += 1;
        if self.violations.len() < limits::VIOLATION_EXAMPLES_MAX {
            self.violations.push(what);
        }
    }

    /// Records the conservation check over `sum`, the balances read.
    pub fn set_conservation(&mut self, sum: i128, slots: u32) {
        self.balance_sum_minor = sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        if self.accounts_checked == u64::from(slots) {
            self.conservation = "checked".into();
            if sum != 0 {
                self.violation(format!("the {slots} balances sum to {sum} cents, not 0"));
            }
        } else {
            self.conservation = "inferred".into();
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub fastest_ms: f64,
    pub slowest_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            count: h.len(),
            fastest_ms: h.min() as f64 / 1e3,
            slowest_ms: h.max() as f64 / 1e3,
            mean_ms: h.mean() / 1e3,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1e3,
            p90_ms: h.value_at_quantile(0.9) as f64 / 1e3,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1e3,
            p999_ms: h.value_at_quantile(0.999) as f64 / 1e3,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Upper edge of the bucket.
    pub le_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub code: String,
    pub reason: String,
    pub count: u64,
    /// One of the documented overload/leadership answers (see README).
    pub overload: bool,
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    /// Durability settings (PostgreSQL) or cluster shape (wallet).
    pub target_detail: String,
    pub api: String,
    pub mode: String,
    pub offered_rate: Option<u64>,
    pub clients: u32,
    pub in_flight: u32,
    pub seed: u64,
    pub run_id: String,
    pub accounts: u32,
    pub partitions: u32,
    pub zipf: f64,
    pub cross_share: f64,
    pub read_share: f64,
    pub watchers: u32,
    pub setup_s: f64,
    pub duration_s: f64,
    pub transfers_ok: u64,
    pub transfers_per_second: f64,
    pub errors_total: u64,
    /// Errors other than the documented overload/leadership answers.
    pub unexpected_errors: u64,
    pub latency: Option<Latency>,
    pub histogram: Vec<Bucket>,
    pub reads: Option<Latency>,
    pub reads_per_second: f64,
    pub push_lag: Option<Latency>,
    /// Count per gRPC status ("OK" for successes), transfers and reads together.
    pub status_counts: BTreeMap<String, u64>,
    pub errors: Vec<ErrorCount>,
    pub timeline: Vec<Tick>,
    pub verification: Option<Verification>,
}

/// Buckets of the latency histogram: ten equal steps from fastest to slowest, like ghz.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (low, high) = (h.min(), h.max().max(h.min() + 1));
    let step = ((high - low) as f64 / 10.0).max(1.0);
    let mut out: Vec<Bucket> = (1..=10)
        .map(|i| Bucket {
            le_ms: (low as f64 + step * f64::from(i)) / 1e3,
            count: 0,
        })
        .collect();
    for v in h.iter_recorded() {
        let at = (((v.value_iterated_to() - low) as f64 / step) as usize).min(9);
        out[at].count += v.count_at_value();
    }
    out
}

/// Builds the report from what the recorder holds.
#[allow(clippy::too_many_arguments)]
pub fn build(
    g: &Inner,
    config: &crate::cli::Config,
    target_detail: String,
    partitions: u32,
    setup_s: f64,
    duration_s: f64,
    verification: Option<Verification>,
) -> Report {
    let args = &config.args;
    let mut status_counts = BTreeMap::new();
    let ok = g.transfers_ok + g.reads_ok;
    if ok > 0 {
        status_counts.insert("OK".to_owned(), ok);
    }
    let mut errors = Vec::new();
    let mut unexpected = 0;
    for ((code, reason), count) in &g.errors {
        *status_counts.entry(code.clone()).or_default() += count;
        let overload = OVERLOAD_CODES.contains(&(code.as_str(), reason.as_str()));
        if !overload {
            unexpected += count;
        }
        errors.push(ErrorCount {
            code: code.clone(),
            reason: reason.clone(),
            count: *count,
            overload,
        });
    }
    errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    Report {
        target: format!("{:?}", args.target).to_lowercase(),
        target_detail,
        api: format!("{:?}", args.api).to_lowercase(),
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .into(),
        offered_rate: args.rate,
        clients: args.clients,
        in_flight: args.in_flight,
        seed: args.seed,
        run_id: config.run_id.clone(),
        accounts: args.accounts,
        partitions,
        zipf: args.zipf,
        cross_share: args.cross_share,
        read_share: args.read_share,
        watchers: args.watchers,
        setup_s,
        duration_s,
        transfers_ok: g.transfers_ok,
        transfers_per_second: g.transfers_ok as f64 / duration_s.max(1e-9),
        errors_total: g.errors.values().sum(),
        unexpected_errors: unexpected,
        latency: Latency::of(&g.transfers),
        histogram: buckets(&g.transfers),
        reads: Latency::of(&g.reads),
        reads_per_second: g.reads_ok as f64 / duration_s.max(1e-9),
        push_lag: Latency::of(&g.push_lag),
        status_counts,
        errors,
        timeline: g.timeline.clone(),
        verification,
    }
}

/// The ghz-style text summary.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "\nSummary:");
    let _ = writeln!(w, "  Target:\t{} ({})", r.target, r.target_detail);
    let mode = match r.offered_rate {
        Some(rate) => format!("open loop at {rate}/s offered"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        w,
        "  Workload:\t{} API, {mode}, {} clients (in flight {}), {} accounts, zipf {}, cross-partition {:.0}%, reads {:.0}%, {} watchers, seed {}, run {}",
        r.api,
        r.clients,
        r.in_flight,
        r.accounts,
        r.zipf,
        r.cross_share * 100.0,
        r.read_share * 100.0,
        r.watchers,
        r.seed,
        r.run_id
    );
    let _ = writeln!(w, "  Setup:\t{:.2} s", r.setup_s);
    let _ = writeln!(
        w,
        "  Count:\t{} transfers ok, {} errors",
        r.transfers_ok, r.errors_total
    );
    let _ = writeln!(w, "  Total:\t{:.2} s", r.duration_s);
    if let Some(l) = &r.latency {
        let _ = writeln!(w, "  Slowest:\t{:.2} ms", l.slowest_ms);
        let _ = writeln!(w, "  Fastest:\t{:.2} ms", l.fastest_ms);
        let _ = writeln!(w, "  Average:\t{:.2} ms", l.mean_ms);
    }
    let _ = writeln!(w, "  Transfers/s:\t{:.1}", r.transfers_per_second);
    if !r.histogram.is_empty() {
        let _ = writeln!(w, "\nResponse time histogram (successful transfers):");
        let top = r
            .histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(1)
            .max(1);
        for b in &r.histogram {
            let bar = "∎".repeat(((b.count * 40).div_ceil(top)) as usize);
            let _ = writeln!(w, "  {:>10.3} [{}]\t|{bar}", b.le_ms, b.count);
        }
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(w, "\nLatency distribution:");
        for (p, v) in [
            ("50", l.p50_ms),
            ("90", l.p90_ms),
            ("99", l.p99_ms),
            ("99.9", l.p999_ms),
        ] {
            let _ = writeln!(w, "  {p:>5} % in {v:.2} ms");
        }
    }
    if let Some(l) = &r.reads {
        let _ = writeln!(
            w,
            "\nReads: {} ok, {:.1}/s, p50 {:.2} ms, p99 {:.2} ms",
            l.count, r.reads_per_second, l.p50_ms, l.p99_ms
        );
    }
    if let Some(l) = &r.push_lag {
        let _ = writeln!(
            w,
            "Push lag (commit -> watcher, ms clock): {} updates, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            l.count, l.p50_ms, l.p99_ms, l.slowest_ms
        );
    }
    let _ = writeln!(w, "\nStatus code distribution:");
    for (code, count) in &r.status_counts {
        let _ = writeln!(w, "  [{code}]\t{count} responses");
    }
    if !r.errors.is_empty() {
        let _ = writeln!(w, "\nError distribution:");
        for e in &r.errors {
            let note = if e.overload { "" } else { "  (unexpected)" };
            let _ = writeln!(w, "  [{}]\t{} {}{note}", e.count, e.code, e.reason);
        }
    }
    match &r.verification {
        None => {
            let _ = writeln!(w, "\nVerification: skipped (--no-verify)");
        }
        Some(v) => {
            let _ = writeln!(
                w,
                "\nVerification: {}",
                if v.passed { "PASSED" } else { "FAILED" }
            );
            let _ = writeln!(
                w,
                "  balances: {}/{} accounts read back, {} mismatches, {} negative; sum of balances {} ({})",
                v.accounts_checked,
                v.accounts_total,
                v.balance_mismatches,
                v.negative_accounts,
                v.balance_sum_minor,
                v.conservation
            );
            let _ = writeln!(
                w,
                "  transfers: {} acknowledged ids checked, {} wrong; {} unknown outcomes ({} applied, {} not)",
                v.transfers_checked,
                v.transfer_mismatches,
                v.unknown_outcomes,
                v.unknown_applied,
                v.unknown_not_applied
            );
            if v.read_node_checked > 0 || v.read_node_mismatches > 0 {
                let _ = writeln!(
                    w,
                    "  read node: {} balances compared, {} disagree",
                    v.read_node_checked, v.read_node_mismatches
                );
            }
            for violation in &v.violations {
                let _ = writeln!(w, "  VIOLATION: {violation}");
            }
            if v.violations_total > v.violations.len() as u64 {
                let _ = writeln!(w, "  ... {} violations in all", v.violations_total);
            }
        }
    }
    s
}

fn plot_error(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e:?}")
}

const PLOT_SIZE: (u32, u32) = (900, 320);

/// Throughput (successful transfers/s and errors/s) per tick.
fn throughput_svg(timeline: &[Tick]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let x_max = timeline.last().map_or(1.0, |t| t.at_s).max(1.0);
        let y_max = timeline
            .iter()
            .map(|t| t.transfers_per_s.max(t.errors as f64))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput over time", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("per second")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|t| (t.at_s, t.transfers_per_s)),
                &BLUE,
            ))
            .map_err(plot_error)?
            .label("transfers ok/s")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                timeline.iter().map(|t| (t.at_s, t.errors as f64)),
                &RED,
            ))
            .map_err(plot_error)?
            .label("errors in the tick")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A line of the percentile plot: its name, the value it takes from a tick, its colour.
type Series = (&'static str, fn(&Tick) -> f64, RGBColor);

/// p50/p90/p99/p99.9 per tick.
fn percentiles_svg(timeline: &[Tick]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let x_max = timeline.last().map_or(1.0, |t| t.at_s).max(1.0);
        let y_max = timeline.iter().map(|t| t.p999_ms).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency percentiles over time", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("ms")
            .draw()
            .map_err(plot_error)?;
        let series: [Series; 4] = [
            ("p50", |t| t.p50_ms, GREEN),
            ("p90", |t| t.p90_ms, BLUE),
            ("p99", |t| t.p99_ms, MAGENTA),
            ("p99.9", |t| t.p999_ms, RED),
        ];
        for (name, value, color) in series {
            chart
                .draw_series(LineSeries::new(
                    timeline
                        .iter()
                        .filter(|t| t.transfers_ok > 0)
                        .map(|t| (t.at_s, value(t))),
                    &color,
                ))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Latency histogram of successful transfers, 50 buckets up to p99.9 (the tail beyond is
/// summed into the last bucket).
fn histogram_svg(h: &Histogram<u64>) -> anyhow::Result<String> {
    const BUCKETS: u64 = 50;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let high = h.value_at_quantile(0.999).max(h.min() + BUCKETS);
        let width = (high / BUCKETS).max(1);
        let mut counts = vec![0u64; BUCKETS as usize];
        for v in h.iter_recorded() {
            let at = ((v.value_iterated_to() / width) as usize).min(BUCKETS as usize - 1);
            counts[at] += v.count_at_value();
        }
        let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.1;
        let x_max = (width * BUCKETS) as f64 / 1e3;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency histogram (successful transfers)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("ms")
            .y_desc("transfers")
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = (i as u64 * width) as f64 / 1e3;
                let x1 = ((i as u64 + 1) * width) as f64 / 1e3;
                Rectangle::new([(x0, 0.0), (x1, c as f64)], BLUE.mix(0.6).filled())
            }))
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page: the text summary and three SVG plots.
pub fn html(r: &Report, transfers: &Histogram<u64>) -> anyhow::Result<String> {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wallet-loadtest: {} {} {}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:960px}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}</style>\
         </head><body>\n<h1>wallet-loadtest: {} ({} API, {} loop)</h1>\n",
        r.target, r.api, r.mode, r.target, r.api, r.mode
    );
    let _ = writeln!(
        page,
        "<h2>Throughput</h2>\n{}",
        throughput_svg(&r.timeline)?
    );
    let _ = writeln!(
        page,
        "<h2>Latency percentiles</h2>\n{}",
        percentiles_svg(&r.timeline)?
    );
    let _ = writeln!(
        page,
        "<h2>Latency histogram</h2>\n{}",
        histogram_svg(transfers)?
    );
    let _ = writeln!(page, "<h2>Summary</h2>\n<pre>{}</pre>", escape(&text(r)));
    page.push_str("</body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(at_s: f64, ok: u64) -> Tick {
        Tick {
            at_s,
            transfers_ok: ok,
            errors: 1,
            transfers_per_s: ok as f64,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            p999_ms: 4.0,
        }
    }

    #[test]
    fn ten_buckets_hold_every_sample() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in [1_000u64, 2_000, 3_000, 50_000, 50_000] {
            h.record(v).unwrap();
        }
        let b = buckets(&h);
        assert_eq!(b.len(), 10);
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(b[0].count, 3);
        assert_eq!(b[9].count, 2);
    }

    #[test]
    fn html_holds_three_svg_plots() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..1_000u64 {
            h.record(v * 10).unwrap();
        }
        let timeline = vec![tick(1.0, 100), tick(2.0, 120), tick(3.0, 90)];
        assert_eq!(
            throughput_svg(&timeline).unwrap().matches("<svg").count(),
            1
        );
        assert!(percentiles_svg(&timeline).unwrap().contains("p99.9"));
        assert!(histogram_svg(&h).unwrap().contains("<rect"));
    }

    #[test]
    fn one_violation_fails_verification() {
        let mut v = Verification::new(10);
        v.accounts_checked = 10;
        v.set_conservation(0, 10);
        assert!(v.passed);
        assert_eq!(v.conservation, "checked");
        v.set_conservation(5, 10);
        assert!(!v.passed);
        assert_eq!(v.violations_total, 1);
    }
}
