//! Secrets Manager (moto): secrets are read and layered over the environment.

use shared::config::Source;
use shared::secrets::{Layered, SecretsError, load};

#[tokio::test]
async fn secrets_are_read_and_layered_over_the_environment() {
    let sdk = testkit::moto_sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = testkit::unique_name("lf-secret");
    let arn = client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"DATABASE_URL":"postgres://fn:pw@db/lf","YELP_API_KEY":"k1"}"#)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let other = client
        .create_secret()
        .name(format!("{name}-2"))
        .secret_string(r#"{"YELP_API_KEY":"k2"}"#)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let secrets = load(&client, &[arn.clone(), other]).await.unwrap();
    let layered = Layered { secrets };
    assert_eq!(
        layered.get("DATABASE_URL").as_deref(),
        Some("postgres://fn:pw@db/lf")
    );
    assert_eq!(
        layered.get("YELP_API_KEY").as_deref(),
        Some("k2"),
        "later secrets win"
    );
    assert_eq!(
        layered.get("PATH"),
        std::env::var("PATH").ok(),
        "the environment shows through"
    );

    let bad = client
        .create_secret()
        .name(format!("{name}-bad"))
        .secret_string("not json")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    assert!(matches!(
        load(&client, &[bad]).await,
        Err(SecretsError::Shape { .. })
    ));
    let missing = load(
        &client,
        &["arn:aws:secretsmanager:us-east-1:123456789012:secret:nope".into()],
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, SecretsError::Fetch { .. }));
    // The error names the secret, never another secret's value (the URL's password `pw` is
    // too short to look for: moto's random request ids contain it now and then).
    assert!(!missing.to_string().contains("postgres://"), "{missing}");
}
