//! The ledger of a run (what every process said it published, handled and missed) and the
//! invariants checked on it at the end, printed as one table.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::workload::{FLAKY, JOB_DEAD_LETTERS, JOB_HANDLERS, TICK_HANDLERS};

/// How long before a reported disconnection a pub/sub loss may have started: the watchdog's
/// interval and response timeout (1 s each), the proxy's longest delay (1.5 s) and a stopped
/// process's longest stop (3 s) — the subscriber finds out late.
pub(crate) const GAP_BEFORE_MS: u64 = 6_000;
/// How long after `Resubscribed` a publish may still have missed the subscription.
pub(crate) const GAP_AFTER_MS: u64 = 1_000;
/// A killed consumer: publishes in the last moments before the kill are not expected.
const DEATH_MARGIN_MS: u64 = 2_000;
/// Resource bounds after warm-up.
const RSS_GROWTH_KIB: u64 = 16 * 1024;
const FD_GROWTH: u64 = 5;
const CLIENT_GROWTH: u64 = 2;

/// A handler's counters as the bus reported them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    handled: u64,
    failed: u64,
    retried: u64,
    dropped: u64,
}

/// One resource sample of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: u64,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

/// One run of one service process.
#[derive(Debug, Default)]
pub(crate) struct Incarnation {
    pub(crate) label: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) pid: u32,
    ready: u64,
    pub(crate) ended: Option<u64>,
    killed: bool,
    stopped: bool,
    gaps: Vec<(u64, Option<u64>)>,
    handled: HashMap<String, HashSet<String>>,
    /// Pub/sub events handled more than once by one handler: at most once was broken.
    tick_duplicates: HashMap<String, u64>,
    runs: HashMap<String, u64>,
    failed_attempts: u64,
    metrics: HashMap<String, Counters>,
    final_metrics: HashMap<String, Counters>,
    pub(crate) samples: Vec<Sample>,
}

impl Incarnation {
    fn in_gap(&self, t0: u64, t1: u64) -> bool {
        let end = self.ended.unwrap_or(u64::MAX);
        self.gaps.iter().any(|&(from, to)| {
            let to = to.unwrap_or(end).saturating_add(GAP_AFTER_MS);
            t1 >= from.saturating_sub(GAP_BEFORE_MS) && t0 <= to
        })
    }

    /// Whether a publish over `[t0, t1]` had to reach this process.
    fn expects(&self, t0: u64, t1: u64) -> bool {
        let last = match (self.ended, self.killed) {
            (Some(end), true) => end.saturating_sub(DEATH_MARGIN_MS),
            (Some(end), false) => end,
            (None, _) => u64::MAX,
        };
        t0 >= self.ready && t1 <= last
    }
}

/// A publish that returned `Ok`.
#[derive(Debug, Clone)]
struct Publish {
    job: bool,
    key: String,
    t0: u64,
    t1: u64,
}

/// Everything the processes of a run reported.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) incarnations: Vec<Incarnation>,
    published: Vec<Publish>,
    unconfirmed: u64,
    /// Runs per (durable handler, key), across processes: the group's deliveries.
    jobs: HashMap<(String, String), u32>,
    last_tick: HashMap<String, String>,
    done: HashSet<String>,
    /// `CLIENT LIST` counts over time.
    pub(crate) clients: Vec<(u64, u64)>,
}

impl Ledger {
    /// A process started; returns its incarnation number.
    pub(crate) fn begin(&mut self, name: &str, role: &str, pid: u32) -> usize {
        let n = self.incarnations.iter().filter(|i| i.name == name).count() + 1;
        self.incarnations.push(Incarnation {
            label: format!("{name}#{n}"),
            name: name.to_owned(),
            role: role.to_owned(),
            pid,
            ..Incarnation::default()
        });
        self.incarnations.len() - 1
    }

    pub(crate) fn ready(&mut self, i: usize, at: u64) {
        self.incarnations[i].ready = at;
    }

    pub(crate) fn end(&mut self, i: usize, at: u64, killed: bool) {
        let inc = &mut self.incarnations[i];
        inc.ended = Some(at);
        inc.killed = killed;
    }

    /// Records one line of process `i`'s output.
    pub(crate) fn record(&mut self, i: usize, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["published", kind, key, t0, t1] => self.published(i, kind, key, t0, t1),
            ["unconfirmed", ..] => self.unconfirmed += 1,
            ["done"] => {
                let name = self.incarnations[i].name.clone();
                self.done.insert(name);
            }
            ["handled", handler, key, _] => self.handled(i, handler, key),
            ["attempt_failed", ..] => self.incarnations[i].failed_attempts += 1,
            ["gap", what, role, t] => self.gap(i, what, role, t.parse().unwrap_or(0)),
            [word @ ("metrics" | "final"), handler, rest @ ..] => {
                self.metrics(i, word == &"final", handler, rest)
            }
            ["stopped"] => self.incarnations[i].stopped = true,
            _ => eprintln!(
                "soak: unexpected line from {}: {line}",
                self.incarnations[i].label
            ),
        }
    }

    fn published(&mut self, i: usize, kind: &str, key: &str, t0: &str, t1: &str) {
        let job = kind == "job";
        if !job {
            let name = self.incarnations[i].name.clone();
            self.last_tick.insert(name, key.to_owned());
        }
        self.published.push(Publish {
            job,
            key: key.to_owned(),
            t0: t0.parse().unwrap_or(0),
            t1: t1.parse().unwrap_or(u64::MAX),
        });
    }

    fn handled(&mut self, i: usize, handler: &str, key: &str) {
        let inc = &mut self.incarnations[i];
        *inc.runs.entry(handler.to_owned()).or_default() += 1;
        if TICK_HANDLERS.contains(&handler) {
            let set = inc.handled.entry(handler.to_owned()).or_default();
            if !set.insert(key.to_owned()) {
                *inc.tick_duplicates.entry(handler.to_owned()).or_default() += 1;
            }
        } else {
            *self
                .jobs
                .entry((handler.to_owned(), key.to_owned()))
                .or_default() += 1;
        }
    }

    fn gap(&mut self, i: usize, what: &str, role: &str, at: u64) {
        let gaps = &mut self.incarnations[i].gaps;
        match (what, gaps.last_mut()) {
            ("disconnected", Some((_, None))) => {}
            ("disconnected", _) if role == "subscriber" => gaps.push((at, None)),
            ("resubscribed", Some((_, end @ None))) => *end = Some(at),
            // Resubscribed without a reported disconnection: a gap of unknown start, taken
            // as the margin before it.
            ("resubscribed", _) => gaps.push((at, Some(at))),
            _ => {}
        }
    }

    fn metrics(&mut self, i: usize, last: bool, handler: &str, values: &[&str]) {
        let n = |k: usize| values.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let counters = Counters {
            handled: n(0),
            failed: n(1),
            retried: n(2),
            dropped: n(3),
        };
        let inc = &mut self.incarnations[i];
        let map = if last {
            &mut inc.final_metrics
        } else {
            &mut inc.metrics
        };
        map.insert(handler.to_owned(), counters);
    }

    /// The live consumers, by incarnation.
    pub(crate) fn live_consumers(&self) -> impl Iterator<Item = &Incarnation> {
        self.incarnations
            .iter()
            .filter(|i| i.role == "consumer" && i.ended.is_none())
    }

    /// Whether every publisher said `done` and every live consumer handled each one's last
    /// tick in every pub/sub handler: the pub/sub traffic has drained.
    pub(crate) fn ticks_drained(&self, publishers: usize) -> bool {
        self.done.len() == publishers
            && self.live_consumers().all(|c| {
                TICK_HANDLERS.iter().all(|h| {
                    self.last_tick
                        .values()
                        .all(|k| c.handled.get(*h).is_some_and(|s| s.contains(k)))
                })
            })
    }

    /// How many jobs that returned `Ok` some group has not handled yet.
    pub(crate) fn jobs_missing(&self) -> usize {
        self.ok_jobs()
            .map(|k| {
                JOB_HANDLERS
                    .iter()
                    .filter(|h| !self.jobs.contains_key(&(h.to_string(), k.to_owned())))
                    .count()
            })
            .sum()
    }

    fn ok_jobs(&self) -> impl Iterator<Item = &str> {
        self.published
            .iter()
            .filter(|p| p.job)
            .map(|p| p.key.as_str())
    }

    /// Totals for the summary: (ticks ok, jobs ok, unconfirmed publishes, gaps).
    pub(crate) fn totals(&self) -> (usize, usize, u64, usize) {
        let jobs = self.ok_jobs().count();
        let gaps = self.incarnations.iter().map(|i| i.gaps.len()).sum();
        (self.published.len() - jobs, jobs, self.unconfirmed, gaps)
    }
}

/// One checked invariant: a row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    check: &'static str,
    subject: String,
    measured: String,
    bound: String,
    ok: bool,
}

/// A consumer group's state on the server after the drain.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupState {
    pub(crate) group: String,
    /// `XPENDING`'s count.
    pub(crate) pending: u64,
    /// `XINFO GROUPS`'s lag: entries not delivered to the group yet.
    pub(crate) lag: u64,
}

/// What the server holds after the drain.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerState {
    pub(crate) groups: Vec<GroupState>,
    /// The length of the jobs' dead-letter stream.
    pub(crate) dead_letters: u64,
}

/// Every invariant of the run.
pub(crate) fn check(ledger: &Ledger, server: &ServerState, warmup_ms: u64) -> Vec<Row> {
    let mut rows = durable_rows(ledger);
    rows.extend(server.groups.iter().map(pending_row));
    rows.push(Row {
        check: "durable: no dead letters",
        subject: JOB_DEAD_LETTERS.into(),
        measured: format!("XLEN {}", server.dead_letters),
        bound: "0".into(),
        ok: server.dead_letters == 0,
    });
    for inc in ledger.incarnations.iter().filter(|i| i.role == "consumer") {
        rows.extend(TICK_HANDLERS.iter().map(|h| pubsub_row(ledger, inc, h)));
    }
    for inc in ledger.incarnations.iter().filter(|i| i.stopped) {
        rows.extend(metrics_rows(inc));
    }
    for inc in &ledger.incarnations {
        rows.extend(resource_rows(inc, warmup_ms));
    }
    rows.extend(clients_row(ledger, warmup_ms));
    rows
}

fn durable_rows(ledger: &Ledger) -> Vec<Row> {
    let ok: Vec<&str> = ledger.ok_jobs().collect();
    JOB_HANDLERS
        .iter()
        .map(|h| {
            let runs = |k: &str| ledger.jobs.get(&(h.to_string(), k.to_owned())).copied();
            let missing = ok.iter().filter(|k| runs(k).is_none()).count();
            let (mut total, mut distinct, mut most) = (0u64, 0u64, 0u32);
            for ((handler, _), n) in &ledger.jobs {
                if handler == h {
                    (total, distinct, most) = (total + u64::from(*n), distinct + 1, most.max(*n));
                }
            }
            Row {
                check: "durable: every Ok publish handled",
                subject: format!("group soak:{h}"),
                measured: format!(
                    "{} of {} handled; {} duplicate runs, most runs of one job {most}",
                    ok.len() - missing,
                    ok.len(),
                    total - distinct
                ),
                bound: "all, at least once".into(),
                ok: missing == 0,
            }
        })
        .collect()
}

fn pending_row(g: &GroupState) -> Row {
    Row {
        check: "durable: nothing left pending",
        subject: format!("group {}", g.group),
        measured: format!("XPENDING {}, lag {}", g.pending, g.lag),
        bound: "0, 0".into(),
        ok: g.pending == 0 && g.lag == 0,
    }
}

fn pubsub_row(ledger: &Ledger, inc: &Incarnation, handler: &str) -> Row {
    let empty = HashSet::new();
    let got = inc.handled.get(handler).unwrap_or(&empty);
    let (mut expected, mut missed, mut in_gaps) = (0u64, 0u64, 0u64);
    for p in ledger.published.iter().filter(|p| !p.job) {
        if !inc.expects(p.t0, p.t1) {
            continue;
        }
        expected += 1;
        if !got.contains(&p.key) {
            missed += 1;
            in_gaps += u64::from(inc.in_gap(p.t0, p.t1));
        }
    }
    let counters = inc.final_metrics.get(handler).or(inc.metrics.get(handler));
    let dropped = counters.map_or(0, |c| c.dropped);
    let unexplained = missed - in_gaps;
    let twice = inc.tick_duplicates.get(handler).copied().unwrap_or(0);
    Row {
        check: "pub/sub: every loss in a gap or dropped",
        subject: format!("{} {handler}", inc.label),
        measured: format!(
            "{expected} expected, {missed} missed: {in_gaps} in {} gap(s), {unexplained} outside; {dropped} dropped; {twice} twice",
            inc.gaps.len()
        ),
        bound: "outside ≤ dropped, none twice".into(),
        ok: unexplained <= dropped && twice == 0,
    }
}

fn metrics_rows(inc: &Incarnation) -> Vec<Row> {
    let mut rows = Vec::new();
    for h in TICK_HANDLERS.iter().chain(&JOB_HANDLERS) {
        let m = inc.final_metrics.get(*h).copied().unwrap_or_default();
        let runs = inc.runs.get(*h).copied().unwrap_or(0);
        let mut measured = format!("handled: metrics {} / own {runs}", m.handled);
        let mut ok = m.handled == runs;
        if *h == FLAKY {
            let failures = m.retried + m.failed;
            let _ = write!(
                measured,
                "; failed attempts: metrics {failures} / own {}",
                inc.failed_attempts
            );
            ok &= failures == inc.failed_attempts;
        }
        rows.push(Row {
            check: "metrics agree with own counts",
            subject: format!("{} {h}", inc.label),
            measured,
            bound: "equal".into(),
            ok,
        });
    }
    rows
}

/// The first sample after warm-up and the last one; `None` when the process lived too short.
fn flat_span(samples: &[Sample], from: u64) -> Option<(Sample, Sample)> {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= from).collect();
    match after.as_slice() {
        [first, .., last] => Some((**first, **last)),
        _ => None,
    }
}

fn resource_rows(inc: &Incarnation, warmup_ms: u64) -> Vec<Row> {
    if inc.killed {
        return Vec::new();
    }
    let Some((first, last)) = flat_span(&inc.samples, inc.ready + warmup_ms) else {
        return Vec::new();
    };
    let rss = last.rss_kib.saturating_sub(first.rss_kib);
    let fds = last.fds.saturating_sub(first.fds);
    vec![
        Row {
            check: "resources: RSS growth after warm-up",
            subject: inc.label.clone(),
            measured: format!(
                "{:+.1} MiB ({:.1} → {:.1} MiB)",
                rss as f64 / 1024.0,
                first.rss_kib as f64 / 1024.0,
                last.rss_kib as f64 / 1024.0
            ),
            bound: format!("≤ {} MiB", RSS_GROWTH_KIB / 1024),
            ok: rss <= RSS_GROWTH_KIB,
        },
        Row {
            check: "resources: open fds after warm-up",
            subject: inc.label.clone(),
            measured: format!("{} → {}", first.fds, last.fds),
            bound: format!("≤ +{FD_GROWTH}"),
            ok: fds <= FD_GROWTH,
        },
    ]
}

fn clients_row(ledger: &Ledger, warmup_ms: u64) -> Option<Row> {
    let start = ledger.incarnations.first()?.ready + warmup_ms;
    let after: Vec<&(u64, u64)> = ledger.clients.iter().filter(|(t, _)| *t >= start).collect();
    let (first, last) = (after.first()?.1, after.last()?.1);
    let most = after.iter().map(|(_, n)| *n).max().unwrap_or(0);
    Some(Row {
        check: "resources: Redis client connections",
        subject: "redis-server (CLIENT LIST)".into(),
        measured: format!("{first} after warm-up → {last} at the end (most {most})"),
        bound: format!("≤ +{CLIENT_GROWTH}"),
        ok: last <= first + CLIENT_GROWTH,
    })
}

/// The rows as a Markdown table, then one verdict line; `true` when every invariant held.
pub(crate) fn print(rows: &[Row]) -> bool {
    let header = ["check", "subject", "measured", "bound", "result"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let result = if r.ok { "ok" } else { "BROKEN" };
            [
                r.check.into(),
                r.subject.clone(),
                r.measured.clone(),
                r.bound.clone(),
                result.into(),
            ]
        })
        .collect();
    let width = |c: usize| {
        cells
            .iter()
            .map(|r| r[c].chars().count())
            .chain([header[c].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |r: &[String]| {
        let padded: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("{}", line(&header.map(String::from)));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for r in &cells {
        println!("{}", line(r));
    }
    let broken = rows.iter().filter(|r| !r.ok).count();
    if broken == 0 {
        println!("soak: all {} invariants met", rows.len());
    } else {
        println!("soak: {broken} of {} invariants BROKEN", rows.len());
    }
    broken == 0
}
