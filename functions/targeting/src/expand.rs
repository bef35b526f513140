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

/// Where an area's search stands: the next offset to ask for, and Yelp's `total` for it when
/// sourcing has seen one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub next_offset: u32,
    pub known_total: Option<u32>,
}

impl Cursor {
    /// How deep the area can still be searched.
    fn depth(&self) -> u32 {
        self.known_total.map_or(MAX_DEPTH, |t| t.min(MAX_DEPTH))
    }

    fn room(&self) -> u32 {
        self.depth().saturating_sub(self.next_offset)
    }

    /// Nothing new is left to find in the area.
    pub fn exhausted(&self) -> bool {
        self.room() == 0
    }
}

/// One (location, category) of a campaign.
pub type Area = (String, String);

/// A night's expansion: the jobs, and each area's cursor after them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    pub jobs: Vec<SourcingJob>,
    pub cursors: Vec<(Area, Cursor)>,
}

impl Expansion {
    /// The areas with nothing left to find.
    pub fn exhausted(&self) -> Vec<&Area> {
        self.cursors
            .iter()
            .filter(|(_, c)| c.exhausted())
            .map(|(a, _)| a)
            .collect()
    }

    /// Every area of the campaign is used up: it finds nothing new any more.
    pub fn campaign_exhausted(&self) -> bool {
        !self.cursors.is_empty() && self.cursors.iter().all(|(_, c)| c.exhausted())
    }
}

/// The campaign's areas: every (location, category), ZIP codes or else the city, categories or
/// else the vertical.
pub fn areas(c: &CampaignPlan) -> Vec<Area> {
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
    locations
        .iter()
        .flat_map(|l| categories.iter().map(move |k| (l.clone(), k.clone())))
        .collect()
}

/// Jobs for the night's quota, continuing each area from its cursor (`daily_quota` is what is
/// new each night, not the same first pages again): the quota is split evenly over the areas
/// with room left, an area's unused share going to the others, paged by 50, never past Yelp's
/// depth cap or the area's known total, and never more listings than the quota in total.
pub fn expand(c: &CampaignPlan, cursors: &std::collections::HashMap<Area, Cursor>) -> Expansion {
    let areas = areas(c);
    let mut at: Vec<Cursor> = areas
        .iter()
        .map(|a| cursors.get(a).copied().unwrap_or_default())
        .collect();
    let mut left = c.daily_quota;
    let mut jobs = Vec::new();
    loop {
        let open: Vec<usize> = (0..areas.len()).filter(|&i| at[i].room() > 0).collect();
        if open.is_empty() || left == 0 {
            break;
        }
        let share = left.div_ceil(open.len() as u32);
        for i in open {
            let mut take = share.min(at[i].room()).min(left);
            while take > 0 {
                let limit = take.min(PAGE);
                jobs.push(SourcingJob {
                    campaign_id: c.id,
                    location: areas[i].0.clone(),
                    category: areas[i].1.clone(),
                    offset: at[i].next_offset,
                    limit,
                });
                at[i].next_offset += limit;
                take -= limit;
                left -= limit;
            }
        }
    }
    Expansion {
        jobs,
        cursors: areas.into_iter().zip(at).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The first night's jobs (no cursor yet).
    fn fresh(p: &CampaignPlan) -> Vec<SourcingJob> {
        expand(p, &HashMap::new()).jobs
    }

    #[test]
    fn each_night_continues_where_the_last_one_stopped_and_says_when_an_area_is_used_up() {
        let p = plan(&["95113"], &["restaurants", "cafes"], 100);
        let mut cursors: HashMap<Area, Cursor> = HashMap::new();
        let mut asked: Vec<(String, u32)> = Vec::new();
        for night in 0..4 {
            let e = expand(&p, &cursors);
            for j in &e.jobs {
                assert!(j.offset + j.limit <= MAX_DEPTH);
                asked.push((j.category.clone(), j.offset));
            }
            let total: u32 = e.jobs.iter().map(|j| j.limit).sum();
            // 2 areas x 240 = 480 listings in all: 100, 100, 100, 100, then 80 are left.
            assert_eq!(total, 100, "night {night}");
            assert!(e.exhausted().is_empty(), "night {night}");
            cursors = e.cursors.into_iter().collect();
        }
        let e = expand(&p, &cursors);
        assert_eq!(e.jobs.iter().map(|j| j.limit).sum::<u32>(), 80);
        assert_eq!(e.exhausted().len(), 2, "both areas reached the depth cap");
        assert!(e.campaign_exhausted());
        let mut unique = asked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), asked.len(), "no page is asked for twice");
        cursors = e.cursors.into_iter().collect();
        assert!(expand(&p, &cursors).jobs.is_empty());
    }

    #[test]
    fn an_area_smaller_than_the_cap_gives_its_share_to_the_others() {
        let p = plan(&["95113", "94103"], &["restaurants"], 100);
        let mut cursors = HashMap::new();
        // Yelp said the first area has only 30 listings, and 20 were already asked for.
        cursors.insert(
            ("95113".to_owned(), "restaurants".to_owned()),
            Cursor {
                next_offset: 20,
                known_total: Some(30),
            },
        );
        let e = expand(&p, &cursors);
        let by = |loc: &str| -> u32 {
            e.jobs
                .iter()
                .filter(|j| j.location == loc)
                .map(|j| j.limit)
                .sum()
        };
        assert_eq!((by("95113"), by("94103")), (10, 90));
        assert_eq!(
            e.exhausted(),
            vec![&("95113".to_owned(), "restaurants".to_owned())]
        );
        assert!(!e.campaign_exhausted());
    }

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
        let jobs = fresh(&plan(&["95113", "94103"], &["restaurants"], 120));
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
        let jobs = fresh(&plan(&["95113"], &["restaurants"], 1_000));
        assert!(
            jobs.iter()
                .all(|j| j.offset + j.limit <= MAX_DEPTH && j.limit <= PAGE)
        );
        assert_eq!(jobs.iter().map(|j| j.limit).sum::<u32>(), MAX_DEPTH);
        let jobs = fresh(&plan(&["1", "2", "3"], &["a", "b"], 7));
        assert!(jobs.iter().map(|j| j.limit).sum::<u32>() <= 7);
        assert!(fresh(&plan(&[], &["a"], 10)).is_empty());
        assert!(fresh(&plan(&["1"], &["a"], 0)).is_empty());
    }

    #[test]
    fn falls_back_to_city_and_vertical() {
        let mut p = plan(&[], &[], 20);
        p.city = Some("San Jose".into());
        let jobs = fresh(&p);
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
