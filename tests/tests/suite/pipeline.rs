//! The pipeline targeting → personalization end to end, on real PostgreSQL, the simulator, the local
//! object store and the in-process bus: the happy path, at-least-once delivery, poison
//! messages, 429 storms, a next hop lost after commit, a closed budget, and the budget gate
//! under concurrent reservations.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use leadfactory_cli::campaign::CampaignFile;
use leadfactory_cli::local::{LocalOptions, LocalPipeline, NoProgress, memory_bus, summarize};
use shared::bus::{Bus, MemoryBus, Queue};
use shared::domain::TenantId;
use testkit::{HookedBus, OnSend, TestDb};

fn campaign(quota: u32) -> CampaignFile {
    let mut c = CampaignFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    )))
    .unwrap();
    c.daily_quota = quota;
    c
}

struct Fixture {
    db: TestDb,
    pipeline: LocalPipeline,
    _store: tempfile::TempDir,
}

async fn fixture(bus: Arc<dyn Bus>, tweak: impl FnOnce(&mut LocalOptions)) -> Fixture {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let mut opts = LocalOptions::new(db.app_url(), store.path().to_owned());
    tweak(&mut opts);
    let pipeline = LocalPipeline::start(opts, bus).await.unwrap();
    pipeline.ensure_tenant("Test agency").await.unwrap();
    let mut pool = pipeline.pool().clone();
    campaign(60)
        .upsert(&mut pool, pipeline.tenant)
        .await
        .unwrap();
    Fixture {
        db,
        pipeline,
        _store: store,
    }
}

fn local_bus() -> Arc<MemoryBus> {
    Arc::new(memory_bus(Duration::from_secs(30), 3))
}

/// A batch of lead messages for `businesses` of `campaign`, keyed by `tag` (new keys: not a
/// redelivery of the run's own messages).
fn lead_batch(
    tenant: TenantId,
    run: Option<shared::domain::RunId>,
    campaign: uuid::Uuid,
    businesses: &[uuid::Uuid],
    tag: &str,
) -> Vec<shared::pipeline::Incoming> {
    businesses
        .iter()
        .map(|b| shared::pipeline::Incoming {
            id: format!("{tag}-{b}"),
            receive_count: 1,
            body: shared::bus::Envelope::new(
                tenant,
                run,
                format!("{tag}:{b}"),
                shared::pipeline::messages::LeadRef {
                    business_id: shared::domain::BusinessId::from_uuid(*b),
                    campaign_id: shared::domain::CampaignId::from_uuid(campaign),
                },
            )
            .to_body()
            .unwrap(),
        })
        .collect()
}

/// A manual run of the pipeline's tenant: what a hand-made message names to prove its tenant.
async fn manual_run(p: &LocalPipeline) -> shared::domain::RunId {
    let mut client = p.pool().get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut client, p.tenant)
        .await
        .unwrap();
    let run = shared::pipeline::runs::begin_run(&tx, p.tenant, "manual")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    run
}

/// The pipeline's results in a form that does not depend on generated ids.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    businesses: i64,
    enrichments: i64,
    assessments: i64,
    scores: BTreeSet<(String, i16, String, bool)>,
}

async fn snapshot(db: &TestDb) -> Snapshot {
    let admin = db.admin().await;
    let one = |sql: &'static str| {
        let admin = &admin;
        async move { admin.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    Snapshot {
        businesses: one("SELECT count(*) FROM businesses").await,
        enrichments: one("SELECT count(*) FROM enrichments").await,
        assessments: one("SELECT count(*) FROM assessments").await,
        scores: admin
            .query("SELECT b.yelp_id, s.score, s.tier::text, s.qualified FROM scores s JOIN businesses b ON b.id = s.business_id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect(),
    }
}

#[tokio::test]
async fn the_pipeline_runs_end_to_end_through_personalization() {
    let bus = local_bus();
    let f = fixture(bus.clone(), |_| {}).await;
    let run = f.pipeline.run(&NoProgress).await.unwrap();
    let s = summarize(f.pipeline.pool(), f.pipeline.tenant, run)
        .await
        .unwrap();

    assert!(s.sourced >= 45, "{s:?}");
    assert!(
        s.duplicates >= 1,
        "the simulated world has second listings: {s:?}"
    );
    assert!(s.enriched >= 30 && s.enriched <= s.sourced, "{s:?}");
    assert_eq!(
        s.assessed, s.enriched,
        "every enriched business with a site is assessed: {s:?}"
    );
    assert_eq!(s.scored, s.assessed);
    assert!(s.tiers.len() >= 3, "scores spread over tiers: {s:?}");
    assert!(s.qualified > 0 && s.qualified < s.scored);
    assert_eq!(s.failed, 0);
    assert!(s.cost_micros > 0);
    assert_eq!(
        s.reports, s.qualified,
        "every qualified lead gets its report"
    );
    assert_eq!(
        s.emails, s.qualified,
        "and its email (qualified leads have an address)"
    );
    // The LLM wrote them (the simulator follows the prompt), each with our report link, within
    // the limits, subjects from the experiment's variants.
    let emails = f
        .db
        .admin()
        .await
        .query("SELECT e.generated_by, e.subject, e.body_text, r.token, e.spam_score, v.key FROM emails e JOIN reports r ON r.id = e.report_id JOIN experiment_variants v ON v.id = e.variant_id", &[])
        .await
        .unwrap();
    assert_eq!(emails.len() as i64, s.qualified);
    for e in &emails {
        let (by, subject, body, token, spam): (String, String, String, String, i16) =
            (e.get(0), e.get(1), e.get(2), e.get(3), e.get(4));
        assert_eq!(by, "llm", "{body}");
        assert!(body.contains(&format!("/r/{token}")), "{body}");
        assert!(
            subject.chars().count() <= 60 && body.split_whitespace().count() <= 150 && spam < 50
        );
    }
    let variants: std::collections::BTreeSet<String> = emails.iter().map(|e| e.get(5)).collect();
    assert_eq!(
        variants.len(),
        2,
        "both subject lines are in use: {variants:?}"
    );
    assert_eq!(s.sent, s.qualified, "and it is sent: {s:?}");
    let outbox = f.pipeline.sim.state.outbox.lock().unwrap().clone();
    assert_eq!(
        outbox.len() as i64,
        s.qualified,
        "each email goes out exactly once"
    );

    let admin = f.db.admin().await;
    // Every qualified lead is reachable and every assessment of a reachable site stored its HTML.
    let unreachable_qualified: i64 = admin.query_one("SELECT count(*) FROM scores s JOIN businesses b ON b.id = s.business_id WHERE s.qualified AND b.email IS NULL", &[]).await.unwrap().get(0);
    assert_eq!(unreachable_qualified, 0);
    let keys: Vec<String> = admin
        .query(
            "SELECT raw_html_key FROM assessments WHERE http_status BETWEEN 200 AND 299",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!keys.is_empty());
    for k in &keys {
        let key = shared::store::ObjectKey::parse(k).unwrap();
        let gz = f.pipeline.deps.store.get(&key).await.unwrap();
        let mut html = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut html)
            .unwrap();
        assert!(html.contains("<html"), "{k}");
    }
    // Each report's PDFs are in the store, the full one five pages, the preview two.
    let keys: Vec<(String, String, String)> = admin
        .query("SELECT full_key, preview_key, token FROM reports", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(keys.len() as i64, s.qualified);
    for (full, preview, token) in &keys {
        assert!(token.len() >= 40);
        for (key, pages) in [(full, 5), (preview, 2)] {
            let pdf = f
                .pipeline
                .deps
                .store
                .get(&shared::store::ObjectKey::parse(key).unwrap())
                .await
                .unwrap();
            assert_eq!(
                lopdf::Document::load_mem(&pdf).unwrap().get_pages().len(),
                pages,
                "{key}"
            );
        }
    }
    // LLM insights were used and logged with an expiry; each assessment has three recommendations.
    let (llm, expiring): (i64, i64) = {
        let r = admin.query_one("SELECT count(*), count(*) FILTER (WHERE expires_at > now() + interval '80 days') FROM llm_logs", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert!(llm > 0 && llm == expiring);
    let bad_insights: i64 = admin.query_one("SELECT count(*) FROM assessments WHERE jsonb_array_length(insights->'recommendations') <> 3", &[]).await.unwrap().get(0);
    assert_eq!(bad_insights, 0);
    // Run tracking: stage percentiles and vendor usage exist; the run is closed.
    let stages: Vec<String> = admin.query("SELECT stage FROM run_stage_stats WHERE run_id = $1 AND p95_ms IS NOT NULL ORDER BY stage", &[&run.as_uuid()]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(
        stages,
        vec![
            "assessment",
            "delivery",
            "enrichment",
            "personalization",
            "reports",
            "scoring",
            "sourcing"
        ]
    );
    let status: String = admin
        .query_one("SELECT status FROM runs WHERE id = $1", &[&run.as_uuid()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "succeeded");
    // No PII in run events.
    let leaked: i64 = admin
        .query_one(
            "SELECT count(*) FROM run_event_logs WHERE extra::text LIKE '%@%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn every_message_delivered_twice_gives_the_same_final_state() {
    let plain = fixture(local_bus(), |_| {}).await;
    plain.pipeline.run(&NoProgress).await.unwrap();
    let expected = snapshot(&plain.db).await;

    let inner = local_bus();
    // Every message is delivered twice (as SQS may), the delivery queue's included.
    let bus = HookedBus::new(inner.clone(), |_, _| OnSend::Twice);
    let twice = fixture(Arc::new(bus), |_| {}).await;
    twice.pipeline.run(&NoProgress).await.unwrap();
    assert_eq!(snapshot(&twice.db).await, expected);
    let qualified = expected.scores.iter().filter(|s| s.3).count() as u64;
    let outbox = twice.pipeline.sim.state.outbox.lock().unwrap().clone();
    let addresses: BTreeSet<String> = outbox.iter().map(|m| m.to.join(",")).collect();
    assert_eq!(
        (outbox.len() as u64, addresses.len() as u64),
        (qualified, qualified),
        "one email sent per lead however often it was delivered"
    );
    let reports: i64 = twice
        .db
        .admin()
        .await
        .query_one("SELECT count(*) FROM reports", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        reports as u64, qualified,
        "one report row per lead however often it was delivered"
    );
    let emails: i64 = twice
        .db
        .admin()
        .await
        .query_one("SELECT count(*) FROM emails", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        emails as u64, qualified,
        "one email per lead however often it was delivered"
    );
}

#[tokio::test]
async fn a_poison_message_lands_in_the_dlq_while_its_batch_succeeds() {
    let bus = local_bus();
    let f = fixture(bus.clone(), |_| {}).await;
    bus.send_batch(
        Queue::Sourcing.name(),
        &["{not json".to_owned(), r#"{"v":9,"payload":{}}"#.to_owned()],
    )
    .await
    .unwrap();
    f.pipeline.run(&NoProgress).await.unwrap();
    let dead = bus.receive(Queue::Sourcing.dlq(), 10).await.unwrap();
    let bodies: BTreeSet<String> = dead.iter().map(|d| d.body.clone()).collect();
    assert_eq!(
        bodies,
        BTreeSet::from(["{not json".to_owned(), r#"{"v":9,"payload":{}}"#.to_owned()])
    );
    let s = snapshot(&f.db).await;
    assert!(
        s.businesses >= 45,
        "the rest of the batch went through: {s:?}"
    );
}

#[tokio::test]
async fn a_429_storm_slows_the_run_but_loses_nothing() {
    let calm = fixture(local_bus(), |_| {}).await;
    calm.pipeline.run(&NoProgress).await.unwrap();
    let expected = snapshot(&calm.db).await;

    let stormy = fixture(local_bus(), |o| {
        o.max_receive_count = 6;
        let storm = sim::Fault {
            rate_429: 0.3,
            retry_after_secs: Some(0.01),
            ..sim::Fault::default()
        };
        for v in ["yelp", "places", "pagespeed", "openai"] {
            o.sim.faults.insert(v.into(), storm.clone());
        }
    })
    .await;
    stormy.pipeline.run(&NoProgress).await.unwrap();
    let requests = stormy.pipeline.sim.state.requests.lock().unwrap().clone();
    let calm_requests = calm.pipeline.sim.state.requests.lock().unwrap().clone();
    assert!(
        requests["places"] > calm_requests["places"],
        "429s were retried: {requests:?} vs {calm_requests:?}"
    );
    assert_eq!(snapshot(&stormy.db).await, expected);
    let hits: i64 = stormy
        .db
        .admin()
        .await
        .query_one(
            "SELECT coalesce(sum(rate_limit_hits), 0)::bigint FROM run_vendor_usage",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(hits > 0);
}

#[tokio::test]
async fn a_next_hop_lost_after_commit_is_sent_on_redelivery() {
    let calm = fixture(local_bus(), |_| {}).await;
    calm.pipeline.run(&NoProgress).await.unwrap();
    let expected = snapshot(&calm.db).await;

    // The first send to enrichment fails: the results are committed but the next hop is not.
    let first_enrichment = std::sync::atomic::AtomicBool::new(true);
    let bus = HookedBus::new(local_bus(), move |q, _| {
        if q == Queue::Enrichment.name()
            && first_enrichment.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            OnSend::Fail
        } else {
            OnSend::Pass
        }
    });
    let lossy = fixture(Arc::new(bus), |_| {}).await;
    lossy.pipeline.run(&NoProgress).await.unwrap();
    assert_eq!(snapshot(&lossy.db).await, expected);
    let pending: i64 = lossy
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM processed_messages WHERE status <> 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_closed_llm_budget_skips_the_paid_step_and_the_stage_goes_on() {
    let f = fixture(local_bus(), |o| o.budgets.llm = 0).await;
    let run = f.pipeline.run(&NoProgress).await.unwrap();
    let s = summarize(f.pipeline.pool(), f.pipeline.tenant, run)
        .await
        .unwrap();
    assert!(s.skipped_by_budget > 0, "{s:?}");
    assert_eq!(s.scored, s.assessed, "assessment went on without the LLM");
    let admin = f.db.admin().await;
    let llm: i64 = admin
        .query_one("SELECT count(*) FROM llm_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(llm, 0);
    let template: i64 = admin.query_one("SELECT count(*) FROM assessments WHERE checks->>'insights_source' = 'template' AND jsonb_array_length(insights->'recommendations') = 3", &[]).await.unwrap().get(0);
    assert_eq!(template, s.assessed);
    assert!(
        f.pipeline
            .sim
            .state
            .requests
            .lock()
            .unwrap()
            .get("openai")
            .is_none()
    );
    // Emails were still written, from the template.
    let by: Vec<(String, i64)> = admin
        .query("SELECT generated_by, count(*) FROM emails GROUP BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(by, vec![("template".to_owned(), s.qualified)]);
}

#[tokio::test]
async fn the_budget_gate_never_exceeds_the_budget_under_concurrent_reservations() {
    let db = TestDb::new().await;
    let t = TenantId::new();
    db.admin()
        .await
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'A')",
            &[&t.as_uuid()],
        )
        .await
        .unwrap();
    let pool = db.app_pool();
    let limit = 10_000i64;
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                // Mixed batch sizes of 300-micro calls, all racing for the same budget row.
                shared::pipeline::budget::reserve(
                    &mut c,
                    t,
                    shared::pipeline::budget::BudgetClass::Llm,
                    limit,
                    300,
                    1 + (i % 4),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    let reserved: i64 = db
        .admin()
        .await
        .query_one(
            "SELECT reserved_micros FROM budgets WHERE tenant_id = $1",
            &[&t.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reserved, granted * 300);
    assert!(reserved <= limit);
    assert_eq!(
        granted,
        limit / 300,
        "the budget is used up to the last whole call"
    );
}

#[tokio::test]
async fn a_vendor_outage_dead_letters_its_messages_without_using_up_the_budget() {
    let bus = local_bus();
    let f = fixture(bus.clone(), |o| {
        o.max_receive_count = 2;
        o.sim.faults.insert(
            "places".into(),
            sim::Fault {
                rate_5xx: 1.0,
                ..sim::Fault::default()
            },
        );
    })
    .await;
    let run = f.pipeline.run(&NoProgress).await.unwrap();
    let s = summarize(f.pipeline.pool(), f.pipeline.tenant, run)
        .await
        .unwrap();
    assert_eq!(s.enriched, 0);
    let dead = bus.depth(Queue::Enrichment.dlq()).await.unwrap().visible as i64;
    assert_eq!(
        dead, s.sourced,
        "every enrichment message is dead-lettered, none lost"
    );
    let row =
        f.db.admin()
            .await
            .query_one(
                "SELECT reserved_micros, spent_micros FROM budgets WHERE vendor_class = 'places'",
                &[],
            )
            .await
            .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (0, 0),
        "failed calls gave their reservations back"
    );
    assert!(s.failed > 0);
    // The run ended by itself when its last message was dead-lettered: partial (sourcing
    // succeeded), each dead message recorded with its reason, nothing pending.
    assert_eq!(f.pipeline.run_status(run).await.unwrap(), "partial");
    let work = f
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'dead' AND queue = 'enrichment' AND reason LIKE '%places%'),
                    count(*) FILTER (WHERE state = 'pending')
             FROM run_work WHERE run_id = $1",
            &[&run.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(
        (work.get::<_, i64>(0), work.get::<_, i64>(1)),
        (dead, 0),
        "every dead-lettered message is the run's dead work, with the vendor's error"
    );
}

#[tokio::test]
async fn status_shows_the_latest_run_with_its_stage_table() {
    let f = fixture(local_bus(), |_| {}).await;
    let run = f.pipeline.run(&NoProgress).await.unwrap();
    // The functions finished the run themselves: no work left, stage percentiles computed.
    let admin = f.db.admin().await;
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM run_work WHERE run_id = $1",
            &[&run.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let stats = admin
        .query_one(
            "SELECT r.status, r.finished_at IS NOT NULL, count(s.stage), count(s.p99_ms)
             FROM runs r JOIN run_stage_stats s ON s.run_id = r.id WHERE r.id = $1 GROUP BY r.id",
            &[&run.as_uuid()],
        )
        .await
        .unwrap();
    assert_eq!(stats.get::<_, String>(0), "succeeded");
    assert!(stats.get::<_, bool>(1));
    assert!(stats.get::<_, i64>(2) >= 7, "a stats row per stage");
    assert_eq!(stats.get::<_, i64>(2), stats.get::<_, i64>(3));
    let text = leadfactory_cli::status::report(&admin, 5).await.unwrap();
    assert!(
        text.contains(&run.to_string()) && text.contains("succeeded"),
        "{text}"
    );
    for stage in ["sourcing", "enrichment", "assessment", "scoring"] {
        assert!(
            text.lines().any(|l| l.starts_with(stage)),
            "{stage} missing:\n{text}"
        );
    }
    assert!(text.lines().any(|l| l.starts_with("places")), "{text}");
}

#[tokio::test]
async fn the_local_driver_bounds_every_queues_backlog_whatever_the_runs_size() {
    let bus = Arc::new(HookedBus::new(local_bus(), |_, _| OnSend::Pass));
    // One batch of ten per stage and round: a stage is held back once its next queue holds
    // 2 × 10 visible messages.
    let f = fixture(bus.clone(), |o| o.parallel_batches = 1).await;
    // 48 sourcing jobs of two listings each. A round of sourcing sends 20 businesses and a
    // round of enrichment takes 10, so without flow control the enrichment backlog grows by
    // about ten a round, past 50; with it, sourcing runs only below 20, so the backlog stays
    // under 20 + 20.
    let mut c = campaign(96);
    c.zip_codes = (0..48).map(|i| format!("95{:03}", 100 + i)).collect();
    let mut pool = f.pipeline.pool().clone();
    c.upsert(&mut pool, f.pipeline.tenant).await.unwrap();

    let run = f.pipeline.run(&NoProgress).await.unwrap();

    let s = summarize(f.pipeline.pool(), f.pipeline.tenant, run)
        .await
        .unwrap();
    assert!(s.sourced >= 80, "most of the 96 listings: {s:?}");
    assert_eq!(s.assessed, s.enriched, "nothing stalled: {s:?}");
    assert!(
        bus.deepest(Queue::Enrichment.name()) >= 20,
        "the enrichment queue filled up to the mark, so the bound was exercised"
    );
    for q in [
        Queue::Enrichment.name(),
        Queue::Assessment.name(),
        Queue::Scoring.name(),
        Queue::Reports.name(),
        Queue::Personalization.name(),
    ] {
        let deepest = bus.deepest(q);
        assert!(deepest < 40, "{q} held {deepest} messages");
    }
}

#[tokio::test]
async fn a_stage_batch_costs_the_same_four_round_trips_whatever_its_size() {
    use shared::bus::Envelope;
    use shared::domain::{BusinessId, CampaignId, RunId};
    use shared::pipeline::messages::LeadRef;
    use shared::pipeline::{Incoming, process_batch};

    let db = TestDb::new().await;
    let relay = testkit::round_trips::Relay::start(db.addr()).unwrap();
    let store = tempfile::tempdir().unwrap();
    let opts = LocalOptions::new(db.app_url_through(&relay), store.path().to_owned());
    let p = LocalPipeline::start(opts, local_bus()).await.unwrap();
    p.ensure_tenant("Test agency").await.unwrap();
    let mut pool = p.pool().clone();
    campaign(20).upsert(&mut pool, p.tenant).await.unwrap();
    p.run(&NoProgress).await.unwrap();

    // Re-score the run's scored businesses under new keys: fresh messages with real data.
    let admin = db.admin().await;
    let campaign_id: uuid::Uuid = admin
        .query_one("SELECT id FROM campaigns", &[])
        .await
        .unwrap()
        .get(0);
    let leads: Vec<(uuid::Uuid, uuid::Uuid)> = admin
        .query(
            "SELECT business_id, run_id FROM scores ORDER BY business_id LIMIT 10",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(leads.len(), 10, "the run scored fewer than 10 businesses");
    let batch = |size: usize, tag: &str| -> Vec<Incoming> {
        leads[..size]
            .iter()
            .enumerate()
            .map(|(i, (business, run))| Incoming {
                id: format!("{tag}-{i}"),
                receive_count: 1,
                body: Envelope::new(
                    p.tenant,
                    Some(RunId::from_uuid(*run)),
                    format!("{tag}:{business}"),
                    LeadRef {
                        business_id: BusinessId::from_uuid(*business),
                        campaign_id: CampaignId::from_uuid(campaign_id),
                    },
                )
                .to_body()
                .unwrap(),
            })
            .collect()
    };
    let scoring = &p.stages.scoring;
    // Every pooled connection prepares the stage's statements once; measure on warm ones.
    for round in 0..=p.deps.pool.status().size {
        let out = process_batch(scoring, &p.deps, batch(10, &format!("warm{round}"))).await;
        assert_eq!(out.processed, 10, "{out:?}");
    }

    let mut trips = Vec::new();
    for size in [1, 10, 1, 10] {
        let before = relay.turns();
        let out = process_batch(scoring, &p.deps, batch(size, &format!("n{}", trips.len()))).await;
        assert_eq!((out.processed, out.failed.len()), (size, 0), "{out:?}");
        trips.push(relay.turns() - before);
    }
    // The check, load and first commit; the results with the start; the bookkeeping with the
    // commit; the "done" mark after the next hop went.
    assert_eq!(trips, [4, 4, 4, 4]);
}

/// A stage whose work takes as long as its message says, with a paid call per message.
struct Sleepy;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Nap {
    ms: u64,
}

#[async_trait::async_trait]
impl shared::pipeline::StageHandler for Sleepy {
    type Payload = Nap;
    type Work = ();
    type Context = ();

    const STAGE: shared::pipeline::Stage = shared::pipeline::Stage::Scoring;
    const INPUT: Queue = Queue::Scoring;
    const SENDS_TO: &'static [Queue] = &[];

    fn budget(
        &self,
        _: &shared::pipeline::Deps,
    ) -> Option<(shared::pipeline::budget::BudgetClass, i64)> {
        Some((shared::pipeline::budget::BudgetClass::Llm, 1_000))
    }

    async fn load(
        &self,
        _: &dyn shared::db::Tx,
        _: TenantId,
        _: &[&shared::bus::Envelope<Nap>],
    ) -> Result<(), shared::db::DbError> {
        Ok(())
    }

    async fn work(
        &self,
        _: &shared::pipeline::Deps,
        _: &(),
        env: &shared::bus::Envelope<Nap>,
        _: bool,
    ) -> Result<(), shared::pipeline::WorkError> {
        tokio::time::sleep(Duration::from_millis(env.payload.ms)).await;
        Ok(())
    }

    async fn persist(
        &self,
        _: &shared::pipeline::Deps,
        _: &dyn shared::db::Tx,
        _: TenantId,
        items: &[shared::pipeline::StageItem<Nap, ()>],
    ) -> Result<Vec<Vec<shared::pipeline::Outgoing>>, shared::pipeline::StageError> {
        Ok(items.iter().map(|_| Vec::new()).collect())
    }

    fn describe(
        &self,
        _: &shared::pipeline::StageItem<Nap, ()>,
        _: &[shared::pipeline::Outgoing],
    ) -> Vec<shared::pipeline::EventInfo> {
        Vec::new()
    }
}

#[tokio::test]
async fn work_past_the_invocations_deadline_is_returned_unfinished_and_the_finished_is_stored() {
    let f = fixture(local_bus(), |_| {}).await;
    let tenant = f.pipeline.tenant;
    let run = manual_run(&f.pipeline).await;
    let batch: Vec<shared::pipeline::Incoming> = [(1, 10), (2, 5_000), (3, 5_000)]
        .into_iter()
        .map(|(i, ms)| shared::pipeline::Incoming {
            id: format!("m{i}"),
            body: shared::bus::Envelope::new(tenant, Some(run), format!("nap:{i}"), Nap { ms })
                .to_body()
                .unwrap(),
            receive_count: 1,
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let out =
        shared::pipeline::process_batch_until(&Sleepy, &f.pipeline.deps, batch, Some(deadline))
            .await;
    assert_eq!(
        (out.processed, out.failed.clone()),
        (1, vec!["m2".to_owned(), "m3".to_owned()])
    );
    let admin = f.db.admin().await;
    let done: Vec<String> = admin
        .query(
            "SELECT key FROM processed_messages WHERE stage = 'scoring' AND key LIKE 'nap:%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        done,
        ["nap:1"],
        "the finished message is stored; the cut ones are not"
    );
    let reserved: i64 = admin
        .query_one(
            "SELECT reserved_micros FROM budgets WHERE vendor_class = 'llm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        reserved, 1_000,
        "the unfinished messages' reservations went back"
    );
}

#[test]
fn the_work_deadline_leaves_a_margin_for_storing_the_batch() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            shared::pipeline::work_deadline(0),
            None,
            "no deadline known"
        );
        // 60 s left: stop 6 s early; 10 s left: 2 s early (the least margin).
        for (left, margin) in [(60_000u64, 6_000u64), (10_000, 2_000)] {
            let at = shared::pipeline::work_deadline(now_ms + left).unwrap();
            let until = at.duration_since(tokio::time::Instant::now()).as_millis() as i64;
            let want = (left - margin) as i64;
            assert!(
                (until - want).abs() < 200,
                "{left} ms left: work until {until}, not {want}"
            );
        }
    });
}

#[tokio::test]
async fn a_second_night_of_the_same_campaign_finds_new_businesses() {
    let f = fixture(local_bus(), |_| {}).await;
    let first = f.pipeline.run(&NoProgress).await.unwrap();
    let s1 = summarize(f.pipeline.pool(), f.pipeline.tenant, first)
        .await
        .unwrap();
    let second = f.pipeline.run(&NoProgress).await.unwrap();
    let s2 = summarize(f.pipeline.pool(), f.pipeline.tenant, second)
        .await
        .unwrap();
    assert!(s1.sourced > 0);
    // The second night asks Yelp for the next pages, not the same first ones again.
    assert!(
        s2.sourced >= s1.sourced / 2,
        "night 1 sourced {}, night 2 {}",
        s1.sourced,
        s2.sourced
    );
    let admin = f.db.admin().await;
    let offsets: Vec<i64> = admin
        .query(
            "SELECT min((extra->>'offset')::int8) FROM run_event_logs WHERE stage = 'sourcing' AND event = 'page'
             GROUP BY run_id ORDER BY min(created_at)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(
        offsets[1] >= 60,
        "night 2 starts where night 1 stopped: {offsets:?}"
    );
}

#[tokio::test]
async fn a_campaign_that_has_searched_its_whole_area_says_so() {
    let f = fixture(local_bus(), |_| {}).await;
    // More than one ZIP and category can ever hold: the area is used up after a night or two.
    let mut pool = f.pipeline.pool().clone();
    campaign(10_000)
        .upsert(&mut pool, f.pipeline.tenant)
        .await
        .unwrap();
    let mut exhausted = Vec::new();
    for _ in 0..3 {
        let report = targeting::handler(
            &f.pipeline.deps,
            serde_json::json!({ "detail": { "kind": "local" } }),
        )
        .await
        .unwrap();
        f.pipeline.settle().await.unwrap();
        exhausted = report.campaigns_exhausted;
        if !exhausted.is_empty() {
            break;
        }
    }
    assert_eq!(exhausted.len(), 1, "the campaign is reported exhausted");
    let text = leadfactory_cli::status::report(&f.db.admin().await, 5)
        .await
        .unwrap();
    assert!(text.contains("exhausted areas"), "{text}");
    let mut c = f.pipeline.pool().get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, f.pipeline.tenant)
        .await
        .unwrap();
    let findings = alerts::rules::evaluate(&tx, &alerts::Thresholds::default(), chrono::Utc::now())
        .await
        .unwrap();
    assert!(
        findings
            .iter()
            .any(|x| x.rule == "campaign_exhausted" && x.level == alerts::Level::Warning),
        "{findings:?}"
    );
}

#[tokio::test]
async fn concurrent_sourcing_batches_of_overlapping_pages_store_each_business_once_and_hand_on_its_stored_id()
 {
    use shared::bus::Envelope;
    use shared::domain::{CampaignId, RunId};
    use shared::pipeline::messages::{LeadRef, SourcingJob};
    use shared::pipeline::{Incoming, process_batch};

    let bus = local_bus();
    let f = fixture(bus.clone(), |_| {}).await;
    let admin = f.db.admin().await;
    let campaign: uuid::Uuid = admin
        .query_one("SELECT id FROM campaigns", &[])
        .await
        .unwrap()
        .get(0);
    let run = RunId::new();
    admin
        .execute(
            "INSERT INTO runs (id, tenant_id, kind) VALUES ($1, $2, 'manual')",
            &[&run.as_uuid(), &f.pipeline.tenant.as_uuid()],
        )
        .await
        .unwrap();
    // Two batches asking for overlapping pages of the same area, processed at once, a few times.
    let batch = |tag: &str, offsets: &[u32]| -> Vec<Incoming> {
        offsets
            .iter()
            .map(|o| Incoming {
                id: format!("{tag}-{o}"),
                receive_count: 1,
                body: Envelope::new(
                    f.pipeline.tenant,
                    Some(run),
                    format!("{tag}:{o}"),
                    SourcingJob {
                        campaign_id: CampaignId::from_uuid(campaign),
                        location: "95113".into(),
                        category: "restaurants".into(),
                        offset: *o,
                        limit: 20,
                    },
                )
                .to_body()
                .unwrap(),
            })
            .collect()
    };
    let s = &f.pipeline.stages.sourcing;
    for round in 0..3 {
        let (a, b) = futures_util::future::join(
            process_batch(s, &f.pipeline.deps, batch(&format!("a{round}"), &[0, 20])),
            process_batch(s, &f.pipeline.deps, batch(&format!("b{round}"), &[10, 30])),
        )
        .await;
        assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    }
    let mut handed = Vec::new();
    loop {
        let got = bus.receive(Queue::Enrichment.name(), 10).await.unwrap();
        if got.is_empty() {
            break;
        }
        for d in got {
            handed.push(
                Envelope::<LeadRef>::parse(&d.body)
                    .unwrap()
                    .payload
                    .business_id
                    .as_uuid(),
            );
            bus.delete(Queue::Enrichment.name(), &d.receipt)
                .await
                .unwrap();
        }
    }
    assert!(!handed.is_empty());
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM businesses WHERE id = ANY($1)",
            &[&handed],
        )
        .await
        .unwrap()
        .get(0);
    let distinct: std::collections::HashSet<_> = handed.iter().collect();
    assert_eq!(
        stored as usize,
        distinct.len(),
        "every id handed on was stored"
    );
    let doubled: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT phone_e164 FROM businesses WHERE phone_e164 IS NOT NULL
                                   GROUP BY phone_e164 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0, "no business stored twice under one phone");
}

#[tokio::test]
async fn two_businesses_sharing_an_inbox_get_one_outreach_in_a_campaign() {
    use shared::pipeline::process_batch;

    let f = fixture(local_bus(), |_| {}).await;
    let run = f.pipeline.run(&NoProgress).await.unwrap();
    let admin = f.db.admin().await;
    // Two businesses of the night that were written to: make them share one inbox, as a
    // chain's branches or two rows of one business do, and write to them again. Addresses are
    // stored normalised (the database refuses one spelt in capitals), so one inbox is one value.
    let rows = admin
        .query(
            "SELECT business_id, campaign_id, to_email FROM emails WHERE kind = 'outreach' ORDER BY to_email LIMIT 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "the night wrote at least two emails");
    let (b1, b2): (uuid::Uuid, uuid::Uuid) = (rows[0].get(0), rows[1].get(0));
    let campaign: uuid::Uuid = rows[0].get(1);
    let inbox: String = rows[0].get(2);
    admin
        .execute(
            "DELETE FROM emails WHERE business_id = ANY($1)",
            &[&vec![b1, b2]],
        )
        .await
        .unwrap();
    let capitals = admin
        .execute(
            "UPDATE businesses SET email = upper($2) WHERE id = $1",
            &[&b2, &inbox],
        )
        .await
        .unwrap_err();
    assert_eq!(
        capitals.as_db_error().and_then(|d| d.constraint()),
        Some("businesses_email_normalised"),
        "{capitals}"
    );
    admin
        .execute(
            "UPDATE businesses SET email = $3 WHERE id IN ($1, $2)",
            &[&b1, &b2, &inbox],
        )
        .await
        .unwrap();
    let batch = |tag: &str, ids: &[uuid::Uuid]| {
        lead_batch(f.pipeline.tenant, Some(run), campaign, ids, tag)
    };
    let s = &f.pipeline.stages.personalization;
    // Both in one batch, then each again in batches of their own (a later night, a redelivery).
    let both = process_batch(s, &f.pipeline.deps, batch("both", &[b1, b2])).await;
    assert!(both.failed.is_empty(), "{both:?}");
    for (i, b) in [b2, b1].iter().enumerate() {
        let again = process_batch(s, &f.pipeline.deps, batch(&format!("again{i}"), &[*b])).await;
        assert!(again.failed.is_empty(), "{again:?}");
    }
    let written: i64 = admin
        .query_one(
            "SELECT count(*) FROM emails WHERE kind = 'outreach' AND campaign_id = $1 AND lower(to_email) = lower($2)",
            &[&campaign, &inbox],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 1, "one outreach for the inbox {inbox}");
    let skipped: i64 = admin
        .query_one(
            "SELECT count(*) FROM run_event_logs WHERE stage = 'personalization' AND event = 'skipped:inbox_already_emailed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(skipped >= 1, "the second business is skipped by name");
    // The events say what was stored: of the emails the work wrote after the night's two, only
    // the first of the batch of both was kept; the other business's in that batch and the
    // second try of the one kept were not.
    let events = |like: &'static str| {
        let admin = &admin;
        let ids = vec![b1.to_string(), b2.to_string()];
        async move {
            admin
                .query_one(
                    "SELECT count(*) FROM run_event_logs WHERE stage = 'personalization' AND event LIKE $1 AND entity_id = ANY($2)",
                    &[&like, &ids],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(events("skipped:not_stored").await, 2);
    assert_eq!(events("written:%").await, 3);
}

#[tokio::test]
async fn the_email_goes_to_the_businesss_own_address_never_to_its_web_designer() {
    let f = fixture(local_bus(), |_| {}).await;
    f.pipeline.run(&NoProgress).await.unwrap();
    let admin = f.db.admin().await;
    // Pages that credit their designer (`mailto:` in the footer, sorting before `info@`).
    let credited: Vec<(String, Option<String>, Option<String>)> = admin
        .query(
            "SELECT b.name, b.email, b.email_reason FROM assessment_contacts c
             JOIN assessments a ON a.id = c.assessment_id JOIN businesses b ON b.id = a.business_id
             WHERE c.address = $1",
            &[&sim::DESIGNER_EMAIL],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        credited.len() >= 2,
        "the world has designer credits: {credited:?}"
    );
    for (name, email, reason) in &credited {
        if let Some(email) = email {
            assert!(
                email.starts_with("info@") && email.ends_with(".test"),
                "{name}: {email}"
            );
            assert_eq!(reason.as_deref(), Some("own_domain_link"), "{name}");
        }
    }
    assert!(
        credited.iter().any(|(_, e, _)| e.is_some()),
        "some credited pages also show the business's own address: {credited:?}"
    );
    let to_designer: i64 = admin
        .query_one(
            "SELECT count(*) FROM emails WHERE to_email = $1",
            &[&sim::DESIGNER_EMAIL],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(to_designer, 0);
    let unexplained: i64 = admin
        .query_one(
            "SELECT count(*) FROM businesses WHERE email IS NOT NULL AND email_reason IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unexplained, 0, "every address says why it was chosen");
}

#[tokio::test]
async fn a_business_another_campaign_found_stays_eligible_for_an_overlapping_one() {
    let f = fixture(local_bus(), |_| {}).await;
    f.pipeline.run(&NoProgress).await.unwrap();
    // Campaign B searches the same area the next day.
    let mut b = campaign(60);
    b.name = "San Jose restaurants, second agency campaign".into();
    b.sender.email = "bea@agency.example.com".into();
    let mut pool = f.pipeline.pool().clone();
    let b_id = b.upsert(&mut pool, f.pipeline.tenant).await.unwrap();
    let second = f.pipeline.run(&NoProgress).await.unwrap();
    let admin = f.db.admin().await;
    let count = |sql: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(sql, &[&b_id.as_uuid()])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // B is handed the businesses A found (de-duplicated: no second row), and writes to them.
    let known = count(
        "SELECT count(*) FROM campaign_leads l JOIN businesses b ON b.id = l.business_id
         WHERE l.campaign_id = $1 AND b.campaign_id IS DISTINCT FROM $1",
    )
    .await;
    assert!(known > 0, "B works on businesses A found");
    let emailed_both = count(
        "SELECT count(*) FROM emails e WHERE e.campaign_id = $1 AND e.kind = 'outreach'
         AND EXISTS (SELECT 1 FROM emails a WHERE a.business_id = e.business_id AND a.campaign_id <> $1)",
    )
    .await;
    assert!(emailed_both > 0, "B writes to businesses A wrote to");
    let doubled: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT yelp_id FROM businesses GROUP BY yelp_id HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(doubled, 0, "still one row per business");
    let events: i64 = admin
        .query_one(
            "SELECT count(*) FROM run_event_logs WHERE run_id = $1 AND stage = 'sourcing' AND event = 'known'",
            &[&second.as_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, known, "each named as known to the tenant");
}

#[tokio::test]
async fn the_homepage_fetcher_checks_the_first_url_itself_whoever_stored_it() {
    use shared::pipeline::process_batch;

    let f = fixture(local_bus(), |_| {}).await;
    let admin = f.db.admin().await;
    let campaign: uuid::Uuid = admin
        .query_one("SELECT id FROM campaigns", &[])
        .await
        .unwrap()
        .get(0);
    // A website no enrichment would store, put there by hand (a bug, a migration, an operator):
    // the fetcher must refuse it on its own.
    // (Ports are checked too, in production mode; the test world runs on local ports.)
    let ids: Vec<uuid::Uuid> = (0..2).map(|_| uuid::Uuid::new_v4()).collect();
    for (id, url) in ids.iter().zip([
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://intranet/",
    ]) {
        admin
            .execute(
                "INSERT INTO businesses (id, tenant_id, name, name_norm, website_url) VALUES ($1, $2, 'X', 'x' || md5($3), $3)",
                &[id, &f.pipeline.tenant.as_uuid(), &url],
            )
            .await
            .unwrap();
    }
    let run = manual_run(&f.pipeline).await;
    let batch = lead_batch(f.pipeline.tenant, Some(run), campaign, &ids, "guard");
    let out = process_batch(&f.pipeline.stages.assessment, &f.pipeline.deps, batch).await;
    assert!(out.failed.is_empty(), "{out:?}");
    let errors: Vec<String> = admin
        .query(
            "SELECT fetch_error FROM assessments WHERE business_id = ANY($1) ORDER BY url",
            &[&ids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(
        errors.iter().all(|e| e.starts_with("refused: ")),
        "{errors:?}"
    );
}

/// Enrichment messages for up to `n` of the run's sourced businesses, under keys tagged `tag`.
async fn enrichment_batch(
    p: &LocalPipeline,
    db: &TestDb,
    n: i64,
    tag: &str,
) -> Vec<shared::pipeline::Incoming> {
    use shared::domain::{BusinessId, CampaignId, RunId};
    let admin = db.admin().await;
    admin
        .query(
            "SELECT l.business_id, l.campaign_id, l.run_id FROM campaign_leads l ORDER BY l.business_id LIMIT $1",
            &[&n],
        )
        .await
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| shared::pipeline::Incoming {
            id: format!("{tag}-{i}"),
            receive_count: 1,
            body: shared::bus::Envelope::new(
                p.tenant,
                Some(RunId::from_uuid(r.get("run_id"))),
                format!("{tag}:{}", r.get::<_, uuid::Uuid>("business_id")),
                shared::pipeline::messages::LeadRef {
                    business_id: BusinessId::from_uuid(r.get("business_id")),
                    campaign_id: CampaignId::from_uuid(r.get("campaign_id")),
                },
            )
            .to_body()
            .unwrap(),
        })
        .collect()
}

/// Places calls as the ledger, the budget and the simulator count them.
#[derive(Debug, PartialEq, Eq)]
struct PlacesSpend {
    ledger_rows: i64,
    ledger_micros: i64,
    spent_micros: i64,
    reserved_micros: i64,
    simulator_calls: i64,
}

async fn places_spend(p: &LocalPipeline, db: &TestDb) -> PlacesSpend {
    let admin = db.admin().await;
    let ledger = admin
        .query_one(
            "SELECT count(*) AS n, coalesce(sum(cost_micros), 0)::int8 AS micros FROM cost_ledger WHERE vendor = 'places'",
            &[],
        )
        .await
        .unwrap();
    let budget = admin
        .query_opt(
            "SELECT spent_micros, reserved_micros FROM budgets WHERE vendor_class = 'places' AND day = current_date",
            &[],
        )
        .await
        .unwrap();
    let seen: serde_json::Value = reqwest::get(format!("{}/_sim/requests", p.sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    PlacesSpend {
        ledger_rows: ledger.get("n"),
        ledger_micros: ledger.get("micros"),
        spent_micros: budget.as_ref().map_or(0, |b| b.get("spent_micros")),
        reserved_micros: budget.as_ref().map_or(0, |b| b.get("reserved_micros")),
        simulator_calls: seen["places"].as_i64().unwrap_or(0),
    }
}

#[tokio::test]
async fn a_store_that_fails_after_paid_calls_leaves_each_call_in_the_ledger_once() {
    let f = fixture(local_bus(), |_| {}).await;
    let p = &f.pipeline;
    p.run(&NoProgress).await.unwrap();
    let start = places_spend(p, &f.db).await;
    assert_eq!(
        start.ledger_rows, start.simulator_calls,
        "the night itself records every call: {start:?}"
    );

    // The store refuses every batch's results, after the work made its paid calls.
    let admin = f.db.admin().await;
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_store() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'the store is refused by the test'; END $$;
             CREATE TRIGGER refuse_store BEFORE INSERT ON enrichments
               FOR EACH STATEMENT EXECUTE FUNCTION refuse_store();",
        )
        .await
        .unwrap();
    let batch = enrichment_batch(p, &f.db, 6, "again").await;
    assert_eq!(batch.len(), 6);
    let out = shared::pipeline::process_batch(&p.stages.enrichment, &p.deps, batch.clone()).await;
    assert_eq!((out.processed, out.failed.len()), (0, 6), "{out:?}");
    let failed = places_spend(p, &f.db).await;
    assert!(
        failed.simulator_calls > start.simulator_calls,
        "the work made paid calls: {failed:?}"
    );
    assert_eq!(failed.ledger_rows, failed.simulator_calls, "{failed:?}");
    assert_eq!(
        failed.spent_micros - start.spent_micros,
        failed.ledger_micros - start.ledger_micros,
        "the budget counts what the ledger holds"
    );
    assert_eq!(
        failed.reserved_micros, start.reserved_micros,
        "the reservation of results not stored is given back"
    );

    // The redelivery stores; its calls are new calls, each recorded once too.
    admin
        .batch_execute("DROP TRIGGER refuse_store ON enrichments")
        .await
        .unwrap();
    let out = shared::pipeline::process_batch(&p.stages.enrichment, &p.deps, batch).await;
    assert_eq!((out.processed, out.failed.len()), (6, 0), "{out:?}");
    let stored = places_spend(p, &f.db).await;
    assert!(
        stored.simulator_calls > failed.simulator_calls,
        "{stored:?}"
    );
    assert_eq!(stored.ledger_rows, stored.simulator_calls, "{stored:?}");
    assert_eq!(
        stored.spent_micros - start.spent_micros,
        stored.ledger_micros - start.ledger_micros
    );
}

#[tokio::test]
async fn a_paused_vendor_holds_its_stages_batches_on_the_queue_without_calls_budget_or_receives() {
    use shared::vendors::{Vendor, pauses};
    let f = fixture(local_bus(), |o| {
        // Every batch reads the pauses (a deployment rereads them each minute).
        o.env
            .insert("LF_VENDOR_PAUSE_CACHE_SECS".into(), "0".into());
    })
    .await;
    let p = &f.pipeline;
    p.run(&NoProgress).await.unwrap();
    let start = places_spend(p, &f.db).await;

    // Places paused for this tenant, as the ops API pauses it (the application role, under the
    // tenant's row-level security), for two seconds.
    let until = chrono::Utc::now() + chrono::Duration::seconds(2);
    let mut c = p.pool().get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, p.tenant).await.unwrap();
    pauses::pause(
        &tx,
        Vendor::Places,
        Some(p.tenant),
        "quota incident",
        Some(until),
        "test",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    drop(c);

    // Enrichment messages on their last receive: failing would dead-letter them.
    let mut batch = enrichment_batch(p, &f.db, 6, "paused").await;
    for m in &mut batch {
        m.receive_count = p.deps.max_receive_count;
    }
    let out = shared::pipeline::process_batch(&p.stages.enrichment, &p.deps, batch.clone()).await;
    assert_eq!(
        (out.processed, out.failed.len(), out.waiting),
        (0, 0, 6),
        "the batch waits, acknowledged: {out:?}"
    );
    assert_eq!(
        places_spend(p, &f.db).await,
        start,
        "no Places call, no ledger row, no budget reserved while paused"
    );
    let waiting = p.deps.bus.depth(Queue::Enrichment.name()).await.unwrap();
    assert_eq!(
        (waiting.visible, waiting.in_flight),
        (0, 6),
        "fresh copies wait, delayed to the pause's end"
    );
    // A tenant pauses its own work only: the fleet's pauses are the operator's.
    let mut c = p.pool().get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, p.tenant).await.unwrap();
    let fleet = pauses::pause(&tx, Vendor::Yelp, None, "everyone", None, "test").await;
    assert!(
        fleet.is_err(),
        "the application role paused every tenant: {fleet:?}"
    );
    drop(tx);
    drop(c);

    // Once the pause has ended the copies are received as new messages and worked on, once.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    p.settle().await.unwrap();
    let after = places_spend(p, &f.db).await;
    assert!(
        after.simulator_calls > start.simulator_calls,
        "the held work called Places after the pause: {after:?}"
    );
    assert_eq!(after.ledger_rows, after.simulator_calls, "{after:?}");
    for q in Queue::ALL {
        let dead = p.deps.bus.depth(q.dlq()).await.unwrap();
        assert_eq!(
            dead.visible + dead.in_flight,
            0,
            "nothing dead-lettered in {}",
            q.dlq()
        );
    }
    let again = shared::pipeline::process_batch(&p.stages.enrichment, &p.deps, batch).await;
    assert_eq!(
        (again.processed, again.duplicates, again.waiting),
        (0, 6, 0),
        "a copy sent twice is a duplicate: {again:?}"
    );
}
