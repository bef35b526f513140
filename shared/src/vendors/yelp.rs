//! Yelp Fusion business search (`GET /v3/businesses/search`, bearer key in the header).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, Vendor, VendorError, VendorHttp};

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
    pub id: String,
    pub alias: String,
    pub name: String,
    pub image_url: Option<String>,
    pub is_closed: bool,
    /// The Yelp page, with tracking parameters — not the business's website.
    pub url: Option<String>,
    pub review_count: u32,
    pub categories: Vec<Category>,
    pub rating: Option<f64>,
    pub coordinates: Coordinates,
    pub price: Option<String>,
    pub location: Location,
    /// E.164-ish, may be empty.
    pub phone: String,
    pub display_phone: String,
    pub distance: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Category {
    pub alias: String,
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
    pub address1: Option<String>,
    pub address2: Option<String>,
    pub address3: Option<String>,
    pub city: Option<String>,
    pub zip_code: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
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
