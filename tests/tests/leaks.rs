//! Secrets never leave. Every vendor times out (night one, the simulator holding answers past
//! the clients' timeouts) and then cannot be reached at all (a second pipeline on the same
//! database and bus, every vendor URL pointing at a port nothing listens on); afterwards no
//! configured key, webhook secret or secret URL is in any line the functions logged, any row of
//! any table, any stored object, any dead letter or any answer the storefront gave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadfactory_cli::campaign::CampaignFile;
use leadfactory_cli::local::{
    LOCAL_LINK_SECRET, LocalOptions, LocalPipeline, NoProgress, memory_bus,
};
use shared::bus::{Bus, Envelope, Queue};
use shared::domain::{BusinessId, CampaignId, RunId};
use shared::pipeline::messages::{Fulfil, LeadRef, SourcingJob};
use shared::pipeline::{Incoming, process_batch};
use shared::vendors::Vendor;
use testkit::TestDb;

/// What the functions' subscriber wrote: the production format and level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// The vendors whose first answer night one times out: all but Slack, which is only reached
/// at the end.
fn timed_out_vendors() -> impl Iterator<Item = Vendor> {
    Vendor::ALL.into_iter().filter(|v| *v != Vendor::Slack)
}

fn one(tag: &str, run: RunId, payload: impl serde::Serialize) -> Vec<Incoming> {
    vec![Incoming {
        id: tag.to_owned(),
        receive_count: 1,
        body: Envelope::new(
            shared::domain::TenantId::parse(leadfactory_cli::local::LOCAL_TENANT).unwrap(),
            Some(run),
            tag,
            payload,
        )
        .to_body()
        .unwrap(),
    }]
}

/// Every row of every table in the public schema, as text.
async fn every_row(admin: &tokio_postgres::Client) -> String {
    let tables: Vec<String> = admin
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 20, "{tables:?}");
    let mut all = String::new();
    for t in tables {
        let rows: String = admin
            .query_one(
                &format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {t} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        all.push_str(&rows);
    }
    all
}

/// Every file under `dir`, as (lossy) text.
fn every_object(dir: &std::path::Path) -> String {
    let mut all = String::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_secret_url_reaches_a_log_a_row_an_object_or_a_dead_letter() {
    let log = Captured::default();
    let writer = log.clone();
    shared::obs::init_tracing_to(move || writer.clone());

    // Keys no other text could hold by chance.
    let secret = |what: &str| format!("{what}-secret-{}", uuid::Uuid::new_v4().simple());
    let mut sim = sim::SimConfig {
        yelp_key: secret("yelp"),
        google_key: secret("google"),
        openai_key: secret("openai"),
        sendgrid_key: secret("sendgrid"),
        stripe_key: secret("stripe"),
        stripe_webhook_secret: secret("whsec"),
        slack_path: format!("/services/T0/B0/{}", secret("slack")),
        ..sim::SimConfig::default()
    };
    // Night one: every vendor's first answer held past its client's one-second timeout.
    for v in timed_out_vendors() {
        sim.faults.insert(
            v.as_str().to_owned(),
            sim::Fault {
                script: vec![sim::Outcome::Timeout],
                timeout_ms: 1_500,
                ..sim::Fault::default()
            },
        );
    }
    let secrets: Vec<String> = vec![
        sim.yelp_key.clone(),
        sim.google_key.clone(),
        sim.openai_key.clone(),
        sim.sendgrid_key.clone(),
        sim.stripe_key.clone(),
        sim.stripe_webhook_secret.clone(),
        sim.slack_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        LOCAL_LINK_SECRET.to_owned(),
    ];

    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let bus = Arc::new(memory_bus(Duration::from_secs(30), 3));
    let options = |env: HashMap<String, String>| {
        let mut o = LocalOptions::new(db.app_url(), store.path().to_owned());
        o.sim = sim.clone();
        o.env = env;
        o
    };
    let timeouts: HashMap<String, String> = shared::vendors::config::VENDOR_PREFIXES
        .iter()
        .flat_map(|v| {
            [
                (format!("LF_{v}_TIMEOUT_SECS"), "1".to_owned()),
                (format!("LF_{v}_CALL_SECS"), "5".to_owned()),
            ]
        })
        .collect();
    let p1 = LocalPipeline::start(options(timeouts), bus.clone())
        .await
        .unwrap();
    p1.ensure_tenant("Leak agency").await.unwrap();
    let mut campaign = CampaignFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    )))
    .unwrap();
    campaign.daily_quota = 60;
    let mut pool = p1.pool().clone();
    campaign.upsert(&mut pool, p1.tenant).await.unwrap();
    let run = p1.run(&NoProgress).await.unwrap();
    // SendGrid's events come in; one recipient buys (Stripe's checkout, its signed webhooks,
    // fulfilment).
    p1.simulate_recipients(&NoProgress).await.unwrap();
    let admin = db.admin().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let unsold = "SELECT token FROM reports WHERE business_id NOT IN (SELECT business_id FROM purchases) ORDER BY token LIMIT 1";
    let token: String = admin.query_one(unsold, &[]).await.unwrap().get(0);
    let buy = http
        .post(format!("{}/r/{token}/buy", p1.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        buy.status(),
        303,
        "{}",
        buy.text().await.unwrap_or_default()
    );
    let session = buy.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    http.post(format!("{}/_sim/stripe/complete", p1.sim.base_url()))
        .json(&serde_json::json!({ "session_id": session, "target_url": format!("{}/webhooks/stripe", p1.gateway_url) }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    // A dead letter, for the alerts to post about.
    bus.send_batch(Queue::Sourcing.name(), &["not an envelope".to_owned()])
        .await
        .unwrap();
    p1.settle().await.unwrap();
    // Slack holds its answer past its client's timeout too.
    p1.sim.state.faults.lock().unwrap().insert(
        "slack".into(),
        sim::Fault {
            script: vec![sim::Outcome::Timeout],
            timeout_ms: 12_000,
            ..sim::Fault::default()
        },
    );
    let alerts_of = |p: &LocalPipeline| {
        alerts::Alerts::new(
            p.deps.vendors.slack(&p.deps.policy).unwrap(),
            alerts::Thresholds::default(),
        )
    };
    let now = chrono::Utc::now();
    alerts_of(&p1).run(&p1.deps, now).await.unwrap();

    // Night two: nothing answers where the vendors should be.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let mut unreachable: HashMap<String, String> = shared::vendors::config::VENDOR_PREFIXES
        .iter()
        .map(|v| (format!("LF_{v}_URL"), dead.clone()))
        .collect();
    unreachable.insert(
        "SLACK_WEBHOOK_URL".into(),
        format!("{dead}{}", sim.slack_path),
    );
    let p2 = LocalPipeline::start(options(unreachable), bus.clone())
        .await
        .unwrap();
    // A business the night wrote to with the LLM (qualified, in the experiment's LLM arm, with
    // an address) and that is not suppressed since, under a second campaign, which has not
    // written to it yet: every stage's work reaches its vendor.
    let mut second = campaign.clone();
    second.name = format!("{} (second)", campaign.name);
    second.upsert(&mut pool, p1.tenant).await.unwrap();
    let lead_row = admin
        .query_one(
            "SELECT r.business_id, (SELECT id FROM campaigns WHERE name = $1) FROM reports r JOIN businesses b ON b.id = r.business_id
             WHERE EXISTS (SELECT 1 FROM run_event_logs l WHERE l.stage = 'personalization' AND l.event = 'written:llm'
                           AND l.entity_id = r.business_id::text)
               AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.value IN (lower(b.email), split_part(lower(b.email), '@', 2)))
             ORDER BY r.business_id LIMIT 1",
            &[&second.name],
        )
        .await
        .unwrap();
    let campaign_id = CampaignId::from_uuid(lead_row.get(1));
    let lead = LeadRef {
        business_id: BusinessId::from_uuid(lead_row.get(0)),
        campaign_id,
    };
    let paid = admin
        .query_one(
            "SELECT id, stripe_session_id FROM purchases WHERE status = 'paid' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let s = &p2.stages;
    let d = &p2.deps;
    let job = SourcingJob {
        campaign_id,
        location: campaign.zip_codes[0].clone(),
        category: campaign.vertical.clone(),
        offset: 0,
        limit: 50,
    };
    let outcomes = [
        process_batch(&s.sourcing, d, one("leak:sourcing", run, job)).await,
        process_batch(&s.enrichment, d, one("leak:enrichment", run, &lead)).await,
        process_batch(&s.assessment, d, one("leak:assessment", run, &lead)).await,
        process_batch(
            &s.personalization,
            d,
            one("leak:personalization", run, &lead),
        )
        .await,
        process_batch(
            &s.fulfilment,
            d,
            one(
                "leak:fulfilment",
                run,
                Fulfil {
                    purchase_id: paid.get(0),
                    stripe_session_id: paid.get(1),
                    request_key: "leak".into(),
                },
            ),
        )
        .await,
    ];
    let token: String = admin.query_one(unsold, &[]).await.unwrap().get(0);
    let bought = http
        .post(format!("{}/r/{token}/buy", p2.gateway_url))
        .send()
        .await
        .unwrap();
    let storefront = format!("{} {}", bought.status(), bought.text().await.unwrap());
    alerts_of(&p2)
        .run(&p2.deps, now + chrono::Duration::minutes(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logged = log.text();
    // Every vendor was timed out (the simulator served each one's scripted timeout) and then
    // could not be reached (its calls failed to connect, as the log says).
    let faults = p1.sim.state.faults.lock().unwrap().clone();
    for v in Vendor::ALL {
        assert!(
            faults[v.as_str()].script.is_empty(),
            "{v}: its timeout was never served"
        );
        assert!(
            logged
                .lines()
                .any(|l| l.contains(&format!("{v}: unavailable after"))
                    && l.contains("connection failed")),
            "{v}: no connection error logged: {outcomes:?}"
        );
    }
    let mut dead_letters = String::new();
    for q in Queue::ALL {
        for l in shared::bus::dlq::peek(bus.as_ref(), *q, 100).await.unwrap() {
            dead_letters.push_str(&format!("{l:?}\n"));
        }
    }
    let places = [
        ("the log", logged),
        ("the tables", every_row(&admin).await),
        ("the stored objects", every_object(store.path())),
        ("the dead letters", dead_letters),
        ("the storefront's answer", storefront),
    ];
    for (place, text) in &places {
        assert!(
            !text.is_empty() || *place == "the dead letters",
            "{place} is empty"
        );
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{place} holds the secret {s}");
        }
    }
}
