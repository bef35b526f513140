//! A SendGrid outage on real SQS semantics (moto): delivery messages are dead-lettered with
//! nothing sent and every claim released; after the outage, `dlq redrive` returns them to the
//! delivery queue and each email goes out exactly once — a second redrive of the same messages
//! sends nothing more.

use std::collections::BTreeSet;
use std::sync::Arc;

use leadfactory_cli::dlq;
use leadfactory_cli::local::{LocalPipeline, NoProgress, summarize};
use shared::bus::Bus;
use shared::bus::Queue;
use testkit::TestDb;

#[tokio::test]
async fn dead_lettered_sends_are_redriven_and_sent_once() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(testkit::moto_pipeline_bus(2).await);
    let mut opts = leadfactory_cli::local::LocalOptions::new(db.app_url(), store.path().to_owned());
    // The functions count a failure on the queues' last receive as the message's end.
    opts.max_receive_count = 2;
    opts.sim.faults.insert(
        "sendgrid".into(),
        sim::Fault {
            script: vec![sim::Outcome::Unauthorized; 1000],
            ..sim::Fault::default()
        },
    );
    let p = LocalPipeline::start(opts, bus.clone()).await.unwrap();
    p.ensure_tenant("Agency").await.unwrap();
    let mut pool = p.pool().clone();
    testkit::example_campaign()
        .upsert(&mut pool, p.tenant)
        .await
        .unwrap();
    let run = p.run(&NoProgress).await.unwrap();
    let s = summarize(p.pool(), p.tenant, run).await.unwrap();
    assert!(s.qualified > 0);
    assert_eq!(
        (s.sent, s.deferred),
        (0, s.qualified),
        "nothing sent, every claim released: {s:?}"
    );
    let dead = dlq::peek(bus.as_ref(), Queue::Delivery, 100).await.unwrap();
    assert_eq!(dead.len() as i64, s.qualified);
    assert!(p.sim.state.outbox.lock().unwrap().is_empty());

    // The outage ends; the operator redrives.
    p.sim.state.faults.lock().unwrap().clear();
    assert_eq!(
        dlq::redrive(bus.as_ref(), Queue::Delivery, 1000)
            .await
            .unwrap() as i64,
        s.qualified
    );
    p.settle().await.unwrap();
    let sent = p.sim.state.outbox.lock().unwrap().clone();
    let to: BTreeSet<String> = sent.iter().map(|m| m.to.join(",")).collect();
    assert_eq!(
        (sent.len() as i64, to.len() as i64),
        (s.qualified, s.qualified)
    );
    // The same messages once more (a redrive repeated from an older copy): nothing new.
    let bodies: Vec<String> = dead.iter().map(|d| d.body.clone()).collect();
    bus.send_batch(Queue::Delivery.name(), &bodies)
        .await
        .unwrap();
    p.settle().await.unwrap();
    assert_eq!(p.sim.state.outbox.lock().unwrap().len() as i64, s.qualified);
    assert_eq!(
        dlq::redrive(bus.as_ref(), Queue::Delivery, 1000)
            .await
            .unwrap(),
        0
    );
}
