//! The SendGrid event webhook against real PostgreSQL: signed batches are stored once and move
//! email state and suppressions; every bad request is a 4xx that writes nothing.

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use p256::ecdsa::SigningKey;
use sendgrid_webhook::{WebhookDeps, handler, ingest};
use shared::webhook::sendgrid::{self, SendGridKey};
use testkit::TestDb;

/// Signing time: now, because `handler` checks against the real clock.
static NOW: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| chrono::Utc::now().timestamp());

struct Setup {
    db: TestDb,
    deps: WebhookDeps,
    key: SigningKey,
    tenant: uuid::Uuid,
    email_id: uuid::Uuid,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let tenant = uuid::Uuid::new_v4();
    let (campaign, business, email_id) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'A')",
            &[&tenant],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO campaigns (id, tenant_id, name, vertical, zip_codes, daily_quota, sender_email, sender_name, postal_address)
             VALUES ($1, $2, 'c', 'restaurants', '{95113}', 10, 'a@agency.example.com', 'Ann', '1 Market St, SF, CA')",
            &[&campaign, &tenant],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'Joe', 'joe')",
            &[&business, &tenant],
        )
        .await
        .unwrap();
    admin
        .execute(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, send_state, sg_message_id)
             VALUES ($1, $2, $3, $4, 'owner@joes.example.com', 'Hi', 'sent', 'msg1')",
            &[&email_id, &tenant, &campaign, &business],
        )
        .await
        .unwrap();
    let key = SigningKey::from_slice(&[11u8; 32]).unwrap();
    let deps = WebhookDeps {
        pool: db.app_pool(),
        key: SendGridKey::from_base64_der(&sendgrid::public_key_base64(&key).unwrap()).unwrap(),
        tolerance_secs: 600,
    };
    Setup {
        db,
        deps,
        key,
        tenant,
        email_id,
    }
}

fn request(
    body: &str,
    signature: Option<String>,
    timestamp: Option<String>,
) -> ApiGatewayV2httpRequest {
    let mut r = ApiGatewayV2httpRequest::default();
    r.request_context.http.method = http::Method::POST;
    r.body = Some(body.to_owned());
    if let Some(s) = signature {
        r.headers
            .insert(sendgrid::SIGNATURE_HEADER, s.parse().unwrap());
    }
    if let Some(t) = timestamp {
        r.headers
            .insert(sendgrid::TIMESTAMP_HEADER, t.parse().unwrap());
    }
    r
}

fn signed(key: &SigningKey, body: &str, ts: i64) -> ApiGatewayV2httpRequest {
    request(
        body,
        Some(sendgrid::sign(key, ts, body.as_bytes())),
        Some(ts.to_string()),
    )
}

fn events(s: &Setup) -> String {
    let t = s.tenant;
    let e = s.email_id;
    serde_json::json!([
        { "email": "owner@joes.example.com", "timestamp": *NOW - 50, "event": "processed", "sg_event_id": "ev-1", "sg_message_id": "msg1.filter-1", "tenant_id": t, "email_id": e },
        { "email": "owner@joes.example.com", "timestamp": *NOW - 40, "event": "delivered", "sg_event_id": "ev-2", "sg_message_id": "msg1.filter-1", "tenant_id": t, "email_id": e },
        { "email": "owner@joes.example.com", "timestamp": *NOW - 30, "event": "open", "sg_event_id": "ev-3", "sg_message_id": "msg1.filter-1", "tenant_id": t },
        { "email": "owner@joes.example.com", "timestamp": *NOW - 20, "event": "click", "url": "https://x.example.com", "sg_message_id": "msg1.filter-1", "tenant_id": t },
        { "email": "Gone@Other.example.com", "timestamp": *NOW - 10, "event": "bounce", "type": "bounce", "status": "5.1.1", "sg_event_id": "ev-5", "tenant_id": t },
        { "email": "spam@other.example.com", "timestamp": *NOW - 10, "event": "spamreport", "sg_event_id": "ev-6", "tenant_id": t },
        { "email": "soft@other.example.com", "timestamp": *NOW - 10, "event": "bounce", "type": "blocked", "sg_event_id": "ev-7", "tenant_id": t },
        { "email": "nobody@else.example.com", "timestamp": *NOW - 10, "event": "delivered", "sg_event_id": "ev-8" }
    ])
    .to_string()
}

async fn count(db: &TestDb, table: &str) -> i64 {
    db.admin()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_signed_batch_is_stored_once_and_moves_state_and_suppressions() {
    let s = setup().await;
    let body = events(&s);
    let first = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
        .await
        .unwrap();
    assert_eq!(
        (
            first.received,
            first.stored,
            first.duplicates,
            first.unattributed
        ),
        (8, 7, 0, 1)
    );
    assert_eq!(
        first.suppressed, 2,
        "hard bounce and spam report; one soft bounce is not enough"
    );

    let admin = s.db.admin().await;
    let row = admin.query_one("SELECT delivery_status, delivered_at IS NOT NULL, opened_at IS NOT NULL, clicked_at IS NOT NULL FROM emails WHERE id = $1", &[&s.email_id]).await.unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        ("delivered".to_owned(), true, true, true)
    );
    let linked: i64 = admin
        .query_one(
            "SELECT count(*) FROM email_events WHERE email_id = $1",
            &[&s.email_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        linked, 4,
        "events link to their email by custom arg or by message id"
    );
    let sup: Vec<(String, String)> = admin
        .query("SELECT value, reason FROM suppressions ORDER BY value", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        sup,
        vec![
            ("gone@other.example.com".into(), "hard_bounce".into()),
            ("spam@other.example.com".into(), "spamreport".into())
        ]
    );

    // SendGrid retries: the same delivery again changes nothing (the click without an id too).
    let again = handler(&s.deps, signed(&s.key, &body, *NOW)).await;
    assert_eq!(again.status_code, 200);
    let second = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
        .await
        .unwrap();
    assert_eq!(
        (second.stored, second.duplicates, second.suppressed),
        (0, 7, 0)
    );
    assert_eq!(count(&s.db, "email_events").await, 7);
}

#[tokio::test]
async fn soft_bounces_suppress_only_after_repeated_failures() {
    let s = setup().await;
    for i in 0..3 {
        let body = serde_json::json!([{ "email": "soft@other.example.com", "timestamp": *NOW - 100 + i, "event": "bounce", "type": "blocked", "sg_event_id": format!("soft-{i}"), "tenant_id": s.tenant }]).to_string();
        let r = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
            .await
            .unwrap();
        assert_eq!(r.suppressed, usize::from(i == 2), "attempt {i}");
    }
    let reason: String =
        s.db.admin()
            .await
            .query_one(
                "SELECT reason FROM suppressions WHERE value = 'soft@other.example.com'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(reason, "soft_bounce");
}

#[tokio::test]
async fn bad_requests_are_refused_with_4xx_and_write_nothing() {
    let s = setup().await;
    let body = events(&s);
    let other = SigningKey::from_slice(&[12u8; 32]).unwrap();
    let mut tampered = signed(&s.key, &body, *NOW);
    tampered.body = Some(body.replace("delivered", "deferred"));
    let mut get = signed(&s.key, &body, *NOW);
    get.request_context.http.method = http::Method::GET;
    let big = format!("[{}]", "1,".repeat(1_100_000) + "1");
    let cases: Vec<(&str, ApiGatewayV2httpRequest, u16)> = vec![
        ("wrong key", signed(&other, &body, *NOW), 401),
        ("tampered body", tampered, 401),
        ("stale timestamp", signed(&s.key, &body, *NOW - 3_600), 401),
        (
            "missing signature",
            request(&body, None, Some(NOW.to_string())),
            401,
        ),
        (
            "missing timestamp",
            request(
                &body,
                Some(sendgrid::sign(&s.key, *NOW, body.as_bytes())),
                None,
            ),
            401,
        ),
        (
            "garbage signature",
            request(&body, Some("%%%".into()), Some(NOW.to_string())),
            401,
        ),
        (
            "malformed JSON",
            signed(&s.key, "{\"not\": \"an array\"", *NOW),
            400,
        ),
        ("oversized body", signed(&s.key, &big, *NOW), 413),
        ("wrong method", get, 405),
    ];
    for (what, req, status) in cases {
        let err = ingest(&s.deps, &req, *NOW).await.unwrap_err();
        assert_eq!(err.status, status, "{what}: {}", err.reason);
        assert!(!err.reason.is_empty());
        let resp = handler(&s.deps, req).await;
        assert!((400..500).contains(&resp.status_code), "{what}");
    }
    assert_eq!(count(&s.db, "email_events").await, 0);
    assert_eq!(count(&s.db, "suppressions").await, 0);
}

/// The plan of `sql` as the application role sees it, under `tenant`'s RLS.
async fn plan(
    db: &TestDb,
    tenant: uuid::Uuid,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let pool = db.app_pool();
    let mut c = pool.get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, shared::domain::TenantId::from_uuid(tenant))
        .await
        .unwrap();
    let rows = tx.query(&format!("EXPLAIN {sql}"), params).await.unwrap();
    tx.rollback().await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_webhook_batch_uses_the_indexes_when_a_tenant_holds_a_million_emails() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let (tenant, campaign) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    admin
        .batch_execute(&format!(
            "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'Big');
             INSERT INTO campaigns (id, tenant_id, name, vertical, zip_codes, daily_quota, sender_email, sender_name, postal_address)
                 VALUES ('{campaign}', '{tenant}', 'c', 'restaurants', '{{95113}}', 100, 'a@agency.example.com', 'Ann', '1 Market St');
             WITH b AS (
                 INSERT INTO businesses (id, tenant_id, name, name_norm)
                 SELECT gen_random_uuid(), '{tenant}', 'B' || i, 'b' || i FROM generate_series(1, 1000000) i
                 RETURNING id, name_norm)
             INSERT INTO emails (id, tenant_id, campaign_id, business_id, to_email, subject, send_state, sent_at, sg_message_id)
                 SELECT gen_random_uuid(), '{tenant}', '{campaign}', b.id, 'o' || substr(b.name_norm, 2) || '@x.example.com', 's', 'sent', now(),
                        'm' || substr(b.name_norm, 2)
                 FROM b;
             INSERT INTO email_events (tenant_id, email_id, sg_event_id, event, occurred_at, bounce_type, raw)
                 SELECT '{tenant}', NULL, 'e' || i, CASE WHEN i % 10 = 0 THEN 'bounce' ELSE 'delivered' END, now(),
                        CASE WHEN i % 10 = 0 THEN 'blocked' END, jsonb_build_object('email', 'o' || i || '@x.example.com')
                 FROM generate_series(1, 200000) i;
             ANALYZE emails; ANALYZE email_events;"
        ))
        .await
        .unwrap();
    let batch = serde_json::json!([{
        "key": "k", "email_id": uuid::Uuid::new_v4(), "event": "delivered", "msg": "m5",
        "at": chrono::Utc::now(), "reason": null, "bounce_type": null, "url": null, "raw": {}
    }]);
    let insert = plan(
        &db,
        tenant,
        sendgrid_webhook::INSERT_EVENTS,
        &[&tenant, &batch],
    )
    .await;
    assert!(!insert.contains("Seq Scan on emails"), "{insert}");
    let soft = plan(
        &db,
        tenant,
        sendgrid_webhook::SOFT_BOUNCED,
        &[
            &vec!["o10@x.example.com".to_owned()],
            &sendgrid_webhook::SOFT_BOUNCE_WINDOW_DAYS,
            &sendgrid_webhook::SOFT_BOUNCE_LIMIT,
            &tenant,
        ],
    )
    .await;
    assert!(!soft.contains("Seq Scan on email_events"), "{soft}");
}

#[tokio::test]
async fn an_event_carrying_text_postgresql_refuses_does_not_fail_its_batch() {
    let s = setup().await;
    let (t, e) = (s.tenant, s.email_id);
    // A NUL in one event's reason, a lone surrogate in another's, both as JSON escapes (the only
    // way JSON carries them); the good event between them must be kept.
    let body = format!(
        r#"[{{"email":"owner@joes.example.com","timestamp":{n},"event":"bounce","type":"blocked","reason":"mailbox \u0000full","sg_event_id":"ev-nul","tenant_id":"{t}","email_id":"{e}"}},
            {{"email":"owner@joes.example.com","timestamp":{n},"event":"delivered","sg_event_id":"ev-good","tenant_id":"{t}","email_id":"{e}"}},
            {{"email":"owner@joes.example.com","timestamp":{n},"event":"open","useragent":"Mail \ud800 agent","sg_event_id":"ev-sur","tenant_id":"{t}","email_id":"{e}"}}]"#,
        n = *NOW - 5
    );
    let out = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
        .await
        .unwrap();
    assert_eq!((out.received, out.stored), (3, 3), "{out:?}");
    let admin = s.db.admin().await;
    let reason: String = admin
        .query_one(
            "SELECT raw->>'reason' FROM email_events WHERE sg_event_id = 'ev-nul'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "mailbox full");
    let agent: String = admin
        .query_one(
            "SELECT raw->>'useragent' FROM email_events WHERE sg_event_id = 'ev-sur'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(agent, "Mail \u{FFFD} agent");
}

#[tokio::test]
async fn an_event_with_fields_of_any_length_is_stored_capped_and_does_not_fail_its_batch() {
    let s = setup().await;
    let (t, e) = (s.tenant, s.email_id);
    // Random text does not compress: a B-tree entry of this fails its insert when uncapped.
    let noise = |n: usize| -> String {
        (0..n / 32)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect()
    };
    let long_id = noise(20_000);
    let body = serde_json::json!([
        {"email": format!("{}@joes.example.com", noise(10_000)), "timestamp": *NOW - 5, "event": "bounce",
         "type": "bounce", "reason": noise(1_000_000), "url": noise(100_000), "sg_event_id": long_id,
         "sg_message_id": noise(10_000), "tenant_id": t.to_string(), "email_id": e.to_string(),
         "useragent": noise(500_000)},
        {"email": "owner@joes.example.com", "timestamp": *NOW - 5, "event": "delivered",
         "sg_event_id": "ev-short", "tenant_id": t.to_string(), "email_id": e.to_string()},
    ])
    .to_string();
    let out = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
        .await
        .unwrap();
    assert_eq!((out.received, out.stored), (2, 2), "{out:?}");
    let admin = s.db.admin().await;
    let row = admin
        .query_one(
            "SELECT length(sg_event_id), length(reason), length(url), length(sg_message_id),
                    length(raw->>'useragent'), length(raw->>'email'), length(raw::text)
             FROM email_events WHERE sg_event_id <> 'ev-short'",
            &[],
        )
        .await
        .unwrap();
    let lengths: Vec<i32> = (0..7).map(|i| row.get(i)).collect();
    use shared::domain::capped;
    assert_eq!(lengths[0] as usize, capped::ID);
    assert_eq!(lengths[1] as usize, capped::MESSAGE);
    assert_eq!(lengths[2] as usize, capped::URL);
    assert_eq!(lengths[3] as usize, capped::ID);
    assert_eq!(lengths[4] as usize, capped::RAW_STRING);
    assert_eq!(lengths[5] as usize, capped::EMAIL);
    assert!(lengths[6] < 20_000, "the raw event is bounded: {lengths:?}");
    // The same event again is a duplicate by its (capped) id, not a second row.
    let again = ingest(&s.deps, &signed(&s.key, &body, *NOW), *NOW)
        .await
        .unwrap();
    assert_eq!(again.stored, 0, "{again:?}");
}
