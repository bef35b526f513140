//! The template's HTTP API: every `HttpApi` route on one local port, each request passed to its
//! function as API Gateway's payload v2 and the function's answer written back. As API Gateway
//! does, an unknown route is a 404, a function error a 500 and an answer later than the
//! integration limit a 503.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::apigw::ApiGatewayV2httpResponse;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::lambda::Function;

/// API Gateway's integration timeout for HTTP APIs.
const INTEGRATION_LIMIT: Duration = Duration::from_secs(30);
/// API Gateway's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// One route: `METHOD /path/{param}/{proxy+}`.
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: Arc<Function>,
}

/// The path parameters when `method` and `path` match the route `route_method route_path`.
fn matches(
    route_method: &str,
    route_path: &str,
    method: &str,
    path: &str,
) -> Option<HashMap<String, String>> {
    if route_method != "ANY" && route_method != method {
        return None;
    }
    let mut params = HashMap::new();
    let mut want = route_path.trim_start_matches('/').split('/');
    let mut got = path.trim_start_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix("+}")) {
                    let rest: Vec<&str> = std::iter::once(g).chain(got).collect();
                    let rest = rest.join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    params.insert(name.to_owned(), rest);
                    return Some(params);
                }
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    if g.is_empty() {
                        return None;
                    }
                    params.insert(name.to_owned(), g.to_owned());
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

impl Route {
    fn matches(&self, method: &str, path: &str) -> Option<HashMap<String, String>> {
        matches(&self.method, &self.path, method, path)
    }

    /// API Gateway prefers the most specific route: more literal segments, then no greedy one.
    fn specificity(&self) -> (usize, bool, bool) {
        let literal = self
            .path
            .split('/')
            .filter(|s| !s.is_empty() && !s.starts_with('{'))
            .count();
        (literal, !self.path.contains("+}"), self.method != "ANY")
    }
}

pub struct Api {
    routes: Vec<Route>,
}

impl Api {
    pub fn new(mut routes: Vec<Route>) -> Api {
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        Api { routes }
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(dispatch).with_state(self)
    }
}

fn message(status: http::StatusCode, text: &str) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "message": text }).to_string(),
    )
        .into_response()
}

async fn dispatch(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let Some((route, params)) = api
        .routes
        .iter()
        .find_map(|r| r.matches(&method, &path).map(|p| (r, p)))
    else {
        return message(http::StatusCode::NOT_FOUND, "Not Found");
    };
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return message(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
            );
        }
    };
    let mut event = crate::gateway::to_apigw(&method, &parts.uri, &parts.headers, &bytes);
    let route_key = format!("{} {}", route.method, route.path);
    event.route_key = Some(route_key.clone());
    event.version = Some("2.0".into());
    event.path_parameters = params;
    event.request_context.route_key = Some(route_key);
    event.request_context.stage = Some("$default".into());
    event.request_context.request_id = Some(uuid::Uuid::new_v4().to_string());
    event.request_context.time_epoch = chrono::Utc::now().timestamp_millis();
    event.request_context.http.source_ip = Some("127.0.0.1".into());
    let Ok(payload) = serde_json::to_value(&event) else {
        return message(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        );
    };
    let answer = tokio::time::timeout(INTEGRATION_LIMIT, route.function.invoke(&payload)).await;
    match answer {
        Err(_) => message(http::StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Ok(Err(_)) => message(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
        ),
        Ok(Ok(v)) => match serde_json::from_value::<ApiGatewayV2httpResponse>(v.clone()) {
            Ok(r) if v.get("statusCode").is_some() => crate::gateway::from_apigw(r),
            // Payload v2: an answer without a status code is the body of a 200.
            _ => (
                http::StatusCode::OK,
                [(http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
                .into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn routes_match_literals_parameters_and_greedy_tails() {
        let p = matches("ANY", "/v1/{proxy+}", "GET", "/v1/runs/x").unwrap();
        assert_eq!(p["proxy"], "runs/x");
        assert!(matches("ANY", "/v1/{proxy+}", "GET", "/v1/").is_none());
        assert!(matches("ANY", "/v1/{proxy+}", "GET", "/v2/runs").is_none());
        let p = matches("GET", "/d/{token}", "GET", "/d/abc").unwrap();
        assert_eq!(p["token"], "abc");
        assert!(matches("GET", "/d/{token}", "POST", "/d/abc").is_none());
        assert!(matches("GET", "/d/{token}", "GET", "/d/abc/def").is_none());
        assert!(matches("POST", "/webhooks/stripe", "POST", "/webhooks/stripe").is_some());
        assert!(matches("POST", "/webhooks/stripe", "POST", "/webhooks").is_none());
    }
}
