//! The dashboard page from a real local funnel, rendered by headless Chromium: no console
//! errors, and the screenshot shows the charts (their colours cover real area).

use leadfactory_cli::local::NoProgress;
use testkit::TestDb;

fn hex(c: &str) -> [u8; 3] {
    let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[tokio::test]
async fn the_dashboard_renders_in_chromium_and_shows_its_charts() {
    let db = TestDb::new().await;
    let store = tempfile::tempdir().unwrap();
    let p = testkit::local_pipeline(&db, store.path(), |o| o.buy_share = 1.0).await;
    p.run(&NoProgress).await.unwrap();
    p.simulate_recipients(&NoProgress).await.unwrap();
    let html = leadfactory_cli::dashboard::render(&p.deps.pool, p.tenant, 30)
        .await
        .unwrap();
    assert!(html.matches("<svg").count() >= 3);
    for s in [
        "Funnel",
        "Spend and cost per lead",
        "Stage latency",
        "Experiments",
        "Cost per lead by tier",
        "purchased",
    ] {
        assert!(html.contains(s), "{s}");
    }
    assert!(!html.contains("<script"), "a static page");

    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("dashboard.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.path().join("shot.png");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1300,1400",
                &format!("--screenshot={}", shot.display()),
                &format!("file://{}", page.display()),
            ])
            .output(),
    )
    .await
    .expect("chromium finished in time")
    .expect("chromium runs (scripts/test installs it)");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        !log.contains("Uncaught") && !log.contains("CONSOLE("),
        "console errors: {log}"
    );

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    let count = |c: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks(bpp)
            .filter(|p| p[..3].iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 6))
            .count()
    };
    let funnel = count(hex(leadfactory_cli::dashboard::FUNNEL_COLOUR));
    assert!(funnel > 5_000, "funnel bars cover {funnel} pixels");
    let spend = count(hex("#e8590c"));
    assert!(spend > 500, "spend bars cover {spend} pixels");
    if let Ok(keep) = std::env::var("LF_KEEP_DASHBOARD_SHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
