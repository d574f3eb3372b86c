//! The benchmarks of `bench/` run end to end, small and each in a database of its own: a change
//! that breaks one fails here, not the next time someone measures. These check what each
//! benchmark checks of itself (nothing lost, nothing run or sent twice) and that its figures are
//! printed — never the figures' values, which belong to `bench/`, not to tests.

mod photo_fixtures;
mod support;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::smtp::SmtpServer;
use support::wait_for;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EXE: &str = env!("CARGO_BIN_EXE_wedsync-jobs");

/// `wedsync-jobs bench ARGS` in a database of its own, which must be gone once it returns.
fn bench(args: &[&str]) -> Output {
    let database = format!("wedsync_test_{}", uuid::Uuid::new_v4().simple());
    let output = Command::new(EXE)
        .arg("bench")
        .args(args)
        .args(["--database", &database])
        .env("RUST_LOG", "error")
        .output()
        .expect("run wedsync-jobs bench");
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !database_exists(&database),
        "bench {args:?} left {database} behind"
    );
    output
}

fn database_exists(name: &str) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let url = wedsync_db::local::admin_url().await.unwrap();
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap()
    })
}

/// The line of `output` that starts with `prefix`, as its `key=value` fields.
fn figures(output: &Output, prefix: &str) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `figures[key]` is a number above zero.
fn positive(figures: &HashMap<String, String>, key: &str) -> f64 {
    let value: f64 = figures
        .get(key)
        .and_then(|v| v.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {figures:?}"));
    assert!(value > 0.0, "{key}={value} in {figures:?}");
    value
}

#[test]
fn bulk_send_bench_delivers_every_message_once_and_prints_the_ratios() {
    let output = bench(&[
        "bulk-send",
        "--recipients",
        "400",
        "--suppressed",
        "1000",
        "--pool",
        "2",
        "--concurrency",
        "2",
    ]);
    let last = figures(&output, "messages_per_s=");
    assert_eq!((&*last["dup"], &*last["missing"]), ("0", "0"));
    for key in [
        "messages_per_s",
        "ceiling_per_s",
        "ratio",
        "ceiling_in_sink_process_per_s",
        "ratio_in_sink_process",
        "transport_loop_per_s",
        "ratio_to_transport_loop",
    ] {
        positive(&last, key);
    }
    let system = figures(&output, "system:");
    // A delivery is at least inserted and updated twice (claimed, then its outcome).
    assert!(positive(&system, "db_rows_written_per_message") >= 3.0);
    positive(&system, "worker_peak_rss_mib");
    positive(&system, "context_switches_per_message");
}

/// The bench's ceiling runs in a child that sends only on `go`, so that a parent which failed on
/// the way cannot leave it sending; on `go` it sends every message once.
#[tokio::test]
async fn bare_loop_sends_nothing_unless_told_to_go_and_then_each_message_once() {
    let sink = SmtpServer::start().await;
    let loop_child = |client: &str| {
        tokio::process::Command::new(EXE)
            .args(["bench", "bare-loop", "--sink", &sink.addr.to_string()])
            .args(["--recipients", "60", "--pool", "2", "--workers", "2"])
            .args(["--client", client])
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start bench bare-loop")
    };
    // Recipients 0, 20 and 40 are on the bench's suppression list: the loop sends the rest.
    let expected: HashSet<String> = (0..60)
        .filter(|i| i % 20 != 0)
        .map(|i| format!("guest{i}@example.com"))
        .collect();

    for (client, say) in [("lettre", "stop"), ("transport", "")] {
        let mut child = loop_child(client);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("ready"));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(say.as_bytes()).await.unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(
            !output.status.success(),
            "{client} loop told {say:?} exited 0"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not sending"), "{client}: {stderr}");
        assert_eq!(sink.count(), 0, "{client} loop sent without a go");
    }

    for (round, client) in ["lettre", "transport"].into_iter().enumerate() {
        let mut child = loop_child(client);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("ready"));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        let last = stdout.next_line().await.unwrap().unwrap_or_default();
        assert!(last.starts_with("context_switches="), "{client}: {last:?}");
        assert!(
            child.wait().await.unwrap().success(),
            "{client} loop failed"
        );
        let total = expected.len() * (round + 1);
        wait_for("every message", Duration::from_secs(10), || async {
            (sink.count() >= total).then_some(())
        })
        .await;
        let received = sink.messages();
        let mut sent: Vec<String> = received[total - expected.len()..]
            .iter()
            .flat_map(|m| m.to.clone())
            .collect();
        sent.sort();
        let distinct: HashSet<String> = sent.iter().cloned().collect();
        assert_eq!(sent.len(), expected.len(), "{client}: each once");
        assert_eq!(distinct, expected, "{client}");
    }
}

#[test]
fn queue_bench_runs_every_job_once() {
    let output = bench(&[
        "queue",
        "--jobs",
        "300",
        "--workers",
        "1",
        "--concurrency",
        "20",
        "--pickup-samples",
        "5",
    ]);
    let last = figures(&output, "enqueue_jobs_per_s=");
    assert_eq!((&*last["lost"], &*last["dup"]), ("0", "0"));
    positive(&last, "drain_jobs_per_s");
    positive(&figures(&output, "pickup_latency_ms"), "p50");
}

#[test]
fn rollup_bench_counts_every_event() {
    // The bench fails unless its rollups count every seeded event.
    let output = bench(&["rollup", "--events", "5000", "--hours", "3", "--keys", "4"]);
    positive(&figures(&output, "rollup_ms_per_hour"), "median");
}

#[test]
fn retention_bench_deletes_every_old_job_and_compares_the_drains() {
    let output = bench(&[
        "retention",
        "--finished",
        "3000",
        "--drain",
        "300",
        "--runs",
        "1",
        "--workers",
        "1",
        "--concurrency",
        "50",
        "--batch-size",
        "500",
    ]);
    let cleanup = figures(&output, "cleanup deleted=");
    assert_eq!(
        (&*cleanup["deleted"], &*cleanup["complete"]),
        ("3000", "true")
    );
    let drains = figures(&output, "drain_jobs_per_s ");
    positive(&drains, "without_cleanup");
    positive(&drains, "ratio");
}

#[test]
fn photos_bench_processes_every_photo_of_a_folder() {
    use photo_fixtures::*;
    let dir = std::env::temp_dir().join(format!("wedsync-bench-photos-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let photos = [
        ("turned.jpg", camera_jpeg(&upright(640, 480, 1), 6)),
        ("plain.jpg", plain_jpeg(800, 600, 2)),
        ("alpha.png", half_transparent_png(300, 200)),
    ];
    for (name, bytes) in &photos {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let output = Command::new(EXE)
        .args(["bench", "photos", "--no-vips", "--threads", "1", "--dir"])
        .arg(&dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = figures(&output, "photos=");
    assert_eq!(last["photos"], "3");
    positive(&last, "photos_per_s");
}

#[test]
fn a_bench_refuses_a_database_it_may_not_replace() {
    // A name no database has, so that the test harms nothing if the guard ever goes.
    let name = format!("wedsync_not_a_bench_{}", uuid::Uuid::new_v4().simple());
    let output = Command::new(EXE)
        .args(["bench", "queue", "--database", &name])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--database \"{name}\"")),
        "{stderr}"
    );
}

#[test]
fn a_bench_without_a_database_refuses_to_be_given_one() {
    let output = Command::new(EXE)
        .args([
            "bench",
            "photos",
            "--dir",
            ".",
            "--database",
            "wedsync_bench_x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("uses no database"), "{stderr}");
}
