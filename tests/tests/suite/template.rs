//! The SAM template matches the code: every function crate has a resource (built from its own
//! binary) and every resource a crate; every SQS-triggered function reads a queue that has a
//! DLQ, reports partial batch failures, and outlives its timeout in visibility; every schedule
//! targets an existing function; every queue a function sends to exists and the function may
//! send to it (and to nothing else). `cfn-lint` (run by scripts/test) checks the rest.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;
use shared::bus::Queue;

fn template() -> Value {
    serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/template.yaml"
        ))
        .unwrap(),
    )
    .unwrap()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// `{Fn::GetAtt: [X, attr]}` → X, or `{Ref: X}` → X.
fn target(v: &Value) -> Option<String> {
    if let Some(seq) = v.get("Fn::GetAtt").and_then(Value::as_sequence) {
        return seq.first().and_then(Value::as_str).map(str::to_owned);
    }
    v.get("Ref").and_then(Value::as_str).map(str::to_owned)
}

fn crates() -> BTreeMap<String, &'static [Queue]> {
    BTreeMap::from([
        ("targeting".to_owned(), targeting::SENDS_TO),
        ("sourcing".to_owned(), sourcing::SENDS_TO),
        ("enrichment".to_owned(), enrichment::SENDS_TO),
        ("assessment".to_owned(), assessment::SENDS_TO),
        ("scoring".to_owned(), scoring::SENDS_TO),
        ("reports".to_owned(), reports::SENDS_TO),
        ("personalization".to_owned(), personalization::SENDS_TO),
        ("sendgrid-webhook".to_owned(), sendgrid_webhook::SENDS_TO),
        ("stripe-webhook".to_owned(), stripe_webhook::SENDS_TO),
        ("delivery".to_owned(), delivery::SENDS_TO),
        ("storefront".to_owned(), storefront::SENDS_TO),
        ("alerts".to_owned(), alerts::SENDS_TO),
        ("ops-api".to_owned(), ops_api::SENDS_TO),
        ("analytics".to_owned(), analytics::SENDS_TO),
        ("qa-sampler".to_owned(), qa_sampler::SENDS_TO),
        ("retention".to_owned(), retention::SENDS_TO),
        ("backup".to_owned(), backup::SENDS_TO),
    ])
}

#[test]
fn every_function_crate_has_a_resource_and_every_resource_a_crate() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let dirs = testkit::function_dirs();
    assert_eq!(
        dirs,
        crates().keys().cloned().collect(),
        "the test's crate list is out of date"
    );
    let mut binaries = BTreeSet::new();
    for (_, r) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        assert_eq!(
            s(r, &["Metadata", "BuildMethod"]).and_then(Value::as_str),
            Some("rust-cargolambda")
        );
        let bin = s(r, &["Metadata", "BuildProperties", "Binary"])
            .and_then(Value::as_str)
            .unwrap()
            .to_owned();
        // The crate's [[bin]] has this name: each function's binary name is unique.
        let manifest: toml::Value = toml::from_str(
            &std::fs::read_to_string(format!(
                "{}/../functions/{bin}/Cargo.toml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["bin"][0]["name"].as_str(), Some(bin.as_str()));
        assert!(binaries.insert(bin), "two resources build the same binary");
    }
    assert_eq!(binaries, dirs);
    let g = &t["Globals"]["Function"];
    assert_eq!(
        (
            g["Runtime"].as_str(),
            g["Architectures"][0].as_str(),
            g["Handler"].as_str()
        ),
        (Some("provided.al2023"), Some("arm64"), Some("bootstrap"))
    );
}

#[test]
fn sqs_functions_read_queues_with_dlqs_and_report_partial_failures() {
    let t = template();
    let res = &t["Resources"];
    let global_timeout = t["Globals"]["Function"]["Timeout"].as_i64().unwrap();
    let mut sqs_functions = 0;
    for (name, r) in res
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let timeout = r["Properties"]["Timeout"]
            .as_i64()
            .unwrap_or(global_timeout);
        for (_, e) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
            match e["Type"].as_str() {
                Some("SQS") => {
                    sqs_functions += 1;
                    let q = target(&e["Properties"]["Queue"]).unwrap();
                    let queue = &res[q.as_str()];
                    assert_eq!(queue["Type"], "AWS::SQS::Queue", "{name:?} reads {q}");
                    let dlq = target(&queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
                        .unwrap_or_else(|| panic!("{q} has no DLQ"));
                    assert_eq!(res[dlq.as_str()]["Type"], "AWS::SQS::Queue");
                    // One value for the queues and the functions, which count a failure on
                    // the last receive as the message's end.
                    assert_eq!(
                        queue["Properties"]["RedrivePolicy"]["maxReceiveCount"]["Ref"],
                        "MaxReceiveCount",
                        "{q}"
                    );
                    assert_eq!(
                        t["Globals"]["Function"]["Environment"]["Variables"]["LF_MAX_RECEIVE_COUNT"]
                            ["Ref"],
                        "MaxReceiveCount"
                    );
                    let types: Vec<&str> = e["Properties"]["FunctionResponseTypes"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert_eq!(types, vec!["ReportBatchItemFailures"], "{name:?}");
                    let vis = queue["Properties"]["VisibilityTimeout"].as_i64().unwrap();
                    assert!(
                        vis > timeout,
                        "{q}: visibility {vis} must exceed {name:?}'s timeout {timeout}"
                    );
                    assert!(
                        e["Properties"]["ScalingConfig"]["MaximumConcurrency"]
                            .as_i64()
                            .unwrap()
                            >= 2
                    );
                }
                // Checked with the domain events' routes below.
                Some("Schedule" | "ScheduleV2" | "EventBridgeRule") => {}
                Some("HttpApi") => {
                    let path = e["Properties"]["Path"].as_str().unwrap_or_default();
                    if path.starts_with("/webhooks/") {
                        assert_eq!(
                            e["Properties"]["Method"], "POST",
                            "{name:?}: webhooks are POST"
                        );
                    }
                    // Every HTTP route is served by a function that answers it.
                    let bin = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
                    let served = match bin {
                        "sendgrid-webhook" => path == "/webhooks/sendgrid",
                        "stripe-webhook" => path == "/webhooks/stripe",
                        "ops-api" => path.starts_with("/v1/"),
                        "storefront" => ["/r/", "/u/", "/d/", "/checkout/"]
                            .iter()
                            .any(|p| path.starts_with(p)),
                        _ => false,
                    };
                    assert!(served, "{name:?} does not serve {path}");
                }
                other => panic!("{name:?}: unexpected event type {other:?}"),
            }
        }
    }
    // Seven stages read one queue each; delivery also reads the fulfilment queue.
    assert_eq!(sqs_functions, 8);
    // Every queue that is not a DLQ has one.
    for (name, r) in res.as_mapping().unwrap() {
        let n = name.as_str().unwrap();
        if r["Type"] == "AWS::SQS::Queue" && !n.ends_with("DLQ") {
            assert!(
                r["Properties"]["RedrivePolicy"].is_mapping(),
                "{n} has no DLQ"
            );
        }
    }
}

#[test]
fn schedules_target_existing_functions() {
    let t = template();
    let res = &t["Resources"];
    let mut schedules = 0;
    for (_, r) in res.as_mapping().unwrap() {
        match r["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                schedules += r["Properties"]["Events"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .filter(|(_, e)| e["Type"] == "Schedule")
                    .count();
            }
            Some("AWS::Events::Rule" | "AWS::Scheduler::Schedule") => {
                for tgt in r["Properties"]["Targets"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .chain(std::iter::once(&r["Properties"]["Target"]))
                {
                    if let Some(f) = target(&tgt["Arn"]) {
                        assert_eq!(
                            res[f.as_str()]["Type"],
                            "AWS::Serverless::Function",
                            "a schedule targets {f}"
                        );
                        schedules += 1;
                    }
                }
            }
            _ => {}
        }
    }
    assert!(schedules >= 1, "the nightly targeting schedule");
}

#[test]
fn functions_may_send_to_exactly_the_queues_their_code_sends_to() {
    let t = template();
    let res = &t["Resources"];
    for (_, r) in res
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let bin = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        let sends = crates()[bin];
        let env = r["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        let granted: BTreeSet<String> = r["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("SQSSendMessagePolicy"))
            .map(|p| target(&p["QueueName"]).unwrap())
            .collect();
        let mut expected = BTreeSet::new();
        for q in sends {
            let var = format!("LF_QUEUE_{}_URL", q.name().to_uppercase());
            let resource = target(&env[&Value::from(var.as_str())])
                .unwrap_or_else(|| panic!("{bin}: {var} is not set from a queue"));
            let queue = &res[resource.as_str()];
            assert_eq!(
                queue["Type"], "AWS::SQS::Queue",
                "{bin} sends to {resource}"
            );
            let qname = queue["Properties"]["QueueName"]["Fn::Sub"]
                .as_str()
                .unwrap();
            assert_eq!(qname, format!("leadfactory-${{Stage}}-{q}"));
            expected.insert(resource);
        }
        assert_eq!(granted, expected, "{bin}: send permissions");
        // Any other queue URL is one the function only watches: it must be granted reading
        // the queue's depth (and, by the check above, not sending to it).
        let watched: BTreeSet<String> = r["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
            .filter(|st| {
                st["Action"]
                    .as_sequence()
                    .is_some_and(|a| a.iter().any(|x| x == "sqs:GetQueueAttributes"))
            })
            .flat_map(|st| st["Resource"].as_sequence().cloned().unwrap_or_default())
            .filter_map(|arn| target(&arn))
            .collect();
        for (var, value) in &env {
            let Some(var) = var.as_str().filter(|k| k.starts_with("LF_QUEUE_")) else {
                continue;
            };
            let resource = target(value).unwrap_or_else(|| panic!("{bin}: {var}"));
            assert!(
                expected.contains(&resource) || watched.contains(&resource),
                "{bin}: {var} names {resource}, which it neither sends to nor may watch"
            );
        }
    }
}

#[test]
fn the_bucket_is_private_encrypted_expires_raw_html_and_keeps_90_days_of_backups() {
    let t = template();
    let b = &t["Resources"]["ArtifactsBucket"]["Properties"];
    assert!(b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"].is_string());
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(b["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    let rules = b["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    let html = rules.iter().find(|r| r["Prefix"] == "html/").unwrap();
    assert_eq!(html["ExpirationInDays"], 90);
    // Ninety days of daily backups, noncurrent versions included; abandoned uploads go.
    let backups = rules.iter().find(|r| r["Prefix"] == "backups/").unwrap();
    assert_eq!(backups["ExpirationInDays"], 90);
    assert_eq!(backups["NoncurrentVersionExpiration"]["NoncurrentDays"], 90);
    assert_eq!(
        backups["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
        1
    );
    let backup = &t["Resources"]["BackupFunction"]["Properties"];
    assert_eq!(
        backup["Events"]["Daily"]["Properties"]["Schedule"],
        "cron(0 4 * * ? *)"
    );
    // The monthly drill, after that day's backup.
    let drill = &backup["Events"]["MonthlyDrill"]["Properties"];
    assert_eq!(drill["Schedule"], "cron(45 4 1 * ? *)");
    assert_eq!(drill["Input"], r#"{"drill": true}"#);
    // As the backup role, whichever made its secret.
    for (create, secret) in [
        (false, "DatabaseBackupSecretArn"),
        (true, "DatabaseBackupRoleSecret"),
    ] {
        let b = in_mode(&t["Resources"]["BackupFunction"], create);
        assert_eq!(
            b["Properties"]["Environment"]["Variables"]["LF_SECRET_ARNS"]["Ref"],
            secret
        );
    }
    assert!(
        !rules.iter().any(|r| r["Prefix"] == "reports/"),
        "reports are kept"
    );
    // No secret value in the template: secrets come from Secrets Manager ARNs.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ))
    .unwrap();
    for needle in ["sk_live", "sk-", "SG.", "postgres://"] {
        assert!(!text.contains(needle), "template contains {needle}");
    }
}

#[test]
fn every_dlq_and_every_function_has_an_alarm() {
    let t = template();
    let res = t["Resources"].as_mapping().unwrap();
    let alarmed: BTreeSet<String> = res
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter_map(|a| target(&a["Properties"]["Dimensions"][0]["Value"]))
        .collect();
    for (name, r) in res {
        let n = name.as_str().unwrap();
        let needs = (r["Type"] == "AWS::SQS::Queue") || r["Type"] == "AWS::Serverless::Function";
        if needs {
            assert!(alarmed.contains(n), "{n} has no alarm");
        }
    }
}

#[test]
fn every_function_may_read_exactly_the_secrets_it_is_told_to_load() {
    for create in [false, true] {
        secrets_loaded_are_granted(&in_mode(&template(), create));
    }
}

/// The template as deployed with the database given (`create` false: DatabaseSecretArn set) or
/// created by it: every `Fn::If` on `CreateDatabase` replaced by its branch.
fn in_mode(v: &Value, create: bool) -> Value {
    match v {
        Value::Mapping(m) => {
            if let Some(args) = m.get("Fn::If").and_then(Value::as_sequence)
                && args.len() == 3
                && args[0] == "CreateDatabase"
            {
                return in_mode(&args[if create { 1 } else { 2 }], create);
            }
            Value::Mapping(
                m.iter()
                    .map(|(k, v)| (k.clone(), in_mode(v, create)))
                    .collect(),
            )
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(|v| in_mode(v, create)).collect()),
        other => other.clone(),
    }
}

/// Every `Ref`/`Fn::GetAtt` target anywhere in `v`.
fn targets(v: &Value, out: &mut BTreeSet<String>) {
    if let Some(t) = target(v) {
        out.insert(t);
    }
    match v {
        Value::Mapping(m) => m.values().for_each(|v| targets(v, out)),
        Value::Sequence(s) => s.iter().for_each(|v| targets(v, out)),
        _ => {}
    }
}

#[test]
fn the_database_is_the_operators_or_created_encrypted_protected_and_behind_a_proxy() {
    let raw = template();
    let created: BTreeSet<String> = raw["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Condition"] == "CreateDatabase")
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect();
    for r in [
        "Database",
        "DatabaseProxy",
        "DatabaseProxyTargetGroup",
        "DatabaseSubnetGroup",
        "DatabaseOwnerSecret",
        "DatabaseAppSecret",
        "DatabaseBackupRoleSecret",
        "DatabaseRestoreRoleSecret",
    ] {
        assert!(created.contains(r), "{r} is not created with the database");
    }
    // Given: nothing outside the database's own resources and outputs points at them.
    let given = in_mode(&raw, false);
    for (name, r) in given["Resources"].as_mapping().unwrap() {
        if r["Condition"] == "CreateDatabase" {
            continue;
        }
        let mut seen = BTreeSet::new();
        targets(r, &mut seen);
        let uses: Vec<&String> = seen.intersection(&created).collect();
        assert!(
            uses.is_empty(),
            "{name:?} uses {uses:?} with the database given"
        );
    }
    for (name, o) in given["Outputs"].as_mapping().unwrap() {
        let mut seen = BTreeSet::new();
        targets(o, &mut seen);
        if !seen.is_disjoint(&created) {
            assert_eq!(o["Condition"], "CreateDatabase", "{name:?}");
        }
    }
    // Created: encrypted, deletion-protected, kept as a snapshot when removed, point-in-time
    // recovery for a parameter's days, Multi-AZ by parameter, private, its administrator's
    // password kept by RDS.
    let t = in_mode(&raw, true);
    let db = &t["Resources"]["Database"];
    let p = &db["Properties"];
    assert_eq!(db["DeletionPolicy"], "Snapshot");
    assert_eq!(db["UpdateReplacePolicy"], "Snapshot");
    for (k, v) in [
        ("StorageEncrypted", Value::from(true)),
        ("DeletionProtection", Value::from(true)),
        ("PubliclyAccessible", Value::from(false)),
        ("ManageMasterUserPassword", Value::from(true)),
    ] {
        assert_eq!(p[k], v, "Database.{k}");
    }
    assert_eq!(
        target(&p["BackupRetentionPeriod"]).as_deref(),
        Some("DatabaseBackupRetentionDays")
    );
    assert_eq!(target(&p["MultiAZ"]).as_deref(), Some("DatabaseMultiAz"));
    assert_eq!(
        target(&p["AllocatedStorage"]).as_deref(),
        Some("DatabaseStorageGb")
    );
    // A secret per login role of docs/deploy.md (the names `leadfactory db provision` checks),
    // each attached to the instance and accepted by the proxy, which requires TLS.
    let proxy = &t["Resources"]["DatabaseProxy"]["Properties"];
    assert_eq!(proxy["RequireTLS"], true);
    let accepted: BTreeSet<String> = proxy["Auth"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|a| target(&a["SecretArn"]))
        .collect();
    for (secret, role) in [
        (
            "DatabaseOwnerSecret",
            leadfactory_cli::provision::OWNER_ROLE,
        ),
        ("DatabaseAppSecret", leadfactory_cli::provision::APP_LOGIN),
        (
            "DatabaseBackupRoleSecret",
            leadfactory_cli::provision::BACKUP_ROLE,
        ),
        (
            "DatabaseRestoreRoleSecret",
            leadfactory_cli::provision::RESTORE_ROLE,
        ),
    ] {
        let generated = &t["Resources"][secret]["Properties"]["GenerateSecretString"];
        let fixed: serde_json::Value =
            serde_json::from_str(generated["SecretStringTemplate"].as_str().unwrap()).unwrap();
        assert_eq!(fixed["username"], role, "{secret}");
        assert_eq!(generated["GenerateStringKey"], "password");
        let attached = &t["Resources"][format!("{secret}Attachment").as_str()]["Properties"];
        assert_eq!(target(&attached["SecretId"]).as_deref(), Some(secret));
        assert_eq!(target(&attached["TargetId"]).as_deref(), Some("Database"));
        assert!(
            accepted.contains(secret),
            "the proxy does not accept {secret}"
        );
    }
    // The functions connect through the proxy, with the functions' role (the backup function
    // with the backup role's); no function may read the owner's or the restore role's secret.
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        target(&globals["LF_DATABASE_HOST"]).as_deref(),
        Some("DatabaseProxy")
    );
    for (name, r) in t["Resources"].as_mapping().unwrap() {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let mut seen = BTreeSet::new();
        targets(&r["Properties"], &mut seen);
        for forbidden in [
            "DatabaseOwnerSecret",
            "DatabaseRestoreRoleSecret",
            "Database",
        ] {
            assert!(!seen.contains(forbidden), "{name:?} can reach {forbidden}");
        }
    }
    let given_globals = &given["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        given_globals["LF_DATABASE_HOST"], "",
        "the given secret's URL is used as is"
    );
}

fn secrets_loaded_are_granted(t: &Value) {
    let global = &t["Globals"]["Function"]["Environment"]["Variables"]["LF_SECRET_ARNS"];
    let refs = |v: &Value| -> BTreeSet<String> {
        // `Ref: X` or `Fn::Join: [",", [Ref: A, Ref: B]]`.
        if let Some(r) = v.get("Ref").and_then(Value::as_str) {
            return BTreeSet::from([r.to_owned()]);
        }
        v["Fn::Join"][1]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|x| x.get("Ref").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    for (name, r) in t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let own = &r["Properties"]["Environment"]["Variables"]["LF_SECRET_ARNS"];
        let loads = if own.is_null() {
            refs(global)
        } else {
            refs(own)
        };
        let granted: BTreeSet<String> = r["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("AWSSecretsManagerGetSecretValuePolicy"))
            .filter_map(|p| {
                p["SecretArn"]
                    .get("Ref")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        assert!(
            !loads.is_empty(),
            "{name:?} loads no secret (it needs DATABASE_URL)"
        );
        assert_eq!(
            loads, granted,
            "{name:?}: secrets loaded at start-up vs. granted"
        );
    }
}

/// What each SQS-triggered stage runs per message, by its input queue's logical name: how many
/// messages it works on at once, the longest one message's work can take and the queues it
/// sends to, built from a production environment (default vendor policies) as the functions'
/// `main`s build them.
fn stages_by_queue() -> BTreeMap<&'static str, (usize, std::time::Duration, &'static [Queue])> {
    let env: std::collections::HashMap<&str, &str> = [
        (
            "DATABASE_URL",
            "postgres://app:secret@127.0.0.1:9/leadfactory",
        ),
        ("LF_BUCKET", "leadfactory-artifacts"),
        ("LF_LINK_SECRET", "a-link-secret-of-at-least-32-bytes"),
        ("YELP_API_KEY", "k"),
        ("GOOGLE_PLACES_API_KEY", "k"),
        ("GOOGLE_PAGESPEED_API_KEY", "k"),
        ("OPENAI_API_KEY", "k"),
        ("SENDGRID_API_KEY", "k"),
    ]
    .into_iter()
    .collect();
    let deps = shared::pipeline::Deps::from_source(&env, &[]).unwrap();
    let mailer = std::sync::Arc::new(delivery::Mailer::from_source(&deps, &env).unwrap());
    let stages = leadfactory_cli::stages::Stages::new(&deps, &env, mailer).unwrap();
    let mut by_queue = BTreeMap::new();
    for s in stages.all() {
        let before = by_queue.insert(
            s.input().name(),
            (
                s.concurrency(),
                s.worst_case_work(&deps.vendors),
                s.sends_to(),
            ),
        );
        assert!(before.is_none(), "two stages consume {}", s.input());
    }
    by_queue
}

#[test]
fn every_queue_is_one_stages_input_and_its_function_may_send_where_the_stage_does() {
    let stages = stages_by_queue();
    assert_eq!(
        stages.keys().copied().collect::<BTreeSet<_>>(),
        Queue::ALL.iter().map(|q| q.name()).collect(),
        "every pipeline queue is consumed by exactly one stage"
    );
    let t = template();
    let res = &t["Resources"];
    let mut consumed = BTreeSet::new();
    for (name, r) in res
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let bin = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        for (_, e) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if e["Type"] != "SQS" {
                continue;
            }
            let q = queue_name(res, &target(&e["Properties"]["Queue"]).unwrap());
            let (_, _, sends) = stages
                .get(q.as_str())
                .unwrap_or_else(|| panic!("{name:?} reads {q}, which no stage consumes"));
            for s in *sends {
                assert!(
                    crates()[bin].contains(s),
                    "{name:?} runs the {q} stage, which sends to {s}: not in its SENDS_TO"
                );
            }
            consumed.insert(q);
        }
    }
    assert_eq!(
        consumed,
        stages.keys().map(|q| (*q).to_owned()).collect(),
        "every stage's queue triggers a function"
    );
}

/// A queue resource's logical name (its `QueueName` after `leadfactory-${Stage}-`).
fn queue_name(res: &Value, resource: &str) -> String {
    res[resource]["Properties"]["QueueName"]["Fn::Sub"]
        .as_str()
        .and_then(|n| n.strip_prefix("leadfactory-${Stage}-"))
        .unwrap_or_else(|| {
            panic!("{resource} has no QueueName of the form leadfactory-${{Stage}}-<name>")
        })
        .to_owned()
}

#[tokio::test]
async fn no_batch_can_outlast_its_function_timeout_under_the_retry_policies() {
    let t = template();
    let res = &t["Resources"];
    let global_timeout = t["Globals"]["Function"]["Timeout"].as_i64().unwrap();
    // The most `work_deadline` keeps back for the store step.
    let store_margin = shared::pipeline::MAX_STORE_MARGIN;
    let stages = stages_by_queue();
    let mut checked = 0;
    for (name, r) in res
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
    {
        let timeout = r["Properties"]["Timeout"]
            .as_i64()
            .unwrap_or(global_timeout) as u64;
        for (_, e) in r["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if e["Type"] != "SQS" {
                continue;
            }
            let batch = e["Properties"]["BatchSize"].as_u64().unwrap_or(10) as u32;
            let q = target(&e["Properties"]["Queue"]).unwrap();
            let visibility = res[q.as_str()]["Properties"]["VisibilityTimeout"]
                .as_u64()
                .unwrap();
            let Some(&(concurrency, worst, _)) = stages.get(queue_name(res, &q).as_str()) else {
                panic!("{name:?} reads {q}, which no stage consumes");
            };
            let rounds = batch.div_ceil(concurrency.max(1) as u32);
            let needed = worst * rounds + store_margin;
            assert!(
                needed.as_secs() <= timeout,
                "{name:?}: a batch of {batch} ({rounds} round(s) of {worst:?} of vendor time) and the store step need {needed:?}, more than the {timeout} s Timeout"
            );
            assert!(
                visibility >= timeout,
                "{q}: visibility below {name:?}'s timeout"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, stages.len(), "every stage was checked");
}

/// The metrics of the `LeadFactory` namespace that `function`'s alarms watch.
fn alarmed_metrics(t: &Value, function: &str) -> BTreeSet<String> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|r| r["Properties"]["Namespace"] == "LeadFactory")
        .filter(|r| r["Properties"]["Dimensions"][0]["Value"] == function)
        .filter_map(|r| r["Properties"]["MetricName"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_metric_the_alerts_function_emits_has_an_alarm() {
    let alarms = alarmed_metrics(&template(), "alerts");
    for (rule, metric) in alerts::METRICS {
        assert!(alarms.contains(*metric), "{rule}: no alarm on {metric}");
    }
}

#[test]
fn stripe_deliveries_refused_or_failed_raise_alarms() {
    let alarms = alarmed_metrics(&template(), "stripe-webhook");
    for metric in stripe_webhook::FAILURE_METRICS {
        assert!(alarms.contains(metric), "no alarm on {metric}");
    }
    assert_eq!(stripe_webhook::failure_metric(400), "DeliveriesRefused");
    assert_eq!(stripe_webhook::failure_metric(401), "DeliveriesRefused");
    assert_eq!(stripe_webhook::failure_metric(503), "DeliveriesFailed");
}

/// `v` with every `Fn::If` on `condition` replaced by its branch (`AWS::NoValue` by nothing).
fn under(v: &Value, condition: &str, holds: bool) -> Option<Value> {
    match v {
        Value::Mapping(m) => {
            if let Some(args) = m.get("Fn::If").and_then(Value::as_sequence)
                && args.len() == 3
                && args[0] == condition
            {
                return under(&args[if holds { 1 } else { 2 }], condition, holds);
            }
            if m.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
                return None;
            }
            Some(Value::Mapping(
                m.iter()
                    .filter_map(|(k, v)| under(v, condition, holds).map(|v| (k.clone(), v)))
                    .collect(),
            ))
        }
        Value::Sequence(s) => Some(Value::Sequence(
            s.iter()
                .filter_map(|v| under(v, condition, holds))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

#[test]
fn reports_and_backups_are_mirrored_to_another_region_only_when_asked() {
    let raw = template();
    assert_eq!(raw["Parameters"]["ReplicaBucketArn"]["Default"], "");
    assert_eq!(
        raw["Resources"]["ReplicationRole"]["Condition"],
        "ReplicateStorage"
    );
    let off = under(&raw, "ReplicateStorage", false).unwrap();
    assert!(
        off["Resources"]["ArtifactsBucket"]["Properties"]
            .get("ReplicationConfiguration")
            .is_none(),
        "no replication without a replica"
    );
    let on = under(&raw, "ReplicateStorage", true).unwrap();
    let bucket = &on["Resources"]["ArtifactsBucket"]["Properties"];
    assert_eq!(
        bucket["VersioningConfiguration"]["Status"], "Enabled",
        "replication needs versions"
    );
    let config = &bucket["ReplicationConfiguration"];
    assert_eq!(target(&config["Role"]).as_deref(), Some("ReplicationRole"));
    let prefixes: BTreeSet<&str> = config["Rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["Status"], "Enabled");
            assert_eq!(
                target(&r["Destination"]["Bucket"]).as_deref(),
                Some("ReplicaBucketArn")
            );
            // A purge or an expiry here is not one there: the replica keeps its own lifecycle.
            assert_eq!(r["DeleteMarkerReplication"]["Status"], "Disabled");
            r["Filter"]["Prefix"].as_str().unwrap()
        })
        .collect();
    assert_eq!(prefixes, BTreeSet::from(["reports/", "backups/"]));
    // The role may read exactly those prefixes' versions and write them to the replica.
    let statements = on["Resources"]["ReplicationRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_sequence()
        .unwrap()
        .clone();
    let text = serde_yaml_ng::to_string(&statements).unwrap();
    for needed in [
        "s3:GetObjectVersionForReplication",
        "s3:ReplicateObject",
        "/reports/*",
        "/backups/*",
    ] {
        assert!(
            text.contains(needed),
            "the replication role lacks {needed}: {text}"
        );
    }
    assert!(!text.contains("/html/") && !text.contains("s3:*"), "{text}");
}

/// Each function resource by its binary's name.
fn functions_by_binary(t: &Value) -> BTreeMap<String, Value> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(_, r)| {
            (
                r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                r.clone(),
            )
        })
        .collect()
}

#[test]
fn domain_events_are_routed_as_the_local_run_routes_them_and_only_their_publishers_may_put_them() {
    let t = template();
    let res = &t["Resources"];
    assert_eq!(res["EventBus"]["Type"], "AWS::Events::EventBus");
    assert_eq!(
        target(&t["Globals"]["Function"]["Environment"]["Variables"]["LF_EVENT_BUS_NAME"])
            .as_deref(),
        Some("EventBus")
    );
    let mut routes = BTreeSet::new();
    let mut publishers = BTreeSet::new();
    for (bin, f) in functions_by_binary(&t) {
        let events = f["Properties"]["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for (name, e) in &events {
            if e["Type"] != "EventBridgeRule" {
                continue;
            }
            let p = &e["Properties"];
            assert_eq!(
                target(&p["EventBusName"]).as_deref(),
                Some("EventBus"),
                "{bin}.{name:?}"
            );
            assert_eq!(
                p["Pattern"]["source"],
                Value::from(vec!["leadfactory"]),
                "{bin}.{name:?}"
            );
            for dt in p["Pattern"]["detail-type"].as_sequence().unwrap() {
                let dt = dt.as_str().unwrap();
                let known = shared::events::DetailType::named(dt)
                    .unwrap_or_else(|| panic!("{bin} is routed {dt}, which nothing publishes"));
                routes.insert((known, bin.clone()));
            }
        }
        let may_put = f["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("EventBridgePutEventsPolicy"))
            .any(|p| target(&p["EventBusName"]).as_deref() == Some("EventBus"));
        if may_put {
            publishers.insert(bin.clone());
        }
    }
    let local: BTreeSet<(shared::events::DetailType, String)> =
        leadfactory_cli::local::EVENT_ROUTES
            .iter()
            .map(|(t, f)| (*t, (*f).to_owned()))
            .collect();
    assert_eq!(
        routes, local,
        "the template's rules and the local run's routes differ"
    );
    // Every SQS stage finishes runs (the batch runner publishes their RunFinished); targeting
    // (an empty night, CampaignExhausted), the Stripe webhook (purchases) and alerts (alerts,
    // idle runs, the sweep) publish the rest. Nothing else may.
    let mut expected: BTreeSet<String> = functions_by_binary(&t)
        .into_iter()
        .filter(|(_, f)| {
            f["Properties"]["Events"]
                .as_mapping()
                .into_iter()
                .flatten()
                .any(|(_, e)| e["Type"] == "SQS")
        })
        .map(|(b, _)| b)
        .collect();
    expected.extend(["targeting", "stripe-webhook", "alerts"].map(str::to_owned));
    assert_eq!(publishers, expected);
}
