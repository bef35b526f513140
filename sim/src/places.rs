//! Google Places (New) `POST /v1/places:searchText`: field mask mandatory, key in
//! `X-Goog-Api-Key`, unset fields omitted.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::domain::normalize_name;

use crate::data::{self, SimBusiness};
use crate::shapes::{gate, google_error};
use crate::state::SimState;

fn national(e164: &str) -> String {
    format!("({}) {}-{}", &e164[2..5], &e164[5..8], &e164[8..])
}

pub fn site_url(state: &SimState, slug: &str) -> String {
    let port = state
        .base_url()
        .rsplit(':')
        .next()
        .unwrap_or("80")
        .trim_end_matches('/')
        .to_owned();
    format!("http://www.{slug}.test:{port}/")
}

fn place_json(state: &SimState, b: &SimBusiness) -> Value {
    let mut p = json!({
        "name": format!("places/ChIJ{}", &b.yelp_id[..16]),
        "id": format!("ChIJ{}", &b.yelp_id[..16]),
        // Google's listing name often lacks the legal suffix Yelp shows.
        "displayName": { "text": b.name.trim_end_matches(" LLC").trim_end_matches(" Inc").trim_end_matches(" Co"), "languageCode": "en" },
        "formattedAddress": format!("{}, {}, {} {}, USA", b.address1, b.city, b.state, b.zip),
        "nationalPhoneNumber": national(&b.phone_e164),
        "internationalPhoneNumber": format!("+1 {}-{}-{}", &b.phone_e164[2..5], &b.phone_e164[5..8], &b.phone_e164[8..]),
        "rating": (b.rating * 1.1).min(5.0),
        "userRatingCount": b.review_count * 2 + 3,
        "businessStatus": if b.is_closed { "CLOSED_PERMANENTLY" } else { "OPERATIONAL" },
        "types": [b.category.trim_end_matches('s'), "point_of_interest", "establishment"],
        "location": { "latitude": b.latitude, "longitude": b.longitude },
        "regularOpeningHours": {
            "openNow": true,
            "periods": (1..=5).map(|d| json!({ "open": { "day": d, "hour": 9, "minute": 0 }, "close": { "day": d, "hour": 17, "minute": 0 } })).collect::<Vec<_>>(),
            "weekdayDescriptions": ["Monday: 9:00 AM – 5:00 PM", "Tuesday: 9:00 AM – 5:00 PM", "Wednesday: 9:00 AM – 5:00 PM", "Thursday: 9:00 AM – 5:00 PM", "Friday: 9:00 AM – 5:00 PM", "Saturday: Closed", "Sunday: Closed"]
        },
        "googleMapsUri": format!("https://maps.google.com/?cid={}", &b.yelp_id[..10]),
    });
    if let (Some(slug), Some(obj)) = (&b.site_slug, p.as_object_mut()) {
        obj.insert("websiteUri".into(), json!(site_url(state, slug)));
    }
    p
}

/// Keeps only the fields the mask names (`*` keeps all), as Places does.
fn apply_mask(place: Value, mask: &[String]) -> Value {
    if mask.iter().any(|m| m == "*") {
        return place;
    }
    match place {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| mask.iter().any(|m| m == k))
                .collect(),
        ),
        other => other,
    }
}

fn words(s: &str) -> std::collections::HashSet<String> {
    normalize_name(s)
        .split(' ')
        .filter(|w| w.len() > 1)
        .map(str::to_owned)
        .collect()
}

pub async fn search_text(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let key_ok = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok())
        == Some(state.cfg.google_key.as_str());
    if !key_ok {
        return google_error(
            StatusCode::FORBIDDEN,
            "API key not valid. Please pass a valid API key.",
            "PERMISSION_DENIED",
            "API_KEY_INVALID",
            "googleapis.com",
        );
    }
    let Some(mask) = headers
        .get("x-goog-fieldmask")
        .and_then(|v| v.to_str().ok())
        .filter(|m| !m.trim().is_empty())
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "FieldMask is a required parameter. See https://cloud.google.com/apis/docs/system-parameters on how to provide it.",
            "INVALID_ARGUMENT",
            "badRequest",
            "global",
        );
    };
    if let Err(r) = gate(&state, "places").await {
        return r;
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid JSON payload received. {e}"),
                "INVALID_ARGUMENT",
                "badRequest",
                "global",
            );
        }
    };
    let Some(query) = req
        .get("textQuery")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
    else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Empty text_query.",
            "INVALID_ARGUMENT",
            "badRequest",
            "global",
        );
    };
    let place_mask: Vec<String> = mask
        .split(',')
        .map(|m| m.trim().trim_start_matches("places.").to_owned())
        .collect();

    let zip = crate::yelp::zip_of(query);
    let mut matches: Vec<(usize, SimBusiness)> = Vec::new();
    if let Some(zip) = zip {
        let q = words(query);
        for b in data::categories()
            .into_iter()
            .flat_map(|c| data::businesses(state.cfg.seed, &zip, c))
        {
            if b.duplicate_of.is_some() {
                continue;
            }
            let overlap = words(&b.name).intersection(&q).count();
            if overlap > 0 && !matches.iter().any(|(_, m)| m.yelp_id == b.yelp_id) {
                matches.push((overlap, b));
            }
        }
    }
    matches.sort_by_key(|m| std::cmp::Reverse(m.0));
    // One query in twenty answers with a different business first, as real text search sometimes
    // does: enrichment must check the match, not trust it.
    let h = query
        .bytes()
        .fold(0u32, |a, c| a.wrapping_mul(31).wrapping_add(u32::from(c)));
    if h.is_multiple_of(20) && matches.len() > 1 {
        matches.swap(0, 1);
    }
    let page_size = req
        .get("pageSize")
        .and_then(Value::as_u64)
        .unwrap_or(20)
        .clamp(1, 20) as usize;
    let places: Vec<Value> = matches
        .into_iter()
        .take(page_size.min(3))
        .map(|(_, b)| apply_mask(place_json(&state, &b), &place_mask))
        .collect();
    let body = if places.is_empty() {
        json!({})
    } else {
        json!({ "places": places })
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
