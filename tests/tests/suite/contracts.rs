//! Contract fixtures: one sample per vendor response, written from the vendors' documentation
//! (`tests/fixtures/vendors/`). The clients' types parse each, and the simulator's own answers
//! parse into the same types — so client and simulator cannot drift apart silently. Signed
//! webhooks the simulator sends verify with the project's verification code.

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use shared::vendors::openai::ChatResponse;
use shared::vendors::pagespeed::PsiResponse;
use shared::vendors::places::TextSearchResponse;
use shared::vendors::stripe::CheckoutSession;
use shared::vendors::yelp::SearchResponse;
use shared::webhook::{sendgrid, stripe};
use sim::{SimConfig, Simulator};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/vendors/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn documented_samples_parse_into_the_client_types() {
    let y: SearchResponse = serde_json::from_str(&fixture("yelp_search.json")).unwrap();
    assert_eq!(y.total, 240);
    assert_eq!(y.businesses[0].location.zip_code.as_deref(), Some("95113"));
    assert_eq!(y.businesses[1].phone, "");
    assert!(y.businesses[1].price.is_none());

    let p: TextSearchResponse = serde_json::from_str(&fixture("places_search_text.json")).unwrap();
    assert_eq!(
        p.places[0].website_uri.as_deref(),
        Some("https://www.thegivingpies.com/")
    );
    assert_eq!(
        p.places[0].display_name.as_ref().unwrap().text,
        "The Giving Pies"
    );
    assert!(p.places[1].website_uri.is_none() && p.places[1].business_status.is_none());
    assert_eq!(p.next_page_token.as_deref(), Some("AeJbb3f"));

    let psi: PsiResponse = serde_json::from_str(&fixture("pagespeed.json")).unwrap();
    let s = psi.summary().unwrap();
    assert_eq!(
        (s.performance, s.seo, s.accessibility, s.best_practices),
        (Some(42), Some(83), None, Some(74))
    );
    assert_eq!(s.lcp_ms, Some(5234.5));
    assert_eq!(s.cls, Some(0.187));

    let c: ChatResponse = serde_json::from_str(&fixture("openai_chat.json")).unwrap();
    assert_eq!(c.usage.unwrap().total_tokens, 508);
    assert!(
        c.choices[0]
            .message
            .content
            .as_deref()
            .unwrap()
            .contains("recommendations")
    );
    let r: ChatResponse = serde_json::from_str(&fixture("openai_refusal.json")).unwrap();
    assert!(r.choices[0].message.content.is_none() && r.choices[0].message.refusal.is_some());

    let cs: CheckoutSession =
        serde_json::from_str(&fixture("stripe_checkout_session.json")).unwrap();
    assert_eq!(
        (cs.payment_status.as_deref(), cs.amount_total),
        (Some("paid"), Some(4900))
    );
    assert_eq!(cs.metadata["purchase_id"], "p1");

    let events: Vec<sendgrid::Event> =
        serde_json::from_str(&fixture("sendgrid_events.json")).unwrap();
    assert_eq!(events[0].arg("email_id"), Some("e1"));
    assert_eq!(events[0].message_id(), Some("14c5d75ce93"));
    assert_eq!(events[2].bounce_type.as_deref(), Some("bounce"));
    assert!(events[2].sg_event_id.is_none());
    assert!(events[2].dedupe_key().starts_with("h:"));
    assert_eq!(events[1].dedupe_key(), "sg_event_id_delivered_1");

    let ev: stripe::Event = serde_json::from_str(&fixture("stripe_event_completed.json")).unwrap();
    assert_eq!(ev.kind, "checkout.session.completed");
    let session: CheckoutSession = serde_json::from_value(ev.data.object).unwrap();
    assert_eq!(session.payment_intent.as_deref(), Some("pi_3Nabc"));
}

#[test]
fn documented_error_envelopes_are_read_for_their_message() {
    for (file, needle) in [
        ("sendgrid_error.json", "from.email"),
        ("yelp_error.json", "LOCATION_NOT_FOUND"),
    ] {
        let v: serde_json::Value = serde_json::from_str(&fixture(file)).unwrap();
        assert!(v.to_string().contains(needle));
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str, req: reqwest::RequestBuilder) -> T {
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test]
async fn the_simulators_answers_parse_into_the_same_types() {
    let sim = Simulator::start_local(SimConfig::default()).await.unwrap();
    let base = sim.base_url();
    let cfg = &sim.state.cfg;
    let http = reqwest::Client::new();

    let url = format!("{base}/v3/businesses/search");
    let y: SearchResponse = get_json(
        &url,
        http.get(&url)
            .bearer_auth(&cfg.yelp_key)
            .query(&[("location", "95113"), ("limit", "50")]),
    )
    .await;
    assert_eq!(y.businesses.len(), 50);
    assert!(
        y.businesses
            .iter()
            .all(|b| !b.id.is_empty() && b.review_count > 0)
    );

    let url = format!("{base}/v1/places:searchText");
    let p: TextSearchResponse = get_json(
        &url,
        http.post(&url)
            .header("X-Goog-Api-Key", &cfg.google_key)
            .header("X-Goog-FieldMask", shared::vendors::places::SEARCH_FIELD_MASK)
            .json(&serde_json::json!({ "textQuery": format!("{}, {} 95113", y.businesses[0].name, y.businesses[0].location.address1.clone().unwrap()) })),
    )
    .await;
    assert!(!p.places.is_empty());
    assert!(p.places[0].display_name.is_some());
    // The field mask is honoured: a field not asked for is absent.
    assert!(p.places[0].google_maps_uri.is_none());

    let site = sim::data::businesses(cfg.seed, "95113", "restaurants")
        .into_iter()
        .find(|b| b.site == Some(sim::data::SiteProfile::Good))
        .unwrap();
    let url = format!("{base}/pagespeedonline/v5/runPagespeed");
    let site_url = format!(
        "http://www.{}.test:{}/",
        site.site_slug.unwrap(),
        sim.addr.port()
    );
    let psi: PsiResponse = get_json(
        &url,
        http.get(&url).query(&[
            ("url", site_url.as_str()),
            ("strategy", "mobile"),
            ("category", "PERFORMANCE"),
            ("category", "seo"),
        ]),
    )
    .await;
    let s = psi.summary().unwrap();
    assert!(
        s.performance.unwrap() >= 85,
        "a good site scores well: {s:?}"
    );
    assert!(s.lcp_ms.unwrap() < 2500.0);

    let url = format!("{base}/v1/chat/completions");
    let c: ChatResponse = get_json(&url, http.post(&url).bearer_auth(&cfg.openai_key).json(&serde_json::json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Reply in JSON" }], "response_format": { "type": "json_object" } }))).await;
    let content = c.choices[0].message.content.clone().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(&content)
            .unwrap()
            .is_object()
    );

    let url = format!("{base}/v1/checkout/sessions");
    let cs: CheckoutSession = get_json(
        &url,
        http.post(&url).bearer_auth(&cfg.stripe_key).form(&[
            ("mode", "payment"),
            ("success_url", "https://x.example.com/ok"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "4900"),
            ("line_items[0][price_data][product_data][name]", "Audit"),
            ("metadata[report_id]", "r1"),
        ]),
    )
    .await;
    assert!(cs.id.starts_with("cs_test_"));
    assert_eq!(
        (cs.amount_total, cs.metadata["report_id"].as_str()),
        (Some(4900), "r1")
    );
}

/// A receiver for the simulator's webhooks: keeps each request's headers and raw body.
async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, bytes::Bytes)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, bytes::Bytes)>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test]
async fn webhooks_the_simulator_signs_verify_with_our_verification_code() {
    let sim = Simulator::start_local(SimConfig::default()).await.unwrap();
    let base = sim.base_url();
    let cfg = sim.state.cfg.clone();
    let http = reqwest::Client::new();
    let (hook, got) = receiver().await;

    // Two mails into the outbox, then the event webhook.
    for to in ["a@one.example.com", "b@two.example.com"] {
        let r = http
            .post(format!("{base}/v3/mail/send"))
            .bearer_auth(&cfg.sendgrid_key)
            .json(&serde_json::json!({
                "personalizations": [{ "to": [{ "email": to }], "custom_args": { "email_id": to } }],
                "from": { "email": "ann@agency.example.com" }, "subject": "Hi",
                "content": [{ "type": "text/plain", "value": "Hello" }]
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(r.headers().contains_key("x-message-id"));
    }
    let bad = http
        .post(format!("{base}/v3/mail/send"))
        .bearer_auth(&cfg.sendgrid_key)
        .json(&serde_json::json!({ "personalizations": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let key_json: serde_json::Value = http
        .get(format!("{base}/_sim/sendgrid/public-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key =
        sendgrid::SendGridKey::from_base64_der(key_json["public_key"].as_str().unwrap()).unwrap();
    let emitted: serde_json::Value = http
        .post(format!("{base}/_sim/sendgrid/events"))
        .json(&serde_json::json!({ "target_url": hook, "mix": { "open": 1.0, "click": 0.0, "bounce": 0.0, "dropped": 0.0, "duplicate_delivery": true } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(emitted["messages"], 2);
    {
        let deliveries = got.lock().unwrap().clone();
        assert_eq!(deliveries.len(), 2, "delivered twice, as SendGrid retries");
        let now = chrono::Utc::now().timestamp();
        for (headers, body) in &deliveries {
            let sig = headers
                .get(sendgrid::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            let ts = headers
                .get(sendgrid::TIMESTAMP_HEADER)
                .and_then(|v| v.to_str().ok());
            key.verify(sig, ts, body, now, 600).unwrap();
            let mut tampered = body.to_vec();
            tampered[2] ^= 1;
            assert!(key.verify(sig, ts, &tampered, now, 600).is_err());
            let events: Vec<sendgrid::Event> = serde_json::from_slice(body).unwrap();
            assert_eq!(events.iter().filter(|e| e.event == "delivered").count(), 2);
            assert!(events.iter().all(|e| e.arg("email_id").is_some()));
        }
        assert_eq!(
            deliveries[0].1, deliveries[1].1,
            "a retry carries the same events"
        );
    }
    got.lock().unwrap().clear();

    // Stripe: create, complete, and the event verifies with the endpoint secret.
    let cs: CheckoutSession = http
        .post(format!("{base}/v1/checkout/sessions"))
        .bearer_auth(&cfg.stripe_key)
        .form(&[
            ("mode", "payment"),
            ("success_url", "https://x.example.com/ok"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "4900"),
            ("line_items[0][price_data][product_data][name]", "Audit"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!("{base}/_sim/stripe/complete"))
        .json(&serde_json::json!({ "session_id": cs.id, "target_url": hook }))
        .send()
        .await
        .unwrap();
    let (headers, body) = got.lock().unwrap()[0].clone();
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    stripe::verify(
        &cfg.stripe_webhook_secret,
        sig,
        &body,
        chrono::Utc::now().timestamp(),
        300,
    )
    .unwrap();
    assert!(
        stripe::verify(
            "whsec_wrong",
            sig,
            &body,
            chrono::Utc::now().timestamp(),
            300
        )
        .is_err()
    );
    let ev: stripe::Event = serde_json::from_slice(&body).unwrap();
    let paid: CheckoutSession = serde_json::from_value(ev.data.object).unwrap();
    assert_eq!(
        (paid.id, paid.payment_status.as_deref()),
        (cs.id, Some("paid"))
    );
}

/// The simulated sites answer by `Host`; the huge profile's page arrives whole (streamed around a
/// filler the simulator builds once), between the same head and footer as every other page.
#[tokio::test]
async fn the_simulators_huge_site_serves_a_whole_page_over_six_megabytes() {
    let sim = Simulator::start_local(SimConfig::default()).await.unwrap();
    let seed = sim.state.cfg.seed;
    let huge = (95100..95300)
        .flat_map(|zip| sim::data::businesses(seed, &zip.to_string(), "restaurants"))
        .find(|b| b.site == Some(sim::data::SiteProfile::Huge))
        .expect("a huge site among 200 zips");
    let slug = huge.site_slug.clone().unwrap();
    let r = reqwest::Client::new()
        .get(format!("http://{}/", sim.addr))
        .header("Host", format!("www.{slug}.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = r.text().await.unwrap();
    assert!(body.len() > 6 * 1024 * 1024, "{}", body.len());
    assert!(body.starts_with("<!DOCTYPE html>") && body.ends_with("</body></html>"));
    assert!(body.contains(&format!("<h1>{}</h1>", huge.name)));
    assert!(body.contains("<!-- xxxx") && !body.contains("<!--filler-->"));
}
