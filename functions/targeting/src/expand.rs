//! Campaign → sourcing jobs. Pure, so the quota arithmetic is tested on its own.

use shared::domain::CampaignId;
use shared::pipeline::messages::SourcingJob;

/// Yelp's page size and search depth cap (`offset + limit`).
pub const PAGE: u32 = 50;
pub const MAX_DEPTH: u32 = 240;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignPlan {
    pub id: CampaignId,
    pub vertical: String,
    pub categories: Vec<String>,
    pub zip_codes: Vec<String>,
    pub city: Option<String>,
    pub daily_quota: u32,
}

/// Jobs covering the quota: split evenly over every (location, category), paged by 50, never
/// past the depth cap, and never asking for more listings than the quota in total.
pub fn expand(c: &CampaignPlan) -> Vec<SourcingJob> {
    let locations: Vec<String> = if c.zip_codes.is_empty() {
        c.city.iter().cloned().collect()
    } else {
        c.zip_codes.clone()
    };
    let categories: Vec<String> = if c.categories.is_empty() {
        vec![c.vertical.clone()]
    } else {
        c.categories.clone()
    };
    let combos = (locations.len() * categories.len()) as u32;
    if combos == 0 || c.daily_quota == 0 {
        return Vec::new();
    }
    let per_combo = c.daily_quota.div_ceil(combos).min(MAX_DEPTH);
    let mut left = c.daily_quota;
    let mut jobs = Vec::new();
    for loc in &locations {
        for cat in &categories {
            let mut offset = 0;
            while offset < per_combo && left > 0 {
                let limit = PAGE
                    .min(per_combo - offset)
                    .min(MAX_DEPTH - offset)
                    .min(left);
                jobs.push(SourcingJob {
                    campaign_id: c.id,
                    location: loc.clone(),
                    category: cat.clone(),
                    offset,
                    limit,
                });
                left -= limit;
                offset += limit;
            }
        }
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(zips: &[&str], cats: &[&str], quota: u32) -> CampaignPlan {
        CampaignPlan {
            id: CampaignId::new(),
            vertical: "restaurants".into(),
            categories: cats.iter().map(|s| (*s).to_owned()).collect(),
            zip_codes: zips.iter().map(|s| (*s).to_owned()).collect(),
            city: None,
            daily_quota: quota,
        }
    }

    #[test]
    fn splits_the_quota_over_locations_and_categories_in_pages() {
        let jobs = expand(&plan(&["95113", "94103"], &["restaurants"], 120));
        let total: u32 = jobs.iter().map(|j| j.limit).sum();
        assert_eq!(total, 120);
        assert_eq!(
            jobs.iter()
                .map(|j| (j.location.as_str(), j.offset, j.limit))
                .collect::<Vec<_>>(),
            vec![
                ("95113", 0, 50),
                ("95113", 50, 10),
                ("94103", 0, 50),
                ("94103", 50, 10)
            ]
        );
    }

    #[test]
    fn never_passes_the_depth_cap_or_the_quota() {
        let jobs = expand(&plan(&["95113"], &["restaurants"], 1_000));
        assert!(
            jobs.iter()
                .all(|j| j.offset + j.limit <= MAX_DEPTH && j.limit <= PAGE)
        );
        assert_eq!(jobs.iter().map(|j| j.limit).sum::<u32>(), MAX_DEPTH);
        let jobs = expand(&plan(&["1", "2", "3"], &["a", "b"], 7));
        assert!(jobs.iter().map(|j| j.limit).sum::<u32>() <= 7);
        assert!(expand(&plan(&[], &["a"], 10)).is_empty());
        assert!(expand(&plan(&["1"], &["a"], 0)).is_empty());
    }

    #[test]
    fn falls_back_to_city_and_vertical() {
        let mut p = plan(&[], &[], 20);
        p.city = Some("San Jose".into());
        let jobs = expand(&p);
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (
                jobs[0].location.as_str(),
                jobs[0].category.as_str(),
                jobs[0].limit
            ),
            ("San Jose", "restaurants", 20)
        );
    }
}
