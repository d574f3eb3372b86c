//! Context switches of a process over a window, from `/proc/<pid>/task/<tid>/status` (Linux;
//! elsewhere every count reads zero). Counted per thread, so that a thread that exits inside the
//! window takes only its own switches with it and the total never runs backwards; the threads
//! of a tokio runtime live as long as the process.

use std::collections::HashMap;

/// The voluntary and involuntary context switches of each live thread of a process.
pub struct Switches(HashMap<String, u64>);

impl Switches {
    /// The counts of process `pid` now (`self`: this process).
    pub fn of(pid: &str) -> Switches {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Switches(HashMap::new());
        };
        Switches(
            tasks
                .flatten()
                .filter_map(|task| {
                    let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                    Some((
                        task.file_name().to_string_lossy().into_owned(),
                        count(&status),
                    ))
                })
                .collect(),
        )
    }

    /// The counts of this process now.
    pub fn now() -> Switches {
        Switches::of("self")
    }

    /// Switches since `earlier`, over the threads alive now (one started since counts whole).
    pub fn since(&self, earlier: &Switches) -> u64 {
        self.0
            .iter()
            .map(|(tid, n)| n.saturating_sub(earlier.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

fn count(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}
