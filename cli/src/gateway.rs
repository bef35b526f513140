//! A local stand-in for API Gateway: plain HTTP in, the HTTP functions' real handlers called with
//! the `ApiGatewayV2httpRequest` API Gateway would build, their responses written back. The local
//! run serves the storefront, both webhooks and the ops API through it, so the simulator's signed events and
//! a buyer's browser reach exactly the code Lambda runs.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The HTTP functions behind the gateway.
pub struct Functions {
    pub storefront: storefront::StorefrontDeps,
    pub sendgrid: sendgrid_webhook::WebhookDeps,
    pub stripe: stripe_webhook::WebhookDeps,
    pub ops: ops_api::OpsApi,
}

/// The largest body the gateway passes on (API Gateway's own limit is 10 MB).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// Converts a request the way API Gateway's payload v2 does.
pub fn to_apigw(
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> ApiGatewayV2httpRequest {
    let mut req = ApiGatewayV2httpRequest::default();
    req.raw_path = Some(uri.path().to_owned());
    req.raw_query_string = uri.query().map(str::to_owned);
    req.headers = headers.clone();
    req.request_context.http.method = method.parse().unwrap_or(http::Method::GET);
    req.request_context.http.path = Some(uri.path().to_owned());
    if let Some(q) = uri.query() {
        let mut params: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (k, v) in serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default() {
            params.entry(k).or_default().push(v);
        }
        req.query_string_parameters = params.into();
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(t) => req.body = Some(t.to_owned()),
            Err(_) => {
                req.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
                req.is_base64_encoded = true;
            }
        }
    }
    req
}

/// Converts a function's response back to HTTP.
pub fn from_apigw(r: ApiGatewayV2httpResponse) -> Response {
    let status = http::StatusCode::from_u16(u16::try_from(r.status_code).unwrap_or(500))
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let body: Vec<u8> = match r.body {
        Some(Body::Text(t)) => t.into_bytes(),
        Some(Body::Binary(b)) => b,
        Some(_) | None => Vec::new(),
    };
    let mut resp = (status, body).into_response();
    for (k, v) in r.headers.iter() {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

async fn dispatch(State(f): State<Arc<Functions>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let event = to_apigw(parts.method.as_str(), &parts.uri, &parts.headers, &bytes);
    let resp = match parts.uri.path() {
        "/webhooks/sendgrid" => sendgrid_webhook::handler(&f.sendgrid, event).await,
        "/webhooks/stripe" => stripe_webhook::handler(&f.stripe, event).await,
        p if p.starts_with("/v1/") => f.ops.handler(event).await,
        _ => storefront::handler(&f.storefront, event).await,
    };
    from_apigw(resp)
}

/// Serves `functions` on `listener` until the task is dropped.
pub fn serve(
    listener: tokio::net::TcpListener,
    functions: Arc<Functions>,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().fallback(dispatch).with_state(functions);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "local gateway stopped");
        }
    })
}

/// Binds a free loopback port.
pub async fn bind() -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let l = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}
