//! HTTP plumbing for API Gateway HTTP API (payload v2) and function-URL events, which share a
//! shape. Bodies are capped before anything reads them, and every refusal is a 4xx whose JSON
//! body names the reason.

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use base64::Engine;
use http::HeaderValue;
use http::header::{CONTENT_TYPE, HeaderName};

/// A refusal with its status and a reason safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct HttpError {
    pub status: u16,
    pub reason: String,
    /// The methods the resource does allow: a 405 carries them as `Allow` (RFC 9110).
    pub allow: Option<&'static str>,
}

impl HttpError {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            allow: None,
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(400, reason)
    }
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(401, reason)
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(404, reason)
    }
    /// A 405 naming the methods the resource allows (`"GET"`, `"GET, POST"`).
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(405, format!("method not allowed: {allow} only"))
        }
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, format!("body exceeds {limit} bytes"))
    }

    /// `{"error": reason}` with the status.
    pub fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut r = json(self.status, &serde_json::json!({ "error": self.reason }));
        if let Some(allow) = self.allow {
            r.headers
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}

/// The request body as bytes (base64-decoded when API Gateway encoded it), refused past `limit`.
pub fn body_bytes(req: &ApiGatewayV2httpRequest, limit: usize) -> Result<Vec<u8>, HttpError> {
    let Some(body) = req.body.as_deref() else {
        return Ok(Vec::new());
    };
    // Base64 is 4/3 the size of what it encodes: refuse before decoding anything too large.
    let encoded_limit = if req.is_base64_encoded {
        limit.div_ceil(3) * 4
    } else {
        limit
    };
    if body.len() > encoded_limit {
        return Err(HttpError::payload_too_large(limit));
    }
    let bytes = if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| HttpError::bad_request("body is marked base64 but is not valid base64"))?
    } else {
        body.as_bytes().to_vec()
    };
    if bytes.len() > limit {
        return Err(HttpError::payload_too_large(limit));
    }
    Ok(bytes)
}

/// A JSON document as `T`, nothing after it; otherwise the reason, naming the field at fault
/// (`sender.email: invalid type: …`) when there is one. What every JSON request body is read by.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            field => format!("{field}: {}", e.inner()),
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A request header as text (case-insensitive name); absent or non-UTF-8 values are `None`.
pub fn header<'a>(req: &'a ApiGatewayV2httpRequest, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request method, upper-case.
pub fn method(req: &ApiGatewayV2httpRequest) -> &str {
    req.request_context.http.method.as_str()
}

/// The request path (raw path, falling back to the context's).
pub fn path(req: &ApiGatewayV2httpRequest) -> &str {
    req.raw_path
        .as_deref()
        .or(req.request_context.http.path.as_deref())
        .unwrap_or("/")
}

/// A response with a text body and content type.
pub fn text(status: u16, content_type: &str, body: impl Into<String>) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers.insert(CONTENT_TYPE, v);
    }
    r.body = Some(Body::Text(body.into()));
    r
}

/// A JSON response.
pub fn json(status: u16, value: &serde_json::Value) -> ApiGatewayV2httpResponse {
    text(status, "application/json", value.to_string())
}

/// Adds a header to a response; invalid names or values are dropped (they are ours, not input).
pub fn with_header(
    mut r: ApiGatewayV2httpResponse,
    name: &str,
    value: &str,
) -> ApiGatewayV2httpResponse {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers.insert(n, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str, b64: bool) -> ApiGatewayV2httpRequest {
        let mut r = ApiGatewayV2httpRequest::default();
        r.body = Some(body.to_owned());
        r.is_base64_encoded = b64;
        r
    }

    #[test]
    fn decodes_and_caps_bodies() {
        assert_eq!(body_bytes(&req("hello", false), 10).unwrap(), b"hello");
        assert_eq!(body_bytes(&req("aGVsbG8=", true), 10).unwrap(), b"hello");
        assert_eq!(
            body_bytes(&req("hello world!", false), 10)
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            body_bytes(&req(&"QUFB".repeat(10), true), 10)
                .unwrap_err()
                .status,
            413
        );
        assert_eq!(
            body_bytes(&req("!!notbase64", true), 100)
                .unwrap_err()
                .status,
            400
        );
        assert!(
            body_bytes(&ApiGatewayV2httpRequest::default(), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn errors_become_json_4xx() {
        let r = HttpError::bad_request("missing field `email`").into_response();
        assert_eq!(r.status_code, 400);
        let Some(Body::Text(b)) = r.body else {
            panic!("text body")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&b).unwrap()["error"],
            "missing field `email`"
        );
        assert_eq!(r.headers.get(CONTENT_TYPE).unwrap(), "application/json");
    }
}
