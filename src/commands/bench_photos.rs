//! `wedsync-jobs bench photos --dir DIR`: the photo pipeline over a folder of photos, in this
//! process (no database, no storage: the CPU work a `photo_process` job does), then libvips'
//! `vipsthumbnail` making the same three JPEG sizes from the same files, and the ratio.
//!
//! Both sides run `--threads` photos at once (default: the cores) and read their inputs from
//! the page cache (every file is read once before timing). Figures: photos/s for the full
//! variant set (3 sizes × JPEG + WebP), per-photo p50/p99, our peak RSS, and our JPEG-only time
//! ÷ vips' time. The last line holds every figure as `key=value`.

use crate::cli::BenchPhotosArgs;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wedsync_kinds::photos::pipeline::encode::JPEG_QUALITY;
use wedsync_kinds::photos::pipeline::resize::SIZES;
use wedsync_kinds::photos::pipeline::{self, Limits, Outputs};

pub async fn run(args: BenchPhotosArgs) -> Result<()> {
    tokio::task::spawn_blocking(move || bench(&args))
        .await
        .context("the benchmark thread panicked")?
}

fn bench(args: &BenchPhotosArgs) -> Result<()> {
    let files = photo_files(&args.dir)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let inputs: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| {
            Ok((
                f.clone(),
                std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
            ))
        })
        .collect::<Result<_>>()?;
    let megapixels: f64 = inputs
        .iter()
        .filter_map(|(_, b)| {
            pipeline::process(
                b,
                &Limits::default(),
                Outputs {
                    jpeg: false,
                    webp: false,
                },
            )
            .ok()
        })
        .map(|p| f64::from(p.width) * f64::from(p.height) / 1e6)
        .sum::<f64>()
        / inputs.len() as f64;
    println!(
        "bench photos: {} files in {} (mean {megapixels:.1} MP), threads={threads}",
        inputs.len(),
        args.dir.display()
    );

    let (full_wall, mut latencies) = run_pipeline(&inputs, threads, Outputs::ALL)?;
    latencies.sort_unstable();
    let per_s = inputs.len() as f64 / full_wall.as_secs_f64();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "full set (3 sizes x JPEG+WebP): {:.2} s, {per_s:.2} photos/s, per photo p50={p50:.0} ms p99={p99:.0} ms",
        full_wall.as_secs_f64()
    );
    let (jpeg_wall, _) = run_pipeline(
        &inputs,
        threads,
        Outputs {
            jpeg: true,
            webp: false,
        },
    )?;
    println!("JPEG only (3 sizes): {:.2} s", jpeg_wall.as_secs_f64());
    let rss = peak_rss_mib();
    println!("peak RSS: {rss} MiB");

    let mut last = format!(
        "photos={} threads={threads} photos_per_s={per_s:.2} p50_ms={p50:.0} p99_ms={p99:.0} \
         peak_rss_mib={rss} jpeg_only_s={:.2}",
        inputs.len(),
        jpeg_wall.as_secs_f64()
    );
    if !args.no_vips {
        let vips = run_vips(&files, threads)?;
        let ratio = jpeg_wall.as_secs_f64() / vips.as_secs_f64();
        println!(
            "vipsthumbnail (3 JPEG sizes, Q={JPEG_QUALITY}): {:.2} s; ours / vips = {ratio:.2}",
            vips.as_secs_f64()
        );
        last.push_str(&format!(
            " vips_s={:.2} ratio={ratio:.2}",
            vips.as_secs_f64()
        ));
    }
    println!("{last}");
    Ok(())
}

fn photo_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading --dir {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "webp"
                )
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .jpg, .jpeg, .png or .webp files in {}", dir.display());
    }
    Ok(files)
}

/// Process every input once on `threads` threads; the wall time and each photo's time.
fn run_pipeline(
    inputs: &[(PathBuf, Vec<u8>)],
    threads: usize,
    outputs: Outputs,
) -> Result<(Duration, Vec<Duration>)> {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(inputs.len()));
    let failures = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some((path, bytes)) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let t = Instant::now();
                    match pipeline::process(bytes, &Limits::default(), outputs) {
                        Ok(_) => latencies.lock().expect("lock").push(t.elapsed()),
                        Err(e) => failures
                            .lock()
                            .expect("lock")
                            .push(format!("{}: {e}", path.display())),
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let failures = failures.into_inner().expect("lock");
    if !failures.is_empty() {
        bail!("some photos failed: {}", failures.join("; "));
    }
    Ok((wall, latencies.into_inner().expect("lock")))
}

/// `vipsthumbnail` making the 2560, 1280 and 320 JPEGs of every file (shrink only, EXIF
/// rotation and metadata stripping as ours), the files split over `threads` processes.
fn run_vips(files: &[PathBuf], threads: usize) -> Result<Duration> {
    let out = std::env::temp_dir().join(format!("wedsync-bench-vips-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let chunks: Vec<&[PathBuf]> = files.chunks(files.len().div_ceil(threads)).collect();
    let start = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let out = &out;
                scope.spawn(move || -> Result<()> {
                    for size in SIZES {
                        let status = Command::new("vipsthumbnail")
                            .args(chunk.iter())
                            .arg("--size")
                            .arg(format!("{size}x{size}>"))
                            .arg("-o")
                            .arg(out.join(format!("%s_{size}.jpg[Q={JPEG_QUALITY},strip]")))
                            .status()
                            .context("running vipsthumbnail (apt-get install libvips-tools)")?;
                        if !status.success() {
                            bail!("vipsthumbnail exited with {status}");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("vips thread"))
            .collect()
    });
    let wall = start.elapsed();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    std::fs::remove_dir_all(&out).ok();
    Ok(wall)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// This process's peak resident set (VmHWM), in MiB; 0 where /proc is missing.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}
