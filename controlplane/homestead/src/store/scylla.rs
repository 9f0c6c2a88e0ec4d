//! The cluster store: ScyllaDB or Cassandra through the `scylla` driver.
//!
//! At start-up the store connects (retrying until a node answers, so Homestead can start
//! before its database), creates the keyspace and tables when missing, records the schema
//! version and runs any migration forward, then prepares every statement. Until then every
//! call fails with [`StoreError::Unavailable`] saying what it is waiting for.
//!
//! Records are kept as the same versioned JSON as the embedded store, one row per key, so
//! an operator can read them in cqlsh. The AKA sequence number is a lightweight transaction
//! (`IF sqn = ?`) so two Homesteads never hand out the same SQN.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlValue;
use uuid::Uuid;

use super::{SCHEMA_VERSION, StoreError, SubscriberStore, Write, decode, encode};
use crate::model::{PrivateIdentity, PublicIndex, Registration, RegistrationSet};

/// How to reach the cluster and how hard to ask it.
#[derive(Clone, Debug)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (9042 for CQL).
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Replication factor used when the keyspace is created (NetworkTopologyStrategy).
    pub replication_factor: u32,
    pub consistency: Consistency,
    /// Per-request timeout; a request that exceeds it is a 504.
    pub request_timeout: Duration,
    /// Delay between connection attempts at start-up.
    pub retry_interval: Duration,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "homestead".into(),
            replication_factor: 3,
            consistency: Consistency::LocalQuorum,
            request_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// Parses a consistency level as operators write it (`LOCAL_QUORUM`, `one`, ...).
pub fn parse_consistency(text: &str) -> Result<Consistency, String> {
    Ok(match text.to_ascii_uppercase().as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        other => return Err(format!("unknown consistency level {other}")),
    })
}

/// Statements prepared once the schema exists.
struct Connected {
    session: Session,
    get_private: PreparedStatement,
    get_public: PreparedStatement,
    get_set: PreparedStatement,
    get_registration: PreparedStatement,
    put_private: PreparedStatement,
    delete_private: PreparedStatement,
    put_public: PreparedStatement,
    delete_public: PreparedStatement,
    put_set: PreparedStatement,
    delete_set: PreparedStatement,
    put_registration: PreparedStatement,
    delete_registration: PreparedStatement,
    get_sqn: PreparedStatement,
    delete_sqn: PreparedStatement,
    insert_sqn: PreparedStatement,
    update_sqn: PreparedStatement,
    insert_registration_if_absent: PreparedStatement,
    update_registration_if: PreparedStatement,
    delete_registration_if: PreparedStatement,
    list_private_first: PreparedStatement,
    list_private_after: PreparedStatement,
    list_public_first: PreparedStatement,
    list_public_after: PreparedStatement,
    consistency: Consistency,
}

/// ScyllaDB/Cassandra-backed [`SubscriberStore`].
pub struct ScyllaStore {
    connected: OnceLock<Connected>,
    waiting_reason: Mutex<String>,
    nodes: String,
}

impl ScyllaStore {
    /// Returns at once; a background task connects and prepares the schema, retrying until
    /// it succeeds. Must be called inside a tokio runtime.
    pub fn start(config: ScyllaConfig) -> Arc<Self> {
        let store = Arc::new(Self {
            connected: OnceLock::new(),
            waiting_reason: Mutex::new("not yet tried".into()),
            nodes: config.nodes.join(","),
        });
        let background = Arc::clone(&store);
        tokio::spawn(async move {
            loop {
                match connect(&config).await {
                    Ok(connected) => {
                        tracing::info!(nodes = %background.nodes, "subscriber store connected");
                        let _ = background.connected.set(connected);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(nodes = %background.nodes, error = %e, "subscriber store not reachable; retrying");
                        *background.waiting_reason.lock().expect("not poisoned") = e;
                    }
                }
                tokio::time::sleep(config.retry_interval).await;
            }
        });
        store
    }

    /// Whether the schema is ready and statements are prepared.
    pub fn is_connected(&self) -> bool {
        self.connected.get().is_some()
    }

    fn connected(&self) -> Result<&Connected, StoreError> {
        self.connected.get().ok_or_else(|| {
            StoreError::Unavailable(format!(
                "waiting for ScyllaDB/Cassandra at {}: {}",
                self.nodes,
                self.waiting_reason.lock().expect("not poisoned")
            ))
        })
    }
}

async fn connect(config: &ScyllaConfig) -> Result<Connected, String> {
    let profile = scylla::client::execution_profile::ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(config.request_timeout))
        .build();
    let session = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.request_timeout)
        .default_execution_profile_handle(profile.into_handle())
        .build()
        .await
        .map_err(|e| e.to_string())?;
    create_schema(&session, config).await?;
    prepare(session, config).await.map_err(|e| e.to_string())
}

/// Statements that bring an empty keyspace to each schema version, in order.
fn migrations(ks: &str) -> Vec<(u32, Vec<String>)> {
    vec![(
        1,
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.private_ids (impi text PRIMARY KEY, data text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.public_ids (impu text PRIMARY KEY, data text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.registration_sets (id uuid PRIMARY KEY, data text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.registrations (id uuid PRIMARY KEY, data text)"
            ),
            format!("CREATE TABLE IF NOT EXISTS {ks}.sqn (impi text PRIMARY KEY, sqn bigint)"),
        ],
    )]
}

async fn create_schema(session: &Session, config: &ScyllaConfig) -> Result<(), String> {
    let ks = &config.keyspace;
    if !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || ks.is_empty() {
        return Err(format!(
            "keyspace name {ks:?} must be letters, digits and _"
        ));
    }
    let run = |cql: String| async move {
        session
            .query_unpaged(cql.as_str(), ())
            .await
            .map_err(|e| format!("{cql}: {e}"))
    };
    run(format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
        config.replication_factor
    ))
    .await?;
    run(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_version (component text PRIMARY KEY, version int)"
    ))
    .await?;
    let found = session
        .query_unpaged(
            format!("SELECT version FROM {ks}.schema_version WHERE component = 'homestead'"),
            (),
        )
        .await
        .map_err(|e| e.to_string())?
        .into_rows_result()
        .map_err(|e| e.to_string())?
        .maybe_first_row::<(i32,)>()
        .map_err(|e| e.to_string())?
        .map_or(0, |(v,)| u32::try_from(v).unwrap_or(0));
    if found > SCHEMA_VERSION {
        return Err(format!(
            "keyspace {ks} has schema version {found}, newer than this build's {SCHEMA_VERSION}"
        ));
    }
    for (version, statements) in migrations(ks) {
        if version <= found {
            continue;
        }
        for cql in statements {
            run(cql).await?;
        }
        run(format!(
            "INSERT INTO {ks}.schema_version (component, version) VALUES ('homestead', {version})"
        ))
        .await?;
        tracing::info!(keyspace = %ks, version, "subscriber store schema migrated");
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn prepare(session: Session, config: &ScyllaConfig) -> Result<Connected, ExecutionError> {
    let ks = &config.keyspace;
    let p = |cql: String| {
        let session = &session;
        async move {
            let mut statement = session.prepare(cql).await.map_err(ExecutionError::from)?;
            statement.set_consistency(config.consistency);
            Ok::<_, ExecutionError>(statement)
        }
    };
    Ok(Connected {
        get_private: p(format!("SELECT data FROM {ks}.private_ids WHERE impi = ?")).await?,
        get_public: p(format!("SELECT data FROM {ks}.public_ids WHERE impu = ?")).await?,
        get_set: p(format!(
            "SELECT data FROM {ks}.registration_sets WHERE id = ?"
        ))
        .await?,
        get_registration: p(format!("SELECT data FROM {ks}.registrations WHERE id = ?")).await?,
        put_private: p(format!(
            "INSERT INTO {ks}.private_ids (impi, data) VALUES (?, ?)"
        ))
        .await?,
        delete_private: p(format!("DELETE FROM {ks}.private_ids WHERE impi = ?")).await?,
        put_public: p(format!(
            "INSERT INTO {ks}.public_ids (impu, data) VALUES (?, ?)"
        ))
        .await?,
        delete_public: p(format!("DELETE FROM {ks}.public_ids WHERE impu = ?")).await?,
        put_set: p(format!(
            "INSERT INTO {ks}.registration_sets (id, data) VALUES (?, ?)"
        ))
        .await?,
        delete_set: p(format!("DELETE FROM {ks}.registration_sets WHERE id = ?")).await?,
        put_registration: p(format!(
            "INSERT INTO {ks}.registrations (id, data) VALUES (?, ?)"
        ))
        .await?,
        delete_registration: p(format!("DELETE FROM {ks}.registrations WHERE id = ?")).await?,
        get_sqn: p(format!("SELECT sqn FROM {ks}.sqn WHERE impi = ?")).await?,
        delete_sqn: p(format!("DELETE FROM {ks}.sqn WHERE impi = ?")).await?,
        insert_sqn: p(format!(
            "INSERT INTO {ks}.sqn (impi, sqn) VALUES (?, ?) IF NOT EXISTS"
        ))
        .await?,
        update_sqn: p(format!(
            "UPDATE {ks}.sqn SET sqn = ? WHERE impi = ? IF sqn = ?"
        ))
        .await?,
        insert_registration_if_absent: p(format!(
            "INSERT INTO {ks}.registrations (id, data) VALUES (?, ?) IF NOT EXISTS"
        ))
        .await?,
        update_registration_if: p(format!(
            "UPDATE {ks}.registrations SET data = ? WHERE id = ? IF data = ?"
        ))
        .await?,
        delete_registration_if: p(format!(
            "DELETE FROM {ks}.registrations WHERE id = ? IF data = ?"
        ))
        .await?,
        list_private_first: p(format!("SELECT impi FROM {ks}.private_ids LIMIT ?")).await?,
        list_private_after: p(format!(
            "SELECT impi FROM {ks}.private_ids WHERE token(impi) > token(?) LIMIT ?"
        ))
        .await?,
        list_public_first: p(format!("SELECT impu FROM {ks}.public_ids LIMIT ?")).await?,
        list_public_after: p(format!(
            "SELECT impu FROM {ks}.public_ids WHERE token(impu) > token(?) LIMIT ?"
        ))
        .await?,
        consistency: config.consistency,
        session,
    })
}

/// Maps the driver's errors onto the HTTP statuses Clearwater gives them.
fn classify(e: ExecutionError) -> StoreError {
    let text = e.to_string();
    match e {
        ExecutionError::RequestTimeout(_) => StoreError::Timeout(text),
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => StoreError::Timeout(text),
            DbError::Unavailable { .. } | DbError::Overloaded | DbError::IsBootstrapping => {
                StoreError::Unavailable(text)
            }
            _ => StoreError::Backend(text),
        },
        ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_))
        | ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan => StoreError::Unavailable(text),
        _ => StoreError::Backend(text),
    }
}

/// Whether a lightweight transaction applied. The first column of its result is
/// `[applied]`; when it did not apply the current values follow, so the row is read
/// untyped.
fn applied(result: scylla::response::query_result::QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(rows_error)?;
    Ok(rows
        .rows::<scylla::value::Row>()
        .map_err(rows_error)?
        .next()
        .transpose()
        .map_err(rows_error)?
        .and_then(|row| row.columns.into_iter().next().flatten())
        .is_some_and(|applied| applied == CqlValue::Boolean(true)))
}

fn rows_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unexpected result shape: {e}"))
}

fn limit_value(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.to_owned())
}

fn json<T: serde::Serialize>(record: &T) -> CqlValue {
    CqlValue::Text(String::from_utf8(encode(record)).expect("serde_json writes UTF-8"))
}

impl Connected {
    async fn fetch_text(
        &self,
        statement: &PreparedStatement,
        key: CqlValue,
    ) -> Result<Option<String>, StoreError> {
        let result = self
            .session
            .execute_unpaged(statement, (key,))
            .await
            .map_err(classify)?;
        let rows = result.into_rows_result().map_err(rows_error)?;
        let row = rows.maybe_first_row::<(String,)>().map_err(rows_error)?;
        Ok(row.map(|(data,)| data))
    }

    async fn list(
        &self,
        first: &PreparedStatement,
        after_stmt: &PreparedStatement,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let result = match after {
            None => {
                self.session
                    .execute_unpaged(first, (limit_value(limit),))
                    .await
            }
            Some(key) => {
                self.session
                    .execute_unpaged(after_stmt, (key, limit_value(limit)))
                    .await
            }
        }
        .map_err(classify)?;
        let rows = result.into_rows_result().map_err(rows_error)?;
        rows.rows::<(String,)>()
            .map_err(rows_error)?
            .map(|row| row.map(|(k,)| k).map_err(rows_error))
            .collect()
    }

    fn statement_for(&self, write: &Write) -> (&PreparedStatement, Vec<CqlValue>) {
        match write {
            Write::PutPrivate(p) => (&self.put_private, vec![text(&p.impi), json(p)]),
            Write::DeletePrivate(impi) => (&self.delete_private, vec![text(impi)]),
            Write::PutPublic(impu, index) => (&self.put_public, vec![text(impu), json(index)]),
            Write::DeletePublic(impu) => (&self.delete_public, vec![text(impu)]),
            Write::PutRegistrationSet(set) => {
                (&self.put_set, vec![CqlValue::Uuid(set.id), json(set)])
            }
            Write::DeleteRegistrationSet(id) => (&self.delete_set, vec![CqlValue::Uuid(*id)]),
            Write::PutRegistration(id, reg) => {
                (&self.put_registration, vec![CqlValue::Uuid(*id), json(reg)])
            }
            Write::DeleteRegistration(id) => (&self.delete_registration, vec![CqlValue::Uuid(*id)]),
        }
    }
}

#[async_trait]
impl SubscriberStore for ScyllaStore {
    fn authoritative(&self) -> &dyn SubscriberStore {
        self
    }

    async fn private_identity(&self, impi: &str) -> Result<Option<PrivateIdentity>, StoreError> {
        let c = self.connected()?;
        let data = c.fetch_text(&c.get_private, text(impi)).await?;
        data.map(|d| decode("private identity", impi, d.as_bytes()))
            .transpose()
    }

    async fn public_identity(&self, impu: &str) -> Result<Option<PublicIndex>, StoreError> {
        let c = self.connected()?;
        let data = c.fetch_text(&c.get_public, text(impu)).await?;
        data.map(|d| decode("public identity", impu, d.as_bytes()))
            .transpose()
    }

    async fn registration_set(&self, id: Uuid) -> Result<Option<RegistrationSet>, StoreError> {
        let c = self.connected()?;
        let data = c.fetch_text(&c.get_set, CqlValue::Uuid(id)).await?;
        data.map(|d| decode("registration set", &id.to_string(), d.as_bytes()))
            .transpose()
    }

    async fn registration(&self, set: Uuid) -> Result<Option<Registration>, StoreError> {
        let c = self.connected()?;
        let data = c
            .fetch_text(&c.get_registration, CqlValue::Uuid(set))
            .await?;
        data.map(|d| decode("registration", &set.to_string(), d.as_bytes()))
            .transpose()
    }

    async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let c = self.connected()?;
        let mut statements = Batch::new(BatchType::Logged);
        statements.set_consistency(c.consistency);
        let mut values = Vec::with_capacity(batch.len() + 1);
        for write in &batch {
            let (statement, row) = c.statement_for(write);
            statements.append_statement(statement.clone());
            values.push(row);
            // Deleting a private identity or a set takes what hangs off it, as the
            // embedded store does: the SQN, the registration state.
            match write {
                Write::DeletePrivate(impi) => {
                    statements.append_statement(c.delete_sqn.clone());
                    values.push(vec![text(impi)]);
                }
                Write::DeleteRegistrationSet(id) => {
                    statements.append_statement(c.delete_registration.clone());
                    values.push(vec![CqlValue::Uuid(*id)]);
                }
                _ => {}
            }
        }
        if values.is_empty() {
            return Ok(());
        }
        c.session
            .batch(&statements, values)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn sqn(&self, impi: &str) -> Result<u64, StoreError> {
        let c = self.connected()?;
        let result = c
            .session
            .execute_unpaged(&c.get_sqn, (impi,))
            .await
            .map_err(classify)?;
        let rows = result.into_rows_result().map_err(rows_error)?;
        let row = rows.maybe_first_row::<(i64,)>().map_err(rows_error)?;
        Ok(row.map_or(0, |(sqn,)| u64::try_from(sqn).unwrap_or(0)))
    }

    async fn compare_and_set_sqn(
        &self,
        impi: &str,
        current: u64,
        new: u64,
    ) -> Result<bool, StoreError> {
        let c = self.connected()?;
        let new = i64::try_from(new).map_err(|_| StoreError::Backend("SQN overflow".into()))?;
        let result = if current == 0 {
            c.session.execute_unpaged(&c.insert_sqn, (impi, new)).await
        } else {
            let current =
                i64::try_from(current).map_err(|_| StoreError::Backend("SQN overflow".into()))?;
            c.session
                .execute_unpaged(&c.update_sqn, (new, impi, current))
                .await
        }
        .map_err(classify)?;
        applied(result)
    }

    async fn compare_and_set_registration(
        &self,
        set: Uuid,
        current: Option<&Registration>,
        new: Option<&Registration>,
    ) -> Result<bool, StoreError> {
        let c = self.connected()?;
        // Compare by value, then make the write conditional on the exact text read, so a
        // row written by another version still compares as what it means.
        let stored = c
            .fetch_text(&c.get_registration, CqlValue::Uuid(set))
            .await?;
        let decoded: Option<Registration> = stored
            .as_deref()
            .map(|d| decode("registration", &set.to_string(), d.as_bytes()))
            .transpose()?;
        if decoded.as_ref() != current {
            return Ok(false);
        }
        let id = CqlValue::Uuid(set);
        let result = match (stored, new) {
            (None, None) => return Ok(true),
            (None, Some(reg)) => {
                c.session
                    .execute_unpaged(&c.insert_registration_if_absent, (id, json(reg)))
                    .await
            }
            (Some(text), Some(reg)) => {
                c.session
                    .execute_unpaged(
                        &c.update_registration_if,
                        (json(reg), id, CqlValue::Text(text)),
                    )
                    .await
            }
            (Some(text), None) => {
                c.session
                    .execute_unpaged(&c.delete_registration_if, (id, CqlValue::Text(text)))
                    .await
            }
        }
        .map_err(classify)?;
        applied(result)
    }

    async fn list_private_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.connected()?;
        c.list(&c.list_private_first, &c.list_private_after, after, limit)
            .await
    }

    async fn list_public_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let c = self.connected()?;
        c.list(&c.list_public_first, &c.list_public_after, after, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{BadQuery, WriteType};

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            error,
            "from the node".into(),
        ))
    }

    #[test]
    fn driver_errors_map_to_the_statuses_clearwater_gives() {
        let c = Consistency::LocalQuorum;
        let cases = [
            (
                ExecutionError::RequestTimeout(Duration::from_secs(2)),
                "timeout",
            ),
            (
                db(DbError::ReadTimeout {
                    consistency: c,
                    received: 1,
                    required: 2,
                    data_present: false,
                }),
                "timeout",
            ),
            (
                db(DbError::WriteTimeout {
                    consistency: c,
                    received: 1,
                    required: 2,
                    write_type: WriteType::Batch,
                }),
                "timeout",
            ),
            (
                db(DbError::Unavailable {
                    consistency: c,
                    required: 2,
                    alive: 1,
                }),
                "unavailable",
            ),
            (db(DbError::Overloaded), "unavailable"),
            (db(DbError::IsBootstrapping), "unavailable"),
            (ExecutionError::EmptyPlan, "unavailable"),
            (db(DbError::SyntaxError), "backend"),
            (db(DbError::Invalid), "backend"),
            (
                ExecutionError::BadQuery(BadQuery::TooManyQueriesInBatchStatement(70_000)),
                "backend",
            ),
        ];
        for (error, expected) in cases {
            let shown = error.to_string();
            let kind = match classify(error) {
                StoreError::Timeout(_) => "timeout",
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Backend(_) => "backend",
            };
            assert_eq!(kind, expected, "{shown}");
        }
    }

    #[test]
    fn consistency_levels_parse_as_operators_write_them() {
        assert_eq!(
            parse_consistency("local_quorum"),
            Ok(Consistency::LocalQuorum)
        );
        assert_eq!(parse_consistency("ONE"), Ok(Consistency::One));
        assert!(parse_consistency("most").is_err());
    }

    #[test]
    fn every_migration_creates_only_what_is_missing() {
        for (_, statements) in migrations("ks") {
            for cql in statements {
                assert!(cql.starts_with("CREATE TABLE IF NOT EXISTS ks."), "{cql}");
            }
        }
    }
}
