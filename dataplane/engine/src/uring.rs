//! The UDP fast path on a core's own io_uring (`--udp-io uring`): receives stay armed in
//! the kernel (a fixed set of `recvmsg` operations per socket, each re-armed as soon as its
//! datagram is handed to the proxy), sends are queued as `sendmsg` operations, and one
//! `io_uring_enter` submits every re-arm and send of a loop turn and, when the core is
//! idle, waits for the next completion or the next timer tick.
//!
//! glommio has a ring of its own, which a core's TCP connections and S-CSCF tasks need;
//! this ring is separate so that the UDP path is batched and allocation-free (glommio's
//! `UdpSocket` moves one datagram per operation and allocates for each). While those tasks
//! exist the core waits through glommio on an eventfd that this ring signals on every
//! completion.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime};

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future;
use glommio::io::BufferedFile;
use glommio::timer::Timer;
use io_uring::{IoUring, opcode, types};
use proxy::Protocol;
use socket2::SockAddr;

use crate::shard::{Publisher, Shard, TICK, arrival, tasks_need_executor, tick};
use crate::udp::{MAX_DATAGRAM, receive_timestamp, to_socket_addr};

/// Receives kept armed on each socket: the most datagrams one loop turn takes from it.
pub(crate) const RECVS_PER_SOCKET: usize = 16;
/// Sends in flight at once; beyond them a send waits for completions.
const SEND_SLOTS: usize = 256;
/// Submission queue entries: every armed receive and send, and the listener's poll.
const RING_ENTRIES: u32 = 512;

/// What a completion's `user_data` stands for: the kind in the top byte, the slot below.
const KIND_RECV: u64 = 1 << 56;
const KIND_SEND: u64 = 2 << 56;
const KIND_POLL: u64 = 3 << 56;
const SLOT_MASK: u64 = (1 << 56) - 1;

/// Room for one SCM_TIMESTAMPNS control message, 8-byte aligned as cmsg requires.
type Control = [u64; 8];

/// One armed receive: the header the kernel fills and what it points at. Slots live in a
/// boxed slice that is never resized, so the pointers stay valid while the kernel holds
/// them.
struct RecvSlot {
    header: libc::msghdr,
    iov: libc::iovec,
    addr: MaybeUninit<libc::sockaddr_storage>,
    control: Control,
}

/// One send in flight.
struct SendSlot {
    header: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddr,
    bytes: Vec<u8>,
}

/// A receive that completed, waiting to be handed to the proxy.
#[derive(Debug, Clone, Copy)]
struct Received {
    slot: usize,
    /// Bytes received, or the negated errno.
    result: i32,
}

/// A core's UDP sockets on its own ring.
pub(crate) struct UringUdp {
    ring: IoUring,
    sockets: [RawFd; 2],
    recv: Box<[RecvSlot]>,
    buffers: Box<[u8]>,
    received: VecDeque<Received>,
    send: Box<[SendSlot]>,
    free_sends: Vec<usize>,
    /// Sends the kernel refused since the last [`take_send_errors`](Self::take_send_errors).
    send_errors: u64,
    /// Signalled by the kernel on every completion; the core waits on it through glommio.
    eventfd: OwnedFd,
    listener_polled: bool,
    listener_ready: bool,
    /// The loop will enter the ring itself before it sleeps: [`submit`](Self::submit)
    /// leaves the queue to that enter, so a turn costs one syscall.
    held: bool,
}

impl UringUdp {
    /// A ring for the two sockets of a core (shared and own), with every receive armed.
    /// The sockets must be blocking: the ring waits in the kernel, not the socket.
    pub(crate) fn new(sockets: [RawFd; 2]) -> io::Result<Self> {
        let ring = IoUring::builder().build(RING_ENTRIES)?;
        // SAFETY: eventfd(2) with valid flags; the descriptor is owned from here on.
        let eventfd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        let slots = sockets.len() * RECVS_PER_SOCKET;
        let recv = (0..slots)
            .map(|_| RecvSlot {
                // SAFETY: an all-zero msghdr and iovec are valid (null pointers, zero
                // lengths); they are filled in before each arm.
                header: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                addr: MaybeUninit::zeroed(),
                control: [0; 8],
            })
            .collect();
        let send = (0..SEND_SLOTS)
            .map(|_| SendSlot {
                // SAFETY: as above.
                header: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                addr: SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
                bytes: Vec::with_capacity(2048),
            })
            .collect();
        let mut udp = Self {
            ring,
            sockets,
            recv,
            buffers: vec![0; slots * MAX_DATAGRAM].into_boxed_slice(),
            received: VecDeque::with_capacity(slots),
            send,
            free_sends: (0..SEND_SLOTS).rev().collect(),
            send_errors: 0,
            eventfd,
            listener_polled: false,
            listener_ready: false,
            held: false,
        };
        for slot in 0..slots {
            udp.arm(slot)?;
        }
        udp.ring.submit()?;
        Ok(udp)
    }

    /// The descriptor the kernel signals on every completion.
    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Queues a receive into `slot` (submitted with the next enter).
    fn arm(&mut self, slot: usize) -> io::Result<()> {
        let socket = self.sockets[slot / RECVS_PER_SOCKET];
        let buffer = self.buffers[slot * MAX_DATAGRAM..].as_mut_ptr();
        let s = &mut self.recv[slot];
        s.iov = libc::iovec {
            iov_base: buffer.cast(),
            iov_len: MAX_DATAGRAM,
        };
        s.control = [0; 8];
        s.header.msg_name = s.addr.as_mut_ptr().cast();
        s.header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        s.header.msg_iov = &raw mut s.iov;
        s.header.msg_iovlen = 1;
        s.header.msg_control = s.control.as_mut_ptr().cast();
        s.header.msg_controllen = size_of::<Control>();
        s.header.msg_flags = 0;
        let entry = opcode::RecvMsg::new(types::Fd(socket), &raw mut s.header)
            .build()
            .user_data(KIND_RECV | slot as u64);
        self.push(&entry)
    }

    /// Pushes a submission, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: &io_uring::squeue::Entry) -> io::Result<()> {
        // SAFETY: every entry points into a slot that stays put and untouched until its
        // completion is reaped.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Queues one datagram on socket `socket` (0 shared, 1 own) to `to`. When every send
    /// slot is in flight, waits for some to complete first.
    pub(crate) fn send(&mut self, socket: usize, to: SocketAddr, datagram: &[u8]) {
        let slot = match self.free_sends.pop() {
            Some(slot) => slot,
            None => {
                let _ = self.ring.submit_and_wait(1);
                self.reap();
                match self.free_sends.pop() {
                    Some(slot) => slot,
                    None => {
                        self.send_errors += 1;
                        return;
                    }
                }
            }
        };
        let s = &mut self.send[slot];
        s.bytes.clear();
        s.bytes.extend_from_slice(datagram);
        s.addr = to.into();
        s.iov = libc::iovec {
            iov_base: s.bytes.as_mut_ptr().cast(),
            iov_len: s.bytes.len(),
        };
        s.header.msg_name = s.addr.as_ptr() as *mut libc::c_void;
        s.header.msg_namelen = s.addr.len();
        s.header.msg_iov = &raw mut s.iov;
        s.header.msg_iovlen = 1;
        let entry = opcode::SendMsg::new(types::Fd(self.sockets[socket]), &raw const s.header)
            .build()
            .user_data(KIND_SEND | slot as u64);
        if self.push(&entry).is_err() {
            self.free_sends.push(slot);
            self.send_errors += 1;
        }
    }

    /// Submits everything queued (re-armed receives, sends) in one enter, unless the
    /// loop holds submissions for its own enter.
    pub(crate) fn submit(&mut self) {
        if !self.held {
            self.submit_now();
        }
    }

    /// Submits everything queued, held or not.
    pub(crate) fn submit_now(&mut self) {
        if !self.ring.submission().is_empty() {
            let _ = self.ring.submit();
        }
    }

    /// Submits what is queued and sleeps in the kernel until a completion arrives or
    /// `timeout` passes, watching `listener` for a waiting connection as well.
    pub(crate) fn wait(&mut self, timeout: Duration, listener: RawFd) {
        if !self.listener_polled {
            let entry = opcode::PollAdd::new(types::Fd(listener), libc::POLLIN as u32)
                .build()
                .user_data(KIND_POLL);
            self.listener_polled = self.push(&entry).is_ok();
        }
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        // ETIME (the tick came first) and EINTR are ordinary ends of a wait.
        let _ = self.ring.submitter().submit_with_args(1, &args);
    }

    /// Takes every completion: receives are kept in arrival order for
    /// [`take_received`](Self::take_received), send slots freed.
    pub(crate) fn reap(&mut self) {
        let mut completion = self.ring.completion();
        completion.sync();
        for cqe in &mut completion {
            let data = cqe.user_data();
            let slot = (data & SLOT_MASK) as usize;
            match data & !SLOT_MASK {
                KIND_RECV => self.received.push_back(Received {
                    slot,
                    result: cqe.result(),
                }),
                KIND_SEND => {
                    if cqe.result() < 0 {
                        self.send_errors += 1;
                    }
                    self.free_sends.push(slot);
                }
                KIND_POLL => {
                    self.listener_polled = false;
                    self.listener_ready = true;
                }
                _ => {}
            }
        }
    }

    /// Hands every received datagram to `deliver` (source, kernel arrival time, bytes)
    /// and re-arms its receive; returns how many there were.
    pub(crate) fn take_received(
        &mut self,
        mut deliver: impl FnMut(SocketAddr, Option<SystemTime>, &[u8]),
    ) -> usize {
        let mut count = 0;
        while let Some(Received { slot, result }) = self.received.pop_front() {
            if let Ok(len) = usize::try_from(result) {
                let s = &self.recv[slot];
                let from = to_socket_addr(s.addr.as_ptr(), s.header.msg_namelen);
                let stamp = receive_timestamp(&s.header);
                let start = slot * MAX_DATAGRAM;
                if let Some(from) = from {
                    deliver(
                        from,
                        stamp,
                        &self.buffers[start..start + len.min(MAX_DATAGRAM)],
                    );
                    count += 1;
                }
            }
            // A failed receive (an ICMP error reported on the socket, say) is re-armed
            // like any other.
            if self.arm(slot).is_err() {
                self.send_errors += 1;
            }
        }
        count
    }

    /// Whether completions are waiting to be reaped.
    pub(crate) fn has_completions(&mut self) -> bool {
        let mut completion = self.ring.completion();
        completion.sync();
        !completion.is_empty()
    }

    /// Whether the listener had a connection waiting since the last call.
    pub(crate) fn take_listener_ready(&mut self) -> bool {
        std::mem::take(&mut self.listener_ready)
    }

    /// Sends refused since the last call.
    pub(crate) fn take_send_errors(&mut self) -> u64 {
        std::mem::take(&mut self.send_errors)
    }
}

impl Drop for UringUdp {
    fn drop(&mut self) {
        // Receives stay armed until cancelled; the ring's teardown cancels them, but the
        // slots they write into must outlive that, so cancel and wait here first.
        let _ = self.ring.submitter().unregister_eventfd();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(0);
        // SAFETY: the cancel request points at nothing.
        if unsafe { self.ring.submission().push(&cancel) }.is_ok() {
            let _ = self.ring.submit_and_wait(1);
        }
    }
}

/// The io_uring loop of a core: hand every completed receive to the proxy, run timers,
/// send what the proxy produced (with the re-arms, in one enter), and wait — in this
/// ring's own enter while the core serves UDP alone, through glommio on the ring's
/// eventfd while TCP connections or S-CSCF tasks need the executor.
pub(crate) async fn run_loop(
    shard: &Rc<RefCell<Shard>>,
    listener: RawFd,
    mut publisher: Publisher,
) {
    // SAFETY: a fresh duplicate of the eventfd, owned by the file from here on. glommio
    // reads it (8 bytes at offset 0, as it reads its own eventfds) through its ring.
    let doorbell = unsafe {
        let fd = libc::dup(with_ring(shard, |ring| ring.eventfd()));
        assert!(
            fd >= 0,
            "dup of the ring's eventfd: {}",
            io::Error::last_os_error()
        );
        BufferedFile::from_raw_fd(fd)
    };
    let mut next_tick = Instant::now() + TICK;
    let mut accept_pending = false;
    loop {
        let received = {
            let mut guard = shard.borrow_mut();
            let s = &mut *guard;
            let (Some(ring), core) = (s.udp.uring(), &mut s.core) else {
                return;
            };
            ring.held = true;
            ring.reap();
            accept_pending |= ring.take_listener_ready();
            let now = Instant::now();
            let wall = SystemTime::now();
            ring.take_received(|from, stamp, datagram| {
                let arrived = arrival(now, wall, stamp);
                core.on_message(now, arrived, from, Protocol::Udp, datagram);
            })
        };
        tick(shard, &mut publisher, &mut next_tick);
        Shard::route(shard);
        let alone = !accept_pending && !tasks_need_executor(shard);
        with_ring(shard, |ring| {
            ring.held = false;
            // Sleeping in the ring submits too; anything else needs the enter now.
            if received > 0 || !alone {
                ring.submit_now();
            }
        });
        if received > 0 {
            glommio::yield_if_needed().await;
            continue;
        }
        let idle = next_tick.saturating_duration_since(Instant::now());
        if !alone {
            accept_pending = false;
            if with_ring(shard, UringUdp::has_completions) {
                continue;
            }
            let rung = async {
                let _ = doorbell.read_at(0, 8).await;
            };
            let tick = async {
                Timer::new(idle).await;
            };
            future::or(rung, tick).await;
        } else {
            with_ring(shard, |ring| ring.wait(idle, listener));
        }
    }
}

fn with_ring<T>(shard: &Rc<RefCell<Shard>>, f: impl FnOnce(&mut UringUdp) -> T) -> T {
    let mut s = shard.borrow_mut();
    match s.udp.uring() {
        Some(ring) => f(ring),
        None => unreachable!("the io_uring loop runs only on a core with a ring"),
    }
}
