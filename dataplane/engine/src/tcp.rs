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
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use sip::{Deframer, Frame};
use txn::TxnId;

use crate::shard::Shard;

/// Messages waiting for one connection's writer.
const QUEUE: usize = 1024;
/// How long a connect may take before the transactions waiting on it fail with 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One message for a connection, with the client transaction to fail if it cannot go.
pub(crate) type Outgoing = (Vec<u8>, Option<TxnId>);

/// The connections of one core.
#[derive(Default)]
pub(crate) struct Connections {
    by_peer: HashMap<SocketAddr, Connection>,
    next_id: u64,
}

struct Connection {
    id: u64,
    queue: LocalSender<Outgoing>,
}

impl Connections {
    pub(crate) fn len(&self) -> usize {
        self.by_peer.len()
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
                let (id, queue) = register(&shard, peer);
                glommio::spawn_local(run_connection(stream, peer, id, queue, Rc::clone(&shard)))
                    .detach();
            }
            Err(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn register(
    shard: &Rc<RefCell<Shard>>,
    peer: SocketAddr,
) -> (u64, local_channel::LocalReceiver<Outgoing>) {
    let (sender, receiver) = local_channel::new_bounded(QUEUE);
    let mut s = shard.borrow_mut();
    let conns = &mut s.connections;
    let id = conns.next_id;
    conns.next_id += 1;
    conns.by_peer.insert(peer, Connection { id, queue: sender });
    (id, receiver)
}

fn unregister(shard: &Rc<RefCell<Shard>>, peer: SocketAddr, id: u64) {
    let mut s = shard.borrow_mut();
    if s.connections.by_peer.get(&peer).is_some_and(|c| c.id == id) {
        s.connections.by_peer.remove(&peer);
    }
}

/// Queues `message` for `peer`, opening a connection when there is none (the queue holds
/// it until the connection is up). Returns the transaction to fail when the queue is full.
pub(crate) fn send(
    shard: &Rc<RefCell<Shard>>,
    peer: SocketAddr,
    message: Outgoing,
) -> Option<TxnId> {
    let client = message.1;
    let connected = shard.borrow().connections.by_peer.contains_key(&peer);
    if !connected {
        let (id, queue) = register(shard, peer);
        glommio::spawn_local(connect_then_run(peer, id, queue, Rc::clone(shard))).detach();
    }
    let queued = shard
        .borrow()
        .connections
        .by_peer
        .get(&peer)
        .is_some_and(|c| c.queue.try_send(message).is_ok());
    if queued { None } else { client }
}

async fn connect_then_run(
    peer: SocketAddr,
    id: u64,
    queue: local_channel::LocalReceiver<Outgoing>,
    shard: Rc<RefCell<Shard>>,
) {
    let connected =
        glommio::timer::timeout(CONNECT_TIMEOUT, async { TcpStream::connect(peer).await }).await;
    match connected {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            run_connection(stream, peer, id, queue, shard).await;
        }
        Err(_) => {
            unregister(&shard, peer, id);
            let mut failed = Vec::new();
            while let Some(Some((_, client))) = futures_lite::future::poll_once(queue.recv()).await
            {
                failed.extend(client);
            }
            let now = Instant::now();
            for client in failed {
                shard.borrow_mut().core.on_send_error(now, client);
            }
            Shard::route(&shard);
        }
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    queue: local_channel::LocalReceiver<Outgoing>,
    shard: Rc<RefCell<Shard>>,
) {
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let writing = glommio::spawn_local(async move {
        while let Some((bytes, _)) = queue.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
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
                    let _ = send(&shard, peer, (b"\r\n".to_vec(), None));
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
    unregister(&shard, peer, id);
    drop(writing);
}
