//! `POST /v1/photos` and `GET /v1/photos/{id}`: streamed upload into a real storage folder,
//! sniffing, size limit, dedupe, organisation scoping and today's priority.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;
use uuid::Uuid;
use wedsync_api::{PhotoUploads, Role};
use wedsync_kinds::storage::Storage;

/// Uploads above this are refused in these tests.
const LIMIT: u64 = 256 * 1024;

struct PhotoApp {
    app: TestApp,
    dir: PathBuf,
}

impl Drop for PhotoApp {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn spawn() -> PhotoApp {
    let dir = std::env::temp_dir().join(format!("wedsync-api-photos-{}", Uuid::new_v4()));
    let storage = Storage::local(&dir).unwrap();
    let app = TestApp::spawn_with(|state| {
        state.with_photo_uploads(PhotoUploads {
            storage,
            max_upload_bytes: LIMIT,
        })
    })
    .await;
    PhotoApp { app, dir }
}

/// A small JPEG; `seed` makes its bytes unique.
fn jpeg(seed: u8) -> Vec<u8> {
    let (w, h) = (64u16, 48u16);
    let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h))
        .flat_map(|i| [(i % 256) as u8, seed, (i / 256) as u8])
        .collect();
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&pixels, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// A `multipart/form-data` body: text parts, then the file part (if any).
fn multipart(texts: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = format!("wedsync-{}", Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .bytes(),
        );
        body.extend(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl PhotoApp {
    async fn wedding(&self, org: &str, days: i32) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO weddings (org_id, local_date, local_start, timezone, starts_at)
             VALUES ($1, (now() AT TIME ZONE 'Europe/London')::date + $2, '15:00', 'Europe/London', now())
             RETURNING id",
        )
        .bind(org)
        .bind(days)
        .fetch_one(&self.app.db.pool)
        .await
        .unwrap()
    }

    async fn upload(
        &self,
        key: &str,
        texts: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
    ) -> reqwest::Response {
        let (content_type, body) = multipart(texts, file);
        self.app
            .post("/v1/photos", key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    fn originals(&self) -> usize {
        std::fs::read_dir(self.dir.join("originals")).map_or(0, |d| d.count())
    }
}

#[tokio::test]
async fn upload_stores_the_original_and_queues_processing() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let wedding = t.wedding("acme", 30).await;
    let bytes = jpeg(1);
    let response = t
        .upload(
            &key,
            &[
                ("wedding_id", &wedding.to_string()),
                ("group", "ceremony"),
                ("tag", "rings"),
            ],
            Some(("IMG_1.JPG", &bytes)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let photo: Value = response.json().await.unwrap();
    assert_eq!(photo["duplicate"], false);
    assert_eq!(photo["status"], "pending");
    assert_eq!(photo["format"], "jpeg");
    assert_eq!(photo["group"], "ceremony");
    assert_eq!(photo["tag"], "rings");
    assert_eq!(photo["filename"], "IMG_1.JPG");
    assert_eq!(photo["original_bytes"], bytes.len());
    let hash = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&bytes))
    };
    assert_eq!(photo["content_hash"], hash.as_str());
    let stored = std::fs::read(t.dir.join("originals").join(&hash)).unwrap();
    assert_eq!(
        stored, bytes,
        "the original is stored byte for byte under its hash"
    );

    let id = photo["id"].as_str().unwrap();
    let shown: Value = t
        .app
        .get(&format!("/v1/photos/{id}"), &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["id"], id);
    assert_eq!(shown["variants"], serde_json::json!([]));
    let job = &t
        .app
        .get(&format!("/v1/jobs/{}", photo["job_id"]), &t.app.operator)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(job["kind"], "photo_process");
    assert_eq!(job["queue"], "photos");
    assert_eq!(job["priority"], 5);
    assert_eq!(job["args"]["photo_id"], id);
}

#[tokio::test]
async fn same_bytes_to_the_same_wedding_return_the_first_photo() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let wedding = t.wedding("acme", 30).await.to_string();
    let bytes = jpeg(2);
    let first: Value = t
        .upload(&key, &[("wedding_id", &wedding)], Some(("a.jpg", &bytes)))
        .await
        .json()
        .await
        .unwrap();
    let again = t
        .upload(&key, &[("wedding_id", &wedding)], Some(("b.jpg", &bytes)))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(t.originals(), 1);
    assert_eq!(t.app.job_count().await, 1, "no second processing job");
}

#[tokio::test]
async fn content_is_sniffed_not_trusted() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let wedding = t.wedding("acme", 30).await.to_string();
    let text = b"This is a text file with a .jpg name and an image/jpeg part header.".to_vec();
    let response = t
        .upload(
            &key,
            &[("wedding_id", &wedding)],
            Some(("photo.jpg", &text)),
        )
        .await;
    let body = problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("not an image"),
        "{body}"
    );
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff;".to_vec();
    let response = t
        .upload(&key, &[("wedding_id", &wedding)], Some(("anim.jpg", &gif)))
        .await;
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    let not_multipart = t
        .app
        .post("/v1/photos", &key)
        .json(&serde_json::json!({"wedding_id": wedding}))
        .send()
        .await
        .unwrap();
    problem(
        not_multipart,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
    assert_eq!(t.originals(), 0);
    assert_eq!(t.app.job_count().await, 0);
}

#[tokio::test]
async fn uploads_over_the_limit_are_413() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let wedding = t.wedding("acme", 30).await.to_string();
    let mut big = jpeg(3);
    big.resize(LIMIT as usize + 1, 0);
    let response = t
        .upload(&key, &[("wedding_id", &wedding)], Some(("big.jpg", &big)))
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    // A body much larger than the limit is refused from its Content-Length, before reading.
    big.resize(4 * LIMIT as usize, 0);
    let response = t
        .upload(&key, &[("wedding_id", &wedding)], Some(("huge.jpg", &big)))
        .await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(t.originals(), 0);
}

#[tokio::test]
async fn missing_or_bad_fields_are_422() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let bytes = jpeg(4);
    let response = t.upload(&key, &[], Some(("a.jpg", &bytes))).await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "wedding_id");
    let response = t.upload(&key, &[("wedding_id", "not-a-uuid")], None).await;
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["file", "wedding_id"]);
    let response = t
        .upload(
            &key,
            &[("wedding_id", &Uuid::new_v4().to_string())],
            Some(("a.jpg", &bytes)),
        )
        .await;
    problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(
        t.originals(),
        0,
        "a refused upload leaves nothing in storage"
    );
}

#[tokio::test]
async fn planners_see_only_their_organisation() {
    let t = spawn().await;
    let acme = t.app.key("acme", Role::Planner).await;
    let rival = t.app.key("rival", Role::Planner).await;
    let wedding = t.wedding("acme", 30).await.to_string();
    // Another organisation's wedding is, to a planner, a wedding that does not exist.
    let response = t
        .upload(
            &rival,
            &[("wedding_id", &wedding)],
            Some(("a.jpg", &jpeg(5))),
        )
        .await;
    problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let photo: Value = t
        .upload(
            &acme,
            &[("wedding_id", &wedding)],
            Some(("a.jpg", &jpeg(5))),
        )
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/v1/photos/{}", photo["id"].as_str().unwrap());
    problem(
        t.app.get(&path, &rival).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        t.app.get(&path, &acme).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        t.app
            .get(&path, &t.app.operator)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    problem(
        t.app.get("/v1/photos/nope", &acme).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let anonymous = t
        .app
        .client
        .get(format!("{}{path}", t.app.base))
        .send()
        .await
        .unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn photos_of_todays_wedding_are_queued_first() {
    let t = spawn().await;
    let key = t.app.key("acme", Role::Planner).await;
    let today = t.wedding("acme", 0).await.to_string();
    let photo: Value = t
        .upload(&key, &[("wedding_id", &today)], Some(("a.jpg", &jpeg(6))))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(photo["priority"], 0);
    let job: Value = t
        .app
        .get(&format!("/v1/jobs/{}", photo["job_id"]), &t.app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["priority"], 0);
}

#[tokio::test]
async fn readyz_checks_the_photo_storage() {
    let photos = spawn().await;
    let app = &photos.app;
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["storage"], "ok");

    // The storage root turns into a plain file: the store can no longer answer.
    std::fs::remove_dir_all(&photos.dir).unwrap();
    std::fs::write(&photos.dir, b"not a directory").unwrap();
    let broken = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = broken.json().await.unwrap();
    assert_eq!(body["checks"]["storage"]["error"], "storage check failed");
    std::fs::remove_file(&photos.dir).unwrap();
    std::fs::create_dir_all(&photos.dir).unwrap();
}
