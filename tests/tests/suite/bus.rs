//! One behavioural suite for the queue hop, run against SQS (moto) and the in-process bus:
//! batch send, receive, delete, redelivery after the visibility timeout, DLQ after
//! `maxReceiveCount`.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use shared::bus::{Bus, MemoryBus, QueueSpec, SqsBus};

const VISIBILITY: Duration = Duration::from_secs(1);
const MAX_RECEIVES: u32 = 2;

/// How the suite lets a visibility timeout pass: tokio's paused clock for the in-process bus,
/// real time for SQS (moto's timer is its own).
#[async_trait::async_trait]
trait Clock: Sync {
    async fn pass(&self, d: Duration);
}

struct Paused;
#[async_trait::async_trait]
impl Clock for Paused {
    async fn pass(&self, d: Duration) {
        tokio::time::advance(d).await;
    }
}

struct Real;
#[async_trait::async_trait]
impl Clock for Real {
    async fn pass(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

async fn receive_all(bus: &dyn Bus, queue: &str) -> Vec<shared::bus::Delivery> {
    let mut out = Vec::new();
    for _ in 0..10 {
        let got = bus.receive(queue, 10).await.unwrap();
        if got.is_empty() && !out.is_empty() {
            break;
        }
        out.extend(got);
    }
    out
}

async fn behaves_like_a_queue(bus: &dyn Bus, clock: &dyn Clock, q: &str, dlq: &str) {
    // Batch send of 15 (two SQS batches); every message arrives once.
    let bodies: Vec<String> = (0..15).map(|i| format!("{{\"n\":{i}}}")).collect();
    bus.send_batch(q, &bodies).await.unwrap();
    let got = receive_all(bus, q).await;
    assert_eq!(
        got.iter().map(|d| d.body.clone()).collect::<BTreeSet<_>>(),
        bodies.iter().cloned().collect()
    );
    assert!(got.iter().all(|d| d.receive_count == 1));

    // While in flight, nothing is visible.
    assert!(bus.receive(q, 10).await.unwrap().is_empty());

    // Delete 14; after the visibility timeout only the undeleted one comes back, counted twice.
    let kept = got.iter().find(|d| d.body == "{\"n\":7}").unwrap().clone();
    for d in got.iter().filter(|d| d.receipt != kept.receipt) {
        bus.delete(q, &d.receipt).await.unwrap();
    }
    clock.pass(VISIBILITY + Duration::from_millis(300)).await;
    let again = bus.receive(q, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, kept.body);
    assert_eq!(again[0].receive_count, 2);

    // Received MAX_RECEIVES times without deletion: the next receive moves it to the DLQ.
    clock.pass(VISIBILITY + Duration::from_millis(300)).await;
    assert!(bus.receive(q, 10).await.unwrap().is_empty());
    let dead = receive_all(bus, dlq).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, kept.body);
    bus.delete(dlq, &dead[0].receipt).await.unwrap();

    // change_visibility(0) releases a message at once (how a consumer gives one back).
    bus.send_batch(q, &["{\"n\":99}".to_owned()]).await.unwrap();
    let d = bus.receive(q, 1).await.unwrap().remove(0);
    bus.change_visibility(q, &d.receipt, Duration::ZERO)
        .await
        .unwrap();
    let back = bus.receive(q, 1).await.unwrap();
    assert_eq!(back.len(), 1);
    bus.delete(q, &back[0].receipt).await.unwrap();

    let depth = bus.depth(q).await.unwrap();
    assert_eq!((depth.visible, depth.in_flight), (0, 0));

    // Unknown queues are a typed error, not a panic.
    assert!(
        bus.send_batch("no-such-queue", &["x".into()])
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn in_process_bus_behaves_like_a_queue() {
    let bus = MemoryBus::new(QueueSpec::with_dlq("work", VISIBILITY, MAX_RECEIVES));
    behaves_like_a_queue(&bus, &Paused, "work", "work-dlq").await;
}

#[tokio::test]
async fn sqs_bus_behaves_like_a_queue() {
    let sdk = testkit::moto_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = testkit::unique_name("work");
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            VISIBILITY.as_secs().to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES })
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    // As the functions build it: the client is made on the first call, from the shared config.
    let bus = SqsBus::lazy(
        &shared::aws::LazySdk::loaded(sdk.clone()),
        HashMap::from([("work".to_owned(), url), ("work-dlq".to_owned(), dlq_url)]),
    );
    behaves_like_a_queue(&bus, &Real, "work", "work-dlq").await;

    // resolve() finds queues by name.
    let resolved = SqsBus::resolve(
        aws_sdk_sqs::Client::new(&sdk),
        "",
        std::slice::from_ref(&name),
    )
    .await
    .unwrap();
    resolved.send_batch(&name, &["{}".into()]).await.unwrap();
    assert_eq!(resolved.depth(&name).await.unwrap().visible, 1);
}
