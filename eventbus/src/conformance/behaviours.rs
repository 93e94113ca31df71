//! The behaviours, one async fn each. Each connects its buses through the [`Lab`], which
//! shuts them down afterwards, and stops at the first expectation that does not hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{Check, Context, Lab, Seen, WAIT, ensure, failed, wait_for};
use crate::EventBusBuilder;
use crate::bus::EventBus;
use crate::error::{Failure, PublishErrorKind};
use crate::event::Event;
use crate::options::HandlerOptions;
use crate::topic::Topic;
use crate::transport::{ConnectionEvent, Message};

/// A broadcast event with a fixed channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus_derive::Event)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[event(crate = "crate", name = "conf_note", channel = "conf:notes")]
pub(super) struct Note {
    pub(super) n: u64,
    text: String,
}

/// A keyed broadcast event: one channel per user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus_derive::Event)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[event(
    crate = "crate",
    name = "conf_alert",
    channel = "conf:user:{user}:alerts"
)]
struct Alert {
    user: u64,
    n: u64,
}

/// A durable event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, eventbus_derive::Event)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[event(crate = "crate", name = "conf_task", durable)]
pub(super) struct Task {
    pub(super) n: u64,
}

pub(super) fn note(n: u64) -> Note {
    Note {
        n,
        text: format!("note {n}"),
    }
}

/// A bus whose handler records the `n` of every `Note`, ready.
async fn recorder(lab: &mut Lab<'_>, seen: &Seen<u64>) -> Result<EventBus, super::check::Stop> {
    let seen = seen.clone();
    lab.ready(EventBus::builder().handler(move |e: Note| {
        let seen = seen.clone();
        async move { seen.push(e.n) }
    }))
    .await
}

/// Events from one bus reach a handler on another, each once, intact and in order.
pub(super) async fn delivery_once_in_order(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    recorder(lab, &seen).await?;
    let publisher = lab.connect(EventBus::builder()).await?;
    for n in 0..500 {
        publisher.publish(note(n)).await.context("publishing")?;
    }
    ensure!(
        wait_for(|| seen.len() >= 500).await,
        "500 events published, {} received within {WAIT:?}",
        seen.len()
    );
    let got = seen.snapshot();
    ensure!(
        got == (0..500).collect::<Vec<_>>(),
        "events 0..500 expected once each in order, received {} of them: {:?}",
        got.len(),
        Excerpt(&got)
    );
    Ok(())
}

/// Two subscribed buses both get every event; the receipt counts them.
pub(super) async fn fan_out_to_every_subscriber(lab: &mut Lab<'_>) -> Check {
    let (a, b) = (Seen::new(), Seen::new());
    let bus_a = recorder(lab, &a).await?;
    recorder(lab, &b).await?;
    let receipt = bus_a.publish(note(1)).await.context("publishing")?;
    ensure!(
        receipt.receivers == 2,
        "the receipt counts {} receivers, expected 2 (two buses subscribed)",
        receipt.receivers
    );
    ensure!(
        wait_for(|| a.len() == 1 && b.len() == 1).await,
        "one event expected on each bus, received {:?} and {:?}",
        a.snapshot(),
        b.snapshot()
    );
    Ok(())
}

/// A pattern handler gets the events of matching channels only. Raw payloads are classic
/// publishes, which reach patterns on a Redis Cluster too.
pub(super) async fn patterns_match_only_their_channels(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let s = seen.clone();
    let bus = lab
        .ready(
            EventBus::builder().handler_on(Topic::pattern("conf:*"), move |m: Message| {
                let s = s.clone();
                async move { s.push(m.channel.to_string()) }
            }),
        )
        .await?;
    for (channel, payload) in [("conf:a", "1"), ("other:b", "2"), ("conf:c", "3")] {
        bus.publish_raw(channel, payload)
            .await
            .context("publishing a raw payload")?;
    }
    let expected = vec!["conf:a".to_owned(), "conf:c".to_owned()];
    ensure!(
        wait_for(|| seen.len() >= 2).await,
        "the pattern `conf:*` expected {expected:?}, received {:?}",
        seen.snapshot()
    );
    ensure!(
        seen.snapshot() == expected,
        "the pattern `conf:*` expected {expected:?}, received {:?}",
        seen.snapshot()
    );
    Ok(())
}

/// Keyed events reach the handler of their type (a pattern) and the handler of one key (a
/// channel), and nothing else; events with a fixed channel on the same bus still arrive.
pub(super) async fn keyed_events_reach_their_handlers(lab: &mut Lab<'_>) -> Check {
    let (all, one, notes) = (Seen::new(), Seen::new(), Seen::new());
    let (a, o, n) = (all.clone(), one.clone(), notes.clone());
    let builder = EventBus::builder()
        .handler(move |e: Alert| {
            let a = a.clone();
            async move { a.push(e.n) }
        })
        .handler_on(Topic::keyed::<Alert>(&[&7]), move |e: Alert| {
            let o = o.clone();
            async move { o.push(e.n) }
        })
        .handler(move |e: Note| {
            let n = n.clone();
            async move { n.push(e.n) }
        });
    let bus = lab.ready(builder).await?;
    for user in [1, 7, 9] {
        let receipt = bus
            .publish(Alert { user, n: user * 10 })
            .await
            .context("publishing a keyed event")?;
        let channel = format!("conf:user:{user}:alerts");
        ensure!(
            receipt.channel == channel,
            "a keyed event went to `{}`, expected `{channel}`",
            receipt.channel
        );
    }
    bus.publish(note(5)).await.context("publishing")?;
    let report = || {
        format!(
            "the type's handler received {:?} (expected 10, 70, 90), the key 7 handler {:?} \
             (expected [70]), the note handler {:?} (expected [5])",
            all.snapshot(),
            one.snapshot(),
            notes.snapshot()
        )
    };
    ensure!(
        wait_for(|| all.len() >= 3 && one.len() >= 1 && notes.len() >= 1).await,
        "{}",
        report()
    );
    let mut got = all.snapshot();
    got.sort_unstable();
    ensure!(
        got == [10, 70, 90] && one.snapshot() == [70] && notes.snapshot() == [5],
        "{}",
        report()
    );
    Ok(())
}

/// Raw payloads reach a `Message` handler byte for byte, published classic or sharded, each
/// once.
pub(super) async fn raw_channels_carry_bytes(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let s = seen.clone();
    let bus = lab
        .ready(
            EventBus::builder().handler_on(Topic::channel("conf:raw"), move |m: Message| {
                let s = s.clone();
                async move { s.push(m.payload.to_vec()) }
            }),
        )
        .await?;
    let bytes = vec![0u8, 255, 10, 13, b'x'];
    let receivers = bus
        .publish_raw("conf:raw", bytes.clone())
        .await
        .context("publishing a raw payload")?
        .receivers;
    ensure!(
        receivers == 1,
        "a raw publish counted {receivers} receivers, expected 1"
    );
    let sharded = b"sharded".to_vec();
    let receivers = bus
        .publish_raw_sharded("conf:raw", sharded.clone())
        .await
        .context("publishing a raw payload sharded")?
        .receivers;
    ensure!(
        receivers == 1,
        "a sharded raw publish counted {receivers} receivers, expected 1"
    );
    ensure!(
        wait_for(|| seen.len() >= 2).await,
        "two raw payloads published, received {:?}",
        seen.snapshot()
    );
    bus.publish_raw("conf:raw", "last")
        .await
        .context("publishing a raw payload")?;
    ensure!(
        wait_for(|| seen.len() >= 3).await,
        "three raw payloads published, received {:?}",
        seen.snapshot()
    );
    let expected = vec![bytes, sharded, b"last".to_vec()];
    ensure!(
        seen.snapshot() == expected,
        "raw payloads expected byte for byte {expected:?}, received {:?}",
        seen.snapshot()
    );
    Ok(())
}

/// A failing, a panicking and a hanging handler leave another handler of the type alone,
/// and later events still reach them.
pub(super) async fn failures_are_isolated(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let runs = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let builder = EventBus::builder()
        .on_error(|_: &Failure| {})
        .handler(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        });
    let builder = with_bad_handlers(builder, &runs);
    let bus = lab.ready(builder).await?;
    for n in 0..3 {
        bus.publish(note(n)).await.context("publishing")?;
    }
    let counts = || {
        let m = bus.metrics();
        let h = |name: &str| m.handler(name).cloned().unwrap_or_default();
        (
            h("failing").failed,
            h("panicking").panicked,
            h("hanging").timed_out,
        )
    };
    ensure!(
        wait_for(|| seen.len() == 3 && counts() == (3, 3, 3)).await,
        "the healthy handler received {:?} (expected [0, 1, 2]); (failed, panicked, timed out) \
         counted {:?}, expected (3, 3, 3)",
        seen.snapshot(),
        counts()
    );
    let runs = runs.load(Ordering::SeqCst);
    ensure!(
        runs == 9,
        "the three bad handlers ran {runs} times, expected 9"
    );
    Ok(())
}

/// A failing, a panicking and a hanging handler of `Note`, each counting its runs in `runs`,
/// with a timeout of 100 ms.
fn with_bad_handlers(builder: EventBusBuilder, runs: &Arc<AtomicU64>) -> EventBusBuilder {
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs.clone());
    let fast = HandlerOptions::new().timeout(Duration::from_millis(100));
    builder
        .handler_with(fast.clone().name("failing"), move |_: Note| {
            r1.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), _>(std::io::Error::other("fails")) }
        })
        .handler_with(fast.clone().name("panicking"), move |_: Note| {
            let run = r2.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                // A panic that skips the panic hook: the bus catches it all the same, and
                // the run's output shows no message for a panic made on purpose.
                if run > 0 {
                    std::panic::resume_unwind(Box::new("a handler panics on purpose"));
                }
            }
        })
        .handler_with(fast.name("hanging"), move |_: Note| {
            r3.fetch_add(1, Ordering::SeqCst);
            async move { tokio::time::sleep(Duration::from_secs(3600)).await }
        })
}

/// After `unsubscribe().await`, nothing more reaches the handler.
pub(super) async fn unsubscribe_stops_delivery(lab: &mut Lab<'_>) -> Check {
    let bus = lab.connect(EventBus::builder()).await?;
    let seen = Seen::new();
    let s = seen.clone();
    let sub = bus
        .subscribe(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        })
        .await
        .context("subscribing")?;
    bus.ready(WAIT)
        .await
        .context("waiting for the subscription")?;
    bus.publish(note(1)).await.context("publishing")?;
    ensure!(
        wait_for(|| seen.len() == 1).await,
        "one event expected before unsubscribing, received {:?}",
        seen.snapshot()
    );
    sub.unsubscribe().await.context("unsubscribing")?;
    let receipt = bus.publish(note(2)).await.context("publishing")?;
    ensure!(
        receipt.receivers == 0,
        "after unsubscribing, the receipt counts {} receivers, expected 0",
        receipt.receivers
    );
    bus.shutdown().await.context("shutting down")?;
    ensure!(
        seen.snapshot() == [1],
        "after unsubscribing, the handler still received {:?}",
        seen.snapshot()
    );
    Ok(())
}

/// Bad input is reported and dropped; the next valid event arrives.
pub(super) async fn bad_input_is_reported_and_skipped(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let failures = Seen::new();
    let (s, f) = (seen.clone(), failures.clone());
    let builder = EventBus::builder()
        .on_error(move |e: &Failure| f.push(matches!(e, Failure::Decode(_))))
        .handler(move |e: Note| {
            let s = s.clone();
            async move { s.push(e.n) }
        });
    let bus = lab.ready(builder).await?;
    bus.publish_raw(Note::CHANNEL, "not json")
        .await
        .context("publishing a raw payload")?;
    bus.publish_raw(Note::CHANNEL, r#"{"type":"conf_note","data":{"n":"x"}}"#)
        .await
        .context("publishing a raw payload")?;
    bus.publish(note(7)).await.context("publishing")?;
    ensure!(
        wait_for(|| seen.len() >= 1 && failures.len() >= 2).await,
        "after two bad messages and a good one, the handler received {:?} (expected [7]) and \
         {} failures were reported (expected 2)",
        seen.snapshot(),
        failures.len()
    );
    ensure!(
        failures.snapshot() == [true, true],
        "expected two decode failures; reported (decode failure or not): {:?}",
        failures.snapshot()
    );
    ensure!(
        seen.snapshot() == [7],
        "the handler received {:?}, expected [7]",
        seen.snapshot()
    );
    Ok(())
}

/// Shutdown drains what was queued; publishing afterwards fails with `Closed`.
pub(super) async fn shutdown_drains_then_refuses(lab: &mut Lab<'_>) -> Check {
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let bus = lab
        .ready(EventBus::builder().handler(move |_: Note| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .await?;
    for n in 0..50 {
        bus.publish(note(n)).await.context("publishing")?;
    }
    let received = || bus.metrics().handlers.first().map_or(0, |h| h.received);
    ensure!(
        wait_for(|| received() == 50).await,
        "50 events published, the handler received {}",
        received()
    );
    let report = bus.shutdown().await.context("shutting down")?;
    let done = done.load(Ordering::SeqCst);
    ensure!(
        (done, report.unprocessed) == (50, 0),
        "shutdown let {done} of 50 queued events finish and reported {} unprocessed",
        report.unprocessed
    );
    match bus.publish(note(0)).await {
        Err(e) if e.kind() == PublishErrorKind::Closed => Ok(()),
        Err(e) => Err(failed(format_args!(
            "publishing after shutdown failed with {:?} ({e}), expected Closed",
            e.kind()
        ))),
        Ok(_) => Err(failed("publishing after shutdown succeeded")),
    }
}

/// A restarted server: the bus reconnects, reports the gap with `Resubscribed`, and delivers
/// again.
pub(super) async fn reconnects_after_a_server_restart(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let bus = recorder(lab, &seen).await?;
    let mut events = bus.connection_events();
    lab.restart(Note::CHANNEL).await?;
    let resubscribed = tokio::time::timeout(WAIT, async {
        while let Ok(e) = events.recv().await {
            if matches!(e, ConnectionEvent::Resubscribed { .. }) {
                return true;
            }
        }
        false
    })
    .await;
    ensure!(
        resubscribed == Ok(true),
        "no `ConnectionEvent::Resubscribed` within {WAIT:?} of the restart"
    );
    bus.ready(WAIT)
        .await
        .context("waiting for the bus to be ready after the restart")?;
    bus.publish(note(9))
        .await
        .context("publishing after the restart")?;
    ensure!(
        wait_for(|| seen.snapshot() == [9]).await,
        "after the restart, the handler received {:?}, expected [9]",
        seen.snapshot()
    );
    Ok(())
}

/// Durable events: instances of one service share a consumer group, each entry handled once.
pub(super) async fn durable_groups_share_the_work(lab: &mut Lab<'_>) -> Check {
    let seen = Seen::new();
    let mut buses = Vec::new();
    for _ in 0..2 {
        let s = seen.clone();
        let builder = EventBus::builder().service("conf").handler_with(
            HandlerOptions::new().name("work"),
            move |t: Task| {
                let s = s.clone();
                async move { s.push(t.n) }
            },
        );
        buses.push(lab.connect(builder).await?);
    }
    for n in 0..200 {
        let receipt = buses[0]
            .publish(Task { n })
            .await
            .context("publishing a durable event")?;
        ensure!(
            receipt.entry_id.is_some(),
            "a durable publish returned no entry id"
        );
    }
    ensure!(
        wait_for(|| seen.len() >= 200).await,
        "200 durable events published, {} handled",
        seen.len()
    );
    let mut got = seen.snapshot();
    got.sort_unstable();
    ensure!(
        got == (0..200).collect::<Vec<_>>(),
        "each of 200 durable events expected once across the group, handled {} times: {:?}",
        got.len(),
        Excerpt(&got)
    );
    Ok(())
}

/// A long list shown by its first and last few items.
pub(super) struct Excerpt<'a>(pub(super) &'a [u64]);

impl std::fmt::Debug for Excerpt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const EDGE: usize = 8;
        let items = self.0;
        if items.len() <= 2 * EDGE {
            return write!(f, "{items:?}");
        }
        let (head, tail) = (&items[..EDGE], &items[items.len() - EDGE..]);
        write!(f, "{head:?} .. {tail:?}")
    }
}
