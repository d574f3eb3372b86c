//! Photos on S3 (SPEC §2 `WEDSYNC_STORAGE_URL=s3://bucket/prefix`, §5.2): `wedsync-jobs all`,
//! configured the way an operator configures it (the URL, and credentials, region and endpoint
//! in `AWS_*` variables), stores an uploaded photo's original and its variants in an
//! S3-compatible server and reports the storage ready. The server is s3s-fs on loopback, which
//! speaks the S3 REST API (signed requests checked) and keeps each object as a file.

mod photo_fixtures;
mod support;

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::all::AllProcess;
use support::wait_for;
use wedsync_db::testing::TestDb;

const BUCKET: &str = "wedding-photos";
const PREFIX: &str = "wedsync";
const ACCESS_KEY: &str = "AKIDWEDSYNCTEST";
const SECRET_KEY: &str = "wedsync-test-secret-key";

/// An S3 server on loopback keeping bucket [`BUCKET`] under `root`.
async fn start_s3(root: &Path) -> SocketAddr {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

/// `wedsync-jobs all` storing photos at `s3://BUCKET/PREFIX` on the server at `s3`, configured
/// as an operator would: the URL, and the S3 settings in `AWS_*` variables.
fn start_all(db: &TestDb, s3: SocketAddr) -> AllProcess {
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let endpoint = format!("http://{s3}");
    AllProcess::start(
        db,
        &[
            ("WEDSYNC_STORAGE_URL", Some(&url)),
            ("AWS_ENDPOINT", Some(&endpoint)),
            ("AWS_ALLOW_HTTP", Some("true")),
            ("AWS_REGION", Some("us-east-1")),
            ("AWS_ACCESS_KEY_ID", Some(ACCESS_KEY)),
            ("AWS_SECRET_ACCESS_KEY", Some(SECRET_KEY)),
        ],
    )
}

/// The JSON body of the response to `request`.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Where s3s-fs keeps the object `key` of the photo store.
fn object_path(root: &Path, key: &str) -> PathBuf {
    root.join(BUCKET).join(PREFIX).join(key)
}

/// The bucket's folder, removed when the test ends, whether it passed or panicked.
struct BucketDir(PathBuf);

impl Drop for BucketDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[tokio::test]
async fn photos_are_stored_in_s3_and_the_storage_is_ready() {
    let db = TestDb::new().await.unwrap();
    let bucket_dir = BucketDir(std::env::temp_dir().join(format!("wedsync-s3-{}", db.name)));
    let root = bucket_dir.0.clone();
    let s3 = start_s3(&root).await;
    let mut all = start_all(&db, s3);
    let (base, key) = (&all.base, &all.admin_key);
    let http = reqwest::Client::new();

    let ready = json_of(http.get(format!("{base}/readyz"))).await;
    assert_eq!(
        (&ready["status"], &ready["checks"]["storage"]),
        (&serde_json::json!("ready"), &serde_json::json!("ok")),
        "the storage answers signed requests: {ready}"
    );

    let wedding = json_of(
        http.post(format!("{base}/v1/weddings"))
            .bearer_auth(key)
            .json(&serde_json::json!({
                "date": "2027-06-19", "start_time": "14:00", "timezone": "Europe/London"
            })),
    )
    .await;
    let wedding_id = wedding["id"].as_str().expect("wedding id").to_owned();
    let original = photo_fixtures::plain_jpeg(1600, 1200, 7);
    let form = reqwest::multipart::Form::new()
        .text("wedding_id", wedding_id)
        .part(
            "file",
            reqwest::multipart::Part::bytes(original.clone())
                .file_name("IMG_0001.JPG")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let uploaded = http
        .post(format!("{base}/v1/photos"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: serde_json::Value = uploaded.json().await.unwrap();
    let id = uploaded["id"].as_str().expect("photo id").to_owned();

    let photo = wait_for("the photo to be ready", Duration::from_secs(30), || async {
        let photo = all.get_json(&format!("/v1/photos/{id}")).await?;
        (photo["status"] == "ready").then_some(photo)
    })
    .await;

    let original_key = photo["original_key"].as_str().unwrap();
    assert_eq!(
        std::fs::read(object_path(&root, original_key)).unwrap(),
        original,
        "the original is stored as uploaded"
    );
    let variants = photo["variants"].as_array().unwrap();
    assert!(!variants.is_empty(), "{photo}");
    for variant in variants {
        let stored = std::fs::read(object_path(&root, variant["key"].as_str().unwrap()))
            .unwrap_or_else(|e| panic!("variant {variant} is not in the bucket: {e}"));
        assert_eq!(stored.len() as u64, variant["bytes"].as_u64().unwrap());
        let decoded = image::load_from_memory(&stored).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (
                variant["width"].as_u64().unwrap() as u32,
                variant["height"].as_u64().unwrap() as u32
            ),
            "{variant}"
        );
    }

    assert!(all.stop(), "`all` did not stop cleanly");
}
