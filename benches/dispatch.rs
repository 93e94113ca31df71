//! Dispatch micro-benchmark on `memory://`: publish a batch of events and wait until every
//! handler of the type has handled each one, with 1, 4 and 16 handlers. Measures the whole
//! path: encode, the in-process transport, one header parse and one data decode per message,
//! the per-handler queues and workers.
//!
//! ```text
//! cargo bench --bench dispatch
//! ```

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventbus::{Event, EventBus, HandlerOptions, State};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// About 200 bytes of JSON data.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Tick {
    seq: u64,
    pad: String,
}

/// Events per iteration.
const BATCH: u64 = 100;

#[derive(Clone)]
struct Done(Arc<Semaphore>);

async fn handled(_: Tick, State(done): State<Done>) {
    done.0.add_permits(1);
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pad = "x".repeat(180);
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(BATCH));
    for handlers in [1usize, 4, 16] {
        let done = Done(Arc::new(Semaphore::new(0)));
        let bus = rt.block_on(async {
            let mut builder = EventBus::builder().state(done.clone());
            for i in 0..handlers {
                builder =
                    builder.handler_with(HandlerOptions::new().name(format!("h{i}")), handled);
            }
            builder.connect("memory://").await.expect("connects")
        });
        g.bench_with_input(
            BenchmarkId::new("publish → all handled", handlers),
            &handlers,
            |b, &handlers| {
                b.iter(|| {
                    rt.block_on(async {
                        for seq in 0..BATCH {
                            bus.publish(Tick {
                                seq,
                                pad: pad.clone(),
                            })
                            .await
                            .expect("publishes");
                        }
                        let all = u32::try_from(BATCH as usize * handlers).expect("fits");
                        done.0.acquire_many(all).await.expect("open").forget();
                    });
                });
            },
        );
        rt.block_on(bus.shutdown()).expect("shuts down");
    }
    g.finish();
}

criterion_group! {
    name = dispatch_benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(dispatch_benches);
