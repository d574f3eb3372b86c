//! Listing the suppression list (`GET /v1/suppressions`), newest first, keyset paged by id.
//!
//! A filter picks one of four statements ([`Scope`]), each an index range read backwards, so a
//! page costs about its own rows whatever the plan: one statement with `$n IS NULL OR …` for
//! every filter lets PostgreSQL's generic plan (the one a prepared statement settles on after
//! five runs) use no index condition on `org_id`, and a planner with a handful of entries beside
//! a global list of a million would have the global list scanned for them.

use super::{Channel, Entry, Reason, SuppressionList, sql};

/// Which entries a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// A planner's organisation: only its entries and the global ones, the global ones without
    /// their readable address (they may be any organisation's guests; the hash still matches a
    /// candidate address). `None`: all, readable.
    pub visible_to: Option<String>,
    /// Only this organisation's entries.
    pub org_id: Option<String>,
    /// Only global entries.
    pub global_only: bool,
    pub channel: Option<Channel>,
    pub reason: Option<Reason>,
    /// Keyset paging: only entries with a smaller id.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// The part of the list a filter reads, by the organisation it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// The filters contradict each other (another organisation's entries for a planner, or an
    /// organisation's entries that are global): nothing to read.
    Nothing,
    All,
    Org(&'a str),
    Global,
    OrgAndGlobal(&'a str),
}

impl ListFilter {
    fn scope(&self) -> Scope<'_> {
        let visible_to = self.visible_to.as_deref();
        match (visible_to, self.org_id.as_deref(), self.global_only) {
            (_, Some(_), true) => Scope::Nothing,
            (Some(own), Some(org), false) if own != org => Scope::Nothing,
            (_, Some(org), false) => Scope::Org(org),
            (_, None, true) => Scope::Global,
            (Some(own), None, false) => Scope::OrgAndGlobal(own),
            (None, None, false) => Scope::All,
        }
    }
}

impl<'a> Scope<'a> {
    /// `None` for [`Scope::Nothing`].
    fn statement(self) -> Option<&'static str> {
        match self {
            Scope::Nothing => None,
            Scope::All => Some(sql::LIST_ALL),
            Scope::Global => Some(sql::LIST_GLOBAL),
            Scope::Org(_) => Some(sql::LIST_ORG),
            Scope::OrgAndGlobal(_) => Some(sql::LIST_ORG_AND_GLOBAL),
        }
    }

    /// The statement's `$1`.
    fn org(self) -> Option<&'a str> {
        match self {
            Scope::Org(org) | Scope::OrgAndGlobal(org) => Some(org),
            Scope::Nothing | Scope::All | Scope::Global => None,
        }
    }
}

impl SuppressionList {
    /// Entries newest first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>, sqlx::Error> {
        let scope = filter.scope();
        let Some(statement) = scope.statement() else {
            return Ok(Vec::new());
        };
        sqlx::query_as(statement)
            .bind(scope.org())
            .bind(filter.channel.map(Channel::as_str))
            .bind(filter.reason.map(Reason::as_str))
            .bind(filter.before_id)
            .bind(filter.limit)
            .bind(filter.visible_to.is_some())
            .fetch_all(&self.pool)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::Address;
    use serde_json::Value;
    use wedsync_db::testing::TestDb;

    fn filter(visible_to: Option<&str>, org_id: Option<&str>, global_only: bool) -> ListFilter {
        ListFilter {
            visible_to: visible_to.map(str::to_owned),
            org_id: org_id.map(str::to_owned),
            global_only,
            limit: 50,
            ..ListFilter::default()
        }
    }

    /// The four statements together answer every filter as the rule says: a planner sees their
    /// organisation's entries and the global ones (those without the address), an admin what
    /// the filters name.
    #[tokio::test]
    async fn every_filter_lists_what_it_names_newest_first() {
        let db = TestDb::new().await.unwrap();
        let list = SuppressionList::new(db.pool.clone());
        let entries = [
            (
                Some("acme"),
                Channel::Email,
                "a1@example.com",
                Reason::Manual,
            ),
            (None, Channel::Email, "g1@example.com", Reason::HardBounce),
            (
                Some("other"),
                Channel::Email,
                "o1@example.com",
                Reason::Manual,
            ),
            (
                Some("acme"),
                Channel::Sms,
                "+447700900001",
                Reason::Unsubscribed,
            ),
            (None, Channel::Sms, "+447700900002", Reason::Manual),
            (
                Some("acme"),
                Channel::Email,
                "a2@example.com",
                Reason::Complaint,
            ),
            (Some("other"), Channel::Sms, "+447700900003", Reason::Manual),
            (None, Channel::Email, "g2@example.com", Reason::Manual),
        ];
        let mut stored = Vec::new();
        for (org, channel, raw, reason) in entries {
            let address = Address::parse(channel, raw).unwrap();
            stored.push(list.add(org, &address, reason).await.unwrap().entry);
        }
        let mut filters = Vec::new();
        for visible_to in [None, Some("acme")] {
            for org_id in [None, Some("acme"), Some("other")] {
                for global_only in [false, true] {
                    filters.push(filter(visible_to, org_id, global_only));
                }
            }
        }
        filters.push(ListFilter {
            channel: Some(Channel::Sms),
            ..filter(Some("acme"), None, false)
        });
        filters.push(ListFilter {
            reason: Some(Reason::Manual),
            ..filter(None, None, false)
        });
        filters.push(ListFilter {
            before_id: Some(stored[5].id),
            limit: 2,
            ..filter(Some("acme"), None, false)
        });
        for f in filters {
            let listed = list.list(&f).await.unwrap();
            let mut expected: Vec<Entry> = stored
                .iter()
                .filter(|e| {
                    let org = e.org_id.as_deref();
                    f.visible_to
                        .as_deref()
                        .is_none_or(|v| org == Some(v) || org.is_none())
                        && f.org_id.as_deref().is_none_or(|o| org == Some(o))
                        && (!f.global_only || org.is_none())
                        && f.channel.is_none_or(|c| e.channel == c.as_str())
                        && f.reason.is_none_or(|r| e.reason == r.as_str())
                        && f.before_id.is_none_or(|b| e.id < b)
                })
                .cloned()
                .map(|mut e| {
                    if f.visible_to.is_some() && e.org_id.is_none() {
                        e.address = None;
                        e.address_hash = None;
                    }
                    e
                })
                .collect();
            expected.sort_by_key(|e| std::cmp::Reverse(e.id));
            expected.truncate(f.limit as usize);
            assert_eq!(listed, expected, "filter {f:?}");
        }
    }

    /// Rows a plan's scans read (returned or filtered out), summed over its nodes.
    fn rows_read(node: &Value) -> f64 {
        let own = if node["Node Type"]
            .as_str()
            .is_some_and(|t| t.contains("Scan"))
        {
            let loops = node["Actual Loops"].as_f64().unwrap_or(1.0);
            (node["Actual Rows"].as_f64().unwrap_or(0.0)
                + node["Rows Removed by Filter"].as_f64().unwrap_or(0.0))
                * loops
        } else {
            0.0
        };
        let children = node["Plans"].as_array().into_iter().flatten();
        own + children.map(rows_read).sum::<f64>()
    }

    /// A page reads about its own rows under the generic plan a prepared statement settles
    /// on, not the global list: three entries of one organisation beside 20,000 global ones.
    #[tokio::test]
    async fn a_page_reads_its_own_rows_under_a_generic_plan() {
        let db = TestDb::new().await.unwrap();
        let list = SuppressionList::new(db.pool.clone());
        for raw in ["a1@example.com", "a2@example.com", "a3@example.com"] {
            let address = Address::parse(Channel::Email, raw).unwrap();
            list.add(Some("acme"), &address, Reason::Manual)
                .await
                .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO suppressions (org_id, channel, address_hash, address, reason)
             SELECT NULL, 'email', encode(sha256(g::text::bytea), 'hex'), g || '@example.com',
                    'manual'
               FROM generate_series(1, 20000) g;
             ANALYZE suppressions;",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let middle: i64 = sqlx::query_scalar("SELECT min(id) + 10000 FROM suppressions")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .unwrap();
        let global_page = format!("NULL, 'email', NULL, {middle}");
        let cases = [
            (
                filter(None, Some("acme"), false),
                "'acme', NULL, NULL, NULL",
            ),
            (
                filter(Some("acme"), None, false),
                "'acme', NULL, NULL, NULL",
            ),
            (filter(Some("acme"), None, true), "NULL, NULL, NULL, NULL"),
            (filter(None, None, false), "NULL, NULL, NULL, NULL"),
            (filter(None, None, true), global_page.as_str()),
        ];
        for (i, (f, arguments)) in cases.iter().enumerate() {
            let statement = f.scope().statement().unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PREPARE page{i} (text, text, text, bigint, bigint, boolean) AS {statement}"
            )))
            .execute(&mut *conn)
            .await
            .unwrap();
            let hide = f.visible_to.is_some();
            let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page{i} ({arguments}, {}, {hide})",
                f.limit
            )))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            let read = rows_read(&plan[0]["Plan"]);
            assert!(
                read <= (2 * f.limit + 1) as f64,
                "{f:?} read {read} rows for a page of {}: {plan:#}",
                f.limit
            );
        }
    }
}
