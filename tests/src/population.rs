//! A production-sized database, generated set-based and reproducibly: what an agency holds
//! after a few months of nightly runs, over twenty tenants of unequal size.
//!
//! Row `g` of the generated range is one business and everything that hangs off it: its
//! enrichment, assessment, score and campaign hand-on, its outreach email and that email's
//! SendGrid events; every fifth business has a report, every tenth a paid purchase (with its
//! Stripe event), every fiftieth a suppressed address. Ids are derived from `g` and the seed,
//! so the same range always holds the same rows, and a database grows by generating the next
//! range ([`populate`] from the previous size to the next): the benchmarks measure at 10k,
//! 100k and 1M businesses in one database that way.
//!
//! Tenant `0` (the caller's, e.g. the local run's tenant) holds about a fifth of the rows, the
//! smallest of the other nineteen about 2.5 %. The fleet sources [`Shape::per_day`] businesses a day,
//! row 0 the newest: a bigger database holds a longer history, not busier days, so a day's
//! work (a night, a roll-up, a webhook batch) is the same rows at every size and what a
//! benchmark sees growing is the tables. Rows are as retention leaves them at steady state:
//! webhook payloads older than 90 days are stripped, email bodies older than 180 purged.
//! Generated businesses use `+44 20` phone numbers and `gen-*.example` domains,
//! which the vendor simulator never hands out, so a run over the populated database finds no
//! false duplicates in them.

use tokio_postgres::Client;
use uuid::Uuid;

/// How many of each row one generated business brings, and how fast the history grows.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// SendGrid events per email (production: 10).
    pub events_per_email: i64,
    /// Businesses the fleet sources a day (all tenants; default [`PER_DAY`]).
    pub per_day: i64,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            events_per_email: 10,
            per_day: PER_DAY,
        }
    }
}

/// The generated tenants: `main` first, then nineteen more derived from `seed`.
pub fn tenants(main: Uuid, seed: &str) -> Vec<Uuid> {
    let mut ids = vec![main];
    ids.extend((1..20u32).map(|k| {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{seed}-tenant-{k}"));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }));
    ids
}

/// The tenant of row `g`: the square of an equidistributed fraction, so tenant 0 draws
/// √(1/20) ≈ 22 % of the rows and tenant 19 about 2.5 %.
const TENANT: &str = "($1::uuid[])[1 + least(19, floor(20 * power(g * 0.6180339887498949 - floor(g * 0.6180339887498949), 2)))::int]";
/// Businesses the fleet sources per day by default (all tenants).
pub const PER_DAY: i64 = 5_000;
/// The age of row `g`: its day (row 0 the newest; `per_day` rows a day), and a time of day.
fn age(per_day: i64) -> String {
    format!("((g / {per_day}) * interval '1 day' + ((g * 104729) % 86400) * interval '1 second')")
}

/// Rows of each kind generated per statement: big enough to be set-based, small enough that
/// one statement's sort for the indexes stays in memory.
const CHUNK: i64 = 100_000;

/// The tenants, their campaigns and a nightly run for each of `days` days; idempotent.
async fn scaffold(
    admin: &Client,
    tenants: &[Uuid],
    days: i64,
) -> Result<(), tokio_postgres::Error> {
    admin
        .execute(
            "INSERT INTO tenants (id, name)
             SELECT id, 'Generated agency ' || k FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, k)
             ON CONFLICT (id) DO NOTHING",
            &[&tenants],
        )
        .await?;
    admin
        .execute(
            "INSERT INTO campaigns (id, tenant_id, name, vertical, categories, zip_codes, daily_quota,
                                    sender_email, sender_name, postal_address, status)
             SELECT md5('campaign-' || id)::uuid, id, 'Generated campaign', 'restaurants', '{restaurants}',
                    '{10001}', 500, 'hello@agency.example', 'Generated agency',
                    '1 Main St, New York, NY 10001', 'paused'
             FROM unnest($1::uuid[]) AS t(id)
             ON CONFLICT DO NOTHING",
            &[&tenants],
        )
        .await?;
    admin
        .execute(
            "INSERT INTO runs (id, tenant_id, kind, status, run_date, started_at, finished_at)
             SELECT md5('run-' || t.id || '-' || d)::uuid, t.id, 'nightly', 'succeeded',
                    current_date - d::int, now() - d * interval '1 day', now() - d * interval '1 day' + interval '20 minutes'
             FROM unnest($1::uuid[]) AS t(id), generate_series(1, $2::int8) d
             ON CONFLICT DO NOTHING",
            &[&tenants, &days],
        )
        .await?;
    Ok(())
}

/// The statements that generate rows `[$2, $3)` of each table, in foreign-key order. `$1` is
/// the tenants, `$4` the seed, `$5` the events per email.
fn statements(per_day: i64) -> Vec<String> {
    let age = age(per_day);
    let run = format!("md5('run-' || {TENANT} || '-' || (1 + g / {per_day}))::uuid");
    let campaign = format!("md5('campaign-' || {TENANT})::uuid");
    let id = |kind: &str| format!("md5('{kind}-' || $4::text || '-' || g)::uuid");
    let (business, assessment, score, report, email, purchase) = (
        id("business"),
        id("assessment"),
        id("score"),
        id("report"),
        id("email"),
        id("purchase"),
    );
    let series = "FROM generate_series($2::int8, $3::int8 - 1) g";
    vec![
        format!(
            "INSERT INTO businesses (id, tenant_id, campaign_id, yelp_id, name, name_norm, address_norm, address1,
                                     city, state, zip, phone_e164, website_url, website_domain, email,
                                     latitude, longitude, categories, rating, review_count, first_run_id,
                                     last_seen_at, created_at, updated_at)
             SELECT {business}, {TENANT}, {campaign}, 'gen-' || $4::text || '-' || g, 'Generated Bistro ' || g,
                    'generated bistro ' || g, g || ' market st new york ny', g || ' Market St', 'New York', 'NY',
                    lpad((10001 + g % 90)::text, 5, '0'), '+4420' || lpad((g % 100000000)::text, 8, '0'),
                    'https://gen-' || g || '.example/', 'gen-' || g || '.example', 'owner@gen-' || g || '.example',
                    40.7 + (g % 1000) / 10000.0, -74.0 + (g % 997) / 10000.0, '{{restaurants}}',
                    (g % 50) / 10.0, g % 900, {run}, now() - {age}, now() - {age}, now() - {age}
             {series}"
        ),
        format!(
            "INSERT INTO enrichments (business_id, tenant_id, place_id, website_url, phone_e164, rating,
                                      user_rating_count, business_status, match_confidence, matched, enriched_at)
             SELECT {business}, {TENANT}, 'gen-place-' || g, 'https://gen-' || g || '.example/',
                    '+4420' || lpad((g % 100000000)::text, 8, '0'), (g % 50) / 10.0, g % 900, 'OPERATIONAL',
                    0.9, true, now() - {age}
             {series}"
        ),
        format!(
            "INSERT INTO campaign_leads (tenant_id, business_id, campaign_id, run_id, handed_at)
             SELECT {TENANT}, {business}, {campaign}, {run}, now() - {age} {series}"
        ),
        format!(
            "INSERT INTO assessments (id, tenant_id, business_id, run_id, url, final_url, http_status, https,
                                      has_viewport, title, cms, copyright_year, psi_performance, psi_seo,
                                      lcp_ms, cls, assessed_at)
             SELECT {assessment}, {TENANT}, {business}, {run}, 'https://gen-' || g || '.example/',
                    'https://gen-' || g || '.example/', 200, g % 3 <> 0, g % 4 <> 0, 'Generated Bistro ' || g,
                    'wordpress', 2015 + g % 10, g % 101, (g * 7) % 101, 1000 + g % 6000, (g % 50) / 100.0,
                    now() - {age}
             {series}"
        ),
        // Every homepage published its owner's address (the one outreach went to).
        format!(
            "INSERT INTO assessment_contacts (tenant_id, address, assessment_id)
             SELECT {TENANT}, 'owner@gen-' || g || '.example', {assessment} {series}"
        ),
        format!(
            "INSERT INTO scores (id, tenant_id, business_id, run_id, assessment_id, score, tier, rules_version,
                                 breakdown, qualified, scored_at)
             SELECT {score}, {TENANT}, {business}, {run}, {assessment}, s, t, 'v1', '{{}}', t IN ('A', 'B'),
                    now() - {age}
             FROM (SELECT g, (g * 37) % 101 AS s,
                          CASE WHEN (g * 37) % 101 >= 75 THEN 'A' WHEN (g * 37) % 101 >= 50 THEN 'B'
                               WHEN (g * 37) % 101 >= 25 THEN 'C' ELSE 'D' END AS t
                   FROM generate_series($2::int8, $3::int8 - 1) g) x"
        ),
        format!(
            "INSERT INTO reports (id, tenant_id, business_id, run_id, score_id, token, preview_key, full_key,
                                  pages, bytes, price_cents, created_at)
             SELECT {report}, {TENANT}, {business}, {run}, {score},
                    md5('token-' || $4::text || g) || md5('token2-' || $4::text || g),
                    'reports/gen/' || g || '/preview.pdf', 'reports/gen/' || g || '/full.pdf', 6, 120000, 4900,
                    now() - {age}
             {series} WHERE g % 5 = 0"
        ),
        format!(
            "INSERT INTO emails (id, tenant_id, campaign_id, business_id, run_id, report_id, to_email, subject,
                                 body_text, send_state, delivery_status, sg_message_id, attempts, generated_by,
                                 created_at, sent_at, delivered_at, opened_at, clicked_at, body_purged_at)
             SELECT {email}, {TENANT}, {campaign}, {business}, {run}, CASE WHEN g % 5 = 0 THEN {report} END,
                    'owner@gen-' || g || '.example', 'A quick look at gen-' || g || '.example',
                    CASE WHEN {age} <= interval '180 days' THEN 'Hello, we looked at your website.' END, 'sent',
                    CASE WHEN g % 40 = 0 THEN 'bounced' ELSE 'delivered' END, 'gen-msg-' || $4::text || '-' || g,
                    1, 'llm', now() - {age}, now() - {age}, now() - {age} + interval '1 minute',
                    CASE WHEN g % 3 = 0 THEN now() - {age} + interval '1 hour' END,
                    CASE WHEN g % 10 = 0 THEN now() - {age} + interval '2 hours' END,
                    CASE WHEN {age} > interval '180 days' THEN now() END
             {series}"
        ),
        format!(
            "INSERT INTO email_events (tenant_id, email_id, sg_event_id, event, sg_message_id, occurred_at, url, raw,
                                       received_at, recipient)
             SELECT {TENANT}, {email}, 'gen-ev-' || $4::text || '-' || g || '-' || k, ev,
                    'gen-msg-' || $4::text || '-' || g, at, CASE WHEN ev = 'click' THEN 'https://gen.example/r/' || g END,
                    CASE WHEN at < now() - interval '90 days' THEN jsonb_build_object('event', ev, 'stripped', true)
                         ELSE jsonb_build_object('email', 'owner@gen-' || g || '.example', 'event', ev,
                                                 'sg_event_id', 'gen-ev-' || g || '-' || k,
                                                 'timestamp', extract(epoch FROM at)::int8) END,
                    at, CASE WHEN at >= now() - interval '90 days' THEN 'owner@gen-' || g || '.example' END
             FROM (SELECT g, k, (ARRAY['processed','delivered','open','open','click','open','open','click','open','open'])[1 + k % 10] AS ev,
                          now() - {age} + k * interval '10 minutes' AS at
                   FROM generate_series($2::int8, $3::int8 - 1) g, generate_series(0, $5::int8 - 1) k) x"
        ),
        format!(
            "INSERT INTO purchases (id, tenant_id, report_id, business_id, campaign_id, email_id, stripe_session_id,
                                    stripe_payment_intent, status, amount_cents, customer_email, created_at,
                                    paid_at, fulfilled_at)
             SELECT {purchase}, {TENANT}, {report}, {business}, {campaign}, {email},
                    'cs_gen_' || $4::text || '_' || g, 'pi_gen_' || $4::text || '_' || g, 'paid', 4900,
                    'owner@gen-' || g || '.example', now() - {age} + interval '3 hours',
                    now() - {age} + interval '3 hours', now() - {age} + interval '3 hours'
             {series} WHERE g % 10 = 0"
        ),
        format!(
            "INSERT INTO stripe_events (event_id, tenant_id, type, created, payload, received_at, processed_at)
             SELECT 'evt_gen_' || $4::text || '_' || g, {TENANT}, 'checkout.session.completed',
                    now() - {age} + interval '3 hours',
                    jsonb_build_object('id', 'evt_gen_' || g, 'type', 'checkout.session.completed', 'stripped', true),
                    now() - {age} + interval '3 hours', now() - {age} + interval '3 hours'
             {series} WHERE g % 10 = 0"
        ),
        format!(
            "INSERT INTO suppressions (tenant_id, kind, value, reason, source, created_at)
             SELECT {TENANT}, 'email', 'owner@gen-' || g || '.example', 'unsubscribe', 'generated', now() - {age}
             {series} WHERE g % 50 = 0"
        ),
    ]
}

/// Generates businesses `[from, to)` and everything hanging off them for `tenants` (see
/// [`tenants`]), as a superuser (the rows belong to many tenants). `ANALYZE`s afterwards, as
/// autovacuum would have by the time a database holds this much.
pub async fn populate(
    admin: &Client,
    tenants: &[Uuid],
    seed: &str,
    shape: Shape,
    from: i64,
    to: i64,
) -> Result<(), tokio_postgres::Error> {
    let per_day = shape.per_day.max(1);
    scaffold(admin, tenants, to / per_day + 1).await?;
    let statements = statements(per_day);
    let mut at = from;
    while at < to {
        let end = (at + CHUNK).min(to);
        for sql in &statements {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [&tenants, &at, &end, &seed, &shape.events_per_email];
            // A statement takes the parameters up to the highest it names.
            let used = (1..=5)
                .rev()
                .find(|n| sql.contains(&format!("${n}")))
                .unwrap_or(0);
            admin.execute(sql.as_str(), &params[..used]).await?;
        }
        at = end;
    }
    admin.batch_execute("ANALYZE").await
}
