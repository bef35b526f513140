//! The message envelope every hop carries: version, tenant, run, idempotency key and trace id
//! around a stage-specific payload.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::BusError;
use crate::domain::{RunId, TenantId};

pub const ENVELOPE_VERSION: u32 = 1;

/// Strict: a field this version does not know is refused (a message from a newer or a forged
/// sender is not half-read), and so are unknown fields of every payload (see `messages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    pub v: u32,
    pub tenant_id: TenantId,
    pub run_id: Option<RunId>,
    /// Keys the stage's effect: a redelivery with the same key changes nothing.
    pub idempotency_key: String,
    /// Follows one lead through every hop, in logs and run events.
    pub trace_id: String,
    pub payload: T,
}

/// Why a message body is not a usable envelope: such a message goes to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    #[error("envelope version {found} is not supported (expected {ENVELOPE_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("envelope is malformed: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: Option<u32>,
}

impl<T> Envelope<T> {
    /// A new envelope starting a trace.
    pub fn new(
        tenant_id: TenantId,
        run_id: Option<RunId>,
        idempotency_key: impl Into<String>,
        payload: T,
    ) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            tenant_id,
            run_id,
            idempotency_key: idempotency_key.into(),
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            payload,
        }
    }

    /// The next hop's envelope: same tenant, run and trace; its own key and payload.
    pub fn child<U>(&self, idempotency_key: impl Into<String>, payload: U) -> Envelope<U> {
        Envelope {
            v: ENVELOPE_VERSION,
            tenant_id: self.tenant_id,
            run_id: self.run_id,
            idempotency_key: idempotency_key.into(),
            trace_id: self.trace_id.clone(),
            payload,
        }
    }
}

impl<T: Serialize> Envelope<T> {
    pub fn to_body(&self) -> Result<String, BusError> {
        serde_json::to_string(self).map_err(|e| BusError::Serialise(e.to_string()))
    }
}

impl<T: DeserializeOwned> Envelope<T> {
    pub fn parse(body: &str) -> Result<Self, EnvelopeError> {
        let version: VersionOnly =
            serde_json::from_str(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        match version.v {
            Some(ENVELOPE_VERSION) => {}
            Some(found) => return Err(EnvelopeError::UnsupportedVersion { found }),
            None => return Err(EnvelopeError::Malformed("missing field `v`".into())),
        }
        let env: Self =
            serde_json::from_str(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        if env.idempotency_key.is_empty() {
            return Err(EnvelopeError::Malformed("empty idempotency_key".into()));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Job {
        zip: String,
    }

    #[test]
    fn round_trips_and_children_keep_the_trace() {
        let e = Envelope::new(
            TenantId::new(),
            Some(RunId::new()),
            "k1",
            Job {
                zip: "95113".into(),
            },
        );
        let back: Envelope<Job> = Envelope::parse(&e.to_body().unwrap()).unwrap();
        assert_eq!(back, e);
        let c = e.child("k2", 7u32);
        assert_eq!(
            (c.tenant_id, c.run_id, c.trace_id.as_str()),
            (e.tenant_id, e.run_id, e.trace_id.as_str())
        );
    }

    #[test]
    fn unknown_fields_are_refused_in_the_envelope_and_its_payload() {
        let t = TenantId::new();
        for body in [
            format!(
                r#"{{"v":1,"tenant_id":"{t}","run_id":null,"idempotency_key":"k","trace_id":"t","payload":{{"zip":"1"}},"admin":true}}"#
            ),
            format!(
                r#"{{"v":1,"tenant_id":"{t}","run_id":null,"idempotency_key":"k","trace_id":"t","payload":{{"zip":"1","tenant_id":"x"}}}}"#
            ),
        ] {
            let e = Envelope::<Job>::parse(&body).unwrap_err();
            assert!(
                matches!(&e, EnvelopeError::Malformed(m) if m.contains("unknown field")),
                "{e}"
            );
        }
    }

    #[test]
    fn rejects_bad_bodies_with_a_reason() {
        assert!(matches!(
            Envelope::<Job>::parse("not json"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::<Job>::parse(r#"{"v":2}"#),
            Err(EnvelopeError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            Envelope::<Job>::parse(r#"{"payload":{}}"#),
            Err(EnvelopeError::Malformed(_))
        ));
        let t = TenantId::new();
        let wrong_payload = format!(
            r#"{{"v":1,"tenant_id":"{t}","run_id":null,"idempotency_key":"k","trace_id":"t","payload":{{"zap":1}}}}"#
        );
        let err = Envelope::<Job>::parse(&wrong_payload).unwrap_err();
        assert!(err.to_string().contains("zip"), "{err}");
    }
}
