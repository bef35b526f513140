//! The revenue half end to end on real PostgreSQL, the simulator and the local gateway (the real
//! HTTP handlers): delivery at most once with its compliance parts, SendGrid and Stripe events
//! delivered twice, purchases fulfilled once, the storefront's pages and refusals, daily caps,
//! pauses, suppressions, and a send whose answer was lost parked rather than resent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use leadfactory_cli::campaign::CampaignFile;
use leadfactory_cli::local::{LocalOptions, LocalPipeline, NoProgress, memory_bus, summarize};
use shared::bus::{Bus, Envelope, MemoryBus, Queue};
use shared::domain::{BusinessId, CampaignId};
use shared::pipeline::messages::LeadRef;
use testkit::TestDb;

struct Fixture {
    db: TestDb,
    p: LocalPipeline,
    bus: Arc<MemoryBus>,
    _store: tempfile::TempDir,
}

async fn fixture(quota: u32, tweak: impl FnOnce(&mut LocalOptions)) -> Fixture {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let mut opts = LocalOptions::new(db.app_url(), store.path().to_owned());
    tweak(&mut opts);
    let bus = Arc::new(memory_bus(Duration::from_secs(30), 3));
    let p = LocalPipeline::start(opts, bus.clone()).await.unwrap();
    p.ensure_tenant("Test agency").await.unwrap();
    let mut c = CampaignFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    )))
    .unwrap();
    c.daily_quota = quota;
    let mut pool = p.pool().clone();
    c.upsert(&mut pool, p.tenant).await.unwrap();
    Fixture {
        db,
        p,
        bus,
        _store: store,
    }
}

fn outbox(p: &LocalPipeline) -> Vec<sim::state::OutboxMail> {
    p.sim.state.outbox.lock().unwrap().clone()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn one(db: &TestDb, sql: &str) -> i64 {
    db.admin().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// The unsubscribe link (https) of an outreach message.
fn unsubscribe_url(m: &sim::state::OutboxMail) -> String {
    let h = m.headers["List-Unsubscribe"].as_str().unwrap();
    h.split(',')
        .next()
        .unwrap()
        .trim()
        .trim_matches(['<', '>'])
        .to_owned()
}

/// The status a GET of `url` answers.
async fn status(c: &reqwest::Client, url: String) -> u16 {
    c.get(url).send().await.unwrap().status().as_u16()
}

/// Puts a delivery message for each (business, campaign) row on the delivery queue, keyed by
/// `prefix` (a new key: not a redelivery of the original message).
async fn enqueue_delivery(
    f: &Fixture,
    run: shared::domain::RunId,
    rows: &[tokio_postgres::Row],
    prefix: &str,
) {
    let bodies: Vec<String> = rows
        .iter()
        .map(|r| {
            Envelope::new(
                f.p.tenant,
                Some(run),
                format!("{prefix}:{}", r.get::<_, uuid::Uuid>(0)),
                LeadRef {
                    business_id: BusinessId::from_uuid(r.get(0)),
                    campaign_id: CampaignId::from_uuid(r.get(1)),
                },
            )
            .to_body()
            .unwrap()
        })
        .collect();
    f.bus
        .send_batch(Queue::Delivery.name(), &bodies)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_whole_funnel_runs_with_every_webhook_delivered_twice() {
    let f = fixture(60, |o| o.buy_share = 1.0).await;
    let run = f.p.run(&NoProgress).await.unwrap();
    let sent = outbox(&f.p);
    let before = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    assert!(before.qualified > 0);
    assert_eq!(
        sent.len() as i64,
        before.qualified,
        "one email per qualified lead"
    );
    let to: BTreeSet<String> = sent.iter().map(|m| m.to.join(",")).collect();
    assert_eq!(to.len(), sent.len(), "never two emails to one business");
    for m in &sent {
        // Compliance: RFC 8058 one-click, https + mailto, the postal address, our custom args.
        assert_eq!(
            m.headers["List-Unsubscribe-Post"],
            "List-Unsubscribe=One-Click"
        );
        let lu = m.headers["List-Unsubscribe"].as_str().unwrap();
        assert!(
            lu.contains(&format!("<{}/u/", f.p.gateway_url)) && lu.contains("<mailto:"),
            "{lu}"
        );
        let text = m.text.as_deref().unwrap();
        assert!(
            text.contains("1 Market St"),
            "postal address in the footer: {text}"
        );
        for k in [
            "tenant_id",
            "email_id",
            "business_id",
            "campaign_id",
            "variant",
        ] {
            assert!(
                m.custom_args.get(k).is_some(),
                "custom_args.{k}: {:?}",
                m.custom_args
            );
        }
        assert_eq!(m.attachments, 1, "the preview PDF is attached");
    }
    // Each email row is sent with SendGrid's message id.
    assert_eq!(
        one(&f.db, "SELECT count(*) FROM emails WHERE send_state = 'sent' AND sg_message_id IS NOT NULL AND sent_at IS NOT NULL").await,
        before.qualified
    );

    let activity = f.p.simulate_recipients(&NoProgress).await.unwrap();
    let s = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    // SendGrid posted every event twice; each is stored once and linked to its email.
    let stored = one(&f.db, "SELECT count(*) FROM email_events").await;
    assert_eq!(stored as u64, activity.sendgrid_events);
    assert_eq!(
        one(
            &f.db,
            "SELECT count(*) FROM email_events WHERE email_id IS NULL"
        )
        .await,
        0
    );
    assert!(s.delivered > 0 && s.opened > 0 && s.clicked > 0, "{s:?}");
    // Everyone who clicked bought (buy_share 1.0); Stripe's completion came twice; one purchase
    // and one fulfilment email each.
    assert_eq!(activity.checkouts as i64, s.clicked);
    assert_eq!(s.purchased, s.clicked, "{s:?}");
    assert_eq!(s.fulfilled, s.purchased);
    assert_eq!(s.revenue_cents, s.purchased * 4900);
    assert_eq!(
        one(&f.db, "SELECT count(*) FROM stripe_events").await,
        s.purchased
    );
    let fulfilment: Vec<_> = outbox(&f.p)
        .into_iter()
        .filter(|m| m.custom_args.get("purchase_id").is_some())
        .collect();
    assert_eq!(fulfilment.len() as i64, s.purchased);
    // The fulfilment email's link downloads the full report (five pages).
    let client = http();
    for m in &fulfilment {
        let text = m.text.as_deref().unwrap();
        let link = text
            .split_whitespace()
            .find(|w| w.contains("/d/"))
            .unwrap()
            .to_owned();
        let r = client.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/pdf");
        let pdf = r.bytes().await.unwrap();
        assert_eq!(
            lopdf::Document::load_mem(&pdf).unwrap().get_pages().len(),
            5
        );
    }
    // Bounces, drops and unsubscribes became suppressions.
    let suppressed = one(&f.db, "SELECT count(*) FROM suppressions").await;
    assert_eq!(suppressed, s.bounced + s.unsubscribed, "{s:?}");

    // Running everything again sends nothing new: every message is redelivered.
    let n = outbox(&f.p).len();
    let rows =
        f.db.admin()
            .await
            .query(
                "SELECT business_id, campaign_id FROM emails WHERE kind = 'outreach'",
                &[],
            )
            .await
            .unwrap();
    enqueue_delivery(&f, run, &rows, "again").await;
    f.p.settle().await.unwrap();
    assert_eq!(outbox(&f.p).len(), n, "no second email to anyone");
}

/// Posts a signed Stripe event to the local gateway's webhook, as Stripe would.
async fn post_stripe_event(f: &Fixture, id: &str, kind: &str, object: serde_json::Value) -> u16 {
    let body = serde_json::json!({
        "id": id, "object": "event", "type": kind, "livemode": false,
        "created": chrono::Utc::now().timestamp(), "data": { "object": object }
    })
    .to_string();
    let signature = shared::webhook::stripe::sign(
        &f.p.sim.state.cfg.stripe_webhook_secret,
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    )
    .unwrap();
    http()
        .post(format!("{}/webhooks/stripe", f.p.gateway_url))
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_disputed_purchase_cannot_be_downloaded_while_the_dispute_is_open_or_lost() {
    let f = fixture(60, |o| o.buy_share = 1.0).await;
    f.p.run(&NoProgress).await.unwrap();
    f.p.simulate_recipients(&NoProgress).await.unwrap();
    let m = outbox(&f.p)
        .into_iter()
        .find(|m| m.custom_args.get("purchase_id").is_some())
        .expect("a fulfilment email");
    let purchase = m.custom_args["purchase_id"].as_str().unwrap().to_owned();
    let link = m
        .text
        .as_deref()
        .unwrap()
        .split_whitespace()
        .find(|w| w.contains("/d/"))
        .unwrap()
        .to_owned();
    let intent: String =
        f.db.admin()
            .await
            .query_one(
                "SELECT stripe_payment_intent FROM purchases WHERE id = $1::text::uuid",
                &[&purchase],
            )
            .await
            .unwrap()
            .get(0);
    let c = http();
    assert_eq!(status(&c, link.clone()).await, 200);
    // A charge's dispute names the payment intent, not our metadata.
    let dispute = |status: &str| {
        serde_json::json!({ "id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": intent,
                            "amount": 4900, "currency": "usd", "reason": "fraudulent", "status": status })
    };
    let opened = dispute("needs_response");
    assert_eq!(
        post_stripe_event(&f, "evt_dp_open", "charge.dispute.created", opened).await,
        200
    );
    assert_eq!(status(&c, link.clone()).await, 410, "open dispute");
    assert_eq!(
        post_stripe_event(&f, "evt_dp_won", "charge.dispute.closed", dispute("won")).await,
        200
    );
    assert_eq!(
        status(&c, link.clone()).await,
        200,
        "won: the buyer keeps it"
    );
    assert_eq!(
        post_stripe_event(
            &f,
            "evt_dp_2",
            "charge.dispute.created",
            dispute("needs_response")
        )
        .await,
        200
    );
    assert_eq!(
        post_stripe_event(&f, "evt_dp_lost", "charge.dispute.closed", dispute("lost")).await,
        200
    );
    assert_eq!(status(&c, link.clone()).await, 410, "lost");
    let row =
        f.db.admin()
            .await
            .query_one(
                "SELECT dispute_status, dispute_id FROM purchases WHERE id = $1::text::uuid",
                &[&purchase],
            )
            .await
            .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("lost".into(), "dp_1".into())
    );
}

#[tokio::test]
async fn a_suppressed_address_is_never_sent_to_and_one_click_unsubscribe_works() {
    let f = fixture(60, |_| {}).await;
    let run = f.p.run(&NoProgress).await.unwrap();
    let first = outbox(&f.p);
    let victim = first[0].clone();
    let unsub = unsubscribe_url(&victim);
    let client = http();

    // GET only shows the page: link scanners unsubscribe no one.
    let page = client.get(&unsub).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("method=\"post\""));
    assert_eq!(one(&f.db, "SELECT count(*) FROM suppressions").await, 0);
    // The one-click POST (RFC 8058) needs no session; twice is the same as once.
    for _ in 0..2 {
        let r = client
            .post(&unsub)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let to = victim.to[0].to_lowercase();
    let admin = f.db.admin().await;
    let row = admin
        .query_one(
            "SELECT reason, source FROM suppressions WHERE kind = 'email' AND value = $1",
            &[&to],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("unsubscribe".into(), "one-click".into())
    );
    assert_eq!(
        one(
            &f.db,
            "SELECT count(*) FROM emails WHERE unsubscribed_at IS NOT NULL"
        )
        .await,
        1
    );
    // A tampered token changes nothing and says so.
    let bad = format!("{}x", unsub);
    assert_eq!(client.post(&bad).send().await.unwrap().status(), 404);

    // A second campaign over the same businesses: the suppressed address gets nothing, the
    // domain-suppressed one neither.
    let domain_victim = first[1].to[0].rsplit('@').next().unwrap().to_lowercase();
    admin
        .execute(
            "INSERT INTO suppressions (tenant_id, kind, value, reason) VALUES ($1, 'domain', $2, 'manual')",
            &[&f.p.tenant.as_uuid(), &domain_victim],
        )
        .await
        .unwrap();
    admin
        .execute("UPDATE emails SET send_state = 'queued', sg_message_id = NULL WHERE to_email IN ($1, $2)", &[&victim.to[0], &first[1].to[0]])
        .await
        .unwrap();
    let rows = admin
        .query(
            "SELECT business_id, campaign_id FROM emails WHERE send_state = 'queued'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    enqueue_delivery(&f, run, &rows, "retry").await;
    f.p.settle().await.unwrap();
    assert_eq!(
        outbox(&f.p).len(),
        first.len(),
        "nothing sent to suppressed addresses"
    );
    assert_eq!(
        one(
            &f.db,
            "SELECT count(*) FROM emails WHERE send_state = 'failed' AND last_error = 'suppressed'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn the_daily_cap_and_warm_up_hold_sends_and_the_backlog_is_released_later() {
    // Quota 60 but the warm-up allows 3 a day at first; everything else waits `queued`.
    let f = fixture(60, |o| o.delivery.warmup = vec![3, 3, 3]).await;
    let admin = f.db.admin().await;
    let run = f.p.run(&NoProgress).await.unwrap();
    let s = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    assert!(s.qualified > 3, "{s:?}");
    assert_eq!((s.sent, s.deferred), (3, s.qualified - 3), "{s:?}");
    assert_eq!(outbox(&f.p).len(), 3);
    // The campaign's counter and its sending domain's, both.
    assert_eq!(
        one(
            &f.db,
            "SELECT sum(sent)::int8 FROM send_counters GROUP BY day"
        )
        .await,
        2 * 3
    );

    // The next morning's release: the held emails go back on the queue; the day's counter is
    // still full (the real clock has not moved), so they wait again — the cap holds across
    // invocations.
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today + chrono::Duration::days(1);
    let released = delivery::release_backlog(&f.p.deps, f.bus.as_ref(), tomorrow)
        .await
        .unwrap();
    assert_eq!(released.messages as i64, s.qualified - 3);
    f.p.settle().await.unwrap();
    assert_eq!(outbox(&f.p).len(), 3);
    // Released twice the same morning: the same keys, nothing new.
    delivery::release_backlog(&f.p.deps, f.bus.as_ref(), tomorrow)
        .await
        .unwrap();
    f.p.settle().await.unwrap();
    assert_eq!(outbox(&f.p).len(), 3);
    // A new day (the counter moved to yesterday) lets the next three out.
    admin
        .execute("UPDATE send_counters SET day = day - 1", &[])
        .await
        .unwrap();
    let again = delivery::release_backlog(
        &f.p.deps,
        f.bus.as_ref(),
        tomorrow + chrono::Duration::days(1),
    )
    .await
    .unwrap();
    assert_eq!(again.messages as i64, s.qualified - 3);
    f.p.settle().await.unwrap();
    let sent_now = one(
        &f.db,
        "SELECT count(*) FROM emails WHERE send_state = 'sent'",
    )
    .await;
    assert_eq!(sent_now, 6.min(s.qualified));
    assert_eq!(outbox(&f.p).len() as i64, sent_now);

    // A pause holds everything.
    admin
        .execute(
            "INSERT INTO send_pauses (tenant_id, scope, reason) VALUES ($1, 'all', 'bounce rate')",
            &[&f.p.tenant.as_uuid()],
        )
        .await
        .unwrap();
    admin
        .execute("UPDATE send_counters SET day = day - 1", &[])
        .await
        .unwrap();
    let paused = delivery::release_backlog(
        &f.p.deps,
        f.bus.as_ref(),
        tomorrow + chrono::Duration::days(2),
    )
    .await
    .unwrap();
    assert!(paused.messages > 0);
    f.p.settle().await.unwrap();
    assert_eq!(
        one(
            &f.db,
            "SELECT count(*) FROM emails WHERE send_state = 'sent'"
        )
        .await,
        sent_now
    );
}

#[tokio::test]
async fn the_backlog_goes_out_oldest_first_before_a_later_nights_emails() {
    // Three a day: night 1 leaves a backlog; night 2 (a new day) writes more.
    let f = fixture(60, |o| o.delivery.warmup = vec![3, 3, 3, 3]).await;
    let admin = f.db.admin().await;
    let first = f.p.run(&NoProgress).await.unwrap();
    let s1 = summarize(f.p.pool(), f.p.tenant, first).await.unwrap();
    assert!(
        s1.qualified > 6,
        "a backlog of more than a day's cap: {s1:?}"
    );
    admin
        .execute("UPDATE send_counters SET day = day - 1", &[])
        .await
        .unwrap();
    let second = f.p.run(&NoProgress).await.unwrap();
    let s2 = summarize(f.p.pool(), f.p.tenant, second).await.unwrap();
    assert!(s2.qualified > 0, "{s2:?}");
    // Night 2's emails wait behind night 1's, though the new day's counter had room.
    assert_eq!(s2.sent, 0, "{s2:?}");
    // The day's release sends the oldest it has room for.
    let today = chrono::Utc::now().date_naive();
    delivery::release_backlog(&f.p.deps, f.bus.as_ref(), today + chrono::Duration::days(1))
        .await
        .unwrap();
    f.p.settle().await.unwrap();
    let sent_runs: Vec<uuid::Uuid> = admin
        .query(
            "SELECT run_id FROM emails WHERE send_state = 'sent' ORDER BY sent_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sent_runs.len(), 6);
    assert!(
        sent_runs.iter().all(|r| *r == first.as_uuid()),
        "only night 1's emails went out: {sent_runs:?}"
    );
    let order_kept: bool = admin
        .query_one(
            "SELECT (SELECT max(created_at) FROM emails WHERE send_state = 'sent')
                 <= (SELECT min(created_at) FROM emails WHERE send_state = 'queued')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        order_kept,
        "every email sent was written before every one waiting"
    );
}

#[tokio::test]
async fn campaigns_sharing_a_sending_domain_share_its_daily_cap() {
    let f = fixture(60, |o| {
        o.delivery.warmup = Vec::new();
        o.delivery.domain_daily_cap = 5;
    })
    .await;
    // A second campaign elsewhere, from the same agency domain (another mailbox on it).
    let mut other = CampaignFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    )))
    .unwrap();
    other.name = "Oakland restaurants".into();
    other.zip_codes = vec!["94612".into()];
    other.sender.email = "bob@agency.example.com".into();
    let mut pool = f.p.pool().clone();
    other.upsert(&mut pool, f.p.tenant).await.unwrap();
    let run = f.p.run(&NoProgress).await.unwrap();
    let s = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    assert!(s.qualified > 5, "{s:?}");
    assert_eq!(s.sent, 5, "the domain's cap, not 60 per campaign: {s:?}");
    let held: i64 = one(
        &f.db,
        "SELECT count(*) FROM run_event_logs WHERE stage = 'delivery' AND event = 'deferred:domain_cap'",
    )
    .await;
    assert_eq!(held, s.qualified - 5);
    let campaigns_sent = one(
        &f.db,
        "SELECT count(DISTINCT campaign_id) FROM emails WHERE send_state = 'sent'",
    )
    .await;
    assert!(campaigns_sent >= 1);
    // `leadfactory sending status` shows both limits.
    let mut c = f.p.pool().get().await.unwrap();
    let tx = shared::db::begin_tenant(&mut c, f.p.tenant).await.unwrap();
    let settings = delivery::Settings {
        warmup: Vec::new(),
        domain_daily_cap: 5,
        ..Default::default()
    };
    let days = delivery::counter_days(&tx, &settings, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    let domain = days
        .iter()
        .find(|d| d.scope == "domain:agency.example.com")
        .unwrap();
    assert_eq!(
        (domain.cap, domain.sent, domain.waiting),
        (5, 5, s.qualified - 5)
    );
    let per_campaign: Vec<_> = days
        .iter()
        .filter(|d| d.scope.starts_with("campaign:"))
        .collect();
    assert_eq!(per_campaign.len(), 2);
    assert!(per_campaign.iter().all(|d| d.cap == 60));
    assert_eq!(per_campaign.iter().map(|d| d.sent).sum::<i32>(), 5);
}

#[tokio::test]
async fn a_send_whose_answer_was_lost_is_parked_and_never_resent() {
    // SendGrid's first answer never comes (a gateway 504 after the request went out); its 5xx
    // refusals later are retried.
    let f = fixture(60, |o| {
        o.sim.faults.insert(
            "sendgrid".into(),
            sim::Fault {
                script: vec![sim::Outcome::Timeout],
                timeout_ms: 20,
                ..sim::Fault::default()
            },
        );
    })
    .await;
    let run = f.p.run(&NoProgress).await.unwrap();
    let s = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    assert_eq!(
        one(
            &f.db,
            "SELECT count(*) FROM emails WHERE send_state = 'unknown'"
        )
        .await,
        1
    );
    assert_eq!(s.sent, s.qualified - 1, "{s:?}");
    let requests = f.p.sim.state.requests.lock().unwrap().clone();
    assert_eq!(
        requests["sendgrid"] as i64, s.qualified,
        "the lost one was not retried: {requests:?}"
    );
    // Redelivering its message changes nothing.
    let row =
        f.db.admin()
            .await
            .query_one(
                "SELECT business_id, campaign_id FROM emails WHERE send_state = 'unknown'",
                &[],
            )
            .await
            .unwrap();
    enqueue_delivery(&f, run, &[row], "redo").await;
    f.p.settle().await.unwrap();
    assert_eq!(
        f.p.sim.state.requests.lock().unwrap()["sendgrid"] as i64,
        s.qualified
    );
}

#[tokio::test]
async fn sendgrid_refusals_put_the_email_back_and_the_retry_sends_it_once() {
    // Three refusals SendGrid answered (401: not retried in the call): three claims released,
    // their messages redelivered and sent.
    let f = fixture(60, |o| {
        o.sim.faults.insert(
            "sendgrid".into(),
            sim::Fault {
                script: vec![sim::Outcome::Unauthorized; 3],
                ..sim::Fault::default()
            },
        );
    })
    .await;
    let run = f.p.run(&NoProgress).await.unwrap();
    let s = summarize(f.p.pool(), f.p.tenant, run).await.unwrap();
    assert_eq!(s.sent, s.qualified, "{s:?}");
    let to: BTreeSet<String> = outbox(&f.p).iter().map(|m| m.to.join(",")).collect();
    assert_eq!(
        (outbox(&f.p).len() as i64, to.len() as i64),
        (s.qualified, s.qualified)
    );
    assert_eq!(
        one(&f.db, "SELECT sum(attempts)::int8 FROM emails").await,
        s.qualified + 3,
        "three claims released and claimed again"
    );
    assert_eq!(
        one(
            &f.db,
            "SELECT sum(sent)::int8 FROM send_counters GROUP BY day"
        )
        .await,
        2 * s.qualified,
        "a released claim is not counted twice (in the campaign's counter or the domain's)"
    );
}

#[tokio::test]
async fn the_storefront_shows_sells_and_refuses() {
    let f = fixture(60, |_| {}).await;
    f.p.run(&NoProgress).await.unwrap();
    let admin = f.db.admin().await;
    let (token, name): (String, String) = {
        let r = admin
            .query_one("SELECT r.token, b.name FROM reports r JOIN businesses b ON b.id = r.business_id ORDER BY b.name LIMIT 1", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    let c = http();
    let g = &f.p.gateway_url;
    let page = c.get(format!("{g}/r/{token}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&name.replace('&', "&amp;").replace('\'', "&#39;")),
        "{html}"
    );
    assert!(html.contains("$49.00") && html.contains(&format!("/r/{token}/buy")));
    let pdf = c
        .get(format!("{g}/r/{token}/preview.pdf"))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert_eq!(
        lopdf::Document::load_mem(&pdf.bytes().await.unwrap())
            .unwrap()
            .get_pages()
            .len(),
        2
    );

    // Buying twice (a double click) is one Stripe session and one pending purchase.
    let mut locations = BTreeSet::new();
    for _ in 0..2 {
        let r = c.post(format!("{g}/r/{token}/buy")).send().await.unwrap();
        assert_eq!(r.status(), 303);
        locations.insert(r.headers()["location"].to_str().unwrap().to_owned());
    }
    assert_eq!(locations.len(), 1);
    let row = admin
        .query_one(
            "SELECT status, amount_cents, stripe_session_id FROM purchases",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("pending".into(), 4900)
    );
    // Stripe got our metadata, and the PaymentIntent's for refunds.
    let session: String = row.get(2);
    let stored = f.p.sim.state.sessions.lock().unwrap()[&session].clone();
    let meta: BTreeMap<String, String> =
        serde_json::from_value(stored.json["metadata"].clone()).unwrap();
    for k in [
        "tenant_id",
        "report_id",
        "business_id",
        "campaign_id",
        "email_id",
    ] {
        assert!(meta.contains_key(k), "{meta:?}");
    }
    assert!(
        stored
            .fingerprint
            .contains("payment_intent_data[metadata][tenant_id]")
    );

    // Refusals: 404 for tokens that are not ours, 405 for the wrong method, nothing written.
    for (method, path, status) in [
        ("GET", "/r/short".to_owned(), 404),
        ("GET", format!("/r/{}", "A".repeat(40)), 404),
        ("GET", format!("/r/{token}/buy"), 405),
        ("DELETE", format!("/r/{token}"), 405),
        ("GET", "/u/not-a-token".to_owned(), 404),
        ("GET", "/d/not-a-token".to_owned(), 404),
        ("GET", "/nowhere".to_owned(), 404),
    ] {
        let r = c
            .request(method.parse().unwrap(), format!("{g}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
    }
    let oversized = c
        .post(format!("{g}/u/{}", "x".repeat(10)))
        .body("x".repeat(storefront::MAX_BODY_BYTES + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(one(&f.db, "SELECT count(*) FROM purchases").await, 1);
    assert_eq!(one(&f.db, "SELECT count(*) FROM suppressions").await, 0);

    // A download link that expired, or for a refunded purchase, answers 410.
    let purchase: uuid::Uuid = admin
        .query_one("SELECT id FROM purchases", &[])
        .await
        .unwrap()
        .get(0);
    let expired =
        f.p.links
            .sign(shared::links::Purpose::Download, f.p.tenant, purchase, 1);
    assert_eq!(status(&c, format!("{g}/d/{expired}")).await, 410);
    let valid = f.p.links.sign(
        shared::links::Purpose::Download,
        f.p.tenant,
        purchase,
        i64::MAX,
    );
    assert_eq!(
        status(&c, format!("{g}/d/{valid}")).await,
        410,
        "still pending"
    );
    admin
        .execute("UPDATE purchases SET status = 'paid'", &[])
        .await
        .unwrap();
    assert_eq!(status(&c, format!("{g}/d/{valid}")).await, 200);
    admin
        .execute(
            "UPDATE purchases SET status = 'refunded', refunded_cents = amount_cents",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(status(&c, format!("{g}/d/{valid}")).await, 410);
    // An unsubscribe token cannot download, nor a download token unsubscribe.
    let unsub_as_download = f.p.links.sign(
        shared::links::Purpose::Unsubscribe,
        f.p.tenant,
        purchase,
        i64::MAX,
    );
    assert_eq!(status(&c, format!("{g}/d/{unsub_as_download}")).await, 404);
}

/// A batch of one forged message, `payload` under `tenant` naming `run`.
fn forged<P: serde::Serialize>(
    tenant: uuid::Uuid,
    run: Option<uuid::Uuid>,
    tag: &str,
    payload: P,
) -> Vec<shared::pipeline::Incoming> {
    vec![shared::pipeline::Incoming {
        id: tag.to_owned(),
        receive_count: 1,
        body: Envelope::new(
            shared::domain::TenantId::from_uuid(tenant),
            run.map(shared::domain::RunId::from_uuid),
            tag,
            payload,
        )
        .to_body()
        .unwrap(),
    }]
}

#[tokio::test]
async fn a_message_that_cannot_prove_its_tenant_fails_in_every_stage_and_writes_nothing_under_it() {
    use shared::pipeline::messages::{Fulfil, SourcingJob};
    use shared::pipeline::{BatchOutcome, process_batch};
    let f = fixture(60, |o| o.delivery.warmup = vec![1]).await;
    f.p.run(&NoProgress).await.unwrap();
    let admin = f.db.admin().await;
    // Tenant A's real run, campaign and a business whose email still waits (the cap held it):
    // what a forged message names.
    let row = admin
        .query_one(
            "SELECT s.run_id, e.business_id, e.campaign_id FROM emails e JOIN scores s USING (business_id)
             WHERE e.send_state = 'queued' ORDER BY e.business_id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (run, business, campaign): (uuid::Uuid, uuid::Uuid, uuid::Uuid) =
        (row.get(0), row.get(1), row.get(2));
    let lead = LeadRef {
        business_id: BusinessId::from_uuid(business),
        campaign_id: CampaignId::from_uuid(campaign),
    };
    // B exists and holds nothing; the phantom is no tenant at all.
    let b = uuid::Uuid::new_v4();
    admin
        .execute("INSERT INTO tenants (id, name) VALUES ($1, 'B')", &[&b])
        .await
        .unwrap();
    let phantom = uuid::Uuid::new_v4();
    let sent_before = outbox(&f.p).len();
    let calls = || -> u64 { sim::state::lock(&f.p.sim.state.requests).values().sum() };
    let calls_before = calls();
    let s = &f.p.stages;
    let d = &f.p.deps;
    for tenant in [b, phantom] {
        for (name, run) in [("with A's run", Some(run)), ("with no run", None)] {
            let job = SourcingJob {
                campaign_id: CampaignId::from_uuid(campaign),
                location: "95112".into(),
                category: "restaurants".into(),
                offset: 0,
                limit: 50,
            };
            let fulfil = Fulfil {
                purchase_id: uuid::Uuid::new_v4(),
                stripe_session_id: "cs_forged".into(),
                request_key: String::new(),
            };
            let outcomes: Vec<(&str, BatchOutcome)> = vec![
                (
                    "sourcing",
                    process_batch(&s.sourcing, d, forged(tenant, run, "m", job)).await,
                ),
                (
                    "enrichment",
                    process_batch(&s.enrichment, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "assessment",
                    process_batch(&s.assessment, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "scoring",
                    process_batch(&s.scoring, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "reports",
                    process_batch(&s.reports, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "personalization",
                    process_batch(&s.personalization, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "delivery",
                    process_batch(&s.delivery, d, forged(tenant, run, "m", &lead)).await,
                ),
                (
                    "fulfilment",
                    process_batch(&s.fulfilment, d, forged(tenant, run, "m", fulfil)).await,
                ),
            ];
            for (stage, out) in outcomes {
                assert_eq!(out.failed, vec!["m".to_owned()], "{stage} {name}: {out:?}");
                assert_eq!((out.processed, out.sent), (0, 0), "{stage} {name}: {out:?}");
            }
        }
    }
    // Nothing under either tenant, in any table that has one.
    let tables: Vec<String> = admin
        .query(
            "SELECT table_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND column_name = 'tenant_id'
               AND table_name IN (SELECT tablename FROM pg_tables WHERE schemaname = 'public')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    for t in &tables {
        let n: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE tenant_id = ANY($1)"),
                &[&vec![b, phantom]],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t} holds rows of a tenant no message proved");
    }
    // No vendor was paid and nothing was sent for them.
    assert_eq!(calls(), calls_before, "a vendor was called");
    assert_eq!(outbox(&f.p).len(), sent_before, "nothing sent");
}
