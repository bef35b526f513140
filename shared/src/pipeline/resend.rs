//! An operator's request to send a purchase's report again (the buyer lost the email, the link
//! expired, the first send failed): a new fulfilment email with a new download link, once per
//! request key however often the request is repeated. The request is checked here, so the caller
//! hears at once why it cannot be done; the fulfilment consumer checks again when it sends.

use crate::bus::{Bus, BusError, Envelope, Queue};
use crate::db::{DbError, Pool, begin_tenant};
use crate::domain::TenantId;
use crate::pipeline::messages::Fulfil;

/// Why a resend cannot be requested.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error("request key: {0}")]
    BadKey(&'static str),
    #[error("no purchase {0}")]
    NotFound(uuid::Uuid),
    #[error("purchase {id} is {status}: only a paid purchase is sent again")]
    NotPaid { id: uuid::Uuid, status: String },
    #[error("purchase {id}'s payment is disputed ({dispute}): the report is not sent again")]
    Disputed { id: uuid::Uuid, dispute: String },
    #[error("purchase {0} has no buyer address to send to")]
    NoAddress(uuid::Uuid),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl From<tokio_postgres::Error> for ResendError {
    fn from(e: tokio_postgres::Error) -> Self {
        ResendError::Db(DbError::Postgres(e))
    }
}

/// A request key: 1–100 characters of letters, digits, `-`, `_`, `.` and `:` (what clients put
/// in an `Idempotency-Key`).
fn check_key(key: &str) -> Result<(), ResendError> {
    if key.is_empty() || key.len() > 100 {
        return Err(ResendError::BadKey("1 to 100 characters"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(ResendError::BadKey(
            "only letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(())
}

/// What was requested.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resend {
    pub purchase_id: uuid::Uuid,
    pub request_key: String,
}

const PURCHASE_FOR_RESEND: &str =
    "SELECT status, dispute_status, customer_email IS NOT NULL AS addressed, stripe_session_id
 FROM purchases WHERE id = $1";

/// Checks that `purchase` (in `tenant`) can be sent again and puts the fulfilment message with
/// `key` on the fulfilment queue. Repeating the call with the same key sends nothing more: the
/// message's idempotency key and the email row are both per (purchase, key).
pub async fn request_resend(
    pool: &Pool,
    bus: &dyn Bus,
    tenant: TenantId,
    purchase: uuid::Uuid,
    key: &str,
) -> Result<Resend, ResendError> {
    check_key(key)?;
    let mut c = pool.get().await.map_err(DbError::from)?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let row = tx
        .query_opt(PURCHASE_FOR_RESEND, &[&purchase])
        .await?
        .ok_or(ResendError::NotFound(purchase))?;
    tx.commit().await?;
    let status: String = row.get("status");
    if !matches!(status.as_str(), "paid" | "partially_refunded") {
        return Err(ResendError::NotPaid {
            id: purchase,
            status,
        });
    }
    if let Some(dispute @ ("open" | "lost")) = row.get::<_, Option<&str>>("dispute_status") {
        return Err(ResendError::Disputed {
            id: purchase,
            dispute: dispute.to_owned(),
        });
    }
    if !row.get::<_, bool>("addressed") {
        return Err(ResendError::NoAddress(purchase));
    }
    let env = Envelope::new(
        tenant,
        None,
        format!("resend:{purchase}:{key}"),
        Fulfil {
            purchase_id: purchase,
            stripe_session_id: row.get("stripe_session_id"),
            request_key: key.to_owned(),
        },
    );
    let body = env.to_body()?;
    bus.send_batch(Queue::Fulfilment.name(), &[body]).await?;
    Ok(Resend {
        purchase_id: purchase,
        request_key: key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_are_short_and_plain() {
        assert!(check_key("4f1c-2026-12-02:retry.1").is_ok());
        for bad in ["", "a b", "ключ", &"k".repeat(101), "a/b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
