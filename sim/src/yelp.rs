//! Yelp Fusion `GET /v3/businesses/search`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::data::{self, SimBusiness};
use crate::shapes::{bearer_ok, gate, with_headers, yelp_error, yelp_rate_headers};
use crate::state::SimState;

const CITIES: &[(&str, &str)] = &[
    ("san jose", "95113"),
    ("san francisco", "94103"),
    ("new york", "10001"),
    ("chicago", "60601"),
    ("austin", "78701"),
];

/// The ZIP a `location` names: a five-digit ZIP in it, or a known city.
pub fn zip_of(location: &str) -> Option<String> {
    if let Some(z) = location
        .split(|c: char| !c.is_ascii_digit())
        .find(|t| t.len() == 5)
    {
        return Some(z.to_owned());
    }
    let l = location.to_lowercase();
    CITIES
        .iter()
        .find(|(c, _)| l.contains(c))
        .map(|(_, z)| (*z).to_owned())
}

pub fn business_json(b: &SimBusiness) -> serde_json::Value {
    json!({
        "id": b.yelp_id,
        "alias": b.alias,
        "name": b.name,
        "image_url": format!("https://s3-media1.fl.yelpcdn.com/bphoto/{}/o.jpg", &b.yelp_id[..8]),
        "is_closed": b.is_closed,
        "url": format!("https://www.yelp.com/biz/{}?adjust_creative=sim&utm_campaign=yelp_api_v3&utm_medium=api_v3_business_search&utm_source=sim", b.alias),
        "review_count": b.review_count,
        "categories": [{ "alias": b.category, "title": b.category[..1].to_uppercase() + &b.category[1..] }],
        "rating": b.rating,
        "coordinates": { "latitude": b.latitude, "longitude": b.longitude },
        "transactions": [],
        "location": {
            "address1": b.address1, "address2": null, "address3": "",
            "city": b.city, "zip_code": b.zip, "country": "US", "state": b.state,
            "display_address": [b.address1.clone(), format!("{}, {} {}", b.city, b.state, b.zip)]
        },
        "phone": b.phone_e164,
        "display_phone": b.display_phone,
        "distance": 250.0 + f64::from(b.review_count) * 3.1,
    })
}

pub async fn search(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if !bearer_ok(&headers, &state.cfg.yelp_key) {
        return yelp_error(
            StatusCode::UNAUTHORIZED,
            "TOKEN_INVALID",
            json!("Invalid access token or authorization header."),
        );
    }
    if let Err(r) = gate(&state, "yelp").await {
        return r;
    }
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(location) = get("location").filter(|l| !l.trim().is_empty()) else {
        if get("latitude").is_none() || get("longitude").is_none() {
            return yelp_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                json!("Please specify a location or a latitude and longitude"),
            );
        }
        return yelp_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            json!("The simulator supports location searches only"),
        );
    };
    let limit: u32 = match get("limit").map(str::parse).transpose() {
        Ok(l) => l.unwrap_or(20),
        Err(_) => {
            return yelp_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                json!("'limit' is not a valid integer"),
            );
        }
    };
    if limit > 50 {
        return yelp_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            json!(format!(
                "The supplied limit: {limit} is invalid. The maximum is 50"
            )),
        );
    }
    let offset: u32 = match get("offset").map(str::parse).transpose() {
        Ok(o) => o.unwrap_or(0),
        Err(_) => {
            return yelp_error(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                json!("'offset' is not a valid integer"),
            );
        }
    };
    if offset + limit > state.cfg.yelp_depth_cap {
        return yelp_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            json!(format!(
                "Too many results requested, limit+offset must be <= {}.",
                state.cfg.yelp_depth_cap
            )),
        );
    }
    let Some(zip) = zip_of(location) else {
        return yelp_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            json!({ "error": { "code": "LOCATION_NOT_FOUND", "description": "Could not execute search, try specifying a more exact location." } }),
        );
    };
    let category = get("categories")
        .and_then(|c| c.split(',').next())
        .unwrap_or("restaurants");
    let all = if data::categories().contains(&category) {
        data::businesses(state.cfg.seed, &zip, category)
    } else {
        Vec::new()
    };
    let total = all.len().min(state.cfg.yelp_depth_cap as usize);
    // Unstable paging, as observed: a later page repeats the previous page's last listing.
    let start = if offset > 0 { offset as usize - 1 } else { 0 };
    let page: Vec<serde_json::Value> = all
        .iter()
        .skip(start)
        .take(limit as usize)
        .map(business_json)
        .collect();
    let (lat, lng) = all
        .first()
        .map(|b| (b.latitude, b.longitude))
        .unwrap_or_default();
    let body = json!({ "businesses": page, "total": total, "region": { "center": { "latitude": lat, "longitude": lng } } });
    with_headers(
        (StatusCode::OK, axum::Json(body)).into_response(),
        &yelp_rate_headers(&state),
    )
}
