//! The ops API against its own document: Schemathesis (pinned in
//! `scripts/requirements-test.txt`) generates requests from `docs/openapi.yaml` — valid ones and
//! ones that break the schema — and runs every check it has against the local gateway over a real
//! database with a real key: no 5xx, every status, header and body as documented, every valid
//! request accepted and every invalid one refused. Without a key every operation answers 401;
//! with a second tenant's key nothing of the first is returned or changed.

use std::path::Path;

use leadfactory_cli::local::NoProgress;
use testkit::TestDb;

/// Runs Schemathesis against `base` with `args`; returns its exit status and what it printed.
async fn schemathesis(base: &str, args: &[&str]) -> (bool, String) {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    // Schemathesis keeps a cache of what it found in its working directory: a scratch one, so
    // the checkout stays as it was and every run starts fresh.
    let scratch = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(testkit::tool_bin("schemathesis"))
        .current_dir(scratch.path())
        .arg("run")
        .arg(&doc)
        .args(["--url", base, "--no-color", "--generation-database", "none"])
        .args(args)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("schemathesis runs (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_api_keeps_its_openapi_contract() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    p.run(&NoProgress).await.unwrap();
    let key = ops_api::keys::create(&p.deps.pool, p.tenant, "contract")
        .await
        .unwrap()
        .key;
    let auth = format!("Authorization: Bearer {key}");
    let (ok, text) = schemathesis(
        &p.gateway_url,
        &[
            "-H",
            &auth,
            "--checks",
            "all",
            "--max-examples",
            "100",
            "--seed",
            "20261202",
            // One worker: Hypothesis describing its strategies from two threads at once trips
            // CPython 3.11's AST recursion check ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
        ],
    )
    .await;
    println!("{text}");
    assert!(ok, "the ops API broke its document:\n{text}");
}

/// Every operation in the document, as (method, path template).
fn operations() -> Vec<(String, String)> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            ops.push((
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(ops.len() >= 14, "{ops:?}");
    ops
}

/// Tenant A's ids and a fingerprint of everything of A's that an operation could change.
struct TenantA {
    run: uuid::Uuid,
    campaign: uuid::Uuid,
    business: uuid::Uuid,
    email: String,
}

async fn fingerprint(admin: &tokio_postgres::Client, tenant: uuid::Uuid) -> Vec<i64> {
    let r = admin
        .query_one(
            "SELECT (SELECT count(*) FROM campaigns WHERE tenant_id = $1),
                    (SELECT count(*) FROM campaigns WHERE tenant_id = $1 AND updated_at > created_at),
                    (SELECT count(*) FROM businesses WHERE tenant_id = $1),
                    (SELECT count(*) FROM businesses WHERE tenant_id = $1 AND email IS NOT NULL),
                    (SELECT count(*) FROM emails WHERE tenant_id = $1),
                    (SELECT count(*) FROM suppressions WHERE tenant_id = $1),
                    (SELECT count(*) FROM runs WHERE tenant_id = $1),
                    (SELECT count(*) FROM vendor_pauses WHERE tenant_id = $1 OR tenant_id IS NULL)",
            &[&tenant],
        )
        .await
        .unwrap();
    (0..8).map(|i| r.get(i)).collect()
}

#[tokio::test]
async fn without_a_key_every_operation_answers_401_and_another_tenants_key_reaches_nothing() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    p.run(&NoProgress).await.unwrap();
    let admin = db.admin().await;
    let a = p.tenant.as_uuid();
    let ids = admin
        .query_one(
            "SELECT (SELECT id FROM runs WHERE tenant_id = $1 LIMIT 1),
                    (SELECT id FROM campaigns WHERE tenant_id = $1 LIMIT 1),
                    (SELECT id FROM businesses WHERE tenant_id = $1 AND email IS NOT NULL LIMIT 1),
                    (SELECT email FROM businesses WHERE tenant_id = $1 AND email IS NOT NULL LIMIT 1),
                    (SELECT id FROM purchases WHERE tenant_id = $1 AND status = 'paid' LIMIT 1)",
            &[&a],
        )
        .await
        .unwrap();
    let mine = TenantA {
        run: ids.get(0),
        campaign: ids.get(1),
        business: ids.get(2),
        email: ids.get(3),
    };
    // A's purchase when the night sold one (else any id of A's: B must not tell the difference).
    let purchase: uuid::Uuid = ids.get::<_, Option<uuid::Uuid>>(4).unwrap_or(mine.campaign);
    let b = uuid::Uuid::new_v4();
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'Agency B')",
            &[&b],
        )
        .await
        .unwrap();
    let key_b = ops_api::keys::create(&p.deps.pool, shared::domain::TenantId::from_uuid(b), "b")
        .await
        .unwrap()
        .key;
    let before = fingerprint(&admin, a).await;
    let http = reqwest::Client::new();
    let campaign = serde_json::json!({
        "name": "B's own", "vertical": "restaurants", "zip_codes": ["95113"], "daily_quota": 5,
        "sender": { "email": "b@agency-b.example.com", "name": "B", "postal_address": "2 Main St, Springfield" }
    });
    for (method, template) in operations() {
        let path = template.replace("{vendor}", "places").replace(
            "{id}",
            &if template.starts_with("/v1/runs") {
                mine.run
            } else if template.starts_with("/v1/purchases") {
                purchase
            } else {
                mine.campaign
            }
            .to_string(),
        );
        let body = match (method.as_str(), template.as_str()) {
            ("POST" | "PUT", p) if p.starts_with("/v1/campaigns") => Some(campaign.clone()),
            ("POST", "/v1/erasure") => Some(serde_json::json!({ "business_id": mine.business })),
            ("POST", "/v1/vendors/{vendor}/pause") => {
                Some(serde_json::json!({ "reason": "B's own pause", "minutes": 30 }))
            }
            _ => None,
        };
        let send = |key: Option<&str>| {
            let mut r = http.request(method.parse().unwrap(), format!("{}{path}", p.gateway_url));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            if let Some(b) = &body {
                r = r.json(b);
            }
            // The one header an operation requires: the request is otherwise valid.
            if template.ends_with("/resend") {
                r = r.header("idempotency-key", "contract-check");
            }
            r.send()
        };
        let anonymous = send(None).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {template} without a key");
        let other = send(Some(&key_b)).await.unwrap();
        let status = other.status().as_u16();
        let text = other.text().await.unwrap();
        for (what, id) in [
            ("run", mine.run.to_string()),
            ("campaign", mine.campaign.to_string()),
            ("business", mine.business.to_string()),
            ("address", mine.email.clone()),
        ] {
            assert!(
                !text.contains(&id),
                "{method} {template} with B's key returned A's {what} ({status}): {text}"
            );
        }
        if template.contains("{id}") || template == "/v1/erasure" {
            assert_eq!(status, 404, "{method} {template} with B's key: {text}");
        }
    }
    assert_eq!(
        fingerprint(&admin, a).await,
        before,
        "nothing of A's changed"
    );
}

#[tokio::test]
async fn a_campaign_the_database_would_refuse_gets_a_400_naming_the_field() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let key = ops_api::keys::create(&p.deps.pool, p.tenant, "t")
        .await
        .unwrap()
        .key;
    let http = reqwest::Client::new();
    let good = serde_json::json!({
        "name": "Ok", "vertical": "restaurants", "zip_codes": ["95113"], "daily_quota": 5,
        "sender": { "email": "a@agency.example.com", "name": "A", "postal_address": "1 Market St, San Jose" }
    });
    let with = |pointer: &str, v: serde_json::Value| {
        let mut c = good.clone();
        *c.pointer_mut(pointer).unwrap() = v;
        c
    };
    for (body, field) in [
        (with("/name", "x".repeat(201).into()), "name"),
        (with("/name", "Joe\u{0}s".into()), "name"),
        (with("/vertical", " \t".into()), "vertical"),
        (with("/sender/name", "A\u{0}".into()), "sender.name"),
        (with("/zip_codes", serde_json::json!([])), "zip_codes"),
        (with("/daily_quota", serde_json::json!(2.5)), "daily_quota"),
        (
            {
                let mut c = good.clone();
                c["qualify_tiers"] = serde_json::json!([]);
                c
            },
            "qualify_tiers",
        ),
        (
            {
                let mut c = good.clone();
                c["city"] = "San\u{0}Jose".into();
                c
            },
            "city",
        ),
    ] {
        let r = http
            .post(format!("{}/v1/campaigns", p.gateway_url))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 400, "{field}: {text}");
        assert!(text.contains(field), "the reason names {field}: {text}");
    }
    // A whole number written with a fraction of zero is a whole number (JSON Schema's integer).
    let r = http
        .post(format!("{}/v1/campaigns", p.gateway_url))
        .bearer_auth(&key)
        .json(&with("/daily_quota", serde_json::json!(5.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A method a path does not have: 405 with the ones it does.
    let r = http
        .delete(format!("{}/v1/campaigns", p.gateway_url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
}
