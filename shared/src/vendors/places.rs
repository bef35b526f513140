//! Google Places API (New) text search (`POST /v1/places:searchText`). The field mask is
//! mandatory; we ask only for the fields enrichment stores, and the mask decides the price.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::core::Usage;
use super::{CallContext, VendorError, VendorHttp};
use crate::domain::capped;

/// What enrichment stores and matches on. `websiteUri` (the homepage the assessment needs, which
/// Yelp never gives) is an Enterprise field, so every call is billed at [`Sku::Enterprise`];
/// the phone, rating, hours and count ride along at no extra cost.
pub const SEARCH_FIELD_MASK: &str = "places.id,places.displayName,places.formattedAddress,places.nationalPhoneNumber,places.internationalPhoneNumber,places.websiteUri,places.rating,places.userRatingCount,places.businessStatus,places.regularOpeningHours,places.location,places.types,nextPageToken";

/// The Text Search (New) SKU a request is billed at: the highest tier of any field in its mask
/// (Google's "Places API (New) usage and billing" field lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sku {
    /// Ids only: free.
    EssentialsIdsOnly,
    Pro,
    Enterprise,
    EnterpriseAtmosphere,
}

const IDS_ONLY_FIELDS: &[&str] = &["id", "name", "attributions", "nextPageToken"];
const PRO_FIELDS: &[&str] = &[
    "accessibilityOptions",
    "addressComponents",
    "addressDescriptor",
    "adrFormatAddress",
    "businessStatus",
    "containingPlaces",
    "displayName",
    "formattedAddress",
    "googleMapsLinks",
    "googleMapsUri",
    "iconBackgroundColor",
    "iconMaskBaseUri",
    "location",
    "photos",
    "plusCode",
    "postalAddress",
    "primaryType",
    "primaryTypeDisplayName",
    "pureServiceAreaBusiness",
    "shortFormattedAddress",
    "subDestinations",
    "types",
    "utcOffsetMinutes",
    "viewport",
];
const ENTERPRISE_FIELDS: &[&str] = &[
    "currentOpeningHours",
    "currentSecondaryOpeningHours",
    "internationalPhoneNumber",
    "nationalPhoneNumber",
    "priceLevel",
    "priceRange",
    "rating",
    "regularOpeningHours",
    "regularSecondaryOpeningHours",
    "userRatingCount",
    "websiteUri",
];

impl Sku {
    /// The SKU of a field mask (search paths carry a `places.` prefix). A field not in the
    /// lists (the atmosphere ones: reviews, serves*, …, or `*`) bills at the top tier.
    pub fn of_mask(mask: &str) -> Sku {
        mask.split(',')
            .map(|f| {
                let f = f.trim();
                let f = f.strip_prefix("places.").unwrap_or(f);
                let top = f.split('.').next().unwrap_or(f);
                if IDS_ONLY_FIELDS.contains(&top) {
                    Sku::EssentialsIdsOnly
                } else if PRO_FIELDS.contains(&top) {
                    Sku::Pro
                } else if ENTERPRISE_FIELDS.contains(&top) {
                    Sku::Enterprise
                } else {
                    Sku::EnterpriseAtmosphere
                }
            })
            .max()
            .unwrap_or(Sku::EssentialsIdsOnly)
    }

    /// List price per request, micro-dollars (per 1,000: $0, $32, $35, $40).
    pub fn list_price_micros(self) -> i64 {
        match self {
            Sku::EssentialsIdsOnly => 0,
            Sku::Pro => 32_000,
            Sku::Enterprise => 35_000,
            Sku::EnterpriseAtmosphere => 40_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextSearchRequest {
    pub text_query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TextSearchResponse {
    #[serde(deserialize_with = "capped::few")]
    pub places: Vec<Place>,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Place {
    #[serde(deserialize_with = "capped::opt::<{ capped::ID }, _>")]
    pub name: Option<String>,
    #[serde(deserialize_with = "capped::text::<{ capped::ID }, _>")]
    pub id: String,
    pub display_name: Option<LocalizedText>,
    #[serde(deserialize_with = "capped::opt::<{ capped::LINE }, _>")]
    pub formatted_address: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub national_phone_number: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub international_phone_number: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub website_uri: Option<String>,
    #[serde(deserialize_with = "capped::opt::<{ capped::URL }, _>")]
    pub google_maps_uri: Option<String>,
    pub rating: Option<f64>,
    pub user_rating_count: Option<u32>,
    /// `OPERATIONAL`, `CLOSED_TEMPORARILY`, `CLOSED_PERMANENTLY`.
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub business_status: Option<String>,
    #[serde(deserialize_with = "capped::list::<{ capped::NAME }, _>")]
    pub types: Vec<String>,
    #[serde(deserialize_with = "capped::json_opt")]
    pub regular_opening_hours: Option<serde_json::Value>,
    pub location: Option<LatLng>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalizedText {
    #[serde(deserialize_with = "capped::text::<{ capped::NAME }, _>")]
    pub text: String,
    #[serde(deserialize_with = "capped::opt::<{ capped::SHORT }, _>")]
    pub language_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LatLng {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug)]
pub struct PlacesClient {
    http: VendorHttp,
    key: SecretString,
}

impl PlacesClient {
    pub fn new(http: VendorHttp, key: SecretString) -> Self {
        Self { http, key }
    }

    pub fn http(&self) -> &VendorHttp {
        &self.http
    }

    pub async fn search_text(
        &self,
        ctx: &CallContext,
        req: &TextSearchRequest,
    ) -> Result<TextSearchResponse, VendorError> {
        let url = self.http.url("/v1/places:searchText");
        let (resp, _) = self
            .http
            .json(
                ctx,
                "places:searchText",
                |c| {
                    c.post(&url)
                        .header("X-Goog-Api-Key", self.key.expose_secret())
                        .header("X-Goog-FieldMask", SEARCH_FIELD_MASK)
                        .json(req)
                },
                |_: &TextSearchResponse| Usage::default(),
            )
            .await?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_bills_at_its_highest_fields_sku() {
        assert_eq!(Sku::of_mask(SEARCH_FIELD_MASK), Sku::Enterprise);
        assert_eq!(
            Sku::of_mask("places.id,places.displayName,places.location,nextPageToken"),
            Sku::Pro
        );
        assert_eq!(
            Sku::of_mask("places.id,nextPageToken"),
            Sku::EssentialsIdsOnly
        );
        assert_eq!(
            Sku::of_mask("places.id,places.reviews"),
            Sku::EnterpriseAtmosphere
        );
        assert_eq!(Sku::of_mask("*"), Sku::EnterpriseAtmosphere);
        assert_eq!(
            Sku::of_mask("places.displayName.text,places.websiteUri"),
            Sku::Enterprise
        );
    }
}
