//! The Stripe webhook against real PostgreSQL and the in-process bus: one purchase and one
//! fulfilment message per paid checkout however often Stripe delivers, a stop between commit
//! and send finished by the retry, refunds and expiries recorded, bad requests refused.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use secrecy::SecretString;
use shared::bus::{Bus, MemoryBus, Queue, QueueSpec};
use shared::webhook::stripe;
use stripe_webhook::{WebhookDeps, handle, handler};
use testkit::{HookedBus, OnSend, TestDb};

const SECRET: &str = "whsec_test_123";

struct Setup {
    db: TestDb,
    bus: Arc<MemoryBus>,
    /// What the webhook published.
    events: shared::events::MemoryPublisher,
    deps: WebhookDeps,
    tenant: uuid::Uuid,
    report: uuid::Uuid,
    business: uuid::Uuid,
}

async fn setup_with(bus_override: Option<Arc<dyn Bus>>) -> Setup {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let tenant = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'A')",
            &[&tenant],
        )
        .await
        .unwrap();
    let (business, report) = testkit::business_with_report(&admin, tenant, 'k').await;
    let bus = Arc::new(MemoryBus::new(QueueSpec::with_dlq(
        Queue::Fulfilment.name(),
        Duration::from_secs(30),
        3,
    )));
    let events = shared::events::MemoryPublisher::default();
    let deps = WebhookDeps {
        pool: db.app_pool(),
        bus: bus_override.unwrap_or_else(|| bus.clone()),
        secret: SecretString::from(SECRET),
        tolerance_secs: 300,
        events: Some(Arc::new(events.clone())),
    };
    Setup {
        db,
        bus,
        events,
        deps,
        tenant,
        report,
        business,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn request(body: &str, signature: Option<String>) -> ApiGatewayV2httpRequest {
    let mut r = ApiGatewayV2httpRequest::default();
    r.request_context.http.method = http::Method::POST;
    r.body = Some(body.to_owned());
    if let Some(s) = signature {
        r.headers.insert("stripe-signature", s.parse().unwrap());
    }
    r
}

fn signed(body: &str) -> ApiGatewayV2httpRequest {
    request(
        body,
        Some(stripe::sign(SECRET, now(), body.as_bytes()).unwrap()),
    )
}

fn completed(s: &Setup, event_id: &str, session: &str) -> String {
    serde_json::json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed", "created": now(), "livemode": false,
        "data": { "object": {
            "id": session, "object": "checkout.session", "payment_status": "paid", "status": "complete",
            "amount_total": 4900, "currency": "usd", "payment_intent": format!("pi_{session}"),
            "customer_details": { "email": "owner@joes.example.com" },
            "metadata": { "tenant_id": s.tenant, "report_id": s.report, "business_id": s.business }
        } }
    })
    .to_string()
}

async fn one(db: &TestDb, sql: &str) -> i64 {
    db.admin().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_paid_checkout_is_recorded_and_fulfilled_once_however_often_it_is_delivered() {
    let s = setup_with(None).await;
    let body = completed(&s, "evt_1", "cs_test_1");
    let first = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert_eq!((first.outcome, first.fulfilment_sent), ("processed", true));
    for _ in 0..2 {
        let again = handle(&s.deps, &signed(&body), now()).await.unwrap();
        assert_eq!((again.outcome, again.fulfilment_sent), ("duplicate", false));
    }
    assert_eq!(handler(&s.deps, signed(&body)).await.status_code, 200);
    let row =
        s.db.admin()
            .await
            .query_one(
                "SELECT status, amount_cents, customer_email, stripe_payment_intent FROM purchases",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i64>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3)
        ),
        (
            "paid".into(),
            4900,
            "owner@joes.example.com".into(),
            "pi_cs_test_1".into()
        )
    );
    assert_eq!(one(&s.db, "SELECT count(*) FROM purchases").await, 1);
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM stripe_events WHERE processed_at IS NOT NULL"
        )
        .await,
        1
    );
    let msgs = s.bus.receive(Queue::Fulfilment.name(), 10).await.unwrap();
    assert_eq!(msgs.len(), 1, "one fulfilment message");
    let env: shared::bus::Envelope<stripe_webhook::Fulfil> =
        shared::bus::Envelope::parse(&msgs[0].body).unwrap();
    assert_eq!(env.payload.stripe_session_id, "cs_test_1");
    assert_eq!(env.idempotency_key, "fulfil:cs_test_1");
}

#[tokio::test]
async fn a_delivery_that_stopped_before_sending_is_finished_by_the_retry() {
    let inner = Arc::new(MemoryBus::new(QueueSpec::with_dlq(
        Queue::Fulfilment.name(),
        Duration::from_secs(30),
        3,
    )));
    let s = setup_with(Some(Arc::new(HookedBus::new(inner.clone(), |_, n| {
        if n == 0 { OnSend::Fail } else { OnSend::Pass }
    }))))
    .await;
    let body = completed(&s, "evt_2", "cs_test_2");
    let err = handle(&s.deps, &signed(&body), now()).await.unwrap_err();
    assert_eq!(err.status, 503, "Stripe retries a 5xx");
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE status = 'paid'"
        )
        .await,
        1
    );
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM stripe_events WHERE processed_at IS NULL"
        )
        .await,
        1
    );
    let retry = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert_eq!((retry.outcome, retry.fulfilment_sent), ("processed", true));
    assert_eq!(
        inner.depth(Queue::Fulfilment.name()).await.unwrap().visible,
        1
    );
    assert_eq!(one(&s.db, "SELECT count(*) FROM purchases").await, 1);
}

#[tokio::test]
async fn refunds_and_expiries_are_recorded() {
    let s = setup_with(None).await;
    handle(
        &s.deps,
        &signed(&completed(&s, "evt_3", "cs_test_3")),
        now(),
    )
    .await
    .unwrap();
    let refund = |id: &str, amount: i64| {
        serde_json::json!({ "id": id, "object": "event", "type": "charge.refunded", "created": now(),
            "data": { "object": { "id": "ch_1", "object": "charge", "amount": 4900, "amount_refunded": amount, "payment_intent": "pi_cs_test_3",
                                  "metadata": { "tenant_id": s.tenant } } } })
        .to_string()
    };
    handle(&s.deps, &signed(&refund("evt_4", 1000)), now())
        .await
        .unwrap();
    let row =
        s.db.admin()
            .await
            .query_one("SELECT status, refunded_cents FROM purchases", &[])
            .await
            .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("partially_refunded".into(), 1000)
    );
    handle(&s.deps, &signed(&refund("evt_5", 4900)), now())
        .await
        .unwrap();
    let row =
        s.db.admin()
            .await
            .query_one("SELECT status, refunded_cents FROM purchases", &[])
            .await
            .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("refunded".into(), 4900)
    );

    // A pending checkout that expires.
    s.db.admin()
        .await
        .execute(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, stripe_session_id, amount_cents) VALUES (gen_random_uuid(), $1, $2, $3, 'cs_pending', 4900)",
            &[&s.tenant, &s.report, &s.business],
        )
        .await
        .unwrap();
    let expired = serde_json::json!({ "id": "evt_6", "object": "event", "type": "checkout.session.expired", "created": now(),
        "data": { "object": { "id": "cs_pending", "object": "checkout.session", "payment_status": "unpaid", "metadata": { "tenant_id": s.tenant } } } })
    .to_string();
    handle(&s.deps, &signed(&expired), now()).await.unwrap();
    assert_eq!(one(&s.db, "SELECT count(*) FROM purchases WHERE stripe_session_id = 'cs_pending' AND status = 'expired'").await, 1);
    // A type we do not act on is acknowledged and stored.
    let other = serde_json::json!({ "id": "evt_7", "object": "event", "type": "customer.created", "created": now(), "data": { "object": { "id": "cus_1", "metadata": { "tenant_id": s.tenant } } } }).to_string();
    assert_eq!(
        handle(&s.deps, &signed(&other), now())
            .await
            .unwrap()
            .outcome,
        "ignored"
    );
    assert_eq!(one(&s.db, "SELECT count(*) FROM stripe_events").await, 5);
}

#[tokio::test]
async fn bad_requests_are_refused_with_4xx_and_write_nothing() {
    let s = setup_with(None).await;
    let body = completed(&s, "evt_9", "cs_test_9");
    let mut tampered = signed(&body);
    tampered.body = Some(body.replace("4900", "1"));
    let mut get = signed(&body);
    get.request_context.http.method = http::Method::GET;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(600 * 1024));
    let missing_meta = completed(&s, "evt_10", "cs_test_10").replace("report_id", "nothing");
    let cases: Vec<(&str, ApiGatewayV2httpRequest, u16)> = vec![
        (
            "wrong secret",
            request(
                &body,
                Some(stripe::sign("whsec_other", now(), body.as_bytes()).unwrap()),
            ),
            401,
        ),
        ("tampered body", tampered, 401),
        (
            "stale timestamp",
            request(
                &body,
                Some(stripe::sign(SECRET, now() - 3_600, body.as_bytes()).unwrap()),
            ),
            401,
        ),
        ("missing header", request(&body, None), 401),
        (
            "malformed header",
            request(&body, Some("t=abc,v1=zz".into())),
            401,
        ),
        ("malformed JSON", signed("{\"id\": 1"), 400),
        ("oversized body", signed(&big), 413),
        ("wrong method", get, 405),
        ("paid session without report_id", signed(&missing_meta), 400),
    ];
    for (what, req, status) in cases {
        let err = handle(&s.deps, &req, now()).await.unwrap_err();
        assert_eq!(err.status, status, "{what}: {}", err.reason);
        assert!(
            (400..500).contains(&handler(&s.deps, req).await.status_code),
            "{what}"
        );
    }
    assert_eq!(one(&s.db, "SELECT count(*) FROM purchases").await, 0);
    assert_eq!(one(&s.db, "SELECT count(*) FROM stripe_events").await, 0);
    assert_eq!(
        s.bus.depth(Queue::Fulfilment.name()).await.unwrap().visible,
        0
    );
    // Not ours: acknowledged, nothing stored.
    let foreign = body.replace(&s.tenant.to_string(), "not-a-tenant");
    assert_eq!(
        handle(&s.deps, &signed(&foreign), now())
            .await
            .unwrap()
            .outcome,
        "unattributed"
    );
    assert_eq!(one(&s.db, "SELECT count(*) FROM stripe_events").await, 0);
}

fn event(id: &str, kind: &str, object: serde_json::Value) -> String {
    serde_json::json!({
        "id": id, "object": "event", "type": kind, "created": now(), "livemode": false,
        "data": { "object": object }
    })
    .to_string()
}

#[tokio::test]
async fn a_checkout_needing_no_payment_is_fulfilled() {
    let s = setup_with(None).await;
    let body = completed(&s, "evt_free", "cs_free").replace(
        r#""payment_status":"paid""#,
        r#""payment_status":"no_payment_required""#,
    );
    assert!(body.contains("no_payment_required"));
    let out = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert!(out.fulfilment_sent, "a 100 % coupon is fulfilled");
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE status = 'paid'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_refund_whose_charge_carries_no_metadata_is_attributed_through_its_payment_intent() {
    let s = setup_with(None).await;
    handle(&s.deps, &signed(&completed(&s, "evt_p", "cs_r")), now())
        .await
        .unwrap();
    // Stripe does not promise that a charge carries its payment intent's metadata.
    let refund = event(
        "evt_refund",
        "charge.refunded",
        serde_json::json!({ "id": "ch_1", "object": "charge", "payment_intent": "pi_cs_r", "amount_refunded": 4900, "metadata": {} }),
    );
    let out = handle(&s.deps, &signed(&refund), now()).await.unwrap();
    assert_eq!(out.outcome, "processed");
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE status = 'refunded' AND refunded_cents = 4900"
        )
        .await,
        1
    );
    // A charge nobody can attribute is still acknowledged (not one of ours).
    let stranger = event(
        "evt_x",
        "charge.refunded",
        serde_json::json!({ "id": "ch_2", "object": "charge", "payment_intent": "pi_unknown", "amount_refunded": 1 }),
    );
    let out = handle(&s.deps, &signed(&stranger), now()).await.unwrap();
    assert_eq!(out.outcome, "unattributed");
}

#[tokio::test]
async fn an_async_payment_failure_for_a_session_never_seen_pending_is_recorded() {
    let s = setup_with(None).await;
    let failed = event(
        "evt_af",
        "checkout.session.async_payment_failed",
        serde_json::json!({
            "id": "cs_async", "object": "checkout.session", "payment_status": "unpaid", "status": "complete",
            "amount_total": 4900, "currency": "usd", "payment_intent": "pi_async",
            "metadata": { "tenant_id": s.tenant, "report_id": s.report, "business_id": s.business }
        }),
    );
    handle(&s.deps, &signed(&failed), now()).await.unwrap();
    assert_eq!(
        one(&s.db, "SELECT count(*) FROM purchases WHERE stripe_session_id = 'cs_async' AND status = 'failed'").await,
        1,
        "the failure is kept, not dropped"
    );
    // A later success for the same session still makes it paid (and fulfils it).
    let succeeded = failed
        .replace("evt_af", "evt_as")
        .replace("async_payment_failed", "async_payment_succeeded")
        .replace(r#""payment_status":"unpaid""#, r#""payment_status":"paid""#);
    let out = handle(&s.deps, &signed(&succeeded), now()).await.unwrap();
    assert!(out.fulfilment_sent);
    assert_eq!(
        one(&s.db, "SELECT count(*) FROM purchases WHERE stripe_session_id = 'cs_async' AND status = 'paid'").await,
        1
    );
}

#[tokio::test]
async fn a_paid_session_naming_no_tenant_is_kept_for_an_operator_out_of_every_tenants_reach() {
    let s = setup_with(None).await;
    // Paid through our checkout but without our metadata (a link made by hand in the
    // dashboard, a metadata bug): money taken, nothing to deliver to.
    let paid = event(
        "evt_orphan",
        "checkout.session.completed",
        serde_json::json!({ "id": "cs_orphan", "object": "checkout.session", "payment_status": "paid",
                            "amount_total": 4900, "currency": "usd", "payment_intent": "pi_orphan",
                            "customer_details": { "email": "buyer@example.org" }, "metadata": {} }),
    );
    for _ in 0..2 {
        let out = handle(&s.deps, &signed(&paid), now()).await.unwrap();
        assert_eq!(out.outcome, "unattributed");
        assert!(!out.fulfilment_sent);
    }
    // A type we do not act on is only acknowledged.
    let other = event(
        "evt_cust",
        "customer.created",
        serde_json::json!({ "id": "cus_1" }),
    );
    assert_eq!(
        handle(&s.deps, &signed(&other), now())
            .await
            .unwrap()
            .outcome,
        "unattributed"
    );
    let admin = s.db.admin().await;
    let row = admin
        .query_one(
            "SELECT paid_session, stripe_session_id, amount_cents, payload->'data'->'object'->>'payment_intent'
             FROM unattributed_stripe_events",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "cs_orphan");
    assert_eq!(row.get::<_, i64>(2), 4900);
    assert_eq!(row.get::<_, String>(3), "pi_orphan");
    assert_eq!(
        one(&s.db, "SELECT count(*) FROM unattributed_stripe_events").await,
        1
    );
    // The application role may count them, not read them (the buyer's details are in there).
    let app = s.deps.pool.get().await.unwrap();
    let waiting: i64 = app
        .query_one("SELECT waiting FROM unattributed_paid_sessions()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 1);
    let denied = app
        .query("SELECT * FROM unattributed_stripe_events", &[])
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
}

#[tokio::test]
async fn disputes_are_recorded_against_the_purchase_of_their_payment_intent() {
    let s = setup_with(None).await;
    handle(&s.deps, &signed(&completed(&s, "evt_p", "cs_d")), now())
        .await
        .unwrap();
    let dispute = |status: &str| {
        serde_json::json!({ "id": "dp_9", "object": "dispute", "charge": "ch_9", "payment_intent": "pi_cs_d",
                            "amount": 4900, "status": status, "metadata": {} })
    };
    handle(
        &s.deps,
        &signed(&event(
            "evt_d1",
            "charge.dispute.created",
            dispute("needs_response"),
        )),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE dispute_status = 'open' AND dispute_id = 'dp_9'"
        )
        .await,
        1
    );
    handle(
        &s.deps,
        &signed(&event("evt_d2", "charge.dispute.closed", dispute("won"))),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE dispute_status = 'won'"
        )
        .await,
        1
    );
    // A dispute without its payment intent cannot be attributed to a purchase: 400, not stored.
    let bad = event(
        "evt_d3",
        "charge.dispute.created",
        serde_json::json!({ "id": "dp_x", "object": "dispute", "metadata": { "tenant_id": s.tenant } }),
    );
    assert_eq!(
        handle(&s.deps, &signed(&bad), now())
            .await
            .unwrap_err()
            .status,
        400
    );
}

#[tokio::test]
async fn a_paid_session_carrying_text_postgresql_refuses_is_still_recorded_and_fulfilled() {
    let s = setup_with(None).await;
    // A NUL (the buyer's name as their bank sent it) and a lone surrogate in fields we store.
    let body = completed(&s, "evt_nul", "cs_nul").replace(
        r#""customer_details":{"email":"owner@joes.example.com"}"#,
        r#""customer_details":{"email":"owner@joes.example.com","name":"Jo\u0000e \udc00"}"#,
    );
    assert!(body.contains(r"\u0000"), "{body}");
    let out = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert!(out.fulfilment_sent);
    let name: String = s
        .db
        .admin()
        .await
        .query_one(
            "SELECT payload->'data'->'object'->'customer_details'->>'name' FROM stripe_events WHERE event_id = 'evt_nul'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Joe \u{FFFD}");
}

#[tokio::test]
async fn a_paid_session_with_fields_of_any_length_is_recorded_capped_and_fulfilled() {
    use shared::domain::capped;
    let s = setup_with(None).await;
    let noise: String = (0..4_000)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let body = completed(&s, "evt_long", "cs_long").replace(
        r#""customer_details":{"email":"owner@joes.example.com"}"#,
        &format!(r#""customer_details":{{"email":"owner@joes.example.com","name":"{noise}"}},"custom":"{noise}""#),
    );
    assert!(body.len() > 250_000, "the body carries the long fields");
    let out = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert!(out.fulfilment_sent, "{out:?}");
    let row =
        s.db.admin()
            .await
            .query_one(
                "SELECT length(payload->'data'->'object'->'customer_details'->>'name'),
                    length(payload->'data'->'object'->>'custom'), length(payload::text)
             FROM stripe_events WHERE event_id = 'evt_long'",
                &[],
            )
            .await
            .unwrap();
    let lengths: (i32, i32, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(lengths.0 as usize, capped::RAW_STRING);
    assert_eq!(lengths.1 as usize, capped::RAW_STRING);
    assert!(lengths.2 < 20_000, "{lengths:?}");
}

#[tokio::test]
async fn a_purchase_publishes_purchase_paid_once_and_each_larger_refund_a_purchase_refunded() {
    let s = setup_with(None).await;
    let body = completed(&s, "evt_pub_1", "cs_pub_1");
    for _ in 0..3 {
        handle(&s.deps, &signed(&body), now()).await.unwrap();
    }
    let refund = |id: &str, amount: i64| {
        serde_json::json!({ "id": id, "object": "event", "type": "charge.refunded", "created": now(),
            "data": { "object": { "id": "ch_pub", "object": "charge", "amount": 4900, "amount_refunded": amount,
                                  "payment_intent": "pi_cs_pub_1", "metadata": { "tenant_id": s.tenant } } } })
        .to_string()
    };
    // Stripe sends the same refund as two events sometimes; the amount is the fact.
    for (id, amount) in [
        ("evt_pub_2", 1000),
        ("evt_pub_3", 1000),
        ("evt_pub_4", 4900),
    ] {
        handle(&s.deps, &signed(&refund(id, amount)), now())
            .await
            .unwrap();
    }
    let published = s.events.published();
    let of = |t: &str| -> Vec<&serde_json::Value> {
        published
            .iter()
            .filter(|e| e["detail-type"] == t)
            .map(|e| &e["detail"])
            .collect()
    };
    let paid = of("PurchasePaid");
    assert_eq!(paid.len(), 1, "{published:?}");
    assert_eq!(paid[0]["report_id"], serde_json::json!(s.report));
    assert_eq!(paid[0]["currency"], "usd");
    assert!(
        !serde_json::to_string(&published)
            .unwrap()
            .contains("owner@"),
        "an event carries the buyer's address"
    );
    let refunds: Vec<(i64, bool)> = of("PurchaseRefunded")
        .iter()
        .map(|d| {
            (
                d["refunded_cents"].as_i64().unwrap(),
                d["fully_refunded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(refunds, vec![(1000, false), (4900, true)]);
}

#[tokio::test]
async fn a_purchase_paid_the_bus_refused_is_published_by_stripes_retry() {
    let mut s = setup_with(None).await;
    let working = s.deps.events.take();
    s.deps.events = Some(Arc::new(testkit::RefusingBus));
    let body = completed(&s, "evt_retry_pub", "cs_retry_pub");
    let refused = handle(&s.deps, &signed(&body), now()).await.unwrap_err();
    assert_eq!(refused.status, 503);
    // The purchase is paid and its fulfilment sent; the event waits, unprocessed.
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM purchases WHERE status = 'paid'"
        )
        .await,
        1
    );
    assert_eq!(
        one(&s.db, "SELECT count(*) FROM domain_events WHERE published_at IS NULL AND last_publish_error IS NOT NULL").await,
        1
    );
    s.deps.events = working;
    let retried = handle(&s.deps, &signed(&body), now()).await.unwrap();
    assert_eq!(retried.outcome, "processed");
    assert_eq!(
        s.events
            .published()
            .iter()
            .filter(|e| e["detail-type"] == "PurchasePaid")
            .count(),
        1
    );
    assert_eq!(
        one(
            &s.db,
            "SELECT count(*) FROM domain_events WHERE published_at IS NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_deliveries_beyond_the_pool_size_all_finish() {
    // Each delivery holds its connection until it is done; publishing its events on a second
    // one from the pool would wait forever once every connection is such a delivery's.
    let mut s = setup_with(None).await;
    s.deps.pool = shared::db::connect(&s.db.app_url(), 2).unwrap();
    let body = completed(&s, "evt_crowd", "cs_crowd");
    let requests: Vec<_> = (0..8).map(|_| signed(&body)).collect();
    let deliveries = requests.iter().map(|r| handle(&s.deps, r, now()));
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(deliveries),
    )
    .await
    .expect("deliveries waited on each other for the pool");
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    assert_eq!(
        s.events
            .published()
            .iter()
            .filter(|e| e["detail-type"] == "PurchasePaid")
            .count(),
        1
    );
}
