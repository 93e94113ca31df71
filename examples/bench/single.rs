//! The single-server rows of the full run: publishing against A (before, between and after
//! ours), B, B', B'', G and C; delivery end to end, the subscriber alone, latency with one in
//! flight and at steady rates against R, and a no-op handler beside a stalled one.

use std::time::Duration;

use eventbus::EventBus;
use eventbus_suite::redis_server::RedisServer;

use crate::table::{Row, Spread, pct, quantile, rate_text, row, times, us};
use crate::{
    BATCH, CHANNEL, Drain, E2e, IN_FLIGHT, Sizes, baseline_a, bus_publish, bus_publish_all,
    cpu_and_rss, e2e, fresh_envelope, one_in_flight, progress, publish_command, raw_publish,
    redis_benchmark, resp, steady, subscriber_capacity, wait_count,
};

/// What the publishing side measured.
pub(crate) struct Publishing {
    /// A, B and C (p50 and p99, nanoseconds) before, between and after ours.
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<[f64; 2]>,
    /// What the raw subscriber got of A's first run, and its CPU per message.
    drained: u64,
    raw_cpu: Duration,
    b_cpu: Duration,
    b2_rps: f64,
    b3_rps: f64,
    g_rps: f64,
    ours_rps: f64,
    ours_cpu: Duration,
    batch_rps: f64,
}

/// CPU time of this process spent running `f`, and what it returned.
async fn cpu_of<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<(T, Duration)> {
    let (cpu0, _) = cpu_and_rss();
    let out = f.await?;
    let (cpu1, _) = cpu_and_rss();
    Ok((out, cpu1.saturating_sub(cpu0)))
}

/// A (with a raw subscriber draining it), B, B', B'', G and C, then ours and `publish_all`,
/// then A again.
pub(crate) async fn publishing(server: &RedisServer, sizes: &Sizes) -> anyhow::Result<Publishing> {
    let (url, n, payload) = (server.url(), sizes.publish, "x".repeat(crate::PAYLOAD));
    progress::stage(format!("baseline A: redis-benchmark -c 1 -P 16 -n {n}"));
    let drain = Drain::start(&url).await?;
    let command = publish_command(&payload);
    let (([a_first, _, _], drained), raw_cpu) = cpu_of(async {
        let a = redis_benchmark(server.port(), &["-P", "16"], n, &command).await?;
        Ok((a, wait_count(&drain.count, n, Duration::from_secs(3)).await))
    })
    .await?;
    if drained < n {
        eprintln!("  the raw subscriber received {drained} of {n}");
    }
    progress::stage(format!("baseline B: redis-rs, {IN_FLIGHT} in flight"));
    let (b_rps, b_cpu) = cpu_of(raw_publish(&url, n, |_| payload.as_bytes())).await?;
    // The same, with our envelope's bytes as the payload: how much of the difference is size.
    let envelope = fresh_envelope(0);
    let b2_rps = raw_publish(&url, n, |_| envelope.as_slice()).await?;
    // And with a fresh envelope built and encoded for each: the wire format's cost included,
    // so that ours/B'' is what the bus adds apart from it.
    let b3_rps = raw_publish(&url, n, fresh_envelope).await?;
    // The same callers on a connection written by hand: what the publish path costs without
    // redis-rs's multiplexed connection.
    let g_rps = resp::publish(server.port(), CHANNEL, n, IN_FLIGHT, fresh_envelope).await?;
    let c = baseline_c(server, sizes.one_at_a_time).await?;
    let (ours_rps, ours_cpu, batch_rps) = ours(&url, n).await?;
    drain.task.abort();
    let mut publishing = Publishing {
        a: vec![a_first],
        b: vec![b_rps],
        c: vec![c],
        drained,
        raw_cpu: raw_cpu.div_f64(drained.max(1) as f64),
        b_cpu: b_cpu.div_f64(n as f64),
        b2_rps,
        b3_rps,
        g_rps,
        ours_rps,
        ours_cpu: ours_cpu.div_f64(n as f64),
        batch_rps,
    };
    publishing.again(server, sizes, "between").await?;
    Ok(publishing)
}

/// C: redis-benchmark one publish at a time; its p50 and p99 in nanoseconds.
async fn baseline_c(server: &RedisServer, n: u64) -> anyhow::Result<[f64; 2]> {
    progress::stage(format!("baseline C: redis-benchmark -c 1 -n {n}"));
    let payload = "x".repeat(crate::PAYLOAD);
    let command = publish_command(&payload);
    let [_, p50_ms, p99_ms] = redis_benchmark(server.port(), &[], n, &command).await?;
    Ok([p50_ms * 1e6, p99_ms * 1e6])
}

impl Publishing {
    /// Takes A, B and C again (`when`: between or after ours): each baseline moves by 2x
    /// between rounds on a shared machine, and the ratios are to their medians.
    pub(crate) async fn again(
        &mut self,
        server: &RedisServer,
        sizes: &Sizes,
        when: &str,
    ) -> anyhow::Result<()> {
        let (n, payload) = (sizes.publish, "x".repeat(crate::PAYLOAD));
        progress::stage(format!("baselines A, B and C again, {when} ours"));
        self.a.push(baseline_a(server, n, &payload).await?);
        let b = raw_publish(&server.url(), n, |_| payload.as_bytes()).await?;
        self.b.push(b);
        self.c.push(baseline_c(server, sizes.one_at_a_time).await?);
        Ok(())
    }

    fn b_rps(&self) -> f64 {
        Spread::of(&self.b).median
    }

    /// C's p50, nanoseconds: the median of its runs.
    pub(crate) fn c_p50(&self) -> f64 {
        Spread::of(&self.c.iter().map(|c| c[0]).collect::<Vec<_>>()).median
    }

    fn c_p99(&self) -> f64 {
        Spread::of(&self.c.iter().map(|c| c[1]).collect::<Vec<_>>()).median
    }
}

/// `bus.publish` with 16 in flight after a short warm-up (rate, CPU), then `publish_all`.
async fn ours(url: &str, n: u64) -> anyhow::Result<(f64, Duration, f64)> {
    progress::stage(format!("ours: bus.publish, {IN_FLIGHT} in flight"));
    let bus = EventBus::builder()
        .service("bench-publisher")
        .connect(url)
        .await?;
    bus_publish(&bus, (n / 20).max(100)).await?;
    let (rate, cpu) = cpu_of(bus_publish(&bus, n)).await?;
    progress::stage(format!("ours: publish_all, {BATCH} events a call"));
    let batch = bus_publish_all(&bus, n).await?;
    let _ = bus.shutdown().await;
    Ok((rate, cpu, batch))
}

/// What the delivering side measured.
pub(crate) struct Delivering {
    pub(crate) alone: E2e,
    /// The subscriber fed by redis-benchmark: sent/s, delivered/s, delivered, CPU per event.
    capacity: (f64, f64, u64, Duration),
    pub(crate) single: Vec<u64>,
    pub(crate) loaded: E2e,
    pub(crate) raw_loaded: Vec<u64>,
}

/// End to end, the subscriber alone, one in flight, and the steady load against R.
pub(crate) async fn delivering(server: &RedisServer, sizes: &Sizes) -> anyhow::Result<Delivering> {
    let url = server.url();
    progress::stage(format!(
        "ours: end to end, {} events from another process",
        sizes.e2e
    ));
    let alone = e2e(&url, sizes.e2e, None, false, false).await?;
    progress::stage("ours: subscriber alone, redis-benchmark -P 16 publishing the envelope");
    let capacity = subscriber_capacity(server, sizes.capacity).await?;
    progress::stage("ours: latency, one event in flight");
    let single = one_in_flight(server, sizes.latency_samples).await?;
    let (rate, secs) = (sizes.load_rate, sizes.load_secs);
    progress::stage(format!("ours: latency at {rate}/s for {secs} s"));
    let loaded = e2e(&url, rate * secs, Some(rate), false, true).await?;
    progress::stage(format!("baseline R: raw redis-rs at {rate}/s for {secs} s"));
    let raw_loaded = steady::raw_steady(server, rate, rate * secs).await?;
    Ok(Delivering {
        alone,
        capacity,
        single,
        loaded,
        raw_loaded,
    })
}

/// The `--publish-rows` line.
pub(crate) fn publish_line(p: &Publishing, d: &Delivering, load_rate: u64) -> String {
    let q = |v: &[u64], q| quantile(v, q) / 1e3;
    let a = Spread::of(&p.a).median;
    format!(
        "publish-rows A {a:.0} B {:.0} B'' {:.0} G {:.0} ours {:.0} publish_all {:.0} cpu_B \
         {:.3} cpu_ours {:.3} e2e {:.0} lost {} C_p50 {:.1} p50_1 {:.1} p99_1 {:.1} \
         p99_{load_rate} {:.1} R_p99 {:.1}",
        p.b_rps(),
        p.b3_rps,
        p.g_rps,
        p.ours_rps,
        p.batch_rps,
        p.b_cpu.as_secs_f64() * 1e6,
        p.ours_cpu.as_secs_f64() * 1e6,
        d.alone.rate,
        lost(&d.alone),
        p.c_p50() / 1e3,
        q(&d.single, 0.5),
        q(&d.single, 0.99),
        q(&d.loaded.latencies, 0.99),
        q(&d.raw_loaded, 0.99),
    )
}

fn lost(run: &E2e) -> u64 {
    run.published.saturating_sub(run.delivered)
}

/// The steady-load rows at the sizes' other rates, ours against R.
pub(crate) async fn steady_rows(server: &RedisServer, sizes: &Sizes) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (rate, secs) in sizes.steady {
        progress::stage(format!(
            "ours and baseline R: latency at {rate}/s for {secs} s"
        ));
        let run = e2e(&server.url(), rate * secs, Some(rate), false, true).await?;
        let raw = steady::raw_steady(server, rate, rate * secs).await?;
        rows.push(steady::steady_row(rate, &run.latencies, &raw));
    }
    Ok(rows)
}

/// A no-op handler beside a stalled one against the same handler alone (the best of two runs
/// each, one of them `alone`, the end-to-end run): the row.
pub(crate) async fn stalled_row(url: &str, n: u64, alone: &E2e) -> anyhow::Result<Row> {
    progress::stage("ours: a no-op handler beside a stalled one");
    let with_stalled_1 = e2e(url, n, None, true, false).await?;
    let alone_2 = e2e(url, n, None, false, false).await?;
    let with_stalled_2 = e2e(url, n, None, true, false).await?;
    let alone_best = alone.rate.max(alone_2.rate);
    let stalled_best = with_stalled_1.rate.max(with_stalled_2.rate);
    let alone_lost = lost(alone) + lost(&alone_2);
    let stalled_lost = lost(&with_stalled_1) + lost(&with_stalled_2);
    let cost = 1.0 - stalled_best / alone_best;
    Ok(row(
        "no-op handler beside a stalled one",
        format!("alone: {} ({alone_lost} lost)", rate_text(alone_best)),
        format!("{} ({} lost)", rate_text(stalled_best), stalled_lost),
    )
    .ratio(pct(stalled_best / alone_best))
    .target(
        "< 10% cost, no more lost",
        cost < 0.10 && stalled_lost <= alone_lost,
    ))
}

/// The publishing rows, against A's median and spread.
pub(crate) fn publish_rows(p: &Publishing, n: u64, envelope_len: usize) -> Vec<Row> {
    let (a, ours) = (Spread::of(&p.a), rate_text(p.ours_rps));
    let a_rps = a.median;
    let short = if p.drained < n {
        format!(" (its subscriber got {} of {n})", p.drained)
    } else {
        String::new()
    };
    let versus = |baseline: String, rps: f64| {
        row(
            format!("publish, {IN_FLIGHT} in flight"),
            baseline,
            ours.clone(),
        )
        .ratio(pct(p.ours_rps / rps))
    };
    vec![
        versus(
            format!(
                "A redis-benchmark -P 16, before, between and after ours: {}{short}",
                a.text()
            ),
            a_rps,
        )
        .target("≥ 75% of A", p.ours_rps >= 0.75 * a_rps),
        versus(
            format!(
                "B redis-rs, {IN_FLIGHT} in flight, before, between and after ours: {}",
                Spread::of(&p.b).text()
            ),
            p.b_rps(),
        )
        .target("≥ 100% of B", p.ours_rps >= p.b_rps()),
        versus(
            format!(
                "B' redis-rs, {envelope_len}-byte envelope as payload: {}",
                rate_text(p.b2_rps)
            ),
            p.b2_rps,
        ),
        versus(
            format!(
                "B'' redis-rs, a fresh envelope encoded for each: {}",
                rate_text(p.b3_rps)
            ),
            p.b3_rps,
        ),
        versus(
            format!(
                "G hand-written RESP connection, B'' callers: {} ({} of A)",
                rate_text(p.g_rps),
                pct(p.g_rps / a_rps)
            ),
            p.g_rps,
        ),
    ]
    .into_iter()
    .chain(batch_and_cpu_rows(p, a_rps))
    .collect()
}

/// `publish_all` against A, and the publishing process's CPU per event against B's.
fn batch_and_cpu_rows(p: &Publishing, a_rps: f64) -> Vec<Row> {
    let cpu_ratio = p.ours_cpu.as_secs_f64() / p.b_cpu.as_secs_f64().max(1e-9);
    vec![
        row(
            format!("publish_all, {BATCH} a call"),
            format!("A: {}", rate_text(a_rps)),
            rate_text(p.batch_rps),
        )
        .ratio(pct(p.batch_rps / a_rps))
        .target("≥ 100% of A", p.batch_rps >= a_rps),
        row(
            "  publishing process CPU per event",
            format!("B: {:.2} µs", p.b_cpu.as_secs_f64() * 1e6),
            format!("{:.2} µs", p.ours_cpu.as_secs_f64() * 1e6),
        )
        .ratio(times(cpu_ratio))
        .target("≤ 1.1× B", cpu_ratio <= 1.1),
    ]
}

/// End to end, the subscriber alone and the output-buffer disconnects of all runs of ours.
pub(crate) fn delivery_rows(
    p: &Publishing,
    d: &Delivering,
    sizes: &Sizes,
    disconnects: u64,
) -> Vec<Row> {
    let a_rps = Spread::of(&p.a).median;
    let (alone, capacity) = (&d.alone, &d.capacity);
    let ratio = alone.rate / a_rps;
    vec![
        row(
            "end to end, publisher process → bus",
            format!("A: {}", rate_text(a_rps)),
            format!(
                "{} ({} of {} delivered)",
                rate_text(alone.rate),
                alone.delivered,
                alone.published
            ),
        )
        .ratio(pct(ratio))
        .target(
            "≥ 60% of A, 0 lost",
            ratio >= 0.6 && lost(alone) == 0 && alone.published == sizes.e2e,
        ),
        row(
            "  subscriber alone (fed by redis-benchmark -P 16)",
            format!("A: {}", rate_text(a_rps)),
            format!(
                "{} ({} of {} delivered; sent at {})",
                rate_text(capacity.1),
                capacity.2,
                sizes.capacity,
                rate_text(capacity.0)
            ),
        )
        .ratio(pct(capacity.1 / a_rps))
        .target(
            "≥ 80% of A, 0 lost",
            capacity.1 >= 0.8 * a_rps && capacity.2 == sizes.capacity,
        ),
        row(
            "  output-buffer disconnects",
            "-",
            format!("{disconnects} (all runs of ours)"),
        )
        .target("0", disconnects == 0),
    ]
}

/// Latency with one in flight against C, at the steady load against R and C, the `steady`
/// rows of the other rates, then the subscriber's CPU and memory.
pub(crate) fn latency_rows(
    p: &Publishing,
    d: &Delivering,
    load_rate: u64,
    steady: Vec<Row>,
) -> Vec<Row> {
    let q = |v: &[u64], q| quantile(v, q);
    let (s50, s99, s999) = (q(&d.single, 0.5), q(&d.single, 0.99), q(&d.single, 0.999));
    let (c_p50, c_p99) = (p.c_p50(), p.c_p99());
    let sub_cpu = d.alone.cpu_per_event.as_secs_f64() / p.raw_cpu.as_secs_f64().max(1e-9);
    vec![
        row(
            "latency p50, 1 in flight",
            format!("C p50: {}", us(c_p50)),
            us(s50),
        )
        .ratio(times(s50 / c_p50))
        .target("≤ 2× C p50", s50 <= 2.0 * c_p50),
        row(
            "latency p99, 1 in flight",
            format!("C p50: {}", us(c_p50)),
            us(s99),
        )
        .ratio(times(s99 / c_p50))
        .target("≤ 3× C p50", s99 <= 3.0 * c_p50),
        row(
            "latency p99.9, 1 in flight",
            format!("C p99: {}", us(c_p99)),
            us(s999),
        )
        .ratio(times(s999 / c_p99)),
        steady::steady_row(load_rate, &d.loaded.latencies, &d.raw_loaded),
        steady::p99_row(load_rate, &d.loaded.latencies, c_p50),
    ]
    .into_iter()
    .chain(steady)
    .chain([
        row(
            "subscriber CPU per event",
            format!(
                "raw redis-rs subscriber: {:.2} µs",
                p.raw_cpu.as_secs_f64() * 1e6
            ),
            format!(
                "{:.2} µs ({:.2} µs fed by redis-benchmark)",
                d.alone.cpu_per_event.as_secs_f64() * 1e6,
                d.capacity.3.as_secs_f64() * 1e6
            ),
        )
        .ratio(times(sub_cpu))
        .target("≤ 1.8× raw", sub_cpu <= 1.8),
        row(
            "subscriber RSS (whole bench process)",
            "-",
            format!("{:.1} MiB", d.alone.rss as f64 / (1024.0 * 1024.0)),
        ),
    ])
    .collect()
}
