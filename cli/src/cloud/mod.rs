//! A local stand-in for the AWS account `infra/template.yaml` describes, to run the deployed
//! shape on one machine: every function its own process of its real binary behind a Runtime API,
//! the template's queues (with their dead-letter queues), bucket, secrets and event bus in moto,
//! its SQS event sources, schedules, EventBridge rules and HTTP API routes, the database with the deployment's roles, and
//! the vendor simulator. Everything is read from the template; nothing here names a function.
//!
//! It is a test stand-in for AWS, never a production engine: production is Lambda, SQS and
//! EventBridge.

pub mod account;
pub mod http;
pub mod lambda;
pub mod operator;
pub mod rules;
pub mod schedule;
pub mod sqs;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sim::{SimConfig, Simulator};

use self::account::{Database, Moto, Queue};
use self::lambda::{CountersView, Function, FunctionConfig, InvokeError};
use self::schedule::{Clock, Expression};
use self::template::{Resolver, ScheduleDef, Template};

/// The stand-in account's region and id.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("template: {0}")]
    Template(String),
    #[error("{0}")]
    Service(String),
    #[error("no schedule named {0:?} (the template's: {1})")]
    NoSchedule(String, String),
    #[error(transparent)]
    Invoke(#[from] InvokeError),
}

impl From<template::TemplateError> for CloudError {
    fn from(e: template::TemplateError) -> Self {
        CloudError::Template(e.to_string())
    }
}

impl From<schedule::ScheduleError> for CloudError {
    fn from(e: schedule::ScheduleError) -> Self {
        CloudError::Template(e.to_string())
    }
}

/// Makes a child process die with this one (Linux), so nothing outlives the stand-in.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the child being started; it is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

#[derive(Debug, Clone)]
pub struct CloudOptions {
    /// The functions' binaries (`<dir>/<Binary>`).
    pub bin_dir: PathBuf,
    /// Logs of every function (`<dir>/<function>.log`).
    pub log_dir: PathBuf,
    /// A superuser URL of the PostgreSQL server the account's database is created on.
    pub admin_url: String,
    pub database: String,
    /// Drop and recreate the database.
    pub fresh_database: bool,
    /// A running moto server; without one, one is started.
    pub moto_url: Option<String>,
    /// How many times faster than real time schedules, batching windows and visibility timeouts
    /// pass.
    pub clock: f64,
    /// Fire schedules on the clock (otherwise only `fire`).
    pub run_schedules: bool,
    pub sim: SimConfig,
    /// Chaos: each SQS message is delivered at least twice.
    pub deliver_twice: bool,
}

/// The running account.
pub struct Cloud {
    pub template: Template,
    pub sim: Simulator,
    pub db: Database,
    pub moto: Moto,
    pub gateway_url: String,
    pub stage: String,
    /// Queues by logical id.
    pub queues: HashMap<String, Queue>,
    pub functions: BTreeMap<String, Arc<Function>>,
    pub sqs: aws_sdk_sqs::Client,
    pub clock: Clock,
    schedules: Vec<(ScheduleDef, Expression, Arc<Function>)>,
    /// The queue each EventBridge rule delivers to (a matched event not yet handed on is here).
    rule_queues: Vec<String>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The overrides a local account needs on top of the template's environment: where AWS and the
/// vendors are, static credentials for moto, and development mode (the simulated homepages are
/// on loopback, which production's SSRF guard refuses).
fn local_overrides(moto: &str, sim: &str) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("AWS_ENDPOINT_URL", moto),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("LF_MODE", "development"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for v in shared::vendors::config::VENDOR_PREFIXES {
        env.insert(format!("LF_{v}_URL"), sim.to_owned());
    }
    env
}

impl Cloud {
    /// Creates the account from `template` and starts everything in it.
    pub async fn start(opts: CloudOptions, template: Template) -> Result<Cloud, CloudError> {
        let stage = template
            .parameters
            .get("Stage")
            .cloned()
            .ok_or_else(|| CloudError::Template("the Stage parameter has no value".into()))?;
        let sim = Simulator::start_local(opts.sim.clone())
            .await
            .map_err(|e| CloudError::Service(format!("starting the simulator: {e}")))?;
        let moto = Moto::start(opts.moto_url.clone()).await?;
        let db = account::provision_database(&opts.admin_url, &opts.database, opts.fresh_database)
            .await?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.url)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "cloud",
            ))
            .load()
            .await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let events = aws_sdk_eventbridge::Client::new(&sdk);

        let gateway = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| CloudError::Service(format!("the HTTP API's port: {e}")))?;
        let gateway_url = format!(
            "http://{}",
            gateway
                .local_addr()
                .map_err(|e| CloudError::Service(e.to_string()))?
        );

        // The secrets docs/deploy.md creates, with the simulator's keys.
        let c = &opts.sim;
        let base = sim.base_url();
        let db_secret = account::put_secret(
            &sm,
            &format!("leadfactory/{}/db", stage),
            &serde_json::json!({ "DATABASE_URL": db.app_url }),
        )
        .await?;
        let backup_secret = account::put_secret(
            &sm,
            &format!("leadfactory/{}/db-backup", stage),
            &serde_json::json!({ "DATABASE_URL": db.backup_url }),
        )
        .await?;
        let link_secret = uuid::Uuid::new_v4().simple().to_string().repeat(2);
        let vendor_secret = account::put_secret(
            &sm,
            &format!("leadfactory/{}/vendors", stage),
            &serde_json::json!({
                "YELP_API_KEY": c.yelp_key,
                "GOOGLE_PLACES_API_KEY": c.google_key,
                "GOOGLE_PAGESPEED_API_KEY": c.google_key,
                "OPENAI_API_KEY": c.openai_key,
                "SENDGRID_API_KEY": c.sendgrid_key,
                "SENDGRID_WEBHOOK_PUBLIC_KEY": sim.sendgrid_public_key()
                    .map_err(|e| CloudError::Service(e.to_string()))?,
                "STRIPE_SECRET_KEY": c.stripe_key,
                "STRIPE_WEBHOOK_SECRET": c.stripe_webhook_secret,
                "SLACK_WEBHOOK_URL": format!("{base}{}", c.slack_path),
                "LF_LINK_SECRET": link_secret,
            }),
        )
        .await?;

        let mut parameters = template.parameters.clone();
        parameters.extend([
            ("DatabaseSecretArn".to_owned(), db_secret),
            ("DatabaseBackupSecretArn".to_owned(), backup_secret),
            ("VendorSecretArn".to_owned(), vendor_secret),
            ("PublicBaseUrl".to_owned(), gateway_url.clone()),
        ]);
        let queues = account::create_queues(&sqs, &template).await?;
        let mut resolver = Resolver {
            parameters,
            ..Resolver::default()
        };
        resolver.conditions = template.conditions(&resolver)?;
        for (id, q) in &queues {
            resolver.refs.insert(id.clone(), q.url.clone());
            resolver
                .attributes
                .insert((id.clone(), "Arn".into()), q.arn.clone());
            resolver
                .attributes
                .insert((id.clone(), "QueueName".into()), q.def.name.clone());
        }
        for b in &template.buckets {
            let name = format!("leadfactory-{}-{}", stage, b.to_lowercase());
            account::create_bucket(&s3, &name).await?;
            resolver
                .attributes
                .insert((b.clone(), "Arn".into()), format!("arn:aws:s3:::{name}"));
            resolver.refs.insert(b.clone(), name);
        }
        for bus in &template.buses {
            let name =
                resolver.resolve(&format!("Resources.{}.Name", bus.logical_id), &bus.name)?;
            let arn = rules::create_bus(&events, &name).await?;
            resolver
                .attributes
                .insert((bus.logical_id.clone(), "Arn".into()), arn);
            resolver
                .attributes
                .insert((bus.logical_id.clone(), "Name".into()), name.clone());
            resolver.refs.insert(bus.logical_id.clone(), name);
        }

        for f in &template.functions {
            if !opts.bin_dir.join(&f.binary).is_file() {
                return Err(CloudError::Service(format!(
                    "{}: no binary {} (build the functions first: cargo build --bins)",
                    f.logical_id,
                    opts.bin_dir.join(&f.binary).display()
                )));
            }
        }
        let overrides = local_overrides(&moto.url, &base);
        let mut functions = BTreeMap::new();
        for f in &template.functions {
            let mut env = f.environment(&resolver)?;
            env.extend(overrides.clone());
            let name = f.name(&resolver)?;
            let function = Function::new(FunctionConfig {
                log: opts.log_dir.join(format!("{name}.log")),
                name,
                binary: opts.bin_dir.join(&f.binary),
                timeout: f.timeout,
                memory_mb: f.memory_mb,
                env,
            })
            .map_err(|e| CloudError::Service(format!("log of {}: {e}", f.logical_id)))?;
            functions.insert(f.logical_id.clone(), Arc::new(function));
        }

        let clock = Clock::new(opts.clock, chrono::Utc::now());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut routes = Vec::new();
        let mut schedules = Vec::new();
        let mut rule_queues = Vec::new();
        for f in &template.functions {
            let function = functions[&f.logical_id].clone();
            for r in &f.rules {
                let bus = resolver.resolve(&format!("{}.EventBusName", r.name), &r.bus)?;
                let queue = format!(
                    "leadfactory-{stage}-rule-{}",
                    r.name.to_lowercase().replace('.', "-")
                );
                let rule = Arc::new(
                    rules::create_rule(&events, &sqs, r, &bus, &queue, function.clone()).await?,
                );
                rule_queues.push(rule.queue_url.clone());
                tasks.push(tokio::spawn(rule.run(sqs.clone(), stop_rx.clone())));
            }
            for s in &f.sqs {
                let q = queues.get(&s.queue).ok_or_else(|| {
                    CloudError::Template(format!(
                        "{}.{}: {} is not a queue of the template",
                        f.logical_id, s.event, s.queue
                    ))
                })?;
                let mapping = Arc::new(sqs::Mapping::new(
                    s.clone(),
                    q.url.clone(),
                    q.arn.clone(),
                    q.def.visibility_timeout,
                    function.clone(),
                    sqs.clone(),
                    clock,
                    opts.deliver_twice,
                ));
                tasks.push(tokio::spawn(mapping.run(stop_rx.clone())));
            }
            for r in &f.routes {
                routes.push(http::Route {
                    method: r.method.clone(),
                    path: r.path.clone(),
                    function: function.clone(),
                });
            }
            for s in &f.schedules {
                let expr: Expression = s.expression.parse()?;
                schedules.push((s.clone(), expr, function.clone()));
            }
        }
        let api = Arc::new(http::Api::new(routes));
        let router = api.router();
        let mut gateway_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(gateway, router)
                .with_graceful_shutdown(async move {
                    let _ = gateway_stop.changed().await;
                })
                .await;
        }));
        if opts.run_schedules {
            for (def, expr, function) in &schedules {
                tasks.push(tokio::spawn(run_schedule(
                    def.clone(),
                    expr.clone(),
                    function.clone(),
                    clock,
                    stop_rx.clone(),
                )));
            }
        }
        Ok(Cloud {
            template,
            sim,
            db,
            moto,
            gateway_url,
            stage,
            queues,
            functions,
            sqs,
            clock,
            schedules,
            rule_queues,
            stop,
            tasks,
        })
    }

    /// The queue name prefix (`leadfactory-<stage>-`), as the `dlq` commands take it.
    pub fn queue_prefix(&self) -> String {
        format!("leadfactory-{}-", self.stage)
    }

    /// The schedules' names (`<Function>.<Event>`).
    pub fn schedule_names(&self) -> Vec<String> {
        self.schedules
            .iter()
            .map(|(d, _, _)| d.name.clone())
            .collect()
    }

    /// Invokes a schedule's function now with the event its rule sends, and returns the
    /// function's answer. `name` is `<Function>.<Event>` or an event name found once.
    pub async fn fire(&self, name: &str) -> Result<serde_json::Value, CloudError> {
        let matching: Vec<_> = self
            .schedules
            .iter()
            .filter(|(d, _, _)| d.name == name || d.event == name)
            .collect();
        let [(def, _, function)] = matching[..] else {
            return Err(CloudError::NoSchedule(
                name.to_owned(),
                self.schedule_names().join(", "),
            ));
        };
        Ok(function
            .invoke(&scheduled_event(def, self.clock.now()))
            .await?)
    }

    /// Live function processes: (function, pid, serving an invocation).
    pub fn processes(&self) -> Vec<(String, u32, bool)> {
        self.functions
            .iter()
            .flat_map(|(id, f)| {
                f.pids()
                    .into_iter()
                    .map(move |(pid, busy)| (id.clone(), pid, busy))
            })
            .collect()
    }

    pub fn counters(&self) -> BTreeMap<String, CountersView> {
        self.functions
            .iter()
            .map(|(id, f)| (id.clone(), f.counters.view()))
            .collect()
    }

    /// Messages on the main queues (visible, in flight or delayed) and events matched by a rule
    /// but not yet handed to its function, not counting DLQs.
    pub async fn outstanding(&self) -> Result<u64, CloudError> {
        let mut n = 0;
        let main = self.queues.values().filter(|q| q.def.redrive.is_some());
        for url in main.map(|q| &q.url).chain(&self.rule_queues) {
            n += sqs::outstanding(&self.sqs, url)
                .await
                .map_err(CloudError::Service)?;
        }
        Ok(n)
    }

    /// Messages in the dead-letter queues.
    pub async fn dead_lettered(&self) -> Result<u64, CloudError> {
        let mut n = 0;
        for q in self.queues.values().filter(|q| q.def.redrive.is_none()) {
            n += sqs::outstanding(&self.sqs, &q.url)
                .await
                .map_err(CloudError::Service)?;
        }
        Ok(n)
    }

    /// Waits until no main queue holds a message and no function serves an invocation.
    pub async fn settle(&self, limit: Duration) -> Result<(), CloudError> {
        let until = tokio::time::Instant::now() + limit;
        let mut quiet = 0;
        while tokio::time::Instant::now() < until {
            let busy = self.processes().iter().any(|(_, _, b)| *b);
            if !busy && self.outstanding().await? == 0 {
                quiet += 1;
                if quiet >= 3 {
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(CloudError::Service(format!(
            "the queues did not drain within {} s",
            limit.as_secs()
        )))
    }

    /// Stops every event source, schedule and function process, and moto when started here.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for f in self.functions.values() {
            f.stop().await;
        }
        self.moto.stop().await;
    }
}

/// The event an EventBridge schedule sends (or the rule's constant input).
fn scheduled_event(def: &ScheduleDef, at: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    if let Some(input) = def
        .input
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok())
    {
        return input;
    }
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{}", def.name)],
        "detail": {},
    })
}

/// Fires one schedule whenever the clock passes its next time. As EventBridge invokes
/// asynchronously, a failed invocation is retried twice.
async fn run_schedule(
    def: ScheduleDef,
    expr: Expression,
    function: Arc<Function>,
    clock: Clock,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let origin = clock.now();
    let mut after = origin;
    loop {
        let Some(next) = expr.next_after(after, origin) else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(clock.until(next)) => {}
            _ = stop.changed() => return,
        }
        after = next;
        let event = scheduled_event(&def, next);
        for _ in 0..3 {
            if function.invoke(&event).await.is_ok() {
                break;
            }
        }
    }
}
