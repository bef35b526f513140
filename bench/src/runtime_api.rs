//! A stand-in for the Lambda Runtime API (the endpoints a `lambda_runtime` binary calls): one
//! server per measured process. It records when the process first asks for work (its init is
//! over) and when each invocation's answer arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, Notify, mpsc};

pub struct Api {
    events: Mutex<mpsc::Receiver<(String, String)>>,
    pub first_next: Mutex<Option<Instant>>,
    pub ready: Notify,
    done: mpsc::Sender<(String, Instant, bool)>,
}

pub struct Handle {
    pub addr: SocketAddr,
    pub api: Arc<Api>,
    pub send: mpsc::Sender<(String, String)>,
    pub done: mpsc::Receiver<(String, Instant, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(State(api): State<Arc<Api>>) -> Response {
    {
        let mut first = api.first_next.lock().await;
        if first.is_none() {
            *first = Some(Instant::now());
            api.ready.notify_one();
        }
    }
    let got = api.events.lock().await.recv().await;
    let Some((id, body)) = got else {
        return StatusCode::GONE.into_response();
    };
    let mut h = HeaderMap::new();
    let deadline = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", id.as_str()),
        ("lambda-runtime-deadline-ms", deadline.as_str()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench",
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0",
        ),
        ("content-type", "application/json"),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    (StatusCode::OK, h, body).into_response()
}

async fn response(State(api): State<Arc<Api>>, Path(id): Path<String>) -> StatusCode {
    let _ = api.done.send((id, Instant::now(), false)).await;
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Arc<Api>>, Path(id): Path<String>) -> StatusCode {
    let _ = api.done.send((id, Instant::now(), true)).await;
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<Api>>) -> StatusCode {
    let _ = api.done.send(("init".into(), Instant::now(), true)).await;
    api.ready.notify_one();
    StatusCode::ACCEPTED
}

pub async fn start() -> std::io::Result<Handle> {
    let (send, events) = mpsc::channel(4);
    let (done_tx, done) = mpsc::channel(4);
    let api = Arc::new(Api {
        events: Mutex::new(events),
        first_next: Mutex::new(None),
        ready: Notify::new(),
        done: done_tx,
    });
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Handle {
        addr,
        api,
        send,
        done,
        task,
    })
}
