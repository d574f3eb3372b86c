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
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
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

/// A `wedsync-jobs all` process, killed if the test ends before stopping it.
struct All(Child);

impl All {
    /// SIGTERM, and whether it then exited cleanly.
    fn stop(&mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        self.0.wait().unwrap().success()
    }
}

impl Drop for All {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wedsync-jobs all` storing photos at `s3://BUCKET/PREFIX` on the server at `s3`; its API's
/// base URL and admin key.
fn start_all(db: &TestDb, data_dir: &Path, s3: SocketAddr) -> (All, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
        .arg("all")
        .env("DATABASE_URL", &db.url)
        .env("WEDSYNC_LISTEN", "127.0.0.1:0")
        .env("WEDSYNC_DATA_DIR", data_dir)
        .env("WEDSYNC_STORAGE_URL", format!("s3://{BUCKET}/{PREFIX}"))
        .env("AWS_ENDPOINT", format!("http://{s3}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start all");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut field = |name: &str| loop {
        let line = lines.next().expect("a line from `all`").unwrap();
        if let Some(value) = line.trim().strip_prefix(name) {
            return value.trim().to_owned();
        }
    };
    let base = field("API:");
    let key = field("admin key:");
    // Whatever else it prints is read too: a closed pipe would fail its next line.
    std::thread::spawn(move || lines.for_each(drop));
    (All(child), base, key)
}

/// Where s3s-fs keeps the object `key` of the photo store.
fn object_path(root: &Path, key: &str) -> PathBuf {
    root.join(BUCKET).join(PREFIX).join(key)
}

#[tokio::test]
async fn photos_are_stored_in_s3_and_the_storage_is_ready() {
    let db = TestDb::new().await.unwrap();
    let scratch = std::env::temp_dir().join(format!("wedsync-s3-{}", db.name));
    let root = scratch.join("s3");
    let s3 = start_s3(&root).await;
    let (mut all, base, key) = start_all(&db, &scratch.join("data"), s3);
    let http = reqwest::Client::new();

    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&ready["status"], &ready["checks"]["storage"]),
        (&serde_json::json!("ready"), &serde_json::json!("ok")),
        "the storage answers signed requests: {ready}"
    );

    let wedding: serde_json::Value = http
        .post(format!("{base}/v1/weddings"))
        .bearer_auth(&key)
        .json(&serde_json::json!({
            "date": "2027-06-19", "start_time": "14:00", "timezone": "Europe/London"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);
    let uploaded: serde_json::Value = uploaded.json().await.unwrap();
    let id = uploaded["id"].as_str().expect("photo id").to_owned();

    let photo = wait_for("the photo to be ready", Duration::from_secs(30), || async {
        let photo: serde_json::Value = http
            .get(format!("{base}/v1/photos/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
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
    std::fs::remove_dir_all(&scratch).ok();
}
