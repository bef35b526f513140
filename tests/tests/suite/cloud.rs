//! The deployed shape, run here: the stand-in account `infra/template.yaml` describes
//! (`leadfactory_cli::cloud`), every function its own process of its real binary. Tests assert
//! only what a deployed system does: nothing here drives a handler, finishes a run or sets state
//! by hand; the operator's steps are the ones docs/deploy.md gives, as the roles it creates.

use std::collections::HashMap;
use std::time::Duration;

use leadfactory_cli::cloud::template::Template;
use leadfactory_cli::cloud::{Cloud, CloudError, CloudOptions};
use leadfactory_cli::local::NoProgress;
use shared::db::begin_tenant;
use shared::domain::{RunId, TenantId};

const LIMIT: Duration = Duration::from_secs(600);

fn template_path() -> std::path::PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml").into()
}

/// A stage name no other test uses (queue and secret names carry it).
fn stage() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn template(stage: &str) -> Template {
    Template::load(
        &template_path(),
        &HashMap::from([("Stage".into(), stage.into())]),
    )
    .expect("the template reads")
}

fn options(stage: &str, clock: f64) -> CloudOptions {
    CloudOptions {
        bin_dir: testkit::built_binaries(),
        log_dir: std::env::temp_dir().join(format!("lf-cloud-{stage}")),
        admin_url: testkit::pg_admin_url(),
        database: format!("lf_cloud_{stage}"),
        fresh_database: true,
        moto_url: Some(testkit::moto_url().to_owned()),
        clock,
        run_schedules: false,
        sim: sim::SimConfig::default(),
        deliver_twice: false,
    }
}

/// The example campaign as the ops API's JSON body.
fn example_campaign() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    ))
    .unwrap();
    serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap()
}

async fn count(cloud: &Cloud, tenant: TenantId, sql: &str, run: RunId) -> i64 {
    let pool = cloud.app_pool().unwrap();
    let mut c = pool.get().await.unwrap();
    let tx = begin_tenant(&mut c, tenant).await.unwrap();
    let n: i64 = tx
        .query_one(sql, &[&run.as_uuid()])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0);
    tx.commit().await.unwrap();
    n
}

/// Mail the simulated SendGrid accepted, by the email id the sender attached.
fn outbox_by_email(cloud: &Cloud) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for m in sim::state::lock(&cloud.sim.state.outbox).iter() {
        let id = m.custom_args["email_id"].as_str().unwrap_or("?").to_owned();
        *by.entry(id).or_default() += 1;
    }
    by
}

async fn finish(cloud: Cloud, stage: &str) {
    let db = cloud.db.name.clone();
    cloud.stop().await;
    leadfactory_cli::cloud::account::drop_database(&testkit::pg_admin_url(), &db).await;
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("lf-cloud-{stage}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nightly_fired_by_its_schedule_is_finished_by_the_functions_themselves() {
    let stage = stage();
    let cloud = Cloud::start(options(&stage, 60.0), template(&stage))
        .await
        .expect("the account stands up");
    // The queues are the template's, attributes included.
    let sourcing = &cloud.queues["SourcingQueue"];
    let attrs = cloud
        .sqs
        .get_queue_attributes()
        .queue_url(&sourcing.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(attrs[&A::VisibilityTimeout], "360");
    let redrive: serde_json::Value = serde_json::from_str(&attrs[&A::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(
        redrive["deadLetterTargetArn"],
        cloud.queues["SourcingDLQ"].arn
    );

    let tenant = cloud.onboard("Agency", &example_campaign()).await.unwrap();
    let run = cloud.nightly(tenant.id).await.unwrap();
    let status = cloud.wait_for_run(tenant.id, run, LIMIT).await.unwrap();
    assert_eq!(status, "succeeded");
    cloud.settle(LIMIT).await.unwrap();

    // Finalised by the functions: stage statistics with percentiles.
    let stats = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM run_stage_stats WHERE run_id = $1 AND p50_ms IS NOT NULL AND p95_ms IS NOT NULL AND p99_ms IS NOT NULL",
        run,
    )
    .await;
    assert!(stats >= 6, "stage statistics for {stats} stages");
    // Every qualified lead emailed exactly once, and SendGrid got each email once.
    let qualified = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM scores WHERE run_id = $1 AND qualified",
        run,
    )
    .await;
    let sent = count(
        &cloud,
        tenant.id,
        "SELECT count(DISTINCT business_id) FROM emails WHERE run_id = $1 AND kind = 'outreach' AND send_state = 'sent'",
        run,
    )
    .await;
    let outreach = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM emails WHERE run_id = $1 AND kind = 'outreach'",
        run,
    )
    .await;
    assert!(qualified > 0);
    assert_eq!(sent, qualified, "every qualified lead emailed");
    assert_eq!(outreach, qualified, "one email per lead");
    assert!(outbox_by_email(&cloud).values().all(|n| *n == 1));

    // SendGrid's and Stripe's events reach the HTTP API's routes and change state.
    let activity = cloud
        .simulate_recipients(tenant.id, 1.0, &NoProgress, LIMIT)
        .await
        .unwrap();
    assert!(activity.sendgrid_events > 0);
    let delivered = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM emails WHERE run_id = $1 AND delivery_status IS NOT NULL",
        run,
    )
    .await;
    assert!(delivered > 0, "SendGrid events changed email states");
    let paid = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM purchases WHERE status = 'paid' AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert_eq!(paid as usize, activity.checkouts, "each checkout paid once");
    assert!(paid > 0);
    let fulfilments = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM emails WHERE kind = 'fulfilment' AND send_state = 'sent' AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert_eq!(fulfilments, paid, "one fulfilment per purchase");
    assert!(outbox_by_email(&cloud).values().all(|n| *n == 1));

    // The run's RunFinished reached the qa-sampler and analytics through the bus's rules: the
    // run is sampled, each consumer acted on the event once, and the qa-sampler's schedule (the
    // safety net) finds nothing left to sample.
    let samples = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM qa_samples WHERE run_id = $1",
        run,
    )
    .await;
    assert!(
        samples > 0,
        "the qa-sampler sampled the run on its RunFinished"
    );
    let consumers = count(
        &cloud,
        tenant.id,
        "SELECT count(DISTINCT consumer) FROM consumed_events c JOIN domain_events d ON d.id = c.event_id
         WHERE d.detail_type = 'RunFinished' AND (d.detail->>'run_id')::uuid = $1",
        run,
    )
    .await;
    assert_eq!(
        consumers, 2,
        "qa-sampler and analytics consumed the run's RunFinished"
    );
    let qa = cloud
        .fire(&cloud.schedule_of("qa-sampler", None).unwrap())
        .await
        .unwrap();
    assert_eq!(qa["samples"].as_u64(), Some(0), "{qa}");
    let waiting = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM domain_events WHERE published_at IS NULL AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert_eq!(waiting, 0, "every domain event published");
    cloud
        .fire(
            &cloud
                .schedule_of("alerts", Some("EveryFiveMinutes"))
                .unwrap(),
        )
        .await
        .unwrap();
    let bad = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM sent_alerts WHERE rule IN ('nightly_watchdog', 'run_stalled') AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert_eq!(bad, 0, "no watchdog or stalled alert");
    // The operator's commands, as the roles docs/deploy.md creates: the owner (no superuser,
    // forced RLS) would export the tenants' tables empty; `leadfactory_backup` exports them.
    let rows_of = |out: &str, table: &str| -> u64 {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {table} line in {out}"))
    };
    let as_owner = tempfile::tempdir().unwrap();
    let owner_dir = as_owner.path().to_string_lossy().into_owned();
    let (ok, out) = leadfactory(
        &cloud,
        &["export", "--to", &owner_dir, "--url", &cloud.db.owner_url],
    );
    assert!(ok, "{out}");
    assert_eq!(
        rows_of(&out, "campaigns"),
        0,
        "the owner reads nothing through forced RLS"
    );
    let as_backup = tempfile::tempdir().unwrap();
    let backup_dir = as_backup.path().to_string_lossy().into_owned();
    let (ok, out) = leadfactory(&cloud, &["export", "--to", &backup_dir]);
    assert!(ok, "{out}");
    assert!(
        rows_of(&out, "campaigns") > 0 && rows_of(&out, "emails") as i64 >= outreach,
        "{out}"
    );
    // The backup function's backup of the night, on its schedule's day: every table, the same
    // bytes as the operator's export, and a restore drill of it into an empty database passes.
    let backup = cloud
        .fire(&cloud.schedule_of("backup", Some("Daily")).unwrap())
        .await
        .unwrap();
    let prefix = backup["prefix"].as_str().unwrap().to_owned();
    assert!(prefix.starts_with("backups/20"), "{backup}");
    let exported: shared::backup::Manifest =
        serde_json::from_slice(&std::fs::read(as_backup.path().join("manifest.json")).unwrap())
            .unwrap();
    let bucket = format!("leadfactory-{stage}-artifactsbucket");
    let from = format!("s3://{bucket}/{prefix}");
    let drill = format!("lf_cloud_{stage}_drill");
    let target =
        leadfactory_cli::cloud::account::provision_database(&testkit::pg_admin_url(), &drill, true)
            .await
            .unwrap();
    let (ok, out) = leadfactory(
        &cloud,
        &[
            "restore",
            "--from",
            &from,
            "--url",
            &target.restore_url,
            "--verify",
        ],
    );
    leadfactory_cli::cloud::account::drop_database(&testkit::pg_admin_url(), &drill).await;
    assert!(ok, "{out}");
    for t in &exported.tables {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t.table.as_str()))
            .unwrap_or_else(|| panic!("the backup lacks {}: {out}", t.table));
        assert!(
            line.contains(&t.sha256) && line.ends_with("verified"),
            "{}: the backup differs from the export: {line}",
            t.table
        );
    }
    assert_eq!(
        backup["tables"].as_u64(),
        Some(exported.tables.len() as u64)
    );
    // The monthly drill on its own schedule: the newest backup restored in place and read back.
    let drill = cloud
        .fire(&cloud.schedule_of("backup", Some("MonthlyDrill")).unwrap())
        .await
        .unwrap();
    assert_eq!(drill["passed"], true, "{drill}");
    assert_eq!(drill["prefix"].as_str(), Some(prefix.as_str()), "{drill}");
    assert_eq!(drill["tables"], backup["tables"], "{drill}");
    // The vendor kill switch as the operator throws it: for every tenant, as the schema owner
    // (forced RLS lets the operators' roles through); `status` (as leadfactory_backup) shows it.
    let (ok, out) = leadfactory(
        &cloud,
        &["vendor", "pause", "yelp", "--reason", "quota drill"],
    );
    assert!(ok && out.contains("yelp paused for every tenant"), "{out}");
    let (ok, status) = leadfactory(&cloud, &["status"]);
    assert!(ok && status.contains(&run.to_string()), "{status}");
    // Compute beside vendors, per 1,000 leads, as the functions priced their invocations.
    let infra = status
        .lines()
        .find(|l| l.starts_with("infra "))
        .unwrap_or_else(|| panic!("status shows no compute cost: {status}"));
    assert!(
        infra.split_whitespace().all(|w| w != "$0.0000" && w != "-"),
        "{infra}"
    );
    assert!(status.contains("compute today"), "{status}");
    let paused = status
        .lines()
        .find(|l| l.starts_with("yelp"))
        .unwrap_or_else(|| panic!("status shows no pause: {status}"));
    assert!(
        paused.contains("every tenant") && paused.ends_with("quota drill"),
        "{paused}"
    );
    let (ok, out) = leadfactory(&cloud, &["vendor", "resume", "yelp"]);
    assert!(ok, "{out}");
    let (ok, out) = leadfactory(&cloud, &["vendor", "list"]);
    assert!(ok && out.contains("no vendor is paused"), "{out}");
    let (ok, out) = leadfactory(&cloud, &["vendor", "resume", "yelp"]);
    assert!(!ok && out.contains("not paused"), "{out}");
    // Init once, invoked many times: fewer processes than invocations.
    let counters = cloud.counters();
    let cold: u64 = counters.values().map(|c| c.cold_starts).sum();
    let invocations: u64 = counters.values().map(|c| c.invocations).sum();
    assert!(
        cold < invocations,
        "{cold} cold starts for {invocations} invocations"
    );
    assert!(counters.values().all(|c| c.errors == 0), "{counters:?}");
    finish(cloud, &stage).await;
}

/// `leadfactory <args>` as an operator runs it against the account: the AWS environment of a
/// deployment (moto's endpoint) and the roles' database URLs docs/deploy.md gives operators.
fn leadfactory(cloud: &Cloud, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(testkit::built_binaries().join("leadfactory"))
        .args(args)
        .env("AWS_ENDPOINT_URL", &cloud.moto.url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", leadfactory_cli::cloud::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DATABASE_OWNER_URL", &cloud.db.owner_url)
        .env("DATABASE_BACKUP_URL", &cloud.db.backup_url)
        .env("DATABASE_RESTORE_URL", &cloud.db.restore_url)
        .env("LF_QUEUE_PREFIX", cloud.queue_prefix())
        .output()
        .expect("running leadfactory");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_failing_every_receive_lands_in_its_dlq_and_a_redrive_processes_it_once() {
    let stage = stage();
    // 360x: the template's 360 s visibility timeout passes in a second.
    let cloud = Cloud::start(options(&stage, 360.0), template(&stage))
        .await
        .expect("the account stands up");
    let http = reqwest::Client::new();
    let faults = format!("{}/_sim/faults", cloud.sim.base_url());
    http.post(&faults)
        .json(&serde_json::json!({ "yelp": { "rate_5xx": 1.0 } }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let tenant = cloud.onboard("Agency", &example_campaign()).await.unwrap();
    let run = cloud.nightly(tenant.id).await.unwrap();
    // Every sourcing job fails on each of its 5 receives; moto's redrive moves it to the DLQ and
    // the run ends with it.
    let status = cloud.wait_for_run(tenant.id, run, LIMIT).await.unwrap();
    assert_eq!(status, "failed");
    let jobs = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM run_work WHERE run_id = $1 AND queue = 'sourcing' AND state = 'dead' AND reason IS NOT NULL",
        run,
    )
    .await;
    assert!(jobs > 0);
    let dlq = &cloud.queues["SourcingDLQ"];
    let mut in_dlq = 0;
    for _ in 0..100 {
        in_dlq = leadfactory_cli::cloud::sqs::outstanding(&cloud.sqs, &dlq.url)
            .await
            .unwrap();
        if in_dlq as i64 >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(in_dlq as i64, jobs, "each dead job is in the DLQ once");

    // The operator sees why, fixes the cause and redrives.
    let (ok, listed) = leadfactory(&cloud, &["dlq", "list", "--queue", "sourcing"]);
    assert!(ok, "{listed}");
    let id = listed
        .split_whitespace()
        .find(|w| uuid::Uuid::parse_str(w).is_ok())
        .unwrap_or_else(|| panic!("no message id in {listed}"))
        .to_owned();
    let (ok, shown) = leadfactory(
        &cloud,
        &["dlq", "show", "--queue", "sourcing", "--message-id", &id],
    );
    assert!(ok, "{shown}");
    assert!(shown.to_lowercase().contains("yelp"), "{shown}");
    http.post(&faults)
        .json(&serde_json::json!({ "yelp": {} }))
        .send()
        .await
        .unwrap();
    // The warm sourcing instances' Yelp breaker is open ("circuit open, retry in …"): a redrive
    // before it recovers would fail the same way. The operator redrives once it has.
    tokio::time::sleep(shared::vendors::breaker::BreakerConfig::default().recovery).await;
    let (ok, redriven) = leadfactory(&cloud, &["dlq", "redrive", "--queue", "sourcing"]);
    assert!(ok, "{redriven}");
    // The redriven jobs refinish the run once they are processed.
    cloud.settle(LIMIT).await.unwrap();
    let status = cloud.run_status(tenant.id, run).await.unwrap();
    assert_eq!(status, "succeeded");
    let done = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM processed_messages WHERE stage = 'sourcing' AND status = 'done' AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert_eq!(done, jobs, "each redriven job processed once");
    assert_eq!(
        leadfactory_cli::cloud::sqs::outstanding(&cloud.sqs, &dlq.url)
            .await
            .unwrap(),
        0
    );
    let outreach = count(
        &cloud,
        tenant.id,
        "SELECT count(*) - count(DISTINCT business_id) FROM emails WHERE run_id = $1 AND kind = 'outreach'",
        run,
    )
    .await;
    assert_eq!(outreach, 0);
    finish(cloud, &stage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_whose_template_lacks_a_variable_it_reads_fails_at_start_naming_it() {
    let stage = stage();
    let mut t = template(&stage);
    let targeting = t
        .functions
        .iter_mut()
        .find(|f| f.binary == "targeting")
        .unwrap();
    assert!(targeting.without_variable("LF_QUEUE_SOURCING_URL"));
    let cloud = Cloud::start(options(&stage, 1.0), t).await.unwrap();
    let err = cloud
        .fire(&cloud.schedule_of("targeting", None).unwrap())
        .await
        .unwrap_err();
    match &err {
        CloudError::Invoke(leadfactory_cli::cloud::lambda::InvokeError::Init {
            status,
            output,
            ..
        }) => {
            assert!(
                output.contains("LF_QUEUE_SOURCING_URL is not set"),
                "{output}"
            );
            assert!(!status.contains("exit status: 0"), "{status}");
        }
        other => panic!("expected an init error, got {other}"),
    }
    assert!(err.to_string().contains("LF_QUEUE_SOURCING_URL"));
    finish(cloud, &stage).await;
}

/// What a run still waits for, for a failure message: each pending `run_work` row with its key's
/// records, and every queue's depth. Read as the superuser (inspection only).
async fn pending_work(cloud: &Cloud) -> String {
    let url = format!(
        "{}/{}",
        testkit::pg_admin_url().trim_end_matches("/postgres"),
        cloud.db.name
    );
    let mut out = String::new();
    if let Ok((admin, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let rows = admin
            .query(
                "SELECT w.queue || ' ' || w.key || ' since ' || w.created_at::text || ': ' ||
                        coalesce((SELECT string_agg(p.stage || '=' || p.status || ' ' || coalesce(p.outcome::text, ''), '; ')
                                  FROM processed_messages p WHERE p.key = w.key), 'no record')
                 FROM run_work w WHERE w.state = 'pending'",
                &[],
            )
            .await
            .unwrap_or_default();
        for r in rows {
            out.push_str(&format!("pending {}\n", r.get::<_, String>(0)));
        }
    }
    for (id, q) in &cloud.queues {
        let n = leadfactory_cli::cloud::sqs::outstanding(&cloud.sqs, &q.url)
            .await
            .unwrap_or_default();
        out.push_str(&format!("{id}: {n}\n"));
    }
    out
}

/// A campaign of at least 500 leads: three ZIP codes of the simulated city, a quota to match.
fn large_campaign() -> serde_json::Value {
    let mut c = example_campaign();
    c["zip_codes"] = serde_json::json!(["95113", "95112", "95110"]);
    c["daily_quota"] = serde_json::json!(700);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_night_of_500_leads_survives_its_processes_killed_and_every_message_delivered_twice() {
    let stage = stage();
    let mut opts = options(&stage, 360.0);
    opts.deliver_twice = true;
    let cloud = std::sync::Arc::new(Cloud::start(opts, template(&stage)).await.unwrap());
    let tenant = cloud.onboard("Agency", &large_campaign()).await.unwrap();

    // SIGKILL function processes at random moments, preferring ones serving an invocation.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let killer = {
        let cloud = cloud.clone();
        tokio::spawn(async move {
            let mut kills = 0u32;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            while !*stop_rx.borrow() && kills < 30 {
                tokio::time::sleep(Duration::from_millis(1_000 + next() % 2_500)).await;
                let procs = cloud.processes();
                let busy: Vec<_> = procs.iter().filter(|p| p.2).collect();
                let pool = if busy.is_empty() {
                    procs.iter().collect::<Vec<_>>()
                } else {
                    busy
                };
                if pool.is_empty() {
                    continue;
                }
                let victim = pool[(next() % pool.len() as u64) as usize];
                // SAFETY: kill(2) on a function process the stand-in started.
                if unsafe { libc::kill(victim.1 as i32, libc::SIGKILL) } == 0 {
                    kills += 1;
                }
            }
            kills
        })
    };
    let run = cloud.nightly(tenant.id).await.unwrap();
    cloud.settle(LIMIT).await.unwrap();
    // Messages whose process was killed on their last receive reached a DLQ with no failure
    // recorded; the alerts schedule ends their work, and the run is finalised.
    let alerts = cloud
        .schedule_of("alerts", Some("EveryFiveMinutes"))
        .unwrap();
    cloud.fire(&alerts).await.unwrap();
    let status = match cloud
        .wait_for_run(tenant.id, run, Duration::from_secs(60))
        .await
    {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{}", pending_work(&cloud).await),
    };
    let sourced = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM businesses WHERE $1::uuid IS NOT NULL",
        run,
    )
    .await;
    let activity = cloud
        .simulate_recipients(tenant.id, 1.0, &NoProgress, LIMIT)
        .await
        .unwrap();
    let _ = stop_tx.send(true);
    let kills = killer.await.unwrap();
    cloud.settle(LIMIT).await.unwrap();
    cloud.fire(&alerts).await.unwrap();
    assert!(kills >= 20, "only {kills} processes killed");
    assert!(sourced >= 500, "only {sourced} leads in the night");
    assert_ne!(status, "running");
    let lost: u64 = cloud.counters().values().map(|c| c.lost).sum();
    assert!(lost > 0, "the kills were seen as lost instances");

    // 0 duplicate emails: one per business, each sent to SendGrid once.
    let twice = count(
        &cloud,
        tenant.id,
        "SELECT count(*) - count(DISTINCT business_id) FROM emails WHERE run_id = $1 AND kind = 'outreach'",
        run,
    )
    .await;
    assert_eq!(twice, 0);
    let outbox = outbox_by_email(&cloud);
    assert!(
        outbox.values().all(|n| *n == 1),
        "an email was sent twice: {:?}",
        outbox.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // 0 duplicate fulfilments.
    let fulfilments = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM emails WHERE kind = 'fulfilment' AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    let paid = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM purchases WHERE status = 'paid' AND $1::uuid IS NOT NULL",
        run,
    )
    .await;
    assert!(
        fulfilments <= paid,
        "{fulfilments} fulfilments for {paid} purchases"
    );
    assert!(activity.checkouts as i64 >= paid);
    // Every lead done or in a DLQ with a reason; the run finalised.
    let pending = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM run_work WHERE run_id = $1 AND (state = 'pending' OR (state = 'dead' AND reason IS NULL))",
        run,
    )
    .await;
    assert_eq!(pending, 0);
    let dead = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM run_work WHERE run_id = $1 AND state = 'dead'",
        run,
    )
    .await;
    // A dead message is in its DLQ; the next hops of a message dead-lettered before it sent
    // them were never sent, and name it.
    let dead_messages = count(
        &cloud,
        tenant.id,
        "SELECT count(*) FROM run_work WHERE run_id = $1 AND state = 'dead' AND reason NOT LIKE 'not sent:%'",
        run,
    )
    .await;
    let in_dlqs = cloud.dead_lettered().await.unwrap();
    assert!(
        in_dlqs as i64 >= dead_messages,
        "{dead_messages} dead messages, {in_dlqs} in DLQs"
    );
    let expected = if dead == 0 { "succeeded" } else { "partial" };
    let final_status = cloud.run_status(tenant.id, run).await.unwrap();
    assert!(
        final_status == expected || final_status == "failed",
        "{final_status} with {dead} dead"
    );
    eprintln!(
        "chaos: {sourced} leads, {kills} kills, {dead_messages} messages dead-lettered ({dead} work items), {} emails, {paid} purchases, {fulfilments} fulfilments",
        outbox.len()
    );
    let cloud = std::sync::Arc::try_unwrap(cloud).ok().unwrap();
    finish(cloud, &stage).await;
}
