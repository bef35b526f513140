//! Domain events on EventBridge (moto): each of the five, made true by the function that owns its
//! fact (targeting, the Stripe webhook, alerts), reaches a rule's SQS target on the bus exactly
//! as its schema in `docs/events/` says; none is left waiting; a bus that refuses an event
//! leaves it waiting with the reason, and the next flush publishes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_sdk_sqs::types::QueueAttributeName;
use shared::events::{DetailType, EventBridgePublisher, Publisher};
use testkit::TestDb;

const STRIPE_SECRET: &str = "whsec_domain_events";

/// A bus of its own on moto with one rule (every event of ours) targeting a fresh queue;
/// returns the bus name and the queue's URL.
async fn bus_with_a_rule(
    eb: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
) -> (String, String) {
    let bus = testkit::unique_name("lf-bus");
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let url = sqs
        .create_queue()
        .queue_name(testkit::unique_name("lf-bus-target"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    eb.put_rule()
        .name("everything-of-ours")
        .event_bus_name(&bus)
        .event_pattern(serde_json::json!({ "source": ["leadfactory"] }).to_string())
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("everything-of-ours")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (bus, url)
}

/// Everything on the target queue.
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        for m in got {
            out.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn schema(t: &str) -> jsonschema::Validator {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../docs/events/{t}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&serde_json::from_str(&text).unwrap())
        .unwrap_or_else(|e| panic!("{t}: the schema does not compile: {e}"))
}

/// A manual night with the example campaign's every area searched to its end: it finds
/// nothing new, and its run finishes at once.
async fn empty_night(
    p: &leadfactory_cli::local::LocalPipeline,
    admin: &tokio_postgres::Client,
) -> targeting::TargetingReport {
    exhaust_the_campaign(admin).await;
    manual_night(p).await
}

async fn manual_night(p: &leadfactory_cli::local::LocalPipeline) -> targeting::TargetingReport {
    targeting::handler(
        &p.deps,
        serde_json::json!({ "detail": { "kind": "manual" } }),
    )
    .await
    .unwrap()
}

async fn exhaust_the_campaign(admin: &tokio_postgres::Client) {
    admin
        .execute(
            "INSERT INTO targeting_cursors (tenant_id, campaign_id, location, category, next_offset, known_total, exhausted_at)
             SELECT c.tenant_id, c.id, z, k, 40, 40, now() FROM campaigns c, unnest(c.zip_codes) z, unnest(c.categories) k",
            &[],
        )
        .await
        .unwrap();
}

fn stripe_request(body: &str) -> ApiGatewayV2httpRequest {
    let mut r = ApiGatewayV2httpRequest::default();
    r.request_context.http.method = http::Method::POST;
    r.body = Some(body.to_owned());
    let sig = shared::webhook::stripe::sign(
        STRIPE_SECRET,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    )
    .unwrap();
    r.headers.insert("stripe-signature", sig.parse().unwrap());
    r
}

#[tokio::test]
async fn every_event_reaches_a_rule_on_the_bus_exactly_as_its_schema_says() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let mut p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let sdk = testkit::moto_sdk_config().await;
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (bus, target) = bus_with_a_rule(&eb, &sqs).await;
    let publisher: Arc<dyn Publisher> = Arc::new(EventBridgePublisher::new(eb.clone(), bus));
    p.deps.events = Some(publisher.clone());
    let tenant = p.tenant.as_uuid();
    let admin = db.admin().await;

    let night = empty_night(&p, &admin).await;
    assert_eq!(night.campaigns_exhausted.len(), 1);
    assert_eq!(night.jobs_sent, 0);

    // A report bought, then partly refunded.
    let (business, report) = testkit::business_with_report(&admin, tenant, 'e').await;
    let stripe = stripe_webhook::WebhookDeps {
        pool: p.deps.pool.clone(),
        bus: p.deps.bus.clone(),
        secret: secrecy::SecretString::from(STRIPE_SECRET),
        tolerance_secs: 300,
        events: Some(publisher.clone()),
    };
    let paid = serde_json::json!({
        "id": "evt_paid", "object": "event", "type": "checkout.session.completed", "created": chrono::Utc::now().timestamp(),
        "data": { "object": {
            "id": "cs_events", "object": "checkout.session", "payment_status": "paid", "status": "complete",
            "amount_total": 4900, "currency": "usd", "payment_intent": "pi_events",
            "customer_details": { "email": "owner@joes.example.com" },
            "metadata": { "tenant_id": tenant, "report_id": report, "business_id": business }
        } }
    });
    let refund = serde_json::json!({
        "id": "evt_refund", "object": "event", "type": "charge.refunded", "created": chrono::Utc::now().timestamp(),
        "data": { "object": { "id": "ch_events", "object": "charge", "amount": 4900, "amount_refunded": 1000,
                              "payment_intent": "pi_events", "metadata": { "tenant_id": tenant } } }
    });
    for body in [&paid, &refund] {
        let h = stripe_webhook::handle(
            &stripe,
            &stripe_request(&body.to_string()),
            chrono::Utc::now().timestamp(),
        )
        .await
        .unwrap();
        assert_eq!(h.outcome, "processed");
    }

    // The alerts check raises the exhausted campaign's alert, and sweeps.
    let alerts = alerts::Alerts::new(None, alerts::Thresholds::default());
    let report_ = alerts.run(&p.deps, chrono::Utc::now()).await.unwrap();
    assert!(report_.events_published >= 1, "{report_:?}");

    let received = drain(&sqs, &target).await;
    let mut by_type: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for e in &received {
        assert_eq!(e["source"], "leadfactory", "{e}");
        let t = e["detail-type"].as_str().unwrap().to_owned();
        assert!(
            DetailType::named(&t).is_some(),
            "an unknown detail-type {t}"
        );
        let v = schema(&t);
        let errors: Vec<String> = v
            .iter_errors(&e["detail"])
            .map(|err| format!("{err} at {}", err.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{t} does not match its schema: {errors:?}\n{}",
            e["detail"]
        );
        assert_eq!(e["detail"]["tenant_id"], serde_json::json!(tenant));
        by_type.entry(t).or_default().push(e["detail"].clone());
    }
    for t in DetailType::ALL {
        assert!(
            by_type.contains_key(t.as_str()),
            "no {t} reached the rule's target (got {:?})",
            by_type.keys().collect::<Vec<_>>()
        );
    }
    // Each fact once.
    let ids: std::collections::BTreeSet<&str> = received
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), received.len(), "an event was published twice");
    let run_finished = &by_type["RunFinished"];
    assert_eq!(run_finished.len(), 1);
    assert_eq!(
        run_finished[0]["run_id"],
        serde_json::json!(night.runs[0].as_uuid())
    );
    assert_eq!(run_finished[0]["status"], "succeeded");
    assert_eq!(by_type["PurchasePaid"][0]["amount_cents"], 4900);
    assert_eq!(by_type["PurchaseRefunded"][0]["refunded_cents"], 1000);
    assert_eq!(by_type["PurchaseRefunded"][0]["fully_refunded"], false);
    assert_eq!(
        by_type["CampaignExhausted"][0]["campaign_name"],
        "San Jose restaurants"
    );
    assert!(
        by_type["AlertRaised"]
            .iter()
            .any(|a| a["rule"] == "campaign_exhausted" && a["severity"] == "warning"),
        "{:?}",
        by_type["AlertRaised"]
    );
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM domain_events WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
    // Nothing is published twice: another flush and another identical delivery send nothing.
    let again = shared::events::flush(&p.deps.pool, Some(publisher.as_ref()), p.tenant)
        .await
        .unwrap();
    assert_eq!(again.published, 0);
    manual_night(&p).await;
    let later: Vec<String> = drain(&sqs, &target)
        .await
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap().to_owned())
        .collect();
    // A second manual run is a new run: its RunFinished and its CampaignExhausted are new facts.
    assert_eq!(later.len(), 2, "{later:?}");
}

#[tokio::test]
async fn an_event_the_bus_refused_waits_with_its_reason_and_the_next_flush_publishes_it() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let mut p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    p.deps.events = Some(Arc::new(testkit::RefusingBus));
    let admin = db.admin().await;
    // An empty night: the run finishes at once; its RunFinished and CampaignExhausted cannot be
    // published.
    let night = empty_night(&p, &admin).await;
    assert_eq!(night.jobs_sent, 0);
    let row = admin
        .query_one(
            "SELECT count(*) AS n, max(publish_attempts) AS attempts, max(last_publish_error) AS error
             FROM domain_events WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("n"), 2);
    assert_eq!(row.get::<_, i32>("attempts"), 1);
    assert!(
        row.get::<_, String>("error")
            .contains("ThrottlingException")
    );
    // The bus answers again: the alerts function's sweep publishes them, oldest first, then
    // the alerts it raised (the exhausted campaign's among them).
    let bus = shared::events::MemoryPublisher::default();
    p.deps.events = Some(Arc::new(bus.clone()));
    let r = alerts::Alerts::new(None, alerts::Thresholds::default())
        .run(&p.deps, chrono::Utc::now())
        .await
        .unwrap();
    let published = bus.published();
    assert_eq!(r.events_published, published.len());
    let types: Vec<&str> = published
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap())
        .collect();
    let mut night_events = types[..2].to_vec();
    night_events.sort_unstable();
    assert_eq!(
        night_events,
        ["CampaignExhausted", "RunFinished"],
        "{types:?}"
    );
    assert!(types[2..].iter().all(|t| *t == "AlertRaised"), "{types:?}");
    let finished = published
        .iter()
        .find(|e| e["detail-type"] == "RunFinished")
        .unwrap();
    assert_eq!(
        finished["detail"]["run_id"],
        serde_json::json!(night.runs[0].as_uuid())
    );
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM domain_events WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
}

#[test]
fn the_sample_run_finished_is_what_the_schema_says_and_what_the_consumers_read() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/run-finished.json"),
    )
    .unwrap();
    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(schema("RunFinished").is_valid(&event["detail"]));
    match shared::events::Received::of(&event).unwrap() {
        shared::events::Received::RunFinished(r) => {
            assert_eq!(r.status, "succeeded");
            assert_eq!(r.stages["enrichment"].total, 53);
        }
        other => panic!("read as {other:?}"),
    }
    // A field the schema does not know is refused: the schemas say exactly what is sent.
    let mut extra = event["detail"].clone();
    extra["customer_email"] = "owner@example.com".into();
    assert!(!schema("RunFinished").is_valid(&extra));
}
