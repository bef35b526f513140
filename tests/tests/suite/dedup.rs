//! De-duplication quality on a labelled set (`testkit::dedup_set`): 10,000 businesses, a fifth
//! listed twice with realistic noise, chains that must stay apart. The pipeline's own rules
//! (sourcing's keys, enrichment's one business per website domain) must find ≥ 99 % of the
//! planted duplicates and merge no two businesses in a thousand. `scripts/bench` runs the same
//! at 100,000 and reports the misses by kind (docs/performance.md).

#[test]
fn planted_duplicates_are_found_and_distinct_businesses_kept_apart() {
    let set = testkit::dedup_set::generate(10_000, 27);
    let q = testkit::dedup_set::evaluate(&set);
    assert!(q.planted > 1_500, "{} duplicates planted", q.planted);
    assert!(
        q.recall() >= 0.99,
        "recall {:.4} ({} of {}); misses by kind: {:?} of {:?}",
        q.recall(),
        q.found,
        q.planted,
        q.misses,
        q.carrying
    );
    assert!(
        q.precision() >= 0.999,
        "precision {:.5}: {} of {} merged pairs are two businesses",
        q.precision(),
        q.false_merges,
        q.merged
    );
}
