//! The one-host store: redb, an ACID copy-on-write B-tree file on local disk.
//!
//! Writes go through one writer thread that commits everything queued since its last
//! commit in a single transaction (group commit): each commit is fsynced, so a caller's
//! `Ok` means the batch is on disk, while bulk provisioning from many concurrent clients
//! costs one fsync per group instead of one per subscriber. Reads run on the caller's
//! thread; they are short B-tree lookups and usually hit the cache in front of the store.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{SCHEMA_VERSION, StoreError, SubscriberStore, Write, decode, encode};
use crate::model::{PrivateIdentity, PublicIndex, Registration, RegistrationSet};

const PRIVATE: TableDefinition<&str, &[u8]> = TableDefinition::new("private_ids");
const PUBLIC: TableDefinition<&str, &[u8]> = TableDefinition::new("public_ids");
const SETS: TableDefinition<u128, &[u8]> = TableDefinition::new("registration_sets");
const REGISTRATIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("registrations");
const SQN: TableDefinition<&str, u64> = TableDefinition::new("sqn");
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// What the writer thread does for one caller.
enum Job {
    Apply(Vec<Write>, oneshot::Sender<Result<(), StoreError>>),
    CompareAndSetSqn {
        impi: String,
        current: u64,
        new: u64,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    CompareAndSetRegistration {
        set: Uuid,
        current: Option<Registration>,
        new: Option<Registration>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
}

/// redb-backed [`SubscriberStore`].
pub struct EmbeddedStore {
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating tables and recording or migrating the
    /// schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let db = Database::create(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        prepare_schema(&db)?;
        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        thread::Builder::new()
            .name("homestead-store-writer".into())
            .spawn(move || write_loop(&writer_db, &queue))
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok(Self { db, jobs })
    }

    /// Runs a read transaction on the caller's thread. Reads are B-tree lookups that hit
    /// redb's cache or the page cache in microseconds; telling tokio each one blocks
    /// (`block_in_place`) was measured to cost far more than the read itself (reg-data
    /// throughput fell from 28,900 to 9,900 requests/s and bulk provisioning halved), so a
    /// read that does go to the disk stalls its tokio worker for that long.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        f(&txn).map_err(backend)
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("store writer has stopped".into()))?
    }
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

fn prepare_schema(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let found = meta
            .get("schema_version")
            .map_err(backend)?
            .map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Backend(format!(
                    "store schema version {v} is newer than this build's {SCHEMA_VERSION}; \
                     run a newer whitewater"
                )));
            }
            // Version 1 is the first layout: nothing older exists to migrate.
            Some(_) | None => {
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(backend)?;
            }
        }
        txn.open_table(PRIVATE).map_err(backend)?;
        txn.open_table(PUBLIC).map_err(backend)?;
        txn.open_table(SETS).map_err(backend)?;
        txn.open_table(REGISTRATIONS).map_err(backend)?;
        txn.open_table(SQN).map_err(backend)?;
    }
    txn.commit().map_err(backend)
}

fn write_loop(db: &Database, queue: &mpsc::Receiver<Job>) {
    // After an I/O error redb refuses every later write with "Previous I/O error
    // occurred"; the first error is what the operator needs to see.
    let mut first_failure: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter());
        if let Err(e) = commit_group(db, group, first_failure.as_deref()) {
            first_failure.get_or_insert(e);
        }
    }
}

/// Applies every job of the group in one transaction and commits it. Writes fail only on
/// storage errors (disk full, I/O), which would fail the commit too: then the whole group
/// is answered with the error and none of it was acknowledged.
fn commit_group(db: &Database, group: Vec<Job>, earlier: Option<&str>) -> Result<(), String> {
    let fail = |group: Vec<Job>, error: StoreError| {
        let error = match (earlier, &error) {
            (Some(cause), StoreError::Backend(text)) if text.contains("Previous I/O error") => {
                StoreError::Unavailable(format!(
                    "writes are refused since an earlier write failed ({cause}); free disk \
                     space and restart Homestead"
                ))
            }
            _ => error,
        };
        let text = match &error {
            StoreError::Backend(t) | StoreError::Unavailable(t) | StoreError::Timeout(t) => {
                t.clone()
            }
        };
        fail_all(group, &error);
        Err(text)
    };
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail(group, backend(e)),
    };
    // redb's default, pinned: a commit returns only once it is fsynced, which is what an
    // acknowledgement promises.
    if let Err(e) = txn.set_durability(redb::Durability::Immediate) {
        return fail(group, backend(e));
    }
    let mut swapped = Vec::with_capacity(group.len());
    for job in &group {
        let outcome = match job {
            Job::Apply(batch, _) => apply_batch(&txn, batch).map(|()| false),
            Job::CompareAndSetSqn {
                impi, current, new, ..
            } => swap_sqn(&txn, impi, *current, *new),
            Job::CompareAndSetRegistration {
                set, current, new, ..
            } => swap_registration(&txn, *set, current.as_ref(), new.as_ref()),
        };
        match outcome {
            Ok(s) => swapped.push(s),
            Err(e) => return fail(group, e),
        }
    }
    if let Err(e) = txn.commit() {
        return fail(group, backend(e));
    }
    for (job, swapped) in group.into_iter().zip(swapped) {
        match job {
            Job::Apply(_, reply) => drop(reply.send(Ok(()))),
            Job::CompareAndSetSqn { reply, .. } | Job::CompareAndSetRegistration { reply, .. } => {
                drop(reply.send(Ok(swapped)))
            }
        }
    }
    Ok(())
}

fn fail_all(group: Vec<Job>, error: &StoreError) {
    for job in group {
        let e = error.clone();
        match job {
            Job::Apply(_, reply) => drop(reply.send(Err(e))),
            Job::CompareAndSetSqn { reply, .. } | Job::CompareAndSetRegistration { reply, .. } => {
                drop(reply.send(Err(e)))
            }
        }
    }
}

fn apply_batch(txn: &WriteTransaction, batch: &[Write]) -> Result<(), StoreError> {
    for write in batch {
        match write {
            Write::PutPrivate(p) => {
                let mut t = txn.open_table(PRIVATE).map_err(backend)?;
                t.insert(p.impi.as_str(), encode(p).as_slice())
                    .map_err(backend)?;
            }
            Write::DeletePrivate(impi) => {
                txn.open_table(PRIVATE)
                    .map_err(backend)?
                    .remove(impi.as_str())
                    .map_err(backend)?;
                txn.open_table(SQN)
                    .map_err(backend)?
                    .remove(impi.as_str())
                    .map_err(backend)?;
            }
            Write::PutPublic(impu, index) => {
                let mut t = txn.open_table(PUBLIC).map_err(backend)?;
                t.insert(impu.as_str(), encode(index).as_slice())
                    .map_err(backend)?;
            }
            Write::DeletePublic(impu) => {
                txn.open_table(PUBLIC)
                    .map_err(backend)?
                    .remove(impu.as_str())
                    .map_err(backend)?;
            }
            Write::PutRegistrationSet(set) => {
                let mut t = txn.open_table(SETS).map_err(backend)?;
                t.insert(set.id.as_u128(), encode(set).as_slice())
                    .map_err(backend)?;
            }
            Write::DeleteRegistrationSet(id) => {
                txn.open_table(SETS)
                    .map_err(backend)?
                    .remove(id.as_u128())
                    .map_err(backend)?;
                txn.open_table(REGISTRATIONS)
                    .map_err(backend)?
                    .remove(id.as_u128())
                    .map_err(backend)?;
            }
            Write::PutRegistration(id, reg) => {
                let mut t = txn.open_table(REGISTRATIONS).map_err(backend)?;
                t.insert(id.as_u128(), encode(reg).as_slice())
                    .map_err(backend)?;
            }
            Write::DeleteRegistration(id) => {
                txn.open_table(REGISTRATIONS)
                    .map_err(backend)?
                    .remove(id.as_u128())
                    .map_err(backend)?;
            }
        }
    }
    Ok(())
}

fn swap_sqn(
    txn: &WriteTransaction,
    impi: &str,
    current: u64,
    new: u64,
) -> Result<bool, StoreError> {
    let mut t = txn.open_table(SQN).map_err(backend)?;
    let found = t.get(impi).map_err(backend)?.map_or(0, |v| v.value());
    if found != current {
        return Ok(false);
    }
    t.insert(impi, new).map_err(backend)?;
    Ok(true)
}

fn swap_registration(
    txn: &WriteTransaction,
    set: Uuid,
    current: Option<&Registration>,
    new: Option<&Registration>,
) -> Result<bool, StoreError> {
    let mut t = txn.open_table(REGISTRATIONS).map_err(backend)?;
    let stored = t
        .get(set.as_u128())
        .map_err(backend)?
        .map(|v| v.value().to_vec());
    let stored: Option<Registration> = stored
        .map(|bytes| decode("registration", &set.to_string(), &bytes))
        .transpose()?;
    if stored.as_ref() != current {
        return Ok(false);
    }
    match new {
        Some(reg) => t.insert(set.as_u128(), encode(reg).as_slice()).map(drop),
        None => t.remove(set.as_u128()).map(drop),
    }
    .map_err(backend)?;
    Ok(true)
}

fn list_after<K>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, redb::Error>
where
    K: redb::Key + 'static,
    for<'a> K: redb::Key<SelfType<'a> = &'a str>,
{
    let t = txn.open_table(table)?;
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut out = Vec::with_capacity(limit.min(1024));
    for entry in t.range::<&str>((start, Bound::Unbounded))?.take(limit) {
        out.push(entry?.0.value().to_owned());
    }
    Ok(out)
}

#[async_trait]
impl SubscriberStore for EmbeddedStore {
    fn authoritative(&self) -> &dyn SubscriberStore {
        self
    }

    async fn private_identity(&self, impi: &str) -> Result<Option<PrivateIdentity>, StoreError> {
        let bytes = self.read(|txn| {
            Ok(txn
                .open_table(PRIVATE)?
                .get(impi)?
                .map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|b| decode("private identity", impi, &b))
            .transpose()
    }

    async fn public_identity(&self, impu: &str) -> Result<Option<PublicIndex>, StoreError> {
        let bytes = self.read(|txn| {
            Ok(txn
                .open_table(PUBLIC)?
                .get(impu)?
                .map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|b| decode("public identity", impu, &b))
            .transpose()
    }

    async fn registration_set(&self, id: Uuid) -> Result<Option<RegistrationSet>, StoreError> {
        let bytes = self.read(|txn| {
            Ok(txn
                .open_table(SETS)?
                .get(id.as_u128())?
                .map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|b| decode("registration set", &id.to_string(), &b))
            .transpose()
    }

    async fn registration(&self, set: Uuid) -> Result<Option<Registration>, StoreError> {
        let bytes = self.read(|txn| {
            Ok(txn
                .open_table(REGISTRATIONS)?
                .get(set.as_u128())?
                .map(|v| v.value().to_vec()))
        })?;
        bytes
            .map(|b| decode("registration", &set.to_string(), &b))
            .transpose()
    }

    async fn apply(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.submit(|reply| Job::Apply(batch, reply)).await
    }

    async fn compare_and_set_registration(
        &self,
        set: Uuid,
        current: Option<&Registration>,
        new: Option<&Registration>,
    ) -> Result<bool, StoreError> {
        let (current, new) = (current.cloned(), new.cloned());
        self.submit(|reply| Job::CompareAndSetRegistration {
            set,
            current,
            new,
            reply,
        })
        .await
    }

    async fn sqn(&self, impi: &str) -> Result<u64, StoreError> {
        self.read(|txn| Ok(txn.open_table(SQN)?.get(impi)?.map_or(0, |v| v.value())))
    }

    async fn compare_and_set_sqn(
        &self,
        impi: &str,
        current: u64,
        new: u64,
    ) -> Result<bool, StoreError> {
        let impi = impi.to_owned();
        self.submit(|reply| Job::CompareAndSetSqn {
            impi,
            current,
            new,
            reply,
        })
        .await
    }

    async fn list_private_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|txn| list_after(txn, PRIVATE, after, limit))
    }

    async fn list_public_identities(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|txn| list_after(txn, PUBLIC, after, limit))
    }
}
