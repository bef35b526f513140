//! Stripe Checkout Sessions (`POST /v1/checkout/sessions`, form-encoded, secret key as bearer).
//! Every request carries an `Idempotency-Key`, so a retried create returns the same session.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, Vendor, VendorError, VendorHttp};
use crate::domain::capped;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutRequest {
    pub amount_cents: i64,
    pub currency: String,
    pub product_name: String,
    pub success_url: String,
    pub cancel_url: String,
    pub customer_email: Option<String>,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Copied onto the PaymentIntent (and so its charges): how `charge.refunded` events find
    /// their tenant.
    pub payment_intent_metadata: BTreeMap<String, String>,
    /// Unix seconds; Stripe allows 30 minutes to 24 hours ahead.
    pub expires_at: Option<i64>,
}

impl CheckoutRequest {
    /// Stripe's bracketed form encoding.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = vec![
            ("mode".into(), "payment".into()),
            ("success_url".into(), self.success_url.clone()),
            ("cancel_url".into(), self.cancel_url.clone()),
            ("line_items[0][quantity]".into(), "1".into()),
            (
                "line_items[0][price_data][currency]".into(),
                self.currency.clone(),
            ),
            (
                "line_items[0][price_data][unit_amount]".into(),
                self.amount_cents.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]".into(),
                self.product_name.clone(),
            ),
        ];
        if let Some(e) = &self.customer_email {
            f.push(("customer_email".into(), e.clone()));
        }
        if let Some(r) = &self.client_reference_id {
            f.push(("client_reference_id".into(), r.clone()));
        }
        if let Some(t) = self.expires_at {
            f.push(("expires_at".into(), t.to_string()));
        }
        for (k, v) in &self.metadata {
            f.push((format!("metadata[{k}]"), v.clone()));
        }
        for (k, v) in &self.payment_intent_metadata {
            f.push((format!("payment_intent_data[metadata][{k}]"), v.clone()));
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckoutSession {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub object: String,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub url: Option<String>,
    /// `open`, `complete`, `expired`.
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub status: Option<String>,
    /// `paid`, `unpaid`, `no_payment_required`.
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub payment_status: Option<String>,
    pub amount_total: Option<i64>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::EMAIL }, _>")]
    pub customer_email: Option<String>,
    pub customer_details: Option<CustomerDetails>,
    #[serde(deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub client_reference_id: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub payment_intent: Option<String>,
    #[serde(deserialize_with = "capped::map::<{ capped::LINE }, _>")]
    pub metadata: BTreeMap<String, String>,
    pub expires_at: Option<i64>,
    pub created: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CustomerDetails {
    #[serde(deserialize_with = "capped::opt::<{ capped::EMAIL }, _>")]
    pub email: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub name: Option<String>,
}

#[derive(Debug)]
pub struct StripeClient {
    http: VendorHttp,
    key: SecretString,
}

impl StripeClient {
    pub fn new(http: VendorHttp, key: SecretString) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub async fn create_checkout_session(
        &self,
        ctx: &CallContext,
        req: &CheckoutRequest,
        idempotency_key: &str,
    ) -> Result<CheckoutSession, VendorError> {
        if idempotency_key.is_empty() || idempotency_key.len() > 255 {
            return Err(VendorError::InvalidInput {
                vendor: Vendor::Stripe,
                detail: "Idempotency-Key must be 1..=255 characters".into(),
            });
        }
        let url = self.http.url("/v1/checkout/sessions");
        let form = req.form();
        let (session, _) = self
            .http
            .json(
                ctx,
                "checkout/sessions",
                |c| {
                    c.post(&url)
                        .bearer_auth(self.key.expose_secret())
                        .header("Idempotency-Key", idempotency_key)
                        .form(&form)
                },
                |_: &CheckoutSession| Usage::default(),
            )
            .await?;
        Ok(session)
    }
}
