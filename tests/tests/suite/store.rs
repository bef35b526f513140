//! One behavioural suite for the object store, run against S3 (moto) and the local filesystem.

use std::time::Duration;

use bytes::Bytes;
use shared::store::{LocalStore, ObjectKey, ObjectStore, S3Store, StoreError};

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

async fn behaves_like_an_object_store(store: &dyn ObjectStore) {
    // put then get returns the same bytes; overwrite replaces.
    store
        .put(
            &key("t1/html/a.html.gz"),
            Bytes::from_static(b"first"),
            "application/gzip",
        )
        .await
        .unwrap();
    store
        .put(
            &key("t1/html/a.html.gz"),
            Bytes::from_static(b"second"),
            "application/gzip",
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("t1/html/a.html.gz")).await.unwrap(),
        Bytes::from_static(b"second")
    );

    // Binary content survives untouched.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    store
        .put(
            &key("t1/reports/r.pdf"),
            Bytes::from(binary.clone()),
            "application/pdf",
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("t1/reports/r.pdf")).await.unwrap().to_vec(),
        binary
    );

    // list by prefix: sorted, and only what is under the prefix.
    store
        .put(
            &key("t1/html/b.html.gz"),
            Bytes::from_static(b"b"),
            "application/gzip",
        )
        .await
        .unwrap();
    store
        .put(
            &key("t2/html/c.html.gz"),
            Bytes::from_static(b"c"),
            "application/gzip",
        )
        .await
        .unwrap();
    let listed: Vec<String> = store
        .list("t1/html/")
        .await
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(listed, vec!["t1/html/a.html.gz", "t1/html/b.html.gz"]);
    let all_t1 = store.list("t1/").await.unwrap();
    assert_eq!(all_t1.len(), 3);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    // Missing objects are a typed NotFound.
    assert!(matches!(
        store.get(&key("t1/missing")).await,
        Err(StoreError::NotFound(_))
    ));

    // delete removes; deleting again is harmless.
    store.delete(&key("t1/html/a.html.gz")).await.unwrap();
    store.delete(&key("t1/html/a.html.gz")).await.unwrap();
    assert!(matches!(
        store.get(&key("t1/html/a.html.gz")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list("t1/html/").await.unwrap().len(), 1);

    streams_both_ways(store).await;

    // presigned GET
    let url = store
        .presign_get(&key("t1/reports/r.pdf"), Duration::from_secs(600))
        .await
        .unwrap();
    assert!(url.contains("t1/reports/r.pdf"), "{url}");
}

/// Writes and reads objects chunk by chunk: one larger than an upload part (S3: a multipart
/// upload of three parts), one smaller (a plain put), and one given up, which leaves nothing.
async fn streams_both_ways(store: &dyn ObjectStore) {
    use futures_util::TryStreamExt;
    let big: Vec<u8> = (0..shared::store::PART_SIZE * 5 / 2)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut w = store
        .put_writer(&key("t1/backups/big.csv"), "text/csv")
        .await
        .unwrap();
    for chunk in big.chunks(300_000) {
        w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert!(
        matches!(
            store.get(&key("t1/backups/big.csv")).await,
            Err(StoreError::NotFound(_))
        ),
        "an object appears only when its writer finishes"
    );
    w.finish().await.unwrap();
    let chunks: Vec<Bytes> = store
        .get_stream(&key("t1/backups/big.csv"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(chunks.len() > 1, "read in more than one chunk");
    assert_eq!(chunks.concat(), big);

    let mut w = store
        .put_writer(&key("t1/backups/small.csv"), "text/csv")
        .await
        .unwrap();
    w.write(Bytes::from_static(b"a,b\n")).await.unwrap();
    w.write(Bytes::from_static(b"1,2\n")).await.unwrap();
    w.finish().await.unwrap();
    assert_eq!(
        store.get(&key("t1/backups/small.csv")).await.unwrap(),
        Bytes::from_static(b"a,b\n1,2\n")
    );

    let mut w = store
        .put_writer(&key("t1/backups/abandoned.csv"), "text/csv")
        .await
        .unwrap();
    w.write(Bytes::from(big[..shared::store::PART_SIZE + 1].to_vec()))
        .await
        .unwrap();
    w.abort().await;
    assert!(matches!(
        store.get(&key("t1/backups/abandoned.csv")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_stream(&key("t1/backups/none.csv")).await,
        Err(StoreError::NotFound(_))
    ));
    for k in ["t1/backups/big.csv", "t1/backups/small.csv"] {
        store.delete(&key(k)).await.unwrap();
    }
    assert!(
        store.list("t1/backups/").await.unwrap().is_empty(),
        "no temporary file is left"
    );
}

#[tokio::test]
async fn local_filesystem_store_behaves_like_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    behaves_like_an_object_store(&store).await;
    // Its presigned URL is a file URL to the bytes themselves.
    let url = store
        .presign_get(&key("t1/reports/r.pdf"), Duration::from_secs(1))
        .await
        .unwrap();
    let path = url.strip_prefix("file://").unwrap();
    assert_eq!(std::fs::read(path).unwrap().len(), 70_000);
    assert!(matches!(
        store
            .presign_get(&key("t1/none"), Duration::from_secs(1))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn s3_store_behaves_like_an_object_store() {
    let sdk = testkit::moto_sdk_config().await;
    let bucket = testkit::unique_name("lf-test");
    // As the functions build it: the client is made on the first call.
    let store = S3Store::lazy(&shared::aws::LazySdk::loaded(sdk.clone()), &bucket);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    behaves_like_an_object_store(&store).await;

    // The presigned URL really serves the object, without credentials.
    let url = store
        .presign_get(&key("t1/reports/r.pdf"), Duration::from_secs(600))
        .await
        .unwrap();
    assert!(url.contains("X-Amz-Signature"), "{url}");
    let fetched = fetch(&url).await;
    assert_eq!(fetched.len(), 70_000);
}

/// A minimal HTTP/1.1 GET over a TCP socket (moto speaks plain HTTP on loopback).
async fn fetch(url: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}
