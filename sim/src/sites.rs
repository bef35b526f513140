//! The simulated businesses' own websites, served by `Host: www.<slug>.test`, with the quality
//! their profile says: good, no viewport, missing title/meta/h1, outdated stack, slow, huge,
//! redirect chain, 404, 500.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;

use crate::data::{self, SimBusiness, SiteProfile};
use crate::state::SimState;

/// Where the huge site's filler goes in its page.
const FILLER_AT: &str = "<!--filler-->";

/// The huge site's 6 MB filler, built once per process and shared by every response: serving
/// it must not cost the simulator (which runs inside the local pipeline's process) 6 MB and
/// several copies per request.
static HUGE_FILLER: LazyLock<Bytes> =
    LazyLock::new(|| Bytes::from(format!("<!-- {} -->", "x".repeat(6 * 1024 * 1024))));

/// A page as a response body: the huge site's is streamed around the shared filler.
fn page_response(b: &SimBusiness, profile: SiteProfile, slug: &str) -> Response {
    let html = page(b, profile, slug);
    let Some((before, after)) = html.split_once(FILLER_AT) else {
        return Html(html).into_response();
    };
    let chunks = [
        Bytes::copy_from_slice(before.as_bytes()),
        HUGE_FILLER.clone(),
        Bytes::copy_from_slice(after.as_bytes()),
    ];
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.map(Ok::<_, std::convert::Infallible>),
    ));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// The web designer some simulated sites credit in their footer.
pub const DESIGNER_EMAIL: &str = "hello@brightpixel-studio.test";

fn page(b: &SimBusiness, profile: SiteProfile, slug: &str) -> String {
    let year = chrono::Utc::now().format("%Y").to_string();
    let email = format!("info@{slug}.test");
    let (head, body_extra, copyright) = match profile {
        SiteProfile::Good => (
            format!(
                r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} | {city}</title><meta name="description" content="{name} in {city}: menus, hours and bookings.">
<link rel="canonical" href="https://www.{slug}.test/"><meta property="og:title" content="{name}">
<script async src="https://www.googletagmanager.com/gtag/js?id=G-SIM123"></script>"#,
                name = b.name, city = b.city
            ),
            String::new(),
            year.clone(),
        ),
        SiteProfile::NoViewport => (
            format!(r#"<meta charset="utf-8"><title>{}</title><meta name="description" content="Welcome to {}"><script src="/js/jquery-1.12.4.min.js"></script>"#, b.name, b.name),
            String::new(),
            "2019".into(),
        ),
        SiteProfile::NoHttpsRedirect => (
            format!(r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{}</title><meta name="description" content="{}"><link rel="canonical" href="http://www.{slug}.test/">"#, b.name, b.name),
            String::new(),
            "2021".into(),
        ),
        SiteProfile::MissingMeta => (r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width">"#.into(), String::new(), "2020".into()),
        SiteProfile::Outdated => (
            format!(r#"<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><meta name="generator" content="WordPress 4.2.1"><title>{} - Home</title><script type="text/javascript" src="/wp-includes/js/jquery/jquery-1.8.3.min.js"></script>"#, b.name),
            r#"<table width="800"><tr><td><img src="/images/banner.gif" width="800"></td></tr></table>"#.into(),
            "2014".into(),
        ),
        SiteProfile::Huge => (
            format!(r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{}</title>"#, b.name),
            FILLER_AT.to_owned(),
            year.clone(),
        ),
        _ => (
            format!(r#"<meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{}</title><meta name="description" content="{}">"#, b.name, b.name),
            String::new(),
            year.clone(),
        ),
    };
    let h1 = if profile == SiteProfile::MissingMeta {
        format!("<div class=\"big\">{}</div>", b.name)
    } else {
        format!("<h1>{}</h1>", b.name)
    };
    // Sites of outdated or bare profiles often have only a contact form: no address to write to.
    let contact = if matches!(profile, SiteProfile::MissingMeta) || b.review_count.is_multiple_of(7)
    {
        r#"<form action="/contact" method="post"><input name="message"></form>"#.to_owned()
    } else {
        format!(r#"<p>Email us: <a href="mailto:{email}">{email}</a></p>"#)
    };
    // Some sites credit their web designer with a link to the designer's inbox: an address on
    // the page that is not the business's (and sorts before `info@`).
    let credit = if b.review_count.is_multiple_of(5) {
        format!(" &middot; Site by <a href=\"mailto:{DESIGNER_EMAIL}\">Bright Pixel Studio</a>")
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head>{head}</head><body>{h1}<p>{addr}, {city}, {state} {zip}</p><p>Call {phone}</p>{contact}{body_extra}<footer>&copy; {copyright} {name}{credit}</footer></body></html>",
        addr = b.address1,
        city = b.city,
        state = b.state,
        zip = b.zip,
        phone = b.display_phone,
        name = b.name
    )
}

/// The fallback handler: serves a site when the Host is a simulated one, else 404.
pub async fn serve(State(state): State<Arc<SimState>>, headers: HeaderMap, uri: Uri) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let Some(slug) = crate::psi::slug_of(&format!("http://{host}/")) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no route for {}", uri.path()) })),
        )
            .into_response();
    };
    let Some(b) = data::by_slug(state.cfg.seed, &slug) else {
        return (StatusCode::NOT_FOUND, Html("<h1>Unknown site</h1>")).into_response();
    };
    if let Err(r) = crate::shapes::gate(&state, "sites").await {
        return r;
    }
    let profile = b.site.unwrap_or(SiteProfile::Good);
    let path = uri.path();
    match (profile, path) {
        (SiteProfile::NotFound, _) => {
            (StatusCode::NOT_FOUND, Html("<h1>Not Found</h1>")).into_response()
        }
        (SiteProfile::ServerError, _) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("<h1>Internal Server Error</h1>"),
        )
            .into_response(),
        (SiteProfile::RedirectChain, "/") => {
            (StatusCode::FOUND, [("location", "/r1")]).into_response()
        }
        (SiteProfile::RedirectChain, "/r1") => {
            (StatusCode::MOVED_PERMANENTLY, [("location", "/r2")]).into_response()
        }
        (SiteProfile::RedirectChain, "/r2") => {
            (StatusCode::FOUND, [("location", "/home")]).into_response()
        }
        (SiteProfile::Slow, _) => {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            page_response(&b, profile, &slug)
        }
        (_, "/" | "/home") => page_response(&b, profile, &slug),
        _ => (StatusCode::NOT_FOUND, Html("<h1>Not Found</h1>")).into_response(),
    }
}
