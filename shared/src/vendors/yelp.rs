//! Yelp Fusion business search (`GET /v3/businesses/search`, bearer key in the header).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, Vendor, VendorError, VendorHttp};
use crate::domain::capped;

pub const MAX_LIMIT: u32 = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub location: String,
    pub categories: Option<String>,
    pub term: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    #[serde(default)]
    pub businesses: Vec<Business>,
    #[serde(default)]
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Business {
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub alias: String,
    #[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]
    pub name: String,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub image_url: Option<String>,
    pub is_closed: bool,
    /// The Yelp page, with tracking parameters — not the business's website.
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub url: Option<String>,
    pub review_count: u32,
    #[serde(deserialize_with = "capped::few")]
    pub categories: Vec<Category>,
    pub rating: Option<f64>,
    pub coordinates: Coordinates,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub price: Option<String>,
    pub location: Location,
    /// E.164-ish, may be empty.
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub phone: String,
    #[serde(deserialize_with = "capped::text::<{ capped::SHORT }, _>")]
    pub display_phone: String,
    pub distance: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Category {
    #[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]
    pub alias: String,
    #[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Coordinates {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    #[serde(deserialize_with = "capped::opt::<{ capped::LINE }, _>")]
    pub address1: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::LINE }, _>")]
    pub address2: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::LINE }, _>")]
    pub address3: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::NAME }, _>")]
    pub city: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub zip_code: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub country: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub state: Option<String>,
    #[serde(deserialize_with = "capped::list::<{ capped::LINE }, _>")]
    pub display_address: Vec<String>,
}

#[derive(Debug)]
pub struct YelpClient {
    http: VendorHttp,
    key: SecretString,
}

impl YelpClient {
    pub fn new(http: VendorHttp, key: SecretString) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub async fn search(
        &self,
        ctx: &CallContext,
        req: &SearchRequest,
    ) -> Result<SearchResponse, VendorError> {
        if req.limit == 0 || req.limit > MAX_LIMIT {
            return Err(VendorError::InvalidInput {
                vendor: Vendor::Yelp,
                detail: format!("limit {} is outside 1..={MAX_LIMIT}", req.limit),
            });
        }
        let mut query: Vec<(&str, String)> = vec![
            ("location", req.location.clone()),
            ("limit", req.limit.to_string()),
            ("offset", req.offset.to_string()),
        ];
        if let Some(c) = &req.categories {
            query.push(("categories", c.clone()));
        }
        if let Some(t) = &req.term {
            query.push(("term", t.clone()));
        }
        let url = self.http.url("/v3/businesses/search");
        let (resp, _) = self
            .http
            .json(
                ctx,
                "businesses/search",
                |c| {
                    c.get(&url)
                        .bearer_auth(self.key.expose_secret())
                        .query(&query)
                },
                |_: &SearchResponse| Usage::default(),
            )
            .await?;
        Ok(resp)
    }
}
