//! DLQ inspection and redrive on SQS (moto) and the in-process bus: what is listed stays, a
//! redrive moves exactly what was asked, in order, and the source queue gets the same bodies.

use std::time::Duration;

use leadfactory_cli::dlq;
use shared::bus::Queue;
use shared::bus::{Bus, MemoryBus, QueueSpec, SqsBus};

async fn behaves(bus: &dyn Bus) {
    let good = shared::bus::Envelope::new(
        shared::domain::TenantId::new(),
        None,
        "k-1",
        serde_json::json!({ "x": 1 }),
    )
    .to_body()
    .unwrap();
    let bodies = vec![
        good.clone(),
        "{broken".to_owned(),
        good.replace("k-1", "k-2"),
    ];
    bus.send_batch("enrichment-dlq", &bodies).await.unwrap();

    let listed = dlq::peek(bus, Queue::Enrichment, 50).await.unwrap();
    assert_eq!(listed.len(), 3);
    let broken = listed.iter().find(|l| l.parse_error.is_some()).unwrap();
    assert!(broken.body_excerpt.starts_with("{broken"));
    assert!(
        listed
            .iter()
            .any(|l| l.idempotency_key.as_deref() == Some("k-2"))
    );
    // Listing removed nothing.
    assert_eq!(
        dlq::peek(bus, Queue::Enrichment, 50).await.unwrap().len(),
        3
    );

    assert_eq!(dlq::redrive(bus, Queue::Enrichment, 2).await.unwrap(), 2);
    assert_eq!(dlq::redrive(bus, Queue::Enrichment, 10).await.unwrap(), 1);
    assert_eq!(dlq::redrive(bus, Queue::Enrichment, 10).await.unwrap(), 0);
    let mut back: Vec<String> = bus
        .receive(Queue::Enrichment.name(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.body)
        .collect();
    back.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(back, want);
}

#[tokio::test(start_paused = true)]
async fn redrive_on_the_in_process_bus() {
    let bus = MemoryBus::new(QueueSpec::with_dlq(
        "enrichment",
        Duration::from_secs(30),
        3,
    ));
    behaves(&bus).await;
}

#[tokio::test]
async fn redrive_on_sqs() {
    let sdk = testkit::moto_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let prefix = format!("{}-", testkit::unique_name("lf"));
    for name in [Queue::Enrichment.name(), Queue::Enrichment.dlq()] {
        sqs.create_queue()
            .queue_name(format!("{prefix}{name}"))
            .send()
            .await
            .unwrap();
    }
    let bus = SqsBus::resolve(
        sqs,
        &prefix,
        &["enrichment".into(), "enrichment-dlq".into()],
    )
    .await
    .unwrap();
    behaves(&bus).await;
}
