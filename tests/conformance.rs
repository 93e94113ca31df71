//! The transport conformance suite (`eventbus::conformance`) on every transport of the crate:
//! in-process, a redis-server (pub/sub and Streams), Redis behind Sentinel and a Redis
//! Cluster, one test per behaviour and transport on a fresh deployment each; the whole suite
//! in one run on one in-process hub; and the custom-transport example, which runs the suite
//! on a transport written outside the crate.
//!
//! To add a transport: give `TestEnv` a constructor for it (a URL several buses share and,
//! for a server, the process to restart), then add one line to `on_every_transport!` below.

use eventbus::conformance::{self, Behaviour, Deployment};
use eventbus::transport::{BoxError, BoxFuture};
use eventbus::{ConnectError, EventBus, EventBusBuilder};
use eventbus_suite::TestEnv;

/// A test environment as the suite's deployment: buses connect to its URL; a Redis
/// environment restarts its server (or fails its primary over).
struct Env(TestEnv);

impl Deployment for Env {
    fn connect(&self, builder: EventBusBuilder) -> BoxFuture<'_, Result<EventBus, ConnectError>> {
        Box::pin(builder.connect(&self.0.url))
    }

    fn restart<'a>(&'a mut self, channel: &'a str) -> Option<BoxFuture<'a, Result<(), BoxError>>> {
        if !self.0.is_redis() {
            return None;
        }
        Some(Box::pin(async move {
            tokio::task::block_in_place(|| self.0.restart(channel));
            Ok(())
        }))
    }
}

/// Asserts that every behaviour the report skipped does not apply to the transport's
/// capabilities: a deployment here that could not restart its server would be a mistake.
#[track_caller]
fn skipped_only_by_capabilities(report: &conformance::Report) {
    let capabilities = report.capabilities().expect("the capabilities were asked");
    for (behaviour, outcome) in report.outcomes() {
        if let conformance::Outcome::Skipped(why) = outcome {
            assert!(
                behaviour.not_applicable(capabilities).is_some(),
                "{behaviour} was skipped though the transport's capabilities call for it: {why}"
            );
        }
    }
}

macro_rules! on_every_transport {
    ($($transport:ident => $env:expr),* $(,)?) => {
        $(
            mod $transport {
                use super::*;

                macro_rules! behaviour {
                    ($name:ident, $behaviour:ident) => {
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $name() {
                            assert_eq!(Behaviour::$behaviour.name(), stringify!($name));
                            if let Some(env) = $env {
                                let report = Behaviour::$behaviour.run(Env(env)).await;
                                report.assert_passed();
                                skipped_only_by_capabilities(&report);
                            }
                        }
                    };
                }

                behaviours!(behaviour);
            }
        )*
    };
}

/// Calls `$each!(test_name, Variant)` for every behaviour; `every_behaviour_has_a_test`
/// checks the list against `Behaviour::ALL`.
macro_rules! behaviours {
    ($each:ident) => {
        $each!(delivery_once_in_order, DeliveryOnceInOrder);
        $each!(fan_out_to_every_subscriber, FanOutToEverySubscriber);
        $each!(
            patterns_match_only_their_channels,
            PatternsMatchOnlyTheirChannels
        );
        $each!(
            keyed_events_reach_their_handlers,
            KeyedEventsReachTheirHandlers
        );
        $each!(raw_channels_carry_bytes, RawChannelsCarryBytes);
        $each!(failures_are_isolated, FailuresAreIsolated);
        $each!(unsubscribe_stops_delivery, UnsubscribeStopsDelivery);
        $each!(
            bad_input_is_reported_and_skipped,
            BadInputIsReportedAndSkipped
        );
        $each!(shutdown_drains_then_refuses, ShutdownDrainsThenRefuses);
        $each!(
            reconnects_after_a_server_restart,
            ReconnectsAfterAServerRestart
        );
        $each!(durable_groups_share_the_work, DurableGroupsShareTheWork);
        $each!(
            scheduled_events_arrive_when_due,
            ScheduledEventsArriveWhenDue
        );
        $each!(
            delayed_retries_come_back_to_their_group,
            DelayedRetriesComeBackToTheirGroup
        );
    };
}

on_every_transport!(
    memory => Some(TestEnv::memory()),
    redis => TestEnv::redis(),
    sentinel => TestEnv::sentinel(),
    cluster => TestEnv::cluster(),
);

#[test]
fn every_behaviour_has_a_test() {
    let mut listed = Vec::new();
    macro_rules! list {
        ($name:ident, $behaviour:ident) => {
            listed.push(Behaviour::$behaviour);
        };
    }
    behaviours!(list);
    assert_eq!(
        listed,
        Behaviour::ALL,
        "the `behaviours!` list is out of date"
    );
}

/// `conformance::run`: every behaviour in turn on one shared in-process hub, those the
/// in-process transport's capabilities call for passing, the others skipped with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_runs_on_one_deployment() {
    let report = conformance::run(Env(TestEnv::memory())).await;
    report.assert_passed();
    let skipped: Vec<_> = report
        .outcomes()
        .iter()
        .filter(|(_, o)| matches!(o, conformance::Outcome::Skipped(_)))
        .map(|(b, _)| *b)
        .collect();
    assert_eq!(
        skipped,
        [Behaviour::ReconnectsAfterAServerRestart],
        "{report}"
    );
    assert_eq!(report.outcomes().len(), Behaviour::ALL.len());
}

/// A failed behaviour is named in the report and in the panic of `assert_passed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_names_its_behaviour() {
    // Each bus on a private hub of its own: nothing one bus publishes reaches another.
    let report = Behaviour::FanOutToEverySubscriber
        .run(|b: EventBusBuilder| b.connect("memory://"))
        .await;
    assert!(!report.passed(), "{report}");
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0].0, Behaviour::FanOutToEverySubscriber);
    assert!(failures[0].1.contains("receivers"), "{report}");
    let panic = std::panic::catch_unwind(|| report.assert_passed()).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("fan_out_to_every_subscriber: "),
        "{message}"
    );
}

/// The custom-transport example passes the suite with its own transport, as a user runs it.
#[test]
fn custom_transport_example_passes() {
    let binary = eventbus_suite::examples::example_binary("custom_transport");
    let output = std::process::Command::new(binary)
        .output()
        .expect("run the custom_transport example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit status {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("conformance: 9 passed, 4 skipped, 0 failed")),
        "{stdout}"
    );
}
