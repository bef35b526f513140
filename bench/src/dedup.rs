//! `lf-bench dedup`: de-duplication quality and cost on labelled sets of growing size
//! (`testkit::dedup_set`), the pipeline's own rules applied.

pub fn dedup(sizes: &[usize], seed: u64) {
    println!(
        "| businesses | listings | planted duplicates | found | recall | merged pairs | false merges | precision | µs per listing |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut last = None;
    for &n in sizes {
        let set = testkit::dedup_set::generate(n, seed);
        let q = testkit::dedup_set::evaluate(&set);
        println!(
            "| {n} | {} | {} | {} | {:.2} % | {} | {} | {:.3} % | {:.2} |",
            q.listings,
            q.planted,
            q.found,
            q.recall() * 100.0,
            q.merged,
            q.false_merges,
            q.precision() * 100.0,
            q.seconds * 1e6 / q.listings as f64
        );
        last = Some(q);
    }
    if let Some(q) = last {
        println!();
        println!(
            "Misses by kind of noise at the largest size (a duplicate carries one to three kinds):"
        );
        println!();
        println!("| noise | duplicates carrying it | missed |");
        println!("|---|---:|---:|");
        for kind in testkit::dedup_set::NOISE {
            println!(
                "| {kind} | {} | {} |",
                q.carrying.get(kind).copied().unwrap_or(0),
                q.misses.get(kind).copied().unwrap_or(0)
            );
        }
    }
}
