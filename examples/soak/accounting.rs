//! The ledger of a run (what every process said it published, handled and missed) and the
//! invariants checked on it at the end, printed as one table.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::workload::{CLAIM_IDLE, FLAKY, JOB_DEAD_LETTERS, JOB_HANDLERS, TICK_HANDLERS};

/// How long before a reported disconnection a pub/sub loss may have started: the watchdog's
/// interval and response timeout (1 s each), the proxy's longest delay (1.5 s) and a stopped
/// process's longest stop (3 s) — the subscriber finds out late.
pub(crate) const GAP_BEFORE_MS: u64 = 6_000;
/// How long after `Resubscribed` a publish may still have missed the subscription.
pub(crate) const GAP_AFTER_MS: u64 = 1_000;
/// A killed consumer: publishes in the last moments before the kill are not expected.
const DEATH_MARGIN_MS: u64 = 2_000;
/// How close to a consumer's death one of its durable runs counts as an entry it held then:
/// its `handled` line up to this long before the death (the `XACK` still on its way: acks wait
/// for a reconnection), or up to this long after the end of a stop (it held the entry, queued
/// or running, when it stopped, and finished it once resumed).
const HELD_MS: u64 = 10_000;
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
    /// `SIGSTOP` … `SIGCONT`, as the orchestrator sent them.
    paused: Vec<(u64, Option<u64>)>,
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

    /// When this process was dead for its consumer groups, as `(from, to)`: from its `kill -9`
    /// on, and every stop longer than `claim_idle_ms` (a stopped consumer keeps nothing alive).
    fn deaths(&self, claim_idle_ms: u64) -> Vec<(u64, u64)> {
        let mut deaths: Vec<(u64, u64)> = self
            .paused
            .iter()
            .filter_map(|&(from, to)| Some((from, to?)))
            .filter(|&(from, to)| to.saturating_sub(from) > claim_idle_ms)
            .collect();
        if let (true, Some(end)) = (self.killed, self.ended) {
            deaths.push((end, end));
        }
        deaths
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

/// A run of a durable handler that returned `Ok`: the process and when it ended.
#[derive(Debug, Clone, Copy)]
struct JobRun {
    inc: usize,
    at: u64,
    /// The stream entry it ran (a hash of its id; 0 when the line did not say).
    entry: u64,
}

/// Everything the processes of a run reported.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) incarnations: Vec<Incarnation>,
    published: Vec<Publish>,
    unconfirmed: u64,
    /// Orders whose transaction failed (PostgreSQL away, say): they do not exist.
    pub(crate) orders_failed: u64,
    /// Runs that returned `Ok` per (durable handler, key), across processes: the group's
    /// deliveries.
    jobs: HashMap<(String, String), Vec<JobRun>>,
    /// (durable handler, key) of every run that failed: returned an error or was cancelled.
    failed_runs: HashSet<(String, String)>,
    /// (durable handler, key) of runs cancelled before their end: they outlived the timeout.
    cancelled: HashSet<(String, String)>,
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

    /// Process `i` was stopped (`SIGSTOP`) at `at`.
    pub(crate) fn paused(&mut self, i: usize, at: u64) {
        self.incarnations[i].paused.push((at, None));
    }

    /// Process `i` was continued (`SIGCONT`) at `at`.
    pub(crate) fn resumed(&mut self, i: usize, at: u64) {
        if let Some((_, end @ None)) = self.incarnations[i].paused.last_mut() {
            *end = Some(at);
        }
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
            ["order_failed", ..] => self.orders_failed += 1,
            ["done"] => {
                let name = self.incarnations[i].name.clone();
                self.done.insert(name);
            }
            ["handled", handler, key, t] => {
                self.handled(i, handler, key, t.parse().unwrap_or(0), 0)
            }
            ["handled", handler, key, t, entry] => {
                let entry = entry_hash(entry);
                self.handled(i, handler, key, t.parse().unwrap_or(0), entry)
            }
            ["attempt_failed", handler, key, _] => self.failed(i, handler, key, false),
            ["cancelled", handler, key, _] => self.failed(i, handler, key, true),
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

    fn handled(&mut self, i: usize, handler: &str, key: &str, at: u64, entry: u64) {
        let inc = &mut self.incarnations[i];
        *inc.runs.entry(handler.to_owned()).or_default() += 1;
        if TICK_HANDLERS.contains(&handler) {
            let set = inc.handled.entry(handler.to_owned()).or_default();
            if !set.insert(key.to_owned()) {
                *inc.tick_duplicates.entry(handler.to_owned()).or_default() += 1;
            }
        } else {
            self.jobs
                .entry((handler.to_owned(), key.to_owned()))
                .or_default()
                .push(JobRun { inc: i, at, entry });
        }
    }

    fn failed(&mut self, i: usize, handler: &str, key: &str, cancelled: bool) {
        if handler == FLAKY {
            self.incarnations[i].failed_attempts += 1;
        }
        let run = (handler.to_owned(), key.to_owned());
        if cancelled {
            self.cancelled.insert(run.clone());
        }
        self.failed_runs.insert(run);
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

    /// How many runs of one job in one group after its first nothing explains: no run of it
    /// timed out, and for no pair of the run with another run of it were the two of different
    /// stream entries (the publisher appended the job twice: a publish sent again after its
    /// connection closed under it), or was one of the two processes dead
    /// ([`Incarnation::deaths`]) while it held the entry, before the other run ended.
    fn unexplained_duplicates(
        &self,
        job: &(String, String),
        runs: &[JobRun],
        claim_idle_ms: u64,
    ) -> usize {
        if runs.len() < 2 || self.cancelled.contains(job) {
            return 0;
        }
        let mut entries: Vec<u64> = runs.iter().map(|r| r.entry).collect();
        entries.sort_unstable();
        entries.dedup();
        entries
            .into_iter()
            .map(|entry| {
                let of_entry: Vec<JobRun> =
                    runs.iter().copied().filter(|r| r.entry == entry).collect();
                self.unexplained_reruns(of_entry, claim_idle_ms)
            })
            .sum()
    }

    /// How many runs of one entry after its first no death explains.
    fn unexplained_reruns(&self, mut runs: Vec<JobRun>, claim_idle_ms: u64) -> usize {
        runs.sort_by_key(|r| r.at);
        let explained = |j: usize| {
            runs.iter().enumerate().any(|(i, &other)| {
                i != j
                    && other.inc != runs[j].inc
                    && (self.died_holding(other, runs[j], claim_idle_ms)
                        || self.died_holding(runs[j], other, claim_idle_ms))
            })
        };
        (1..runs.len()).filter(|&j| !explained(j)).count()
    }

    /// Whether the process of `run` died while it held that run's entry (its run ended at most
    /// [`HELD_MS`] before the death began or after it ended) and `other` ended after the death
    /// began: the entry was claimed from a dead consumer.
    fn died_holding(&self, run: JobRun, other: JobRun, claim_idle_ms: u64) -> bool {
        let deaths = self.incarnations[run.inc].deaths(claim_idle_ms);
        deaths.iter().any(|&(from, to)| {
            other.at >= from && run.at + HELD_MS >= from && run.at <= to + HELD_MS
        })
    }

    /// `key` and its runs (process, seconds from the first process's start), for a broken row.
    fn describe_runs(&self, key: &str, runs: &[JobRun]) -> String {
        let origin = self.incarnations.first().map_or(0, |i| i.ready);
        let mut runs = runs.to_vec();
        runs.sort_by_key(|r| r.at);
        let each: Vec<String> = runs
            .iter()
            .map(|r| {
                let at = r.at.saturating_sub(origin) as f64 / 1000.0;
                format!("{} at {at:.1} s", self.incarnations[r.inc].label)
            })
            .collect();
        format!("{key} run by {}", each.join(", "))
    }

    /// Totals for the summary: (ticks ok, jobs ok, unconfirmed publishes, gaps).
    pub(crate) fn totals(&self) -> (usize, usize, u64, usize) {
        let jobs = self.ok_jobs().count();
        let gaps = self.incarnations.iter().map(|i| i.gaps.len()).sum();
        (self.published.len() - jobs, jobs, self.unconfirmed, gaps)
    }
}

/// A stream entry id as a number to compare (never 0).
fn entry_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish().max(1)
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

impl Row {
    /// A row of a check made outside the ledger.
    pub(crate) fn new(
        check: &'static str,
        subject: String,
        measured: String,
        bound: String,
        ok: bool,
    ) -> Row {
        Row {
            check,
            subject,
            measured,
            bound,
            ok,
        }
    }
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

/// One entry of the jobs' dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Letter {
    /// The handler that gave up on the job.
    pub(crate) handler: String,
    /// The job's key, `None` when the payload holds none.
    pub(crate) key: Option<String>,
}

/// The dead letters in `XRANGE`'s reply as redis-cli prints it (one word a line: the entry id,
/// then field and value lines): each entry's `handler` and the `key` of its envelope's data.
pub(crate) fn parse_letters(reply: &str) -> Vec<Letter> {
    let mut letters = Vec::new();
    let mut handler = String::new();
    let mut lines = reply.lines().map(str::trim);
    while let Some(line) = lines.next() {
        match line {
            "handler" => handler = lines.next().unwrap_or_default().to_owned(),
            "payload" => {
                let payload = lines.next().unwrap_or_default();
                let key = serde_json::from_str::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v["data"]["key"].as_str().map(str::to_owned));
                letters.push(Letter {
                    handler: std::mem::take(&mut handler),
                    key,
                });
            }
            _ => {}
        }
    }
    letters
}

/// What the server holds after the drain.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerState {
    pub(crate) groups: Vec<GroupState>,
    /// The length of the jobs' dead-letter stream.
    pub(crate) dead_letters: u64,
    /// The entries of the jobs' dead-letter stream.
    pub(crate) letters: Vec<Letter>,
}

/// Every invariant of the run.
pub(crate) fn check(ledger: &Ledger, server: &ServerState, warmup_ms: u64) -> Vec<Row> {
    let mut rows = durable_rows(ledger);
    rows.extend(duplicate_rows(ledger, CLAIM_IDLE.as_millis() as u64));
    rows.extend(server.groups.iter().map(pending_row));
    rows.push(Row {
        check: "durable: no dead letters",
        subject: JOB_DEAD_LETTERS.into(),
        measured: format!("XLEN {}", server.dead_letters),
        bound: "0".into(),
        ok: server.dead_letters == 0,
    });
    rows.extend(dead_letter_rows(ledger, &server.letters));
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
            let ran = |k: &str| ledger.jobs.contains_key(&(h.to_string(), k.to_owned()));
            let missing = ok.iter().filter(|k| !ran(k)).count();
            let (mut total, mut distinct, mut most) = (0, 0, 0);
            for ((handler, _), runs) in &ledger.jobs {
                if handler == h {
                    let n = runs.len();
                    (total, distinct, most) = (total + n, distinct + 1, most.max(n));
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

/// Per group, the runs of an entry after its first that no dead consumer or timeout explains.
fn duplicate_rows(ledger: &Ledger, claim_idle_ms: u64) -> Vec<Row> {
    JOB_HANDLERS
        .iter()
        .map(|h| {
            let (mut duplicates, mut unexplained, mut first) = (0, 0, String::new());
            for (job, runs) in ledger.jobs.iter().filter(|((handler, _), _)| handler == h) {
                duplicates += runs.len().saturating_sub(1);
                let n = ledger.unexplained_duplicates(job, runs, claim_idle_ms);
                if n > 0 && first.is_empty() {
                    first = format!(": {}", ledger.describe_runs(&job.1, runs));
                }
                unexplained += n;
            }
            Row {
                check: "durable: no duplicate run of an entry whose consumer never died",
                subject: format!("group soak:{h}"),
                measured: format!(
                    "{duplicates} duplicate runs, {unexplained} unexplained by a dead consumer or a timeout{first}"
                ),
                bound: "0 unexplained".into(),
                ok: unexplained == 0,
            }
        })
        .collect()
}

/// Per group, the dead letters of jobs the handler never failed (no `attempt_failed` and no
/// cancelled run of it): poison that no failure made.
fn dead_letter_rows(ledger: &Ledger, letters: &[Letter]) -> Vec<Row> {
    let mut handlers: Vec<&str> = JOB_HANDLERS.to_vec();
    for letter in letters {
        if !handlers.contains(&letter.handler.as_str()) {
            handlers.push(&letter.handler);
        }
    }
    handlers
        .into_iter()
        .map(|h| {
            let failed = |key: &Option<String>| {
                key.as_ref()
                    .is_some_and(|k| ledger.failed_runs.contains(&(h.to_owned(), k.clone())))
            };
            let mine: Vec<&Letter> = letters.iter().filter(|l| l.handler == h).collect();
            let without = mine.iter().filter(|l| !failed(&l.key)).count();
            Row {
                check: "durable: no entry dead-lettered without a failed run",
                subject: format!("group soak:{h}"),
                measured: format!(
                    "{} dead-lettered, {without} without a failed run of the handler",
                    mine.len()
                ),
                bound: "0 without".into(),
                ok: without == 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIM_IDLE_MS: u64 = 8_000;

    /// A ledger with consumers `c0`, `c1`, … ready at 0.
    fn consumers(n: u32) -> Ledger {
        let mut ledger = Ledger::default();
        for c in 0..n {
            let i = ledger.begin(&format!("c{c}"), "consumer", 100 + c);
            ledger.ready(i, 0);
        }
        ledger
    }

    /// Whether group `soak:job_slow`'s duplicate row holds, and what it measured.
    fn duplicates(ledger: &Ledger) -> (bool, String) {
        let rows = duplicate_rows(ledger, CLAIM_IDLE_MS);
        let row = rows.iter().find(|r| r.subject == "group soak:job_slow");
        let row = row.expect("a row per group");
        (row.ok, row.measured.clone())
    }

    #[test]
    fn a_duplicate_after_the_first_consumer_was_killed_is_explained() {
        let mut ledger = consumers(2);
        ledger.record(0, "handled job_slow p0-1 1000");
        ledger.end(0, 1_050, true);
        ledger.record(1, "handled job_slow p0-1 9200");
        ledger.record(1, "handled job_fast p0-1 1001");
        let (ok, measured) = duplicates(&ledger);
        assert!(ok, "{measured}");
        assert!(
            measured.starts_with("1 duplicate runs, 0 unexplained"),
            "{measured}"
        );
    }

    #[test]
    fn a_duplicate_from_a_live_consumer_is_counted() {
        let mut ledger = consumers(2);
        ledger.record(0, "handled job_slow p0-1 1000");
        ledger.record(1, "handled job_slow p0-1 1500");
        let (ok, measured) = duplicates(&ledger);
        assert!(!ok, "{measured}");
        assert!(
            measured.starts_with("1 duplicate runs, 1 unexplained"),
            "{measured}"
        );
    }

    #[test]
    fn a_job_appended_twice_is_two_entries_not_a_duplicate_run() {
        let mut ledger = consumers(2);
        ledger.record(0, "handled job_slow p0-1 1000 1700000000000-0");
        ledger.record(0, "handled job_slow p0-1 1100 1700000000000-1");
        let (ok, measured) = duplicates(&ledger);
        assert!(ok, "{measured}");
        ledger.record(1, "handled job_slow p0-1 1500 1700000000000-1");
        let (ok, measured) = duplicates(&ledger);
        assert!(
            !ok,
            "the second entry ran twice on live consumers: {measured}"
        );
    }

    #[test]
    fn a_death_long_after_the_run_or_after_the_duplicate_explains_nothing() {
        let mut ledger = consumers(3);
        ledger.record(0, "handled job_slow p0-1 1000");
        ledger.record(1, "handled job_slow p0-1 40000");
        ledger.end(0, 30_000, true);
        ledger.record(2, "handled job_slow p0-3 1000");
        ledger.record(1, "handled job_slow p0-3 1200");
        ledger.end(2, 5_000, true);
        assert!(
            duplicates(&ledger)
                .1
                .starts_with("2 duplicate runs, 2 unexplained")
        );
    }

    #[test]
    fn one_consumer_running_an_entry_twice_is_counted() {
        let mut ledger = consumers(1);
        ledger.record(0, "handled job_slow p0-1 1000");
        ledger.record(0, "handled job_slow p0-1 2000");
        ledger.end(0, 2_100, true);
        assert!(!duplicates(&ledger).0);
    }

    #[test]
    fn a_stop_longer_than_claim_idle_explains_a_duplicate_but_a_shorter_one_does_not() {
        for (stop, explained) in [(CLAIM_IDLE_MS + 1_000, true), (3_000, false)] {
            let mut ledger = consumers(2);
            ledger.paused(0, 2_000);
            ledger.resumed(0, 2_000 + stop);
            // The peer claims and runs the entry the stopped one held; that one finishes it
            // once resumed.
            ledger.record(1, &format!("handled job_slow p0-1 {}", 1_900 + stop));
            ledger.record(0, &format!("handled job_slow p0-1 {}", 2_050 + stop));
            // And one it had run just before it stopped, not acknowledged yet.
            ledger.record(0, "handled job_slow p0-3 1990");
            ledger.record(1, &format!("handled job_slow p0-3 {}", 1_950 + stop));
            let (ok, measured) = duplicates(&ledger);
            assert_eq!(ok, explained, "stop {stop} ms: {measured}");
        }
    }

    #[test]
    fn a_run_that_outlived_its_timeout_explains_a_duplicate() {
        let mut ledger = consumers(2);
        ledger.record(0, "handled job_slow p0-1 1000");
        ledger.record(0, "cancelled job_slow p0-1 1500");
        ledger.record(1, "handled job_slow p0-1 1600");
        assert!(duplicates(&ledger).0);
    }

    fn letter(handler: &str, key: Option<&str>) -> Letter {
        Letter {
            handler: handler.into(),
            key: key.map(str::to_owned),
        }
    }

    #[test]
    fn a_dead_letter_after_a_failed_run_holds() {
        let mut ledger = consumers(2);
        ledger.record(0, "attempt_failed job_flaky p0-1 1000");
        ledger.record(1, "cancelled job_slow p0-3 1000");
        let letters = [
            letter("job_flaky", Some("p0-1")),
            letter("job_slow", Some("p0-3")),
        ];
        let rows = dead_letter_rows(&ledger, &letters);
        assert_eq!(rows.len(), JOB_HANDLERS.len());
        assert!(rows.iter().all(|r| r.ok), "{rows:?}");
    }

    #[test]
    fn a_dead_letter_without_a_failed_run_breaks() {
        let mut ledger = consumers(1);
        ledger.record(0, "attempt_failed job_flaky p0-1 1000");
        let letters = [
            // Failed in another group only, or another job of the group, or unreadable.
            letter("job_fast", Some("p0-1")),
            letter("job_flaky", Some("p0-3")),
            letter("job_flaky", None),
            letter("job_other", Some("p0-1")),
        ];
        let rows = dead_letter_rows(&ledger, &letters);
        let broken: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| (r.subject.as_str(), r.measured.as_str()))
            .collect();
        assert_eq!(
            broken,
            [
                (
                    "group soak:job_fast",
                    "1 dead-lettered, 1 without a failed run of the handler"
                ),
                (
                    "group soak:job_flaky",
                    "2 dead-lettered, 2 without a failed run of the handler"
                ),
                (
                    "group soak:job_other",
                    "1 dead-lettered, 1 without a failed run of the handler"
                ),
            ]
        );
    }

    #[test]
    fn dead_letters_are_read_from_redis_cli_output() {
        let reply = "1796639487799-0\nhandler\njob_flaky\nerror\njob p0-1 fails\ntwice\n\
                     attempts\n4\nchannel\nevents:soak_job\ndurable\n1\npayload\n\
                     {\"specversion\":\"1.0\",\"type\":\"soak_job\",\"data\":{\"key\":\"p0-1\"}}\n\
                     1796639487800-0\nhandler\njob_slow\nerror\nx\npayload\nnot json";
        assert_eq!(
            parse_letters(reply),
            [letter("job_flaky", Some("p0-1")), letter("job_slow", None)]
        );
    }
}
