//! The state of the sends a process is sending, as seen at most [`WATCH_EVERY`] ago, so that a
//! message waiting for its rate-limit slot does not go out once its send was paused or
//! cancelled. One task per process reads the state of every send its running batches watch, in
//! one query per tick: ten batches of one send (the usual shape of a big send) cost five
//! queries a second per process, not fifty.

use super::batch::Stop;
use crate::sync::lock;
use sqlx::PgPool;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often the watched sends' states are read.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// The process's watcher; cheap to clone.
#[derive(Clone)]
pub(crate) struct SendStates(Arc<Shared>);

struct Shared {
    /// Per send: its state (0 active, else the stop) and how many watches hold it.
    watched: Mutex<HashMap<String, (Arc<AtomicU8>, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for SendStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SendStates({} sends watched)",
            lock(&self.0.watched).len()
        )
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SendStates {
    /// Starts the reading task (on the current runtime).
    pub fn spawn(pool: PgPool) -> SendStates {
        SendStates(Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            watched: Mutex::default(),
            task: tokio::spawn(read_states(pool, weak.clone())),
        }))
    }

    /// Watch `send_id`, which the caller has just read `active`, until the returned watch is
    /// dropped. The shared state is set back to active: another batch of the send may still
    /// hold the `paused` read before a resume, and a new batch starting on it would withdraw
    /// its first chunk and sleep out [`PAUSED_SNOOZE`](super::PAUSED_SNOOZE) with the resume's
    /// wake-up spent. A pause read by the task before the caller's own read is undone for at
    /// most one tick ([`WATCH_EVERY`]); every claim checks the state in the database anyway.
    pub(super) fn watch(&self, send_id: &str) -> StateWatch {
        let mut watched = lock(&self.0.watched);
        let (state, holders) = watched
            .entry(send_id.to_owned())
            .or_insert_with(|| (Arc::new(AtomicU8::new(0)), 0));
        state.store(0, Ordering::Release);
        *holders += 1;
        StateWatch {
            state: state.clone(),
            send_id: send_id.to_owned(),
            states: self.clone(),
        }
    }

    /// How many sends are watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        lock(&self.0.watched).len()
    }
}

/// One batch's view of its send's state.
pub(super) struct StateWatch {
    state: Arc<AtomicU8>,
    send_id: String,
    states: SendStates,
}

impl StateWatch {
    pub fn stop(&self) -> Option<Stop> {
        match self.state.load(Ordering::Acquire) {
            1 => Some(Stop::Paused),
            2 => Some(Stop::Cancelled),
            _ => None,
        }
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        let mut watched = lock(&self.states.0.watched);
        if let Some((_, holders)) = watched.get_mut(&self.send_id) {
            *holders -= 1;
            if *holders == 0 {
                watched.remove(&self.send_id);
            }
        }
    }
}

/// Every tick, the states of the sends watched then; a send that is gone reads as active (its
/// batches find nothing left to claim). A failed read keeps the states last read.
async fn read_states(pool: PgPool, shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ids: Vec<String> = lock(&shared.watched).keys().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let rows: Vec<(String, String)> = match sqlx::query_as(crate::messages::sql::SEND_STATES)
            .bind(&ids)
            .fetch_all(&pool)
            .await
        {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "reading the states of the sends being sent failed");
                continue;
            }
        };
        let states: HashMap<String, String> = rows.into_iter().collect();
        for (id, (state, _)) in lock(&shared.watched).iter() {
            let code = match states.get(id).map(String::as_str) {
                Some("paused") => 1,
                Some("cancelled") => 2,
                _ => 0,
            };
            state.store(code, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedsync_db::testing::TestDb;

    /// A send as the API stores one (no worker runs its fan-out here).
    async fn insert_send(db: &TestDb) -> String {
        use crate::messages::template::TemplateSource;
        use crate::messages::{Category, DEFAULT_BATCH_SIZE, NewSend, Sender, create_send};
        let send = NewSend {
            id: uuid::Uuid::new_v4().to_string(),
            org_id: "org".into(),
            channel: crate::suppression::Channel::Email,
            category: Category::Transactional,
            sender: Sender {
                name: "Ann".into(),
                email: "ann@example.com".into(),
                postal_address: "1 Lane".into(),
            },
            template: TemplateSource {
                subject: "s".into(),
                text: "t".into(),
                html: None,
            },
            send_at: None,
            recipients: Vec::new(),
            batch_size: DEFAULT_BATCH_SIZE,
        };
        let mut conn = db.pool.acquire().await.unwrap();
        create_send(&mut conn, &send).await.unwrap();
        send.id
    }

    async fn set_state(db: &TestDb, id: &str, state: &str) {
        sqlx::query("UPDATE bulk_sends SET state = $2 WHERE id = $1::uuid")
            .bind(id)
            .bind(state)
            .execute(&db.pool)
            .await
            .unwrap();
    }

    /// Until every watch reports `expected` (the test's timeout otherwise).
    async fn until_all(watches: &[StateWatch], expected: Option<Stop>) {
        while watches.iter().any(|w| w.stop() != expected) {
            tokio::time::sleep(WATCH_EVERY / 4).await;
        }
    }

    #[tokio::test]
    async fn watches_of_one_send_share_its_state_and_other_sends_keep_theirs() {
        let db = TestDb::new().await.unwrap();
        let (a, b) = (insert_send(&db).await, insert_send(&db).await);
        let states = SendStates::spawn(db.pool.clone());
        let of_a: Vec<StateWatch> = (0..10).map(|_| states.watch(&a)).collect();
        let of_b = [states.watch(&b)];
        assert_eq!(
            states.watched(),
            2,
            "one entry per send, however many batches"
        );

        set_state(&db, &a, "paused").await;
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, until_all(&of_a, Some(Stop::Paused)))
            .await
            .expect("the pause reached every watch of the send");
        assert_eq!(of_b[0].stop(), None, "another send is not paused");
        // A batch starts only on a send it has just read active: a resume this process has not
        // read yet. Its watch, and the send's others, read active at once, so that nothing
        // withdraws on the stale pause; while the database still says paused, the next tick
        // puts the pause back.
        let starting = states.watch(&a);
        assert_eq!(starting.stop(), None);
        assert!(of_a.iter().all(|w| w.stop().is_none()));
        tokio::time::timeout(wait, until_all(&of_a, Some(Stop::Paused)))
            .await
            .expect("the next tick read the pause again");
        assert_eq!(starting.stop(), Some(Stop::Paused));
        drop(starting);

        set_state(&db, &b, "cancelled").await;
        set_state(&db, &a, "active").await;
        tokio::time::timeout(wait, until_all(&of_b, Some(Stop::Cancelled)))
            .await
            .expect("the cancel reached the watch");
        tokio::time::timeout(wait, until_all(&of_a, None))
            .await
            .expect("the resume reached every watch");

        drop(of_a);
        assert_eq!(
            states.watched(),
            1,
            "a send nobody watches is no longer read"
        );
        drop(of_b);
        assert_eq!(states.watched(), 0);
    }
}
