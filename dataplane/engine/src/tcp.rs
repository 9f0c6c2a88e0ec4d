//! TCP on one core: connections accepted on the shared listening port (SO_REUSEPORT spreads
//! them over cores) and connections this core opens to next hops. Every connection is kept
//! in the core's map under its peer address, so responses and later requests to that peer
//! reuse it (RFC 3261 §18.2.2, §18.1.1). A reader task cuts messages out of the stream with
//! the sip crate's `Deframer`; a writer task drains the connection's queue.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use proxy::ForkId;
use sip::{Deframer, Frame};

use crate::shard::Shard;

/// Bytes waiting for one connection's writer before new messages fail their transactions.
const QUEUE_LIMIT: usize = 1 << 20;
/// How long a connect may take before the transactions waiting on it fail with 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connections of one core.
#[derive(Default)]
pub(crate) struct Connections {
    by_peer: HashMap<SocketAddr, Connection>,
    next_id: u64,
}

struct Connection {
    id: u64,
    outbound: Rc<Outbound>,
    /// Rung when bytes are queued; the writer sleeps on the other end. Dropping it (the
    /// connection leaves the map) ends the writer.
    doorbell: LocalSender<()>,
}

/// What waits to be written on one connection. Messages are appended to one buffer that
/// the writer swaps for its own, so queueing and writing reuse two buffers and allocate
/// nothing once they have grown to the connection's burst size.
#[derive(Default)]
struct Outbound {
    pending: RefCell<Vec<u8>>,
    /// Transactions whose requests wait for the connection to open, failed if it does not.
    awaiting_connect: RefCell<Vec<ForkId>>,
    connected: std::cell::Cell<bool>,
    /// The writer failed: nothing queued here would ever be written.
    closed: std::cell::Cell<bool>,
}

/// A connection to open, found while the shard was borrowed.
pub(crate) struct NewConnection {
    peer: SocketAddr,
    id: u64,
    outbound: Rc<Outbound>,
    doorbell: LocalReceiver<()>,
}

impl Connections {
    pub(crate) fn len(&self) -> usize {
        self.by_peer.len()
    }

    fn register(&mut self, peer: SocketAddr, connected: bool) -> NewConnection {
        let (sender, receiver) = local_channel::new_bounded(1);
        let outbound = Rc::new(Outbound::default());
        outbound.connected.set(connected);
        let id = self.next_id;
        self.next_id += 1;
        self.by_peer.insert(
            peer,
            Connection {
                id,
                outbound: Rc::clone(&outbound),
                doorbell: sender,
            },
        );
        NewConnection {
            peer,
            id,
            outbound,
            doorbell: receiver,
        }
    }

    /// Queues `bytes` for `peer`. With no connection to `peer`, registers one and returns
    /// it to be opened once the shard is released. `Err` carries the transaction to fail
    /// when the queue is full.
    pub(crate) fn queue(
        &mut self,
        peer: SocketAddr,
        bytes: &[u8],
        client: Option<ForkId>,
    ) -> Result<Option<NewConnection>, Option<ForkId>> {
        // A connection whose writer failed is replaced by a new one rather than fed
        // bytes that would never leave (their transactions would only time out).
        if self
            .by_peer
            .get(&peer)
            .is_some_and(|c| c.outbound.closed.get())
        {
            self.by_peer.remove(&peer);
        }
        let opened = if self.by_peer.contains_key(&peer) {
            None
        } else {
            Some(self.register(peer, false))
        };
        let connection = self.by_peer.get(&peer).expect("registered above");
        let outbound = &connection.outbound;
        {
            let mut pending = outbound.pending.borrow_mut();
            if pending.len() + bytes.len() > QUEUE_LIMIT {
                return Err(client);
            }
            pending.extend_from_slice(bytes);
        }
        if !outbound.connected.get() {
            outbound.awaiting_connect.borrow_mut().extend(client);
        }
        // Full means a ring is already waiting: the writer will see these bytes too.
        let _ = connection.doorbell.try_send(());
        Ok(opened)
    }

    fn unregister(&mut self, peer: SocketAddr, id: u64) {
        if self.by_peer.get(&peer).is_some_and(|c| c.id == id) {
            self.by_peer.remove(&peer);
        }
    }
}

/// Accepts connections for this core until the process ends.
pub(crate) async fn accept_loop(listener: TcpListener, shard: Rc<RefCell<Shard>>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let connection = shard.borrow_mut().connections.register(peer, true);
                glommio::spawn_local(run_connection(stream, connection, Rc::clone(&shard)))
                    .detach();
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Opens a connection registered by [`Connections::queue`].
pub(crate) fn open(shard: &Rc<RefCell<Shard>>, connection: NewConnection) {
    glommio::spawn_local(connect_then_run(connection, Rc::clone(shard))).detach();
}

async fn connect_then_run(connection: NewConnection, shard: Rc<RefCell<Shard>>) {
    let peer = connection.peer;
    let connected =
        glommio::timer::timeout(CONNECT_TIMEOUT, async { TcpStream::connect(peer).await }).await;
    match connected {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            connection.outbound.connected.set(true);
            connection.outbound.awaiting_connect.borrow_mut().clear();
            run_connection(stream, connection, shard).await;
        }
        Err(_) => {
            shard
                .borrow_mut()
                .connections
                .unregister(peer, connection.id);
            let failed = std::mem::take(&mut *connection.outbound.awaiting_connect.borrow_mut());
            let now = Instant::now();
            for client in failed {
                shard.borrow_mut().core.on_send_error(now, client);
            }
            Shard::route(&shard);
        }
    }
}

async fn run_connection(stream: TcpStream, connection: NewConnection, shard: Rc<RefCell<Shard>>) {
    let NewConnection {
        peer,
        id,
        outbound,
        doorbell,
    } = connection;
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let writing = glommio::spawn_local(async move {
        let mut batch = Vec::with_capacity(16 * 1024);
        while doorbell.recv().await.is_some() {
            std::mem::swap(&mut batch, &mut *outbound.pending.borrow_mut());
            if batch.is_empty() {
                continue;
            }
            if writer.write_all(&batch).await.is_err() {
                outbound.closed.set(true);
                return;
            }
            batch.clear();
        }
    })
    .detach();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut filled = 0usize;
    let mut deframer = Deframer::default();
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.truncate(filled);
        buf.extend_from_slice(&chunk[..n]);
        filled = buf.len();
        let mut start = 0;
        loop {
            let d = deframer.poll(&buf[start..filled]);
            match d.frame {
                Ok(Frame::Message { len }) => {
                    let now = Instant::now();
                    shard.borrow_mut().core.on_message(
                        now,
                        now,
                        peer,
                        proxy::Protocol::Tcp,
                        &buf[start..start + len],
                    );
                    Shard::route(&shard);
                }
                Ok(Frame::Ping) => {
                    // RFC 5626 keep-alive: answer the CRLFCRLF ping with a CRLF pong.
                    let queued = shard.borrow_mut().connections.queue(peer, b"\r\n", None);
                    if let Ok(Some(opened)) = queued {
                        open(&shard, opened);
                    }
                }
                Ok(Frame::Pong) => {}
                Ok(Frame::NeedMore) => break,
                Ok(_) => {}
                Err(_) => {
                    // No trustworthy boundary is left in this stream: count and close.
                    shard.borrow_mut().tcp_framing_errors += 1;
                    break 'read;
                }
            }
            start += d.consumed;
            if d.consumed == 0 {
                break;
            }
        }
        buf.drain(..start);
        filled = buf.len();
    }
    shard.borrow_mut().connections.unregister(peer, id);
    drop(writing);
}
