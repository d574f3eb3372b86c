//! `photo_process` (SPEC §5.2, issue #4) against a real PostgreSQL, real files in a local
//! storage folder and real image decoding: orientation, metadata stripping, variants, alpha,
//! broken input, dedupe, idempotent re-runs and today's-wedding priority.

mod photo_fixtures;
mod support;

use bytes::Bytes;
use photo_fixtures::*;
use std::path::PathBuf;
use std::time::Duration;
use support::{RunningWorker, start_worker, test_config, wait_for};
use uuid::Uuid;
use wedsync_db::testing::TestDb;
use wedsync_kinds::photos::ingest::{self, NewPhoto};
use wedsync_kinds::photos::record::{self, Photo};
use wedsync_kinds::storage::Storage;
use wedsync_kinds::{AppContext, PhotoProcess, register_all};
use wedsync_queue::{Job, Queue};

const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    db: TestDb,
    storage: Storage,
    dir: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn setup() -> Setup {
    let db = TestDb::new().await.expect("test database");
    let dir = std::env::temp_dir().join(format!("wedsync-photos-{}", db.name));
    let storage = Storage::local(&dir).expect("storage folder");
    Setup { db, storage, dir }
}

impl Setup {
    fn worker(&self, concurrency: i32) -> RunningWorker {
        let mut config = test_config(&["photos"]);
        config
            .queue_concurrency
            .insert("photos".to_owned(), concurrency);
        let app = AppContext::new(self.db.pool.clone()).with_storage(self.storage.clone());
        start_worker(&self.db, register_all(), app, config)
    }

    /// A wedding of org `acme` whose local date is `days` from today in `timezone`.
    async fn wedding(&self, days: i32, timezone: &str) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO weddings (org_id, local_date, local_start, timezone, starts_at)
             VALUES ('acme', (now() AT TIME ZONE $1)::date + $2, '14:00', $1, now() + make_interval(days => $2))
             RETURNING id",
        )
        .bind(timezone)
        .bind(days)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Store `bytes` as an original and create its photo (as the upload does, minus HTTP).
    async fn photo(&self, wedding: Uuid, bytes: Vec<u8>) -> ingest::Created {
        let staged = ingest::stage_bytes(&self.storage, Bytes::from(bytes))
            .await
            .unwrap();
        let new = NewPhoto {
            wedding_id: wedding,
            ..NewPhoto::default()
        };
        ingest::create_photo(&self.db.pool, &staged, &new)
            .await
            .unwrap()
    }

    async fn find(&self, id: Uuid) -> Photo {
        record::find(&self.db.pool, id, None)
            .await
            .unwrap()
            .expect("photo")
    }

    /// Wait until photo `id` is ready or failed and return it.
    async fn finished(&self, id: Uuid) -> Photo {
        wait_for(&format!("photo {id} to finish"), WAIT, || async {
            let photo = self.find(id).await;
            matches!(photo.status.as_str(), "ready" | "failed").then_some(photo)
        })
        .await
    }

    async fn variant(&self, photo: &Photo, size: u32, format: &str) -> Vec<u8> {
        let v = photo
            .variants
            .iter()
            .find(|v| v.size == size && v.format == format)
            .unwrap_or_else(|| panic!("no {size} {format} variant in {:?}", photo.variants));
        let bytes = self.storage.get(&v.key).await.unwrap();
        assert_eq!(bytes.len() as u64, v.bytes);
        bytes.to_vec()
    }

    async fn job(&self, photo: &Photo) -> wedsync_queue::JobRow {
        Queue::new(self.db.pool.clone())
            .job(photo.job_id.expect("job id"), None)
            .await
            .unwrap()
    }
}

fn pixel(image: &image::RgbImage, fx: f32, fy: f32) -> [u8; 3] {
    let x = (image.width() as f32 * fx) as u32;
    let y = (image.height() as f32 * fy) as u32;
    image.get_pixel(x, y).0
}

/// The four quadrant centres of `image` match the upright picture's colours.
fn assert_upright(image: &image::RgbImage, what: &str) {
    let samples = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];
    for ((fx, fy), expected) in samples.into_iter().zip(QUADRANTS) {
        let got = pixel(image, fx, fy);
        assert!(
            close(got, expected, 40),
            "{what}: pixel at ({fx}, {fy}) is {got:?}, expected about {expected:?}"
        );
    }
}

#[tokio::test]
async fn camera_orientations_come_out_upright_without_metadata() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let picture = upright(600, 400, 0);
    let mut photos = Vec::new();
    for orientation in [1u16, 3, 6, 8] {
        let jpeg = camera_jpeg(&stored_for(&picture, orientation), orientation);
        photos.push((orientation, s.photo(wedding, jpeg).await.id));
    }
    let worker = s.worker(4);
    for (orientation, id) in photos {
        let photo = s.finished(id).await;
        assert_eq!(
            photo.status, "ready",
            "orientation {orientation}: {:?}",
            photo.error
        );
        assert_eq!(
            (photo.width, photo.height),
            (Some(600), Some(400)),
            "orientation {orientation}"
        );
        // 600 px long edge: no 2560 (never upscaled), 1280 at full size, 320 scaled down.
        let sizes: Vec<_> = photo
            .variants
            .iter()
            .map(|v| (v.size, v.format.as_str(), v.width, v.height))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (1280, "jpeg", 600, 400),
                (1280, "webp", 600, 400),
                (320, "jpeg", 320, 213),
                (320, "webp", 320, 213)
            ],
            "orientation {orientation}"
        );
        for size in [1280, 320] {
            let jpeg = s.variant(&photo, size, "jpeg").await;
            let segments = jpeg_segments(&jpeg);
            assert!(
                segments.iter().all(|(m, _)| *m != 0xE1),
                "orientation {orientation}: APP1 (EXIF/XMP) left in the {size} JPEG"
            );
            assert!(
                !jpeg.windows(4).any(|w| w == b"Exif"),
                "EXIF left in the {size} JPEG"
            );
            assert!(
                !jpeg.windows(9).any(|w| w == b"GPSMARKER"),
                "GPS data left in the {size} JPEG"
            );
            let decoded = image::load_from_memory(&jpeg).unwrap().into_rgb8();
            assert_upright(&decoded, &format!("orientation {orientation}, {size} JPEG"));

            let webp = s.variant(&photo, size, "webp").await;
            assert!(
                !webp.windows(4).any(|w| w == b"EXIF" || w == b"Exif"),
                "EXIF chunk in the {size} WebP"
            );
            let decoded = image::load_from_memory_with_format(&webp, image::ImageFormat::WebP)
                .unwrap()
                .into_rgb8();
            assert_upright(&decoded, &format!("orientation {orientation}, {size} WebP"));
        }
    }
    worker.stop().await;
}

#[tokio::test]
async fn large_photo_gets_all_three_sizes() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let id = s.photo(wedding, plain_jpeg(3000, 2000, 1)).await.id;
    let worker = s.worker(1);
    let photo = s.finished(id).await;
    worker.stop().await;
    let jpegs: Vec<_> = photo
        .variants
        .iter()
        .filter(|v| v.format == "jpeg")
        .map(|v| (v.size, v.width, v.height))
        .collect();
    assert_eq!(
        jpegs,
        vec![(2560, 2560, 1707), (1280, 1280, 853), (320, 320, 213)]
    );
    for v in &photo.variants {
        assert_eq!(
            v.key,
            format!(
                "variants/{id}/{}.{}",
                v.size,
                if v.format == "jpeg" { "jpg" } else { "webp" }
            )
        );
    }
}

#[tokio::test]
async fn png_alpha_is_flattened_on_white_and_webp_decodes() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let id = s.photo(wedding, half_transparent_png(400, 200)).await.id;
    let worker = s.worker(1);
    let photo = s.finished(id).await;
    worker.stop().await;
    assert_eq!(photo.status, "ready", "{:?}", photo.error);
    assert_eq!(photo.format, "png");
    let jpeg = image::load_from_memory(&s.variant(&photo, 320, "jpeg").await)
        .unwrap()
        .into_rgb8();
    assert!(
        close(pixel(&jpeg, 0.2, 0.5), [255, 255, 255], 12),
        "transparent → white, got {:?}",
        pixel(&jpeg, 0.2, 0.5)
    );
    assert!(
        close(pixel(&jpeg, 0.8, 0.5), [255, 0, 0], 30),
        "opaque red stays red, got {:?}",
        pixel(&jpeg, 0.8, 0.5)
    );
    let webp = image::load_from_memory_with_format(
        &s.variant(&photo, 320, "webp").await,
        image::ImageFormat::WebP,
    )
    .unwrap();
    assert_eq!((webp.width(), webp.height()), (320, 160));
}

/// Bad input fails the photo with a reason and discards the job after one attempt.
async fn assert_refused(s: &Setup, id: Uuid, reason: &str) {
    let photo = s.finished(id).await;
    assert_eq!(photo.status, "failed");
    let error = photo.error.clone().unwrap_or_default();
    assert!(
        error.contains(reason),
        "reason `{error}` should mention `{reason}`"
    );
    assert!(photo.variants.is_empty());
    let job = wait_for("the job to be discarded", WAIT, || async {
        let job = s.job(&photo).await;
        (job.state.as_str() == "discarded").then_some(job)
    })
    .await;
    assert_eq!(job.attempt, 1, "refused input is not retried");
}

#[tokio::test]
async fn broken_files_fail_with_a_reason_and_no_retry() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let full = plain_jpeg(600, 400, 2);
    let truncated = s.photo(wedding, full[..full.len() / 2].to_vec()).await.id;
    let text = s
        .photo(
            wedding,
            b"Dear couple, this is a text file named IMG_0001.jpg\n".to_vec(),
        )
        .await
        .id;
    let gif = s
        .photo(wedding, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec())
        .await
        .id;
    let worker = s.worker(2);
    assert_refused(&s, truncated, "truncated").await;
    assert_refused(&s, text, "not an image").await;
    assert_refused(&s, gif, "unsupported image format: GIF").await;
    worker.stop().await;
}

/// Peak resident memory of this test process, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap();
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test]
async fn decompression_bomb_is_refused_from_its_header() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let bomb = bomb_png(20_000, 20_000);
    assert!(bomb.len() < 1024, "the bomb is tiny on disk");
    let id = s.photo(wedding, bomb).await.id;
    let worker = s.worker(1);
    assert_refused(&s, id, "20000×20000").await;
    worker.stop().await;
    // Decoding it would need 400 MB (grey) to 1.6 GB (RGBA); the limit stops it before any.
    let peak = peak_rss_mib();
    assert!(peak < 300, "peak RSS {peak} MiB: the bomb was allocated");
}

#[tokio::test]
async fn same_bytes_twice_are_one_photo_and_one_original() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let other = s.wedding(40, "Europe/London").await;
    let bytes = plain_jpeg(300, 200, 3);
    let first = s.photo(wedding, bytes.clone()).await;
    let second = s.photo(wedding, bytes.clone()).await;
    let elsewhere = s.photo(other, bytes).await;
    assert!(!first.duplicate);
    assert_eq!(
        second,
        ingest::Created {
            id: first.id,
            duplicate: true
        }
    );
    assert!(
        !elsewhere.duplicate && elsewhere.id != first.id,
        "another wedding gets its own photo"
    );
    let originals = std::fs::read_dir(s.dir.join("originals")).unwrap().count();
    assert_eq!(originals, 1, "the bytes are stored once");
    let uploads = std::fs::read_dir(s.dir.join("uploads")).map_or(0, |d| d.count());
    assert_eq!(uploads, 0, "no temporary upload is left behind");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM photos")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn rerunning_the_job_ends_in_the_same_state() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let id = s.photo(wedding, plain_jpeg(700, 500, 4)).await.id;
    let worker = s.worker(1);
    let first = s.finished(id).await;
    assert_eq!(first.status, "ready");
    let files = || {
        std::fs::read_dir(s.dir.join("variants").join(id.to_string()))
            .unwrap()
            .count()
    };
    let files_before = files();
    let again = Queue::new(s.db.pool.clone())
        .enqueue(PhotoProcess { photo_id: id }.to_new_job().unwrap())
        .await
        .unwrap();
    support::wait_for_job_state(&Queue::new(s.db.pool.clone()), again.id, "completed", WAIT).await;
    worker.stop().await;
    let second = s.find(id).await;
    assert_eq!(second.status, "ready");
    assert_eq!(second.variants, first.variants);
    assert_eq!((second.width, second.height), (first.width, first.height));
    assert_eq!(
        files(),
        files_before,
        "a re-run overwrites, it does not add objects"
    );
}

#[tokio::test]
async fn todays_wedding_photo_jumps_the_queue() {
    let s = setup().await;
    let later = s.wedding(60, "Europe/London").await;
    // Today in a time zone far from UTC: "today" is the wedding's own local date.
    let today = s.wedding(0, "Pacific/Auckland").await;
    for seed in 0..200 {
        s.photo(later, plain_jpeg(48, 32, seed)).await;
    }
    let urgent = s.photo(today, plain_jpeg(48, 32, 999)).await.id;
    let photo = s.find(urgent).await;
    assert_eq!(photo.priority, 0);
    assert_eq!(s.job(&photo).await.priority, 0);
    let worker = s.worker(2);
    let urgent_done = s.finished(urgent).await;
    let before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM photos WHERE status = 'ready' AND processed_at < $1",
    )
    .bind(urgent_done.processed_at.unwrap())
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    worker.stop().await;
    assert!(
        before <= 4,
        "{before} of 200 earlier photos were processed before today's"
    );
}

#[tokio::test]
async fn retention_removes_old_failed_photos_and_their_unshared_originals() {
    let s = setup().await;
    let wedding = s.wedding(30, "Europe/London").await;
    let other = s.wedding(40, "Europe/London").await;
    let shared = plain_jpeg(64, 48, 7);
    let old_alone = s
        .photo(wedding, b"not a photo at all, just some words".to_vec())
        .await
        .id;
    let old_shared = s.photo(wedding, shared.clone()).await.id;
    let kept_shared = s.photo(other, shared).await.id;
    let recent = s
        .photo(wedding, b"another text file, failed only today".to_vec())
        .await
        .id;
    // Only the cleanup runs in this test: the photos' own processing jobs are dropped.
    sqlx::query("DELETE FROM jobs WHERE kind = 'photo_process'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    for id in [old_alone, old_shared, recent] {
        record::mark_failed(&s.db.pool, id, "test").await.unwrap();
    }
    sqlx::query("UPDATE photos SET updated_at = now() - interval '40 days' WHERE id = ANY($1)")
        .bind(vec![old_alone, old_shared])
        .execute(&s.db.pool)
        .await
        .unwrap();
    let alone_key = s.find(old_alone).await.original_key;
    let shared_key = s.find(old_shared).await.original_key;
    let recent_key = s.find(recent).await.original_key;

    let queue = Queue::new(s.db.pool.clone());
    let mut cleanup = wedsync_kinds::RetentionCleanup::default()
        .to_new_job()
        .unwrap();
    cleanup.queue = "photos".to_owned(); // run by this test's photos worker
    let id = queue.enqueue(cleanup).await.unwrap().id;
    let worker = s.worker(1);
    let job = support::wait_for_job_state(&queue, id, "completed", WAIT).await;
    worker.stop().await;
    assert_eq!(job.result.unwrap()["deleted"]["failed_photo_originals"], 2);
    assert!(
        record::find(&s.db.pool, old_alone, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        record::find(&s.db.pool, old_shared, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        record::find(&s.db.pool, kept_shared, None)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        !s.storage.exists(&alone_key).await.unwrap(),
        "an unshared original is removed"
    );
    assert!(
        s.storage.exists(&shared_key).await.unwrap(),
        "an original another photo uses stays"
    );
    assert!(
        s.storage.exists(&recent_key).await.unwrap(),
        "recent failures keep theirs"
    );
}
