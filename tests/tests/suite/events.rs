//! The sample events in `events/` (also `cargo lambda invoke` inputs) parse into the Lambda
//! event types and their bodies into the stage payloads; fed to the real Lambda entry they give
//! partial batch failures for exactly the messages that cannot be processed.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use leadfactory_cli::local::{LocalOptions, LocalPipeline, memory_bus};
use shared::bus::Envelope;
use shared::pipeline::handle_sqs;
use shared::pipeline::messages::{LeadRef, SourcingJob};

fn event(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn failures(r: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    let mut v: Vec<String> = r
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn every_function_has_a_sample_event_that_parses() {
    let functions = testkit::function_dirs();
    for f in &functions {
        assert!(
            std::path::Path::new(&format!(
                "{}/../events/{f}.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .is_file(),
            "events/{f}.json is missing"
        );
    }
    let t: aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(&event("targeting.json")).unwrap();
    assert_eq!(t.detail_type, "Scheduled Event");
    let s: SqsEvent = serde_json::from_str(&event("sourcing.json")).unwrap();
    let job: Envelope<SourcingJob> =
        Envelope::parse(s.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(job.payload.limit, 50);
    for f in [
        "enrichment.json",
        "assessment.json",
        "scoring.json",
        "reports.json",
        "personalization.json",
    ] {
        let e: SqsEvent = serde_json::from_str(&event(f)).unwrap();
        assert!(
            Envelope::<LeadRef>::parse(e.records[0].body.as_deref().unwrap()).is_ok(),
            "{f}"
        );
        assert!(
            Envelope::<LeadRef>::parse(e.records[1].body.as_deref().unwrap()).is_err(),
            "{f}: the second record is the poison one"
        );
    }
}

/// A local pipeline on a fresh database (kept alive by the returned guards).
async fn pipeline() -> (LocalPipeline, testkit::TestDb, tempfile::TempDir) {
    let db = testkit::TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = LocalPipeline::start(
        LocalOptions::new(db.app_url(), store.path().to_owned()),
        Arc::new(memory_bus(std::time::Duration::from_secs(30), 3)),
    )
    .await
    .unwrap();
    (p, db, store)
}

#[tokio::test]
async fn the_lambda_entry_reports_exactly_the_unprocessable_messages() {
    let (p, _db, _store) = pipeline().await;
    p.ensure_tenant("Sample").await.unwrap();

    // Sourcing: the job's campaign does not exist (permanent, before any paid call) and the
    // second record is malformed.
    let s: SqsEvent = serde_json::from_str(&event("sourcing.json")).unwrap();
    let r = handle_sqs(&p.stages.sourcing, &p.deps, s, None).await;
    assert_eq!(failures(&r), vec!["msg-1", "msg-2"]);
    assert!(
        p.sim.state.requests.lock().unwrap().get("yelp").is_none(),
        "no Yelp call for a missing campaign"
    );

    // Scoring: the business is unknown (permanent failure) and the second record is malformed.
    let e: SqsEvent = serde_json::from_str(&event("scoring.json")).unwrap();
    let r = handle_sqs(&p.stages.scoring, &p.deps, e, None).await;
    assert_eq!(failures(&r), vec!["msg-1", "msg-2"]);
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["batchItemFailures"].as_array().unwrap().len(), 2);
}

#[test]
fn the_webhook_sample_is_an_http_api_request_carrying_sendgrid_events() {
    let r: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_str(&event("sendgrid-webhook.json")).unwrap();
    assert_eq!(shared::lambda::http::method(&r), "POST");
    let events: Vec<shared::webhook::sendgrid::Event> =
        serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(events[0].event, "delivered");
}

#[test]
fn the_stripe_sample_is_an_http_api_request_carrying_a_stripe_event() {
    let r: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_str(&event("stripe-webhook.json")).unwrap();
    assert_eq!(
        shared::lambda::http::header(&r, "Stripe-Signature").map(|h| h.starts_with("t=")),
        Some(true)
    );
    let e: shared::webhook::stripe::Event =
        serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(e.kind, "checkout.session.completed");
}

#[test]
fn the_delivery_sample_routes_outreach_and_fulfilment_records_by_queue() {
    let e: SqsEvent = serde_json::from_str(&event("delivery.json")).unwrap();
    let routes: Vec<delivery::Route> = e
        .records
        .iter()
        .map(|r| delivery::route(r.event_source_arn.as_deref()))
        .collect();
    assert_eq!(
        routes,
        vec![
            delivery::Route::Outreach,
            delivery::Route::Fulfilment,
            delivery::Route::Outreach
        ]
    );
    assert!(Envelope::<LeadRef>::parse(e.records[0].body.as_deref().unwrap()).is_ok());
    let f: Envelope<shared::pipeline::messages::Fulfil> =
        Envelope::parse(e.records[1].body.as_deref().unwrap()).unwrap();
    assert_eq!(f.idempotency_key, "fulfil:cs_test_sample");
    assert!(Envelope::<LeadRef>::parse(e.records[2].body.as_deref().unwrap()).is_err());
    let b: aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(&event("delivery-backlog.json")).unwrap();
    assert_eq!(b.detail_type, "Scheduled Event");
}

#[tokio::test]
async fn the_storefront_sample_is_a_page_request_answered_404_for_an_unknown_report() {
    let r: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_str(&event("storefront.json")).unwrap();
    assert_eq!(shared::lambda::http::method(&r), "GET");
    assert!(shared::lambda::http::path(&r).starts_with("/r/"));
    let (p, _db, _store) = pipeline().await;
    let c = reqwest::Client::new();
    let resp = c
        .get(format!(
            "{}{}",
            p.gateway_url,
            shared::lambda::http::path(&r)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn the_ops_api_sample_is_refused_without_a_valid_key() {
    let r: aws_lambda_events::event::apigw::ApiGatewayV2httpRequest =
        serde_json::from_str(&event("ops-api.json")).unwrap();
    let (p, _db, _store) = pipeline().await;
    let ops = ops_api::OpsApi {
        pool: p.deps.pool.clone(),
        bus: p.deps.bus.clone(),
        store: p.deps.store.clone(),
        queues: ops_api::wired_queues(),
    };
    let resp = ops.handler(r).await;
    assert_eq!(resp.status_code, 401);
}
