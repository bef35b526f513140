//! The test harness: real services for integration tests.
//!
//! * PostgreSQL — `LF_TEST_PG_ADMIN_URL` (set by `scripts/test`) names a running server's
//!   superuser URL; without it the harness starts its own throwaway cluster. Each test gets its
//!   own database, copied from a migrated template (fast), and dropped afterwards.
//! * moto — `LF_TEST_MOTO_URL` (set by `scripts/test`) names a running moto server; without it
//!   the harness starts `moto_server` itself (from `PATH` or the project's tool venv).
//!
//! Services the harness starts are stopped by a watchdog when the test process exits. Nothing
//! is ever skipped for want of a service: failing to start one fails the test, with the reason.

pub mod dedup_set;
pub mod population;
pub mod round_trips;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use secrecy::SecretString;
use shared::db::cluster::{self, LocalCluster};

/// Runs an async set-up step on a runtime of its own, so what it leaves behind (a name, a URL)
/// is not tied to the runtime of whichever test happened to call first.
fn block_on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(f)
    })
    .join()
    .expect("set-up thread")
}

/// Stops `what` when this test process exits, by a small shell watchdog.
fn stop_on_exit(stop_command: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {{ {stop_command}; }} >/dev/null 2>&1",
        pid = std::process::id()
    );
    let _ = Command::new("sh").arg("-c").arg(script).spawn();
}

// ------------------------------------------------------------------ PostgreSQL

struct PgServer {
    /// Superuser URL of the maintenance database (`postgres`).
    admin_url: String,
    port: u16,
}

fn pg_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("LF_TEST_PG_ADMIN_URL") {
            let cfg: tokio_postgres::Config = url
                .parse()
                .expect("LF_TEST_PG_ADMIN_URL is not a PostgreSQL URL");
            let port = cfg.get_ports().first().copied().unwrap_or(5432);
            return PgServer {
                admin_url: url,
                port,
            };
        }
        let dir = std::env::temp_dir().join(format!("lf-test-pg-{}", std::process::id()));
        let c = block_on_own_runtime({
            let dir = dir.clone();
            async move { LocalCluster::start(&dir, false).await }
        })
        .unwrap_or_else(|e| panic!("could not start a PostgreSQL server for the tests: {e}"));
        stop_cluster_on_exit(&dir, &format!("; rm -rf {}", dir.display()));
        PgServer {
            admin_url: c.admin_url("postgres"),
            port: c.port,
        }
    })
}

/// A PostgreSQL server of this test's own under `dir` (for a test that needs server settings
/// the shared one lacks, or reads the server's log at `dir/server.log`), stopped when the test
/// process exits.
pub async fn own_cluster(dir: &std::path::Path) -> LocalCluster {
    let c = LocalCluster::start(dir, false)
        .await
        .unwrap_or_else(|e| panic!("could not start a PostgreSQL server: {e}"));
    stop_cluster_on_exit(dir, "");
    c
}

/// Stops the cluster under `dir` when this test process exits, then runs `then` (shell).
fn stop_cluster_on_exit(dir: &std::path::Path, then: &str) {
    let bin = cluster::find_bin_dir().expect("pg binaries");
    let runuser = if cluster::running_as_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    stop_on_exit(&format!(
        "{runuser}{} -D {} -m immediate stop{then}",
        bin.join("pg_ctl").display(),
        dir.join("data").display()
    ));
}

/// A superuser URL of the test server's maintenance database, for harnesses that create their
/// own databases and roles (the cloud stand-in does, as docs/deploy.md says).
pub fn pg_admin_url() -> String {
    pg_server().admin_url.clone()
}

fn url_for(user: &str, port: u16, db: &str) -> String {
    format!("postgres://{user}@127.0.0.1:{port}/{db}")
}

/// A migrated template database for this test process.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let server = pg_server();
        let name = format!("lf_tpl_{}_{}", std::process::id(), rand::random::<u32>());
        let admin = server.admin_url.clone();
        let n = name.clone();
        block_on_own_runtime(async move { cluster::prepare_database(&admin, &n).await })
            .unwrap_or_else(|e| panic!("could not migrate the template database: {e}"));
        name
    })
}

/// A fresh, migrated database for one test; dropped when the value is.
pub struct TestDb {
    pub name: String,
    port: u16,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = pg_server();
        let tpl = template();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&server.admin_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
            .await
            .expect("create test database");
        drop(client);
        let _ = task.await;
        TestDb {
            name,
            port: server.port,
        }
    }

    /// Superuser URL: owns everything, bypasses RLS. For set-up and inspection only.
    pub fn admin_url(&self) -> String {
        url_for(cluster::SUPERUSER, self.port, &self.name)
    }

    /// Application-role URL: what functions use; RLS applies.
    pub fn app_url(&self) -> SecretString {
        SecretString::from(url_for(cluster::APP_LOGIN, self.port, &self.name))
    }

    /// The server's address, e.g. for a relay in front of it.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The application-role URL through `relay` (which counts round trips).
    pub fn app_url_through(&self, relay: &round_trips::Relay) -> SecretString {
        SecretString::from(url_for(cluster::APP_LOGIN, relay.port, &self.name))
    }

    /// A pool as the application role that reaches the server through `relay`.
    pub fn app_pool_through(&self, relay: &round_trips::Relay, size: usize) -> shared::db::Pool {
        shared::db::connect(&self.app_url_through(relay), size).expect("app pool")
    }

    /// A connection as `role` (e.g. the operators' `leadfactory_backup`, `leadfactory_restore`),
    /// as docs/deploy.md creates it: never the superuser.
    pub async fn connect_as(&self, role: &str) -> tokio_postgres::Client {
        let (client, conn) =
            tokio_postgres::connect(&url_for(role, self.port, &self.name), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect as {role}: {e}"));
        tokio::spawn(conn);
        client
    }

    /// A pool as `role`, as a function whose secret names that role builds it (the backup
    /// function's is `leadfactory_backup`).
    pub fn pool_as(&self, role: &str) -> shared::db::Pool {
        shared::db::connect(&SecretString::from(url_for(role, self.port, &self.name)), 2)
            .unwrap_or_else(|e| panic!("pool as {role}: {e}"))
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.admin_url(), tokio_postgres::NoTls)
            .await
            .expect("connect as admin");
        tokio::spawn(conn);
        client
    }

    /// A pool as the application role, built the way functions build theirs.
    pub fn app_pool(&self) -> shared::db::Pool {
        shared::db::connect(&self.app_url(), 4).expect("app pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = pg_server().admin_url.clone();
        let name = self.name.clone();
        block_on_own_runtime(async move {
            if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
            {
                tokio::spawn(conn);
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

// ------------------------------------------------------------------ moto (AWS emulator)

fn moto_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LF_MOTO_BIN") {
        return p.into();
    }
    tool_bin("moto_server")
}

/// A Python tool `scripts/test` installs into the project's tool venv (`LF_TOOLS_VENV`, by
/// default `~/.cache/leadfactory-venv`), or the one on `PATH`.
pub fn tool_bin(name: &str) -> PathBuf {
    let venv = std::env::var("LF_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/leadfactory-venv")
        });
    let candidate = venv.join("bin").join(name);
    if candidate.is_file() {
        candidate
    } else {
        name.into()
    }
}

/// The moto server's endpoint URL.
pub fn moto_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("LF_TEST_MOTO_URL") {
            return url;
        }
        let port = cluster::free_port().expect("free port");
        let bin = moto_bin();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start moto_server ({}): {e}; run scripts/test, which installs it",
                    bin.display()
                )
            });
        stop_on_exit(&format!("kill {}", child.id()));
        // Kept for the life of the process; the watchdog above ends it.
        static CHILD: std::sync::Mutex<Option<std::process::Child>> = std::sync::Mutex::new(None);
        *CHILD.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return url;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start listening on {url} within 15 s");
    })
}

/// SDK configuration pointed at moto with static test credentials.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

/// The function crates: the directories under `functions/` (which also holds the build script
/// and linker script they share).
pub fn function_dirs() -> std::collections::BTreeSet<String> {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
        .expect("functions/ is readable")
        .map(|e| e.expect("functions/ entry"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The directory of the workspace's binaries (the functions' and `leadfactory`), built now by
/// cargo into the target directory this test runs from, so they are never stale.
pub fn built_binaries() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's path");
        // <target>/<profile>/deps/<test>
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("a test binary lives in <target>/<profile>/deps")
            .to_owned();
        let target = profile_dir.parent().expect("<target>").to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins", "--target-dir"])
            .arg(&target)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build --bins failed");
        profile_dir
    })
    .clone()
}

/// A name no other test uses, for buckets and queues on the shared moto server.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

// ------------------------------------------------------------------ a bus with a hook on send

use std::sync::Arc;

/// What a [`HookedBus`] does with one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSend {
    /// Send as usual.
    Pass,
    /// Send twice (at-least-once delivery).
    Twice,
    /// Refuse, as an outage between commit and send would.
    Fail,
}

/// Delegates to an in-process bus, letting a test decide what each send does
/// (`hook(queue, call_number)`), and keeps each queue's deepest visible backlog after a send.
pub struct HookedBus<F> {
    pub inner: Arc<shared::bus::MemoryBus>,
    calls: std::sync::atomic::AtomicUsize,
    hook: F,
    deepest: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// A queue whose depth cannot be read now (SQS refusing, as a missing grant would).
    unreadable: std::sync::Mutex<Option<String>>,
}

impl<F: Fn(&str, usize) -> OnSend + Send + Sync> HookedBus<F> {
    pub fn new(inner: Arc<shared::bus::MemoryBus>, hook: F) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
            hook,
            deepest: Default::default(),
            unreadable: Default::default(),
        }
    }

    /// Makes `queue`'s depth unreadable (`None`: readable again).
    pub fn make_unreadable(&self, queue: Option<&str>) {
        *self.unreadable.lock().unwrap() = queue.map(str::to_owned);
    }

    /// The most visible messages `queue` held right after any send so far.
    pub fn deepest(&self, queue: &str) -> u64 {
        self.deepest
            .lock()
            .unwrap()
            .get(queue)
            .copied()
            .unwrap_or(0)
    }

    async fn note_depth(&self, queue: &str) -> Result<(), shared::bus::BusError> {
        let visible = shared::bus::Bus::depth(self.inner.as_ref(), queue)
            .await?
            .visible;
        let mut deepest = self.deepest.lock().unwrap();
        let d = deepest.entry(queue.to_owned()).or_default();
        *d = (*d).max(visible);
        Ok(())
    }
}

#[async_trait::async_trait]
impl<F: Fn(&str, usize) -> OnSend + Send + Sync> shared::bus::Bus for HookedBus<F> {
    async fn send_delayed(
        &self,
        queue: &str,
        bodies: &[String],
        delay: Duration,
    ) -> Result<(), shared::bus::BusError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (self.hook)(queue, n) {
            OnSend::Pass => self.inner.send_delayed(queue, bodies, delay).await?,
            OnSend::Twice => {
                self.inner.send_delayed(queue, bodies, delay).await?;
                self.inner.send_delayed(queue, bodies, delay).await?
            }
            OnSend::Fail => {
                return Err(shared::bus::BusError::Service {
                    queue: queue.into(),
                    detail: "injected outage".into(),
                });
            }
        }
        self.note_depth(queue).await
    }
    async fn receive(
        &self,
        queue: &str,
        max: usize,
    ) -> Result<Vec<shared::bus::Delivery>, shared::bus::BusError> {
        self.inner.receive(queue, max).await
    }
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), shared::bus::BusError> {
        self.inner.delete(queue, receipt).await
    }
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        t: Duration,
    ) -> Result<(), shared::bus::BusError> {
        self.inner.change_visibility(queue, receipt, t).await
    }
    async fn depth(&self, queue: &str) -> Result<shared::bus::QueueDepth, shared::bus::BusError> {
        if self.unreadable.lock().unwrap().as_deref() == Some(queue) {
            return Err(shared::bus::BusError::Service {
                queue: queue.into(),
                detail: "AccessDenied: not authorized to perform sqs:GetQueueAttributes".into(),
            });
        }
        self.inner.depth(queue).await
    }
}

/// The example campaign (`examples/san-jose-restaurants.toml`), validated.
pub fn example_campaign() -> leadfactory_cli::campaign::CampaignFile {
    leadfactory_cli::campaign::CampaignFile::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/san-jose-restaurants.toml"
    )))
    .expect("the example campaign is valid")
}

/// A local pipeline on `db` and a store under `store`, its tenant created, the example
/// campaign in place; `tweak` adjusts the options first.
pub async fn local_pipeline(
    db: &TestDb,
    store: &std::path::Path,
    tweak: impl FnOnce(&mut leadfactory_cli::local::LocalOptions),
) -> leadfactory_cli::local::LocalPipeline {
    let mut opts = leadfactory_cli::local::LocalOptions::new(db.app_url(), store.to_owned());
    tweak(&mut opts);
    let bus = std::sync::Arc::new(leadfactory_cli::local::memory_bus(
        Duration::from_secs(30),
        3,
    ));
    let p = leadfactory_cli::local::LocalPipeline::start(opts, bus)
        .await
        .expect("local pipeline");
    p.ensure_tenant("Test agency").await.expect("tenant");
    let mut pool = p.pool().clone();
    example_campaign()
        .upsert(&mut pool, p.tenant)
        .await
        .expect("campaign");
    p
}

/// Every hop's queue and its DLQ on moto (`maxReceiveCount` as given), under a fresh prefix,
/// as a [`shared::bus::SqsBus`]: the pipeline over real SQS semantics.
pub async fn moto_pipeline_bus(max_receive_count: u32) -> shared::bus::SqsBus {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sdk = moto_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let prefix = format!("{}-", unique_name("lf"));
    let mut urls = std::collections::HashMap::new();
    for q in shared::bus::Queue::ALL {
        let dlq = q.dlq();
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{prefix}{dlq}"))
            .send()
            .await
            .expect("dlq")
            .queue_url
            .expect("url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .expect("arn")
            .attributes
            .expect("attributes")[&A::QueueArn]
            .clone();
        let url = sqs
            .create_queue()
            .queue_name(format!("{prefix}{q}"))
            .attributes(A::VisibilityTimeout, "30")
            .attributes(
                A::RedrivePolicy,
                serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count }).to_string(),
            )
            .send()
            .await
            .expect("queue")
            .queue_url
            .expect("url");
        urls.insert(q.name().to_owned(), url);
        urls.insert(dlq.to_owned(), dlq_url);
    }
    shared::bus::SqsBus::new(sqs, urls)
}

/// A business and its full report ($49, six pages) in `tenant`, written as the pipeline leaves
/// them: what a Stripe checkout's metadata names. The report's token is `token_char` 40 times.
pub async fn business_with_report(
    admin: &tokio_postgres::Client,
    tenant: uuid::Uuid,
    token_char: char,
) -> (uuid::Uuid, uuid::Uuid) {
    let (business, report) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    admin
        .execute(
            "INSERT INTO businesses (id, tenant_id, name, name_norm) VALUES ($1, $2, 'Joe', 'joe')",
            &[&business, &tenant],
        )
        .await
        .expect("business");
    admin
        .execute(
            "INSERT INTO reports (id, tenant_id, business_id, token, preview_key, full_key, pages, bytes, price_cents)
             VALUES ($1, $2, $3, repeat($4, 40), 'reports/p.pdf', 'reports/f.pdf', 6, 1000, 4900)",
            &[&report, &tenant, &business, &token_char.to_string()],
        )
        .await
        .expect("report");
    (business, report)
}

/// An event bus that refuses every event (EventBridge throttling or failing).
pub struct RefusingBus;

#[async_trait::async_trait]
impl shared::events::Publisher for RefusingBus {
    async fn put(
        &self,
        _: &[shared::events::Outgoing],
    ) -> Result<Vec<Option<String>>, shared::events::PublishError> {
        Err(shared::events::PublishError::Service {
            bus: "refusing".into(),
            detail: "ThrottlingException: rate exceeded".into(),
        })
    }
}
