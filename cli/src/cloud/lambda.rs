//! Functions run as Lambda runs them: each instance is its own OS process of the function's real
//! binary, started with the template's environment, polling its own Runtime API endpoint. An
//! instance initialises once and serves invocations one at a time; concurrent invocations start
//! more instances; an invocation that outlives the function's Timeout has its process killed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

/// Lambda's limit on a function's init phase.
const INIT_LIMIT: Duration = Duration::from_secs(10);
/// Lines of a process's output kept for error reports.
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("{function}: init failed (exit {status}): {output}")]
    Init {
        function: String,
        status: String,
        output: String,
    },
    #[error("{function}: {error_type}: {message}")]
    Function {
        function: String,
        error_type: String,
        message: String,
    },
    #[error("{function}: task timed out after {secs} seconds")]
    TimedOut { function: String, secs: u64 },
    #[error("{function}: the process exited during the invocation ({status})")]
    Crashed { function: String, status: String },
    #[error("{function}: {detail}")]
    Start { function: String, detail: String },
}

/// How one function's instances are started.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// The function's resolved name (`FunctionName`).
    pub name: String,
    pub binary: PathBuf,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Exactly the environment the template gives it, plus the local account's overrides.
    pub env: BTreeMap<String, String>,
    pub log: PathBuf,
}

/// Counters a test or the summary reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub cold_starts: AtomicU64,
    pub invocations: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    /// Instances found dead (killed from outside, or crashed).
    pub lost: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CountersView {
    pub cold_starts: u64,
    pub invocations: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub lost: u64,
}

impl Counters {
    pub fn view(&self) -> CountersView {
        CountersView {
            cold_starts: self.cold_starts.load(Ordering::Relaxed),
            invocations: self.invocations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// What a runtime answered for one invocation.
enum Answer {
    Response(Vec<u8>),
    Error(Vec<u8>),
}

struct Invocation {
    id: String,
    body: Vec<u8>,
    deadline_ms: i64,
    answer: oneshot::Sender<Answer>,
}

/// How an instance's init ended: its first `next`, or the body of its init error.
type InitOutcome = Result<(), Vec<u8>>;

/// The Runtime API of one instance.
struct Api {
    function_arn: String,
    invocations: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<Option<(String, oneshot::Sender<Answer>)>>,
    ready: Mutex<Option<oneshot::Sender<InitOutcome>>>,
}

async fn next(State(api): State<Arc<Api>>) -> Response {
    if let Some(ready) = lock(&api.ready).take() {
        let _ = ready.send(Ok(()));
    }
    let Some(inv) = api.invocations.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut h = HeaderMap::new();
    let deadline = inv.deadline_ms.to_string();
    let trace = format!(
        "Root=1-{:08x}-{};Sampled=0",
        chrono::Utc::now().timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..24]
    );
    for (k, v) in [
        ("lambda-runtime-aws-request-id", inv.id.as_str()),
        ("lambda-runtime-deadline-ms", deadline.as_str()),
        (
            "lambda-runtime-invoked-function-arn",
            api.function_arn.as_str(),
        ),
        ("lambda-runtime-trace-id", trace.as_str()),
        ("content-type", "application/json"),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    *lock(&api.pending) = Some((inv.id, inv.answer));
    (StatusCode::OK, h, inv.body).into_response()
}

fn answer(api: &Api, id: &str, a: Answer) -> StatusCode {
    let mut pending = lock(&api.pending);
    match pending.take() {
        Some((current, tx)) if current == id => {
            let _ = tx.send(a);
            StatusCode::ACCEPTED
        }
        other => {
            *pending = other;
            StatusCode::BAD_REQUEST
        }
    }
}

async fn response(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    answer(&api, &id, Answer::Response(body.to_vec()))
}

async fn error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    answer(&api, &id, Answer::Error(body.to_vec()))
}

async fn init_error(State(api): State<Arc<Api>>, body: axum::body::Bytes) -> StatusCode {
    if let Some(ready) = lock(&api.ready).take() {
        let _ = ready.send(Err(body.to_vec()));
    }
    StatusCode::ACCEPTED
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One running instance: its process and the channel its Runtime API serves invocations from.
struct Instance {
    child: tokio::process::Child,
    pid: u32,
    send: mpsc::Sender<Invocation>,
    output: Arc<Mutex<VecDeque<String>>>,
    _server: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Instance {
    fn tail(&self) -> String {
        lock(&self.output)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A function: its configuration, idle instances and the pids of all live ones.
pub struct Function {
    pub config: FunctionConfig,
    idle: Mutex<Vec<Instance>>,
    busy: Mutex<BTreeSet<u32>>,
    all: Mutex<BTreeSet<u32>>,
    pub counters: Counters,
    log: Arc<Mutex<std::fs::File>>,
}

impl Function {
    pub fn new(config: FunctionConfig) -> std::io::Result<Function> {
        if let Some(dir) = config.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.log)?;
        Ok(Function {
            config,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(BTreeSet::new()),
            all: Mutex::new(BTreeSet::new()),
            counters: Counters::default(),
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn err_start(&self, detail: impl std::fmt::Display) -> InvokeError {
        InvokeError::Start {
            function: self.config.name.clone(),
            detail: detail.to_string(),
        }
    }

    /// Pids of the live instances, and whether each is serving an invocation.
    pub fn pids(&self) -> Vec<(u32, bool)> {
        let busy = lock(&self.busy);
        lock(&self.all)
            .iter()
            .map(|p| (*p, busy.contains(p)))
            .collect()
    }

    /// Starts an instance and waits for its init to end (its first `next`).
    async fn start(&self) -> Result<Instance, InvokeError> {
        let (send, recv) = mpsc::channel(1);
        let (ready_tx, ready_rx) = oneshot::channel();
        let api = Arc::new(Api {
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                super::REGION,
                super::ACCOUNT,
                self.config.name
            ),
            invocations: tokio::sync::Mutex::new(recv),
            pending: Mutex::new(None),
            ready: Mutex::new(Some(ready_tx)),
        });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| self.err_start(e))?;
        let addr = listener.local_addr().map_err(|e| self.err_start(e))?;
        let server = AbortOnDrop(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let mut cmd = tokio::process::Command::new(&self.config.binary);
        cmd.env_clear()
            .envs(&self.config.env)
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.config.name)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.config.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.config.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                uuid::Uuid::new_v4().to_string(),
            )
            .env("AWS_REGION", super::REGION)
            .env("AWS_DEFAULT_REGION", super::REGION)
            .env("_HANDLER", "bootstrap")
            .env("TZ", ":UTC")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // The instance dies with the stand-in, whatever ends it.
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the child being started; it is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            self.err_start(format!("starting {}: {e}", self.config.binary.display()))
        })?;
        let pid = child.id().unwrap_or_default();
        let output = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            self.copy_output(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            self.copy_output(err, output.clone());
        }
        self.counters.cold_starts.fetch_add(1, Ordering::Relaxed);
        lock(&self.all).insert(pid);
        let mut inst = Instance {
            child,
            pid,
            send,
            output,
            _server: server,
        };
        let init = tokio::select! {
            r = ready_rx => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(body)) => Err(String::from_utf8_lossy(&body).into_owned()),
                Err(_) => Err("the runtime API closed".to_owned()),
            },
            status = inst.child.wait() => {
                // Let the output copiers catch up with what the process printed last.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                lock(&self.all).remove(&pid);
                return Err(InvokeError::Init {
                    function: self.config.name.clone(),
                    status,
                    output: inst.tail(),
                });
            }
            _ = tokio::time::sleep(INIT_LIMIT) => Err(format!("init took longer than {} s", INIT_LIMIT.as_secs())),
        };
        match init {
            Ok(()) => Ok(inst),
            Err(reason) => {
                let _ = inst.child.kill().await;
                lock(&self.all).remove(&pid);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(InvokeError::Init {
                    function: self.config.name.clone(),
                    status: reason,
                    output: inst.tail(),
                })
            }
        }
    }

    fn copy_output(
        &self,
        stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        tail: Arc<Mutex<VecDeque<String>>>,
    ) {
        use std::io::Write;
        use tokio::io::AsyncBufReadExt;
        let log = self.log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(lock(&log), "{line}");
                let mut t = lock(&tail);
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
    }

    /// An idle live instance, or a new one.
    async fn instance(&self) -> Result<Instance, InvokeError> {
        loop {
            let candidate = lock(&self.idle).pop();
            match candidate {
                Some(mut i) => match i.child.try_wait() {
                    Ok(None) => return Ok(i),
                    _ => {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        lock(&self.all).remove(&i.pid);
                    }
                },
                None => return self.start().await,
            }
        }
    }

    /// One synchronous invocation: the function's answer, or why there is none.
    pub async fn invoke(
        &self,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        let result = self.invoke_once(payload).await;
        if let Err(e) = &result {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            if matches!(e, InvokeError::TimedOut { .. }) {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(function = %self.config.name, error = %e, "invocation failed");
        }
        result
    }

    async fn invoke_once(
        &self,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        let mut inst = self.instance().await?;
        let (tx, rx) = oneshot::channel();
        let deadline = chrono::Utc::now()
            + chrono::Duration::from_std(self.config.timeout).unwrap_or_default();
        let inv = Invocation {
            id: uuid::Uuid::new_v4().to_string(),
            body: serde_json::to_vec(payload).unwrap_or_default(),
            deadline_ms: deadline.timestamp_millis(),
            answer: tx,
        };
        let pid = inst.pid;
        lock(&self.busy).insert(pid);
        let sent = inst.send.send(inv).await.is_ok();
        let outcome = if sent {
            tokio::select! {
                a = rx => Some(a.ok()),
                status = inst.child.wait() => {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    lock(&self.busy).remove(&pid);
                    lock(&self.all).remove(&pid);
                    self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    return Err(InvokeError::Crashed { function: self.config.name.clone(), status });
                }
                _ = tokio::time::sleep(self.config.timeout) => None,
            }
        } else {
            Some(None)
        };
        lock(&self.busy).remove(&pid);
        match outcome {
            None => {
                // Lambda ends the sandbox of a timed-out invocation.
                let _ = inst.child.kill().await;
                lock(&self.all).remove(&pid);
                Err(InvokeError::TimedOut {
                    function: self.config.name.clone(),
                    secs: self.config.timeout.as_secs(),
                })
            }
            Some(None) => {
                let _ = inst.child.kill().await;
                lock(&self.all).remove(&pid);
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                Err(InvokeError::Crashed {
                    function: self.config.name.clone(),
                    status: "the runtime stopped answering".into(),
                })
            }
            Some(Some(answer)) => {
                lock(&self.idle).push(inst);
                match answer {
                    Answer::Response(body) => {
                        Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
                    }
                    Answer::Error(body) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        Err(InvokeError::Function {
                            function: self.config.name.clone(),
                            error_type: v["errorType"].as_str().unwrap_or("Unhandled").to_owned(),
                            message: v["errorMessage"]
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
                        })
                    }
                }
            }
        }
    }

    /// Ends every instance.
    pub async fn stop(&self) {
        let idle: Vec<Instance> = lock(&self.idle).drain(..).collect();
        for mut i in idle {
            let _ = i.child.kill().await;
        }
        for pid in lock(&self.all).iter() {
            if let Ok(p) = i32::try_from(*pid) {
                // SAFETY: kill(2) with a pid this stand-in started; no memory is involved.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
        lock(&self.all).clear();
    }
}
