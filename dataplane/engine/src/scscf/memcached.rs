//! The registration store on a memcached cluster, as Clearwater keeps Sprout's: every AoR on
//! two of the servers (the top two by rendezvous hashing: a server's death moves only its
//! own AoRs), JSON values, compare-and-swap writes (`gets`, then `cas` or `add`), empty
//! values as tombstones, reads that fall back to the second replica. Each core keeps its
//! own connections (glommio streams); a server that fails is skipped for a second.

use std::cell::{Cell, RefCell};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glommio::net::TcpStream;
use ims::registrar::AorState;
use memcache_async::ascii::Protocol;

use super::store::{AorStore, Expired, ExpiryQueue, StoreFailure, Versioned, private_id_of};

/// How long a server that failed is left alone before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Tombstones outlive any registration, so a stale replica cannot bring an AoR back.
const TOMBSTONE_S: u64 = 3600;
/// Connections kept idle per server per core.
const IDLE_CONNECTIONS: usize = 8;

/// One memcached server as a core sees it.
struct Server {
    addr: SocketAddr,
    idle: RefCell<Vec<Protocol<TcpStream>>>,
    down_until: Cell<Option<Instant>>,
}

/// One core's client of the cluster.
pub(crate) struct MemcachedStore {
    servers: Vec<Server>,
    timeout: Duration,
    /// When each AoR this core wrote next has something expire.
    expiries: ExpiryQueue,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field(
                "servers",
                &self.servers.iter().map(|s| s.addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The memcached key of an AoR: `reg\<aor>` when that is a valid key (at most 250 bytes,
/// no spaces or control characters), else a hash of it.
fn key(aor: &str) -> String {
    let key = format!("reg\\{aor}");
    if key.len() <= 250 && key.bytes().all(|b| b > b' ' && b != 0x7f) {
        return key;
    }
    let mut h = DefaultHasher::new();
    aor.hash(&mut h);
    format!("reg#{:016x}", h.finish())
}

/// The two servers an AoR lives on, best first (rendezvous hashing).
fn replicas(aor: &str, servers: &[Server]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = servers
        .iter()
        .enumerate()
        .map(|(i, server)| {
            let mut h = DefaultHasher::new();
            server.addr.hash(&mut h);
            aor.hash(&mut h);
            (h.finish(), i)
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(2).map(|(_, i)| i).collect()
}

fn exptime(state: &AorState, now_s: u64) -> u32 {
    let bindings = state.bindings.values().map(|b| b.expires);
    let until = bindings
        .chain(state.subscriptions.values().map(|s| s.expires))
        .max();
    let seconds = until.map_or(TOMBSTONE_S, |t| t.saturating_sub(now_s) + 60);
    // memcached reads more than 30 days as an absolute time.
    u32::try_from(seconds.min(30 * 24 * 3600)).unwrap_or(u32::MAX)
}

/// What a server said to a read.
enum Read {
    Found(Vec<u8>, u64),
    Missing,
}

impl MemcachedStore {
    pub(crate) fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        Self {
            servers: servers
                .iter()
                .map(|&addr| Server {
                    addr,
                    idle: RefCell::new(Vec::new()),
                    down_until: Cell::new(None),
                })
                .collect(),
            timeout,
            expiries: ExpiryQueue::default(),
        }
    }

    async fn connection(&self, server: &Server) -> io::Result<Protocol<TcpStream>> {
        if let Some(idle) = server.idle.borrow_mut().pop() {
            return Ok(idle);
        }
        let stream = TcpStream::connect_timeout(server.addr, self.timeout)
            .await
            .map_err(|e| io::Error::new(ErrorKind::ConnectionRefused, e.to_string()))?;
        // add and cas write a command in three pieces: without NODELAY, Nagle and
        // delayed ACKs stall each one.
        stream
            .set_nodelay(true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Protocol::new(stream))
    }

    /// Runs one command on `server`, with the timeout; a transport failure drops the
    /// connection and rests the server. Answers memcached gave (not found, exists) are
    /// results, not failures.
    async fn run<T>(
        &self,
        index: usize,
        command: impl AsyncFnOnce(&mut Protocol<TcpStream>) -> io::Result<T>,
    ) -> io::Result<T> {
        let server = &self.servers[index];
        let now = Instant::now();
        if server.down_until.get().is_some_and(|until| now < until) {
            return Err(io::Error::new(
                ErrorKind::NotConnected,
                "resting after a failure",
            ));
        }
        let attempt = async {
            let mut connection = self.connection(server).await?;
            let result = command(&mut connection).await;
            Ok::<_, io::Error>((connection, result))
        };
        let outcome = glommio::timer::timeout(self.timeout, async { Ok(attempt.await) }).await;
        let failed = match outcome {
            Ok(Ok((connection, Ok(value)))) => {
                let mut idle = server.idle.borrow_mut();
                if idle.len() < IDLE_CONNECTIONS {
                    idle.push(connection);
                }
                return Ok(value);
            }
            Ok(Ok((connection, Err(e)))) if is_answer(&e) => {
                server.idle.borrow_mut().push(connection);
                return Err(e);
            }
            Ok(Ok((_, Err(e)))) | Ok(Err(e)) => e,
            Err(_) => io::Error::new(ErrorKind::TimedOut, "no answer in time"),
        };
        server.down_until.set(Some(Instant::now() + RETRY_AFTER));
        server.idle.borrow_mut().clear();
        Err(io::Error::new(
            failed.kind(),
            format!("memcached {}: {failed}", server.addr),
        ))
    }

    async fn read(&self, index: usize, key: &str) -> io::Result<Read> {
        let key = key.to_owned();
        match self.run(index, async |c| c.gets_cas(&key).await).await {
            Ok((value, cas)) => Ok(Read::Found(value, cas)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Read::Missing),
            Err(e) => Err(e),
        }
    }

    async fn write(
        &self,
        index: usize,
        key: &str,
        value: &[u8],
        version: u64,
        exp: u32,
    ) -> io::Result<bool> {
        let (key, value) = (key.to_owned(), value.to_vec());
        if version == 0 {
            match self
                .run(index, async |c| c.add(&key, &value, exp).await)
                .await
            {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        } else {
            match self
                .run(index, async |c| c.cas(&key, &value, version, exp).await)
                .await
            {
                Ok(stored) => Ok(stored),
                // The item went (evicted, or the server restarted): read and try again.
                Err(e) if is_answer(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }

    /// Overwrites the replica at `index` with `bytes` (of `generation`) unless it holds
    /// a newer one; a replica that cannot be reached is left to heal at the AoR's next
    /// write.
    async fn copy_to(&self, index: usize, key: &str, bytes: &[u8], generation: u64, exp: u32) {
        for _ in 0..3 {
            let version = match self.read(index, key).await {
                Ok(Read::Found(held, cas)) => {
                    let newer = serde_json::from_slice::<AorState>(&held)
                        .is_ok_and(|s| s.generation > generation);
                    if newer {
                        return;
                    }
                    cas
                }
                Ok(Read::Missing) => 0,
                Err(_) => return,
            };
            match self.write(index, key, bytes, version, exp).await {
                Ok(true) | Err(_) => return,
                Ok(false) => {}
            }
        }
    }
}

/// memcached's own answers (missing key, key exists) come back as errors from the client;
/// they leave the connection usable.
fn is_answer(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AlreadyExists)
        // memcache-async 0.10 reads "NOT_FOUND" to a cas as an error of kind Other.
        || e.to_string().starts_with("NOT_FOUND")
}

impl AorStore for MemcachedStore {
    /// Reads both replicas at once and takes the newer (the higher generation): a
    /// replica that missed writes while it was rested, lost the AoR (restarted) or cannot
    /// be reached gives way to the other.
    async fn get(&self, aor: &str) -> Result<Versioned, StoreFailure> {
        let key = key(aor);
        let order = replicas(aor, &self.servers);
        let reads = order.iter().map(|&index| self.read(index, &key));
        let answers = futures::future::join_all(reads).await;
        let mut failures = Vec::new();
        let mut best: Option<Versioned> = None;
        let mut missing_on = None;
        for (replica, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(Read::Found(value, cas)) => {
                    let state: AorState = if value.is_empty() {
                        AorState::default()
                    } else {
                        serde_json::from_slice(&value).map_err(|e| {
                            StoreFailure::Unavailable(format!("unreadable value for {aor}: {e}"))
                        })?
                    };
                    if best
                        .as_ref()
                        .is_none_or(|b| state.generation > b.state.generation)
                    {
                        best = Some(Versioned {
                            state,
                            version: cas,
                            replica: replica as u8,
                        });
                    }
                }
                Ok(Read::Missing) => {
                    missing_on.get_or_insert(replica as u8);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        match (best, missing_on) {
            (Some(found), _) => Ok(found),
            (None, Some(replica)) => Ok(Versioned {
                replica,
                ..Versioned::default()
            }),
            (None, None) => Err(StoreFailure::Unavailable(failures.join("; "))),
        }
    }

    /// Compare-and-swap on the replica the value was read from, then a copy to the other
    /// replica (read there and overwritten). The write counts once the first succeeds.
    async fn compare_and_set(&self, aor: &str, value: Versioned) -> Result<bool, StoreFailure> {
        let key = key(aor);
        let now_s = super::unix_now();
        let mut value = value;
        value.state.generation += 1;
        // A removed AoR is written as its empty state (a tombstone) with its generation,
        // so a stale replica cannot bring it back.
        let bytes = serde_json::to_vec(&value.state)
            .map_err(|e| StoreFailure::Unavailable(e.to_string()))?;
        let exp = exptime(&value.state, now_s);
        let order = replicas(aor, &self.servers);
        let Some(&first) = order.get(usize::from(value.replica)) else {
            return Err(StoreFailure::Unavailable("no memcached server".into()));
        };
        let stored = match self.write(first, &key, &bytes, value.version, exp).await {
            Ok(stored) => stored,
            // The replica the value was read from went away since the read (it is rested
            // now): a lost race like any other — the caller reads again, from the replica
            // that is left, and retries. With no other replica it is an outage.
            Err(_) if order.len() > 1 => return Ok(false),
            Err(e) => return Err(StoreFailure::Unavailable(e.to_string())),
        };
        if !stored {
            return Ok(false);
        }
        for &other in order.iter().filter(|&&i| i != first) {
            self.copy_to(other, &key, &bytes, value.state.generation, exp)
                .await;
        }
        self.expiries.schedule(aor, value.state.next_expiry());
        Ok(true)
    }

    /// Expires the bindings and subscriptions of the AoRs this core wrote whose next
    /// expiry has come (written back with compare-and-swap).
    async fn expire_due(&self, now_s: u64) -> Vec<Expired> {
        let mut changed = Vec::new();
        while let Some(aor) = self.expiries.pop_due(now_s) {
            let Ok(mut current) = self.get(&aor).await else {
                // Try again at the next sweep.
                self.expiries.schedule(&aor, Some(now_s + 1));
                continue;
            };
            let private_id = private_id_of(&current.state);
            let swept = current.state.sweep(now_s);
            if swept.is_nothing() {
                self.expiries.schedule(&aor, current.state.next_expiry());
                continue;
            }
            let state = current.state.clone();
            // A conflict means another write came in: its writer looks after the expiry.
            if let Ok(true) = self.compare_and_set(&aor, current).await {
                changed.push(Expired {
                    aor,
                    private_id,
                    swept,
                    state,
                });
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: u16) -> Vec<Server> {
        (0..n)
            .map(|i| Server {
                addr: SocketAddr::from(([127, 0, 0, 1], 11211 + i)),
                idle: RefCell::new(Vec::new()),
                down_until: Cell::new(None),
            })
            .collect()
    }

    #[test]
    fn each_aor_has_two_distinct_replicas_spread_over_the_servers() {
        let three = servers(3);
        let mut primaries = [0usize; 3];
        for n in 0..3000 {
            let r = replicas(&format!("sip:{n}@example.com"), &three);
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
            primaries[r[0]] += 1;
        }
        assert!(primaries.iter().all(|&p| p > 800), "{primaries:?}");
        assert_eq!(replicas("sip:a@b", &servers(1)), [0]);
    }

    #[test]
    fn losing_a_server_moves_only_its_own_aors() {
        let three = servers(3);
        let two: Vec<Server> = servers(3).into_iter().take(2).collect();
        for n in 0..1000 {
            let aor = format!("sip:{n}@example.com");
            let before = replicas(&aor, &three);
            let after = replicas(&aor, &two);
            if before[0] != 2 {
                assert_eq!(before[0], after[0], "{aor} kept its primary");
            }
        }
    }

    #[test]
    fn keys_are_valid_memcached_keys() {
        assert_eq!(key("sip:a@example.com"), "reg\\sip:a@example.com");
        let odd = key("sip:a b@example.com");
        assert!(odd.starts_with("reg#") && !odd.contains(' '));
        let long = key(&format!("sip:{}@example.com", "x".repeat(300)));
        assert!(long.len() <= 250);
    }
}
