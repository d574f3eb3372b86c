//! `wedsync-jobs all` as a child process on a test database: the API, the workers and the
//! scheduler in one process, as an operator starts the embedded default.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use wedsync_db::testing::TestDb;

/// A running `all`; killed (and its data folder removed) if the test ends without stopping it.
pub struct AllProcess {
    child: Child,
    /// Where its API listens, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    /// The admin key it printed.
    pub admin_key: String,
    data_dir: PathBuf,
}

impl AllProcess {
    /// Start `all` on `db`, its API on a port the OS picks, with `env` on top of the test
    /// settings (a `None` value removes the variable); returns once it printed where it listens.
    pub fn start(db: &TestDb, env: &[(&str, Option<&str>)]) -> AllProcess {
        let data_dir = std::env::temp_dir().join(format!(
            "wedsync-all-{}-{}",
            db.name,
            uuid::Uuid::new_v4().simple()
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"));
        command
            .arg("all")
            .env("DATABASE_URL", &db.url)
            .env("WEDSYNC_LISTEN", "127.0.0.1:0")
            .env("WEDSYNC_DATA_DIR", &data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command.spawn().expect("start all");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut field = |name: &str| loop {
            let line = lines.next().expect("a line from `all`").unwrap();
            if let Some(value) = line.trim().strip_prefix(name) {
                return value.trim().to_owned();
            }
        };
        let base = field("API:");
        let admin_key = field("admin key:");
        // Whatever else it prints is read too: a closed pipe would fail its next line.
        std::thread::spawn(move || lines.for_each(drop));
        AllProcess {
            child,
            base,
            admin_key,
            data_dir,
        }
    }

    /// `GET path` with the admin key: the JSON body, or `None` if the request failed.
    pub async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// SIGTERM, then whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap().success()
    }
}

impl Drop for AllProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.data_dir).ok();
    }
}
