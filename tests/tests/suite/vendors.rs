//! Every vendor client against the simulator: the happy path, a 429 that is retried after the
//! server's `Retry-After`, persistent 5xx opening the circuit, 401 not retried, and a malformed
//! body as a typed error. Retry waits are recorded (`Pause::Recorded`), not slept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use shared::domain::TenantId;
use shared::vendors::openai::{Message, OpenAiClient};
use shared::vendors::pagespeed::PageSpeedClient;
use shared::vendors::places::{PlacesClient, TextSearchRequest};
use shared::vendors::sendgrid::{Address, Content, Mail, Personalization, SendGridClient};
use shared::vendors::slack::SlackClient;
use shared::vendors::stripe::{CheckoutRequest, StripeClient};
use shared::vendors::yelp::{SearchRequest, YelpClient};
use shared::vendors::{
    BreakerConfig, CallContext, CallRecord, HttpPolicy, Pause, PriceTable, Vendor, VendorError,
    VendorHttp,
};
use sim::{Fault, Outcome, SimConfig, Simulator};

struct Clients {
    yelp: YelpClient,
    places: PlacesClient,
    pagespeed: PageSpeedClient,
    openai: OpenAiClient,
    sendgrid: SendGridClient,
    stripe: StripeClient,
    slack: SlackClient,
}

struct Harness {
    clients: Option<Clients>,
    sim: Simulator,
    /// The records of every call `call` made.
    records: std::sync::Mutex<Vec<CallRecord>>,
    pauses: Arc<std::sync::Mutex<Vec<Duration>>>,
    pause: Pause,
    policy: HttpPolicy,
}

impl Harness {
    async fn new() -> Self {
        let sim = Simulator::start_local(SimConfig::default()).await.unwrap();
        let (pause, pauses) = Pause::recorded();
        let policy = HttpPolicy {
            max_attempts: 3,
            request_timeout: Duration::from_secs(5),
            requests_per_second: 1000,
            burst: 1000,
            breaker: BreakerConfig {
                open_after: 4,
                recovery: Duration::from_secs(60),
                close_after: 2,
                probe_timeout: Duration::from_secs(30),
            },
            ..HttpPolicy::default()
        };
        let mut h = Self {
            clients: None,
            sim,
            records: std::sync::Mutex::default(),
            pauses,
            pause,
            policy,
        };
        h.clients = Some(h.build(true));
        h
    }

    /// Clients as a function builds them: once, so their breakers and limiters persist.
    fn build(&self, good_key: bool) -> Clients {
        Clients {
            yelp: YelpClient::new(self.http(Vendor::Yelp), self.key(Vendor::Yelp, good_key)),
            places: PlacesClient::new(
                self.http(Vendor::Places),
                self.key(Vendor::Places, good_key),
            ),
            pagespeed: PageSpeedClient::new(
                self.http(Vendor::PageSpeed),
                Some(self.key(Vendor::PageSpeed, good_key)),
            ),
            openai: OpenAiClient::new(
                self.http(Vendor::OpenAi),
                self.key(Vendor::OpenAi, good_key),
            ),
            sendgrid: SendGridClient::new(
                self.http(Vendor::SendGrid),
                self.key(Vendor::SendGrid, good_key),
            ),
            stripe: StripeClient::new(
                self.http(Vendor::Stripe),
                self.key(Vendor::Stripe, good_key),
            ),
            slack: SlackClient::new(self.http(Vendor::Slack), self.key(Vendor::Slack, good_key)),
        }
    }

    fn http(&self, vendor: Vendor) -> VendorHttp {
        VendorHttp::new(
            vendor,
            &self.sim.base_url(),
            self.policy.clone(),
            PriceTable::default().price(vendor),
        )
        .unwrap()
        .with_pause(self.pause.clone())
    }

    fn fault(&self, vendor: &str, fault: Fault) {
        self.sim
            .state
            .faults
            .lock()
            .unwrap()
            .insert(vendor.to_owned(), fault);
    }

    fn requests(&self, vendor: &str) -> u64 {
        self.sim
            .state
            .requests
            .lock()
            .unwrap()
            .get(vendor)
            .copied()
            .unwrap_or(0)
    }

    fn key(&self, vendor: Vendor, good: bool) -> SecretString {
        let c = &self.sim.state.cfg;
        let k = match vendor {
            Vendor::Yelp => &c.yelp_key,
            Vendor::Places | Vendor::PageSpeed => &c.google_key,
            Vendor::OpenAi => &c.openai_key,
            Vendor::SendGrid => &c.sendgrid_key,
            Vendor::Stripe => &c.stripe_key,
            Vendor::Slack => {
                return SecretString::from(format!(
                    "{}/services/T000/B000/XXXX",
                    self.sim.base_url()
                ));
            }
        };
        SecretString::from(if good {
            k.clone()
        } else {
            format!("{k}-wrong")
        })
    }

    /// One representative call per vendor; `Ok` carries a short description of the answer.
    /// One call of `vendor`'s main endpoint, its record kept in `records`.
    async fn call(&self, vendor: Vendor, good_key: bool) -> Result<String, VendorError> {
        let (out, calls) = shared::vendors::recorded(self.call_unrecorded(vendor, good_key)).await;
        self.records.lock().unwrap().extend(calls);
        out
    }

    fn snapshot(&self) -> Vec<CallRecord> {
        self.records.lock().unwrap().clone()
    }

    async fn call_unrecorded(&self, vendor: Vendor, good_key: bool) -> Result<String, VendorError> {
        let ctx = CallContext::new(TenantId::new(), None, None);
        let fresh;
        let c = match (good_key, &self.clients) {
            (true, Some(c)) => c,
            _ => {
                fresh = self.build(good_key);
                &fresh
            }
        };
        match vendor {
            Vendor::Yelp => {
                let r = c
                    .yelp
                    .search(
                        &ctx,
                        &SearchRequest {
                            location: "95113".into(),
                            categories: Some("restaurants".into()),
                            term: None,
                            limit: 20,
                            offset: 0,
                        },
                    )
                    .await?;
                Ok(format!("{} businesses of {}", r.businesses.len(), r.total))
            }
            Vendor::Places => {
                let r = c
                    .places
                    .search_text(
                        &ctx,
                        &TextSearchRequest {
                            text_query: "Joe's Pizza, San Jose, CA 95113".into(),
                            page_size: Some(5),
                            region_code: Some("US".into()),
                        },
                    )
                    .await?;
                Ok(format!("{} places", r.places.len()))
            }
            Vendor::PageSpeed => {
                let b = sim::data::businesses(42, "95113", "restaurants")
                    .into_iter()
                    .find(|b| b.site == Some(sim::data::SiteProfile::Outdated))
                    .unwrap();
                let url = format!(
                    "http://www.{}.test:{}/",
                    b.site_slug.unwrap(),
                    self.sim.addr.port()
                );
                let r = c.pagespeed.run_mobile(&ctx, &url).await?;
                let s = r
                    .summary()
                    .map_err(|e| VendorError::InvalidInput { vendor, detail: e })?;
                Ok(format!("performance {:?}", s.performance))
            }
            Vendor::OpenAi => {
                #[derive(serde::Deserialize)]
                struct Insights {
                    recommendations: Vec<serde_json::Value>,
                }
                let schema = serde_json::json!({
                    "type": "object", "additionalProperties": false, "required": ["recommendations"],
                    "properties": { "recommendations": { "type": "array", "minItems": 3, "maxItems": 3, "items": {
                        "type": "object", "additionalProperties": false, "required": ["title", "description"],
                        "properties": { "title": { "type": "string" }, "description": { "type": "string" } } } } }
                });
                let r = c
                    .openai
                    .structured::<Insights>(
                        &ctx,
                        "gpt-4o-mini",
                        0.3,
                        500,
                        "site_insights",
                        schema,
                        vec![
                            Message::system("You audit websites."),
                            Message::user("Business: Joe's Pizza\nhas_viewport: false"),
                        ],
                    )
                    .await?;
                Ok(format!(
                    "{} recommendations, {} tokens",
                    r.value.recommendations.len(),
                    r.usage.total_tokens
                ))
            }
            Vendor::SendGrid => {
                let mail = Mail {
                    personalizations: vec![Personalization {
                        to: vec![Address {
                            email: "owner@joes.example.com".into(),
                            name: None,
                        }],
                        custom_args: BTreeMap::from([("email_id".into(), "e1".into())]),
                    }],
                    from: Address {
                        email: "ann@agency.example.com".into(),
                        name: Some("Ann".into()),
                    },
                    reply_to: None,
                    subject: "Three quick fixes".into(),
                    content: vec![Content {
                        kind: "text/plain".into(),
                        value: "Hello".into(),
                    }],
                    headers: BTreeMap::new(),
                    categories: vec![],
                    attachments: vec![],
                };
                let id = c.sendgrid.send(&ctx, &mail).await?;
                Ok(format!("message {id}"))
            }
            Vendor::Stripe => {
                let req = CheckoutRequest {
                    amount_cents: 4900,
                    currency: "usd".into(),
                    product_name: "Website audit".into(),
                    success_url: "https://shop.example.com/ok".into(),
                    cancel_url: "https://shop.example.com/cancel".into(),
                    customer_email: None,
                    client_reference_id: Some("r1".into()),
                    metadata: BTreeMap::from([("report_id".into(), "r1".into())]),
                    payment_intent_metadata: BTreeMap::from([("tenant_id".into(), "t1".into())]),
                    expires_at: None,
                };
                let s = c
                    .stripe
                    .create_checkout_session(&ctx, &req, "idem-1")
                    .await?;
                Ok(format!("session {}", s.id))
            }
            Vendor::Slack => {
                c.slack.post(&ctx, "test alert").await?;
                Ok("posted".into())
            }
        }
    }
}

fn sim_name(v: Vendor) -> &'static str {
    v.as_str()
}

#[tokio::test]
async fn every_client_succeeds_against_the_simulator_and_records_the_call() {
    let h = Harness::new().await;
    for v in Vendor::ALL {
        let out = h.call(v, true).await.unwrap_or_else(|e| panic!("{v}: {e}"));
        assert!(!out.starts_with('0'), "{v}: {out}");
    }
    let records = h.snapshot();
    for v in Vendor::ALL {
        assert!(
            records
                .iter()
                .any(|r| r.vendor == v && r.ok && r.status.is_some()),
            "{v} call not recorded"
        );
    }
    let openai = records.iter().find(|r| r.vendor == Vendor::OpenAi).unwrap();
    assert!(
        openai.tokens_in > 0 && openai.tokens_out > 0 && openai.cost_micros > 0,
        "{openai:?}"
    );
    let places = records.iter().find(|r| r.vendor == Vendor::Places).unwrap();
    // The search mask asks for websiteUri, an Enterprise field: $35 per 1,000.
    assert_eq!(places.cost_micros, 35_000);
}

#[tokio::test]
async fn a_429_is_retried_after_the_servers_retry_after_then_succeeds() {
    for v in Vendor::ALL {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::RateLimited, Outcome::Ok],
                retry_after_secs: Some(2.0),
                ..Fault::default()
            },
        );
        h.call(v, true).await.unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(
            *h.pauses.lock().unwrap(),
            vec![Duration::from_secs(2)],
            "{v}"
        );
        assert_eq!(h.requests(sim_name(v)), 2, "{v}");
        assert!(
            h.snapshot().iter().any(|r| r.rate_limited),
            "{v}: rate-limit hit recorded"
        );
    }
}

#[tokio::test]
async fn persistent_5xx_opens_the_circuit_and_later_calls_fail_fast() {
    for v in Vendor::ALL {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                rate_5xx: 1.0,
                ..Fault::default()
            },
        );
        let first = h.call(v, true).await.unwrap_err();
        assert!(
            matches!(first, VendorError::Unavailable { attempts: 3, .. }),
            "{v}: {first}"
        );
        // The fourth consecutive failure opens the breaker mid-retry.
        let second = h.call(v, true).await.unwrap_err();
        assert!(
            matches!(second, VendorError::CircuitOpen { .. }),
            "{v}: {second}"
        );
        let seen = h.requests(sim_name(v));
        assert_eq!(seen, 4, "{v}");
        let third = h.call(v, true).await.unwrap_err();
        assert!(
            matches!(third, VendorError::CircuitOpen { .. }) && third.is_transient(),
            "{v}: {third}"
        );
        assert_eq!(
            h.requests(sim_name(v)),
            seen,
            "{v}: an open circuit sends nothing"
        );
    }
}

#[tokio::test]
async fn a_call_makes_no_retry_that_could_end_past_its_time_budget() {
    for v in Vendor::ALL {
        let mut h = Harness::new().await;
        // Room for exactly one full attempt: a failure is not retried.
        h.policy.max_call_time = h.policy.request_timeout;
        h.clients = Some(h.build(true));
        h.fault(
            sim_name(v),
            Fault {
                rate_5xx: 1.0,
                ..Fault::default()
            },
        );
        let err = h.call(v, true).await.unwrap_err();
        assert!(err.is_transient(), "{v}: {err}");
        assert_eq!(h.requests(sim_name(v)), 1, "{v}: no retry past the budget");
        // Room enough for every attempt the policy allows (the recorded pauses take no time).
        let mut h = Harness::new().await;
        h.policy.max_call_time = h.policy.request_timeout * 2 + h.policy.max_backoff;
        h.clients = Some(h.build(true));
        h.fault(
            sim_name(v),
            Fault {
                rate_5xx: 1.0,
                ..Fault::default()
            },
        );
        h.call(v, true).await.unwrap_err();
        assert_eq!(h.requests(sim_name(v)), 3, "{v}: retries that fit are made");
    }
}

#[tokio::test]
async fn unauthorised_is_not_retried() {
    for v in Vendor::ALL {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::Unauthorized, Outcome::Ok],
                ..Fault::default()
            },
        );
        let e = h.call(v, true).await.unwrap_err();
        assert!(matches!(e, VendorError::Unauthorized { .. }), "{v}: {e}");
        assert!(!e.is_transient());
        assert_eq!(h.requests(sim_name(v)), 1, "{v}: not retried");
        assert!(h.pauses.lock().unwrap().is_empty());
    }
    // A wrong key is refused by the simulator's own auth check, with the vendor's error shape.
    let h = Harness::new().await;
    for v in [
        Vendor::Yelp,
        Vendor::Places,
        Vendor::OpenAi,
        Vendor::SendGrid,
        Vendor::Stripe,
    ] {
        let e = h.call(v, false).await.unwrap_err();
        assert!(matches!(e, VendorError::Unauthorized { .. }), "{v}: {e}");
    }
}

#[tokio::test]
async fn a_malformed_body_is_a_typed_error_with_an_excerpt() {
    for v in [
        Vendor::Yelp,
        Vendor::Places,
        Vendor::PageSpeed,
        Vendor::OpenAi,
        Vendor::Stripe,
    ] {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::Malformed],
                ..Fault::default()
            },
        );
        let e = h.call(v, true).await.unwrap_err();
        match &e {
            VendorError::Malformed { excerpt, .. } => {
                assert!(excerpt.contains("truncated"), "{v}: {excerpt}")
            }
            other => panic!("{v}: {other}"),
        }
        assert!(!e.is_transient());
    }
}

#[tokio::test]
async fn an_error_inside_a_200_is_an_error_not_an_empty_answer() {
    for v in [
        Vendor::Yelp,
        Vendor::Places,
        Vendor::PageSpeed,
        Vendor::OpenAi,
        Vendor::Stripe,
    ] {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::ErrorIn200],
                ..Fault::default()
            },
        );
        match h.call(v, true).await {
            Err(VendorError::Malformed { detail, .. }) => assert!(
                detail.contains("an error inside a 200 answer: backend error"),
                "{v}: {detail}"
            ),
            other => panic!("{v}: {other:?}"),
        }
        // An array where the answer's object belongs is not "no results" either.
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::ArrayIn200],
                ..Fault::default()
            },
        );
        match h.call(v, true).await {
            Err(VendorError::Malformed { detail, .. }) => {
                assert!(detail.contains("not a JSON object"), "{v}: {detail}")
            }
            other => panic!("{v}: {other:?}"),
        }
    }
}

#[test]
fn a_pagespeed_answer_without_the_categories_asked_for_is_an_error_not_nulls() {
    let answer: shared::vendors::pagespeed::PsiResponse = serde_json::from_value(serde_json::json!({
        "id": "https://joes.example.com/",
        "lighthouseResult": { "finalUrl": "https://joes.example.com/", "categories": {}, "audits": {} }
    }))
    .unwrap();
    let e = answer.summary().unwrap_err();
    assert!(e.contains("none of the requested categories"), "{e}");
}

#[tokio::test]
async fn a_mail_whose_subject_or_header_holds_a_line_break_is_never_sent() {
    let h = Harness::new().await;
    let c = h.clients.as_ref().unwrap();
    let ctx = CallContext::new(TenantId::new(), None, None);
    let mail = |subject: &str, header: &str| Mail {
        personalizations: vec![Personalization {
            to: vec![Address {
                email: "owner@joes.example.com".into(),
                name: None,
            }],
            custom_args: BTreeMap::new(),
        }],
        from: Address {
            email: "ann@agency.example.com".into(),
            name: Some("Ann".into()),
        },
        reply_to: None,
        subject: subject.into(),
        content: vec![Content {
            kind: "text/plain".into(),
            value: "Hello".into(),
        }],
        headers: BTreeMap::from([("X-Campaign".into(), header.into())]),
        categories: vec![],
        attachments: vec![],
    };
    for m in [
        mail("Hi\r\nBcc: everyone@example.com", "ok"),
        mail("Hi", "x\nBcc: everyone@example.com"),
    ] {
        let e = c.sendgrid.send(&ctx, &m).await.unwrap_err();
        assert!(matches!(e, VendorError::InvalidInput { .. }), "{e}");
    }
    assert_eq!(h.requests("sendgrid"), 0, "nothing reached SendGrid");
}

#[tokio::test]
async fn quota_exhaustion_is_not_retried_and_is_told_apart_from_rate_limiting() {
    for v in [Vendor::Yelp, Vendor::OpenAi, Vendor::PageSpeed] {
        let h = Harness::new().await;
        h.fault(
            sim_name(v),
            Fault {
                script: vec![Outcome::QuotaExhausted, Outcome::Ok],
                ..Fault::default()
            },
        );
        let e = h.call(v, true).await.unwrap_err();
        assert!(matches!(e, VendorError::QuotaExhausted { .. }), "{v}: {e}");
        assert_eq!(h.requests(sim_name(v)), 1);
        assert!(h.snapshot().iter().any(|r| r.quota_exhausted));
    }
}

#[tokio::test]
async fn vendor_validation_errors_come_back_as_bad_requests_with_the_vendors_message() {
    let h = Harness::new().await;
    let ctx = CallContext::default();
    let yelp = YelpClient::new(h.http(Vendor::Yelp), h.key(Vendor::Yelp, true));
    let e = yelp
        .search(
            &ctx,
            &SearchRequest {
                location: "95113".into(),
                categories: None,
                term: None,
                limit: 50,
                offset: 220,
            },
        )
        .await
        .unwrap_err();
    match e {
        VendorError::BadRequest {
            status: 400,
            message,
            ..
        } => assert!(message.contains("limit+offset"), "{message}"),
        other => panic!("{other}"),
    }
    let e = yelp
        .search(
            &ctx,
            &SearchRequest {
                location: "".into(),
                categories: None,
                term: None,
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, VendorError::BadRequest { .. }), "{e}");
    // Our own guard: Yelp's maximum page is 50.
    let e = yelp
        .search(
            &ctx,
            &SearchRequest {
                location: "95113".into(),
                categories: None,
                term: None,
                limit: 100,
                offset: 0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, VendorError::InvalidInput { .. }));

    // Stripe: the same Idempotency-Key returns the same session; other parameters are refused.
    let stripe = StripeClient::new(h.http(Vendor::Stripe), h.key(Vendor::Stripe, true));
    let mut req = CheckoutRequest {
        amount_cents: 4900,
        currency: "usd".into(),
        product_name: "Audit".into(),
        success_url: "https://s.example.com/ok".into(),
        cancel_url: "https://s.example.com/no".into(),
        customer_email: None,
        client_reference_id: None,
        metadata: BTreeMap::new(),
        payment_intent_metadata: BTreeMap::new(),
        expires_at: None,
    };
    let a = stripe
        .create_checkout_session(&ctx, &req, "same-key")
        .await
        .unwrap();
    let b = stripe
        .create_checkout_session(&ctx, &req, "same-key")
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    req.amount_cents = 100;
    let e = stripe
        .create_checkout_session(&ctx, &req, "same-key")
        .await
        .unwrap_err();
    assert!(matches!(e, VendorError::BadRequest { .. }), "{e}");
}

#[tokio::test]
async fn records_reach_the_cost_ledger_in_one_statement_per_tenant() {
    let db = testkit::TestDb::new().await;
    let admin = db.admin().await;
    let t = TenantId::new();
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, 'A')",
            &[&t.as_uuid()],
        )
        .await
        .unwrap();
    let h = Harness::new().await;
    let ctx = CallContext::new(t, None, None);
    let yelp = YelpClient::new(h.http(Vendor::Yelp), h.key(Vendor::Yelp, true));
    let ((), calls) = shared::vendors::recorded(async {
        for _ in 0..3 {
            yelp.search(
                &ctx,
                &SearchRequest {
                    location: "95113".into(),
                    categories: None,
                    term: None,
                    limit: 10,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        }
    })
    .await;
    let pool = db.app_pool();
    let mut client = pool.get().await.unwrap();
    let written = shared::vendors::write_cost_ledger(&mut client, &calls)
        .await
        .unwrap();
    assert_eq!(written, 3);
    let row = admin.query_one("SELECT count(*), sum(cost_micros)::bigint FROM cost_ledger WHERE tenant_id = $1 AND vendor = 'yelp'", &[&t.as_uuid()]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (3, 24_000));
}

#[tokio::test]
async fn no_vendor_error_carries_a_key_or_a_secret_url_when_the_request_never_gets_an_answer() {
    let mut h = Harness::new().await;
    // Every vendor answers too late for the client.
    h.policy.request_timeout = Duration::from_millis(300);
    h.policy.max_call_time = Duration::from_secs(5);
    h.clients = Some(h.build(true));
    for v in Vendor::ALL {
        h.fault(
            sim_name(v),
            Fault {
                latency_ms: 2_000,
                ..Fault::default()
            },
        );
    }
    let c = &h.sim.state.cfg;
    let secrets = [
        c.yelp_key.clone(),
        c.google_key.clone(),
        c.openai_key.clone(),
        c.sendgrid_key.clone(),
        c.stripe_key.clone(),
        "/services/".to_owned(), // a Slack webhook's path is the secret
    ];
    let check = |v: Vendor, e: &VendorError| {
        for text in [e.to_string(), format!("{e:?}")] {
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "{v:?}: {s:?} in {text}");
            }
        }
    };
    for v in Vendor::ALL {
        let e = h.call(v, true).await.unwrap_err();
        assert!(
            e.to_string().contains("timed out") || e.to_string().contains("no answer"),
            "{v:?}: {e}"
        );
        check(v, &e);
    }
    // Nothing listens: a connection error, with the key in the query and the secret path.
    let closed = |vendor| {
        VendorHttp::new(
            vendor,
            "http://127.0.0.1:9",
            h.policy.clone(),
            PriceTable::default().price(vendor),
        )
        .unwrap()
        .with_pause(h.pause.clone())
    };
    let ctx = CallContext::new(TenantId::new(), None, None);
    let psi = PageSpeedClient::new(
        closed(Vendor::PageSpeed),
        Some(SecretString::from(c.google_key.clone())),
    );
    let e = psi
        .run_mobile(&ctx, "https://www.joes.example.com/")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("connection failed"), "{e}");
    check(Vendor::PageSpeed, &e);
    let slack = SlackClient::new(
        closed(Vendor::Slack),
        SecretString::from("http://127.0.0.1:9/services/T0/B0/secretpath".to_owned()),
    );
    let e = slack.post(&ctx, "x").await.unwrap_err();
    check(Vendor::Slack, &e);
    assert!(!format!("{e:?}").contains("secretpath"), "{e:?}");
}

/// Serves `body` with `Content-Encoding: gzip` to every request on a local port; its base URL.
async fn gzip_server(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(body);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn compressed_answers_are_decoded_and_a_bomb_stops_at_the_cap() {
    let h = Harness::new().await;
    let http_at = |base: &str| {
        VendorHttp::new(
            Vendor::Yelp,
            base,
            h.policy.clone(),
            PriceTable::default().price(Vendor::Yelp),
        )
        .unwrap()
        .with_pause(h.pause.clone())
    };
    let ctx = CallContext::new(TenantId::new(), None, None);
    let search = SearchRequest {
        location: "95113".into(),
        categories: None,
        term: None,
        limit: 20,
        offset: 0,
    };
    // A gzipped answer reads as the answer.
    let ok =
        gzip(br#"{"total": 1, "businesses": [{"id": "y1", "name": "Joe's", "is_closed": false}]}"#);
    let yelp = YelpClient::new(
        http_at(&gzip_server(ok).await),
        SecretString::from("k".to_owned()),
    );
    let r = yelp.search(&ctx, &search).await.unwrap();
    assert_eq!((r.total, r.businesses.len()), (1, 1));
    // 100 MB of zeros in about 100 KB: the read stops at the body cap, decoded size counted.
    let bomb = gzip(&vec![b' '; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let yelp = YelpClient::new(
        http_at(&gzip_server(bomb).await),
        SecretString::from("k".to_owned()),
    );
    let e = yelp.search(&ctx, &search).await.unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}

#[test]
fn every_stored_field_of_a_vendor_answer_is_read_capped() {
    use shared::domain::capped;
    let long = "x".repeat(200_000);
    let many: Vec<serde_json::Value> = (0..1_000)
        .map(|_| serde_json::json!({"alias": long, "title": long}))
        .collect();
    let yelp: shared::vendors::yelp::SearchResponse = serde_json::from_value(serde_json::json!({
        "businesses": [{"id": long, "alias": long, "name": long, "url": long, "image_url": long,
            "phone": long, "display_phone": long, "price": long, "categories": many,
            "location": {"address1": long, "address2": long, "address3": long, "city": long,
                "zip_code": long, "country": long, "state": long, "display_address": vec![long.clone(); 1_000]}}],
        "total": 1
    }))
    .unwrap();
    let b = &yelp.businesses[0];
    assert_eq!(b.id.len(), capped::ID);
    assert_eq!(b.name.len(), capped::NAME);
    assert_eq!(b.url.as_deref().map(str::len), Some(capped::URL));
    assert_eq!(b.phone.len(), capped::SHORT);
    assert_eq!(b.categories.len(), capped::ITEMS);
    assert_eq!(b.categories[0].title.len(), capped::NAME);
    assert_eq!(
        b.location.address1.as_deref().map(str::len),
        Some(capped::LINE)
    );
    assert_eq!(
        b.location.zip_code.as_deref().map(str::len),
        Some(capped::SHORT)
    );
    assert_eq!(b.location.display_address.len(), capped::ITEMS);

    let places: shared::vendors::places::TextSearchResponse =
        serde_json::from_value(serde_json::json!({
            "places": [{"id": long, "name": long, "displayName": {"text": long}, "formattedAddress": long,
                "nationalPhoneNumber": long, "websiteUri": long, "googleMapsUri": long,
                "businessStatus": long, "types": vec![long.clone(); 1_000],
                "regularOpeningHours": {"weekdayDescriptions": [long]}}]
        }))
        .unwrap();
    let p = &places.places[0];
    assert_eq!(p.id.len(), capped::ID);
    assert_eq!(
        p.display_name.as_ref().map(|n| n.text.len()),
        Some(capped::NAME)
    );
    assert_eq!(p.website_uri.as_deref().map(str::len), Some(capped::URL));
    assert_eq!(p.types.len(), capped::ITEMS);
    assert_eq!(
        p.regular_opening_hours.as_ref().unwrap()["weekdayDescriptions"][0]
            .as_str()
            .map(str::len),
        Some(capped::RAW_STRING)
    );

    let psi: shared::vendors::pagespeed::PsiResponse = serde_json::from_value(serde_json::json!({
        "id": long,
        "lighthouseResult": {"finalUrl": long, "categories": {"performance": {"id": long, "title": long, "score": 0.5}},
            "audits": {"largest-contentful-paint": {"id": long, "displayValue": long, "numericValue": 1.0}},
            "runtimeError": {"code": long, "message": long}}
    }))
    .unwrap();
    let lh = psi.lighthouse_result.as_ref().unwrap();
    assert_eq!(lh.final_url.as_deref().map(str::len), Some(capped::URL));
    assert_eq!(
        lh.runtime_error
            .as_ref()
            .and_then(|e| e.message.as_deref())
            .map(str::len),
        Some(capped::MESSAGE)
    );
    assert_eq!(
        lh.audits["largest-contentful-paint"]
            .display_value
            .as_deref()
            .map(str::len),
        Some(capped::LINE)
    );

    let session: shared::vendors::stripe::CheckoutSession =
        serde_json::from_value(serde_json::json!({
            "id": long, "object": long, "url": long, "customer_email": long,
            "customer_details": {"email": long, "name": long}, "payment_intent": long,
            "metadata": {"tenant_id": long}
        }))
        .unwrap();
    assert_eq!(session.id.len(), capped::ID);
    assert_eq!(
        session.customer_email.as_deref().map(str::len),
        Some(capped::EMAIL)
    );
    assert_eq!(session.metadata["tenant_id"].len(), capped::LINE);

    let chat: shared::vendors::openai::ChatResponse = serde_json::from_value(serde_json::json!({
        "id": long, "object": long, "model": long,
        "choices": vec![serde_json::json!({"message": {"role": long, "refusal": long}}); 1_000]
    }))
    .unwrap();
    assert_eq!(chat.model.len(), capped::NAME);
    assert_eq!(chat.choices.len(), capped::ITEMS);
    assert_eq!(
        chat.choices[0].message.refusal.as_deref().map(str::len),
        Some(capped::MESSAGE)
    );
}
