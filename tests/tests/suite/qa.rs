//! QA sampling on a real local funnel: the sample is the run's qualified leads ordered by
//! sha256(run:business), the first n; a run is sampled once; verdicts are recorded per tenant.

use leadfactory_cli::local::NoProgress;
use sha2::Digest;
use testkit::TestDb;

#[tokio::test]
async fn the_sample_is_deterministic_taken_once_per_run_and_reviewable() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let run = p.run(&NoProgress).await.unwrap();
    let admin = db.admin().await;
    let qualified: i64 = admin
        .query_one("SELECT count(*) FROM scores WHERE qualified", &[])
        .await
        .unwrap()
        .get(0);
    assert!(qualified > 5);

    let r = qa_sampler::sample(&p.deps, 5, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((r.runs_sampled, r.samples), (1, 5));
    // The expected five, computed independently from the definition.
    let mut expected: Vec<(String, uuid::Uuid)> = admin
        .query("SELECT business_id FROM scores WHERE qualified", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let b: uuid::Uuid = r.get(0);
            let h = sha2::Sha256::digest(format!("{}:{b}", run.as_uuid()));
            (hex::encode(h), b)
        })
        .collect();
    expected.sort();
    let expected: std::collections::BTreeSet<uuid::Uuid> =
        expected.iter().take(5).map(|(_, b)| *b).collect();
    let got: std::collections::BTreeSet<uuid::Uuid> = admin
        .query("SELECT business_id FROM qa_samples", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, expected);
    // Every sample links its report and email.
    let linked: i64 = admin
        .query_one("SELECT count(*) FROM qa_samples WHERE report_id IS NOT NULL AND email_id IS NOT NULL AND score_id IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(linked, 5);
    // Sampled once: again (even with a larger n) adds nothing.
    let again = qa_sampler::sample(&p.deps, 10, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(again.samples, 0);

    let todo = qa_sampler::list(&p.deps.pool, p.tenant, false)
        .await
        .unwrap();
    assert_eq!(todo.len(), 5);
    assert!(
        todo.iter()
            .all(|s| s.report_token.is_some() && s.subject.is_some())
    );
    assert!(
        qa_sampler::review(
            &p.deps.pool,
            p.tenant,
            todo[0].id,
            qa_sampler::Verdict::Fail,
            "ann",
            Some("score too high for a modern site")
        )
        .await
        .unwrap()
    );
    assert_eq!(
        qa_sampler::list(&p.deps.pool, p.tenant, false)
            .await
            .unwrap()
            .len(),
        4
    );
    // Another tenant cannot review this tenant's sample.
    let other = shared::domain::TenantId::from_uuid(uuid::Uuid::new_v4());
    assert!(
        !qa_sampler::review(
            &p.deps.pool,
            other,
            todo[1].id,
            qa_sampler::Verdict::Pass,
            "eve",
            None
        )
        .await
        .unwrap()
    );
    let row = admin
        .query_one(
            "SELECT result, reviewer, notes FROM qa_samples WHERE id = $1",
            &[&todo[0].id],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("fail".into(), "ann".into())
    );
}

#[tokio::test]
async fn the_runs_run_finished_samples_and_rolls_it_up_once_however_often_it_arrives() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |_| {}).await;
    let run = p.run(&NoProgress).await.unwrap();
    // The function that finished the run published its RunFinished.
    let finished: Vec<serde_json::Value> = p
        .events
        .published()
        .into_iter()
        .filter(|e| e["detail-type"] == "RunFinished")
        .collect();
    assert_eq!(finished.len(), 1);
    let event = &finished[0];
    assert_eq!(event["detail"]["run_id"], serde_json::json!(run.as_uuid()));
    let today = chrono::Utc::now().date_naive();
    for attempt in 0..2 {
        let qa = qa_sampler::handle(&p.deps, event, 5, chrono::Utc::now())
            .await
            .unwrap();
        let rolled = analytics::handle(p.pool(), event, today).await.unwrap();
        if attempt == 0 {
            assert_eq!((qa.runs_sampled, qa.samples), (1, 5));
            assert!(rolled.rows > 0);
        } else {
            assert_eq!(
                (qa.samples, rolled.rows),
                (0, 0),
                "a re-sent event acted on again"
            );
        }
    }
    let admin = db.admin().await;
    let consumed: Vec<String> = admin
        .query(
            "SELECT consumer FROM consumed_events ORDER BY consumer",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(consumed, vec!["analytics", "qa-sampler"]);
    // The local run hands the event on as the template's rules do (already consumed here).
    let delivered = p.deliver_events().await.unwrap();
    assert_eq!(delivered.published.get("RunFinished"), Some(&1));
    assert_eq!(delivered.qa_samples, 0);
    // An event claiming our source with a detail that is not its type's is refused, named.
    let bad = serde_json::json!({"source": "leadfactory", "detail-type": "RunFinished", "detail": {"version": 1}});
    let e = qa_sampler::handle(&p.deps, &bad, 5, chrono::Utc::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("RunFinished detail"), "{e}");
}
