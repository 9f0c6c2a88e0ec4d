//! The UDP fast path on a core's own io_uring (`--udp-io uring`): one multishot `recvmsg`
//! stays armed on each socket and fills buffers the core provides through a buffer ring
//! (each datagram a completion, nothing to re-arm per datagram), sends are queued as
//! `sendmsg` operations, and one `io_uring_enter` submits every send of a loop turn and,
//! when the core is idle, waits for the next completion or the next timer tick.
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
use crate::udp::{MAX_DATAGRAM, to_socket_addr};

/// Receive buffers in the provided-buffer ring, shared by both sockets: the most datagrams
/// waiting to be handed to the proxy at once (more wait in the socket).
const RECV_BUFFERS: u16 = 32;
/// The buffer group of the receive buffers.
const BUFFER_GROUP: u16 = 0;
/// Sends in flight at once; beyond them a send waits for completions.
const SEND_SLOTS: usize = 256;
/// Submission queue entries: the receives, every send, and the listener's poll.
const RING_ENTRIES: u32 = 512;

/// What a completion's `user_data` stands for: the kind in the top byte, the socket or
/// slot below.
const KIND_RECV: u64 = 1 << 56;
const KIND_SEND: u64 = 2 << 56;
const KIND_POLL: u64 = 3 << 56;
const KIND_CANCEL: u64 = 4 << 56;
const SLOT_MASK: u64 = (1 << 56) - 1;

/// Room for one SCM_TIMESTAMPNS control message.
const CONTROL_LEN: usize = 64;
/// Each receive buffer: the kernel's `io_uring_recvmsg_out`, the source address, the
/// control messages, the datagram.
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();
const RECV_BUFFER: usize = 16 + NAME_LEN + CONTROL_LEN + MAX_DATAGRAM;

/// The buffer ring the kernel takes receive buffers from: `RECV_BUFFERS` entries of
/// `io_uring_buf` (address, length, id), page-aligned, the tail in the first entry's last
/// two bytes.
struct BufferRing {
    entries: *mut u8,
    layout: std::alloc::Layout,
    tail: u16,
    /// The kernel may still read the ring: never free it.
    leak: bool,
}

impl BufferRing {
    fn new() -> io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(usize::from(RECV_BUFFERS) * 16, 4096)
            .map_err(io::Error::other)?;
        // SAFETY: a non-zero size; zeroed memory is a valid empty ring.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) };
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(Self {
            entries,
            layout,
            tail: 0,
            leak: false,
        })
    }

    /// Hands buffer `id` (at `addr`) back to the kernel.
    fn provide(&mut self, id: u16, addr: *mut u8) {
        let index = usize::from(self.tail & (RECV_BUFFERS - 1));
        // SAFETY: `index` is inside the ring; each entry is 16 bytes: u64 addr, u32 len,
        // u16 bid, u16 resv (the first entry's resv is the tail, written below).
        unsafe {
            let entry = self.entries.add(index * 16);
            entry.cast::<u64>().write(addr as u64);
            entry.add(8).cast::<u32>().write(RECV_BUFFER as u32);
            entry.add(12).cast::<u16>().write(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is a u16 at byte 14 of the page-aligned ring, which the kernel
        // reads with acquire ordering.
        unsafe {
            let tail = &*self.entries.add(14).cast::<std::sync::atomic::AtomicU16>();
            tail.store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: allocated in `new` with this layout, and the kernel is done with it.
            unsafe { std::alloc::dealloc(self.entries, self.layout) };
        }
    }
}

/// One send in flight.
struct SendSlot {
    header: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddr,
    bytes: Vec<u8>,
}

/// The state of a socket's multishot receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    Armed,
    /// Ended for want of a buffer (or with data): armed again once buffers are back.
    Again,
    /// Ended with an error: armed again at the next timer tick, so an error that repeats
    /// does not spin the core.
    AfterError,
}

/// A receive that completed, waiting to be handed to the proxy.
#[derive(Debug, Clone, Copy)]
struct Received {
    /// The buffer it filled.
    buffer: u16,
    /// Bytes the kernel wrote into it.
    len: usize,
}

/// A core's UDP sockets on its own ring.
pub(crate) struct UringUdp {
    ring: IoUring,
    sockets: [RawFd; 2],
    /// The receive template (only the name and control lengths matter to the kernel).
    template: Box<libc::msghdr>,
    buffers: Box<[u8]>,
    buffer_ring: BufferRing,
    /// Each socket's multishot receive: armed, or ended and waiting to be armed again.
    receives: [Receive; 2],
    /// Datagrams lost before the proxy saw them (receive errors, truncated datagrams,
    /// unreadable sources) since the last [`take_receive_errors`](Self::take_receive_errors).
    receive_errors: u64,
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
    ///
    /// `cooperative`: completions do not interrupt the core; it takes them at its next
    /// system call (its own ring's enter, or glommio's when it sleeps there). Not for a
    /// core that spins before parking, which may make no system call for a while.
    pub(crate) fn new(sockets: [RawFd; 2], cooperative: bool) -> io::Result<Self> {
        let mut builder = IoUring::builder();
        builder.setup_single_issuer();
        if cooperative {
            builder.setup_coop_taskrun();
        }
        let ring = builder.build(RING_ENTRIES)?;
        // Blocking, so that glommio's read of it waits (through its own ring) rather than
        // failing at once when nothing has completed.
        // SAFETY: eventfd(2) with valid flags; the descriptor is owned from here on.
        let eventfd = unsafe {
            let fd = libc::eventfd(0, libc::EFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = NAME_LEN as libc::socklen_t;
        template.msg_controllen = CONTROL_LEN;
        let buffer_ring = BufferRing::new()?;
        // SAFETY: the ring memory lives as long as `self` (it is unregistered with the ring
        // at drop).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffer_ring.entries as u64,
                RECV_BUFFERS,
                BUFFER_GROUP,
                0,
            )?;
        }
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
            template,
            buffers: vec![0; usize::from(RECV_BUFFERS) * RECV_BUFFER].into_boxed_slice(),
            buffer_ring,
            receives: [Receive::Again; 2],
            receive_errors: 0,
            received: VecDeque::with_capacity(usize::from(RECV_BUFFERS)),
            send,
            free_sends: (0..SEND_SLOTS).rev().collect(),
            send_errors: 0,
            eventfd,
            listener_polled: false,
            listener_ready: false,
            held: false,
        };
        for id in 0..RECV_BUFFERS {
            udp.provide(id);
        }
        udp.arm_receives()?;
        udp.ring.submit()?;
        Ok(udp)
    }

    /// The descriptor the kernel signals on every completion.
    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Gives receive buffer `id` to the kernel.
    fn provide(&mut self, id: u16) {
        let addr = self.buffers[usize::from(id) * RECV_BUFFER..].as_mut_ptr();
        self.buffer_ring.provide(id, addr);
    }

    /// Arms the multishot receive of every socket that has none (submitted with the next
    /// enter).
    fn arm_receives(&mut self) -> io::Result<()> {
        for socket in 0..self.sockets.len() {
            if self.receives[socket] != Receive::Again {
                continue;
            }
            let entry = opcode::RecvMsgMulti::new(
                types::Fd(self.sockets[socket]),
                &raw const *self.template,
                BUFFER_GROUP,
            )
            .build()
            .user_data(KIND_RECV | socket as u64);
            self.push(&entry)?;
            self.receives[socket] = Receive::Armed;
        }
        Ok(())
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
        // Every slot in flight means the socket buffer is full: wait for sends to
        // complete, a bounded number of times (SIP retransmits what UDP drops anyway).
        let mut waits = 0;
        let slot = loop {
            if let Some(slot) = self.free_sends.pop() {
                break slot;
            }
            if waits == 16 {
                self.send_errors += 1;
                return;
            }
            waits += 1;
            let _ = self.ring.submit_and_wait(1);
            self.reap();
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
    pub(crate) fn wait(&mut self, timeout: Duration, listener: Option<RawFd>) {
        // Work already taken off the ring (by a send that waited for a slot) must not
        // wait for the next completion.
        if !self.received.is_empty()
            || self.listener_ready
            || self.receives.contains(&Receive::Again)
        {
            self.submit_now();
            return;
        }
        if let (Some(listener), false) = (listener, self.listener_polled) {
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
                KIND_RECV => {
                    let flags = cqe.flags();
                    let result = cqe.result();
                    if let (Ok(len), Some(buffer)) = (
                        usize::try_from(result),
                        io_uring::cqueue::buffer_select(flags),
                    ) {
                        self.received.push_back(Received { buffer, len });
                    }
                    // Without MORE the receive has ended: for want of a buffer it is armed
                    // again once buffers are back, after an error at the next tick.
                    if !io_uring::cqueue::more(flags) {
                        self.receives[slot.min(1)] = if result >= 0 || result == -libc::ENOBUFS {
                            Receive::Again
                        } else {
                            self.receive_errors += 1;
                            Receive::AfterError
                        };
                    }
                }
                KIND_SEND => {
                    if cqe.result() < 0 {
                        self.send_errors += 1;
                    }
                    self.free_sends.push(slot);
                }
                KIND_POLL => {
                    self.listener_polled = false;
                    self.listener_ready = cqe.result() >= 0;
                }
                _ => {}
            }
        }
    }

    /// Hands every received datagram to `deliver` (source, kernel arrival time, bytes),
    /// gives its buffer back, and re-arms a receive that ended; returns how many there
    /// were.
    pub(crate) fn take_received(
        &mut self,
        mut deliver: impl FnMut(SocketAddr, Option<SystemTime>, &[u8]),
    ) -> usize {
        let mut count = 0;
        while let Some(Received { buffer, len }) = self.received.pop_front() {
            let start = usize::from(buffer) * RECV_BUFFER;
            let filled = &self.buffers[start..start + len.min(RECV_BUFFER)];
            let parsed = types::RecvMsgOut::parse(filled, &self.template).ok();
            // A datagram cut short by the buffer is not a SIP message: dropped, counted.
            match parsed.and_then(|out| {
                let from = source(out.name_data(), out.incoming_name_len())?;
                (!out.is_payload_truncated()).then_some((from, out))
            }) {
                Some((from, out)) => {
                    deliver(from, timestamp(out.control_data()), out.payload_data());
                    count += 1;
                }
                None => self.receive_errors += 1,
            }
            self.provide(buffer);
        }
        if self.receives.contains(&Receive::Again) && self.arm_receives().is_err() {
            self.receive_errors += 1;
        }
        count
    }

    /// At a timer tick: arms again the receives an error ended.
    pub(crate) fn on_tick(&mut self) {
        for receive in &mut self.receives {
            if *receive == Receive::AfterError {
                *receive = Receive::Again;
            }
        }
    }

    /// Datagrams lost before the proxy saw them, since the last call.
    pub(crate) fn take_receive_errors(&mut self) -> u64 {
        std::mem::take(&mut self.receive_errors)
    }

    /// Whether completions are waiting to be reaped.
    pub(crate) fn has_completions(&mut self) -> bool {
        if !self.received.is_empty() {
            return true;
        }
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
        // Receives stay armed until cancelled, and the kernel writes into the buffers they
        // hold: cancel everything and wait for the cancel's own completion before the
        // buffers go. If that cannot be confirmed, the buffers are leaked instead.
        let _ = self.ring.submitter().unregister_eventfd();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(KIND_CANCEL);
        // SAFETY: the cancel request points at nothing.
        let cancelled = unsafe { self.ring.submission().push(&cancel) }.is_ok();
        let mut confirmed = false;
        for _ in 0..64 {
            if !cancelled || self.ring.submit_and_wait(1).is_err() {
                break;
            }
            confirmed = self
                .ring
                .completion()
                .any(|cqe| cqe.user_data() == KIND_CANCEL);
            if confirmed {
                break;
            }
        }
        if confirmed {
            let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
        } else {
            std::mem::forget(std::mem::take(&mut self.buffers));
            self.buffer_ring.leak = true;
        }
    }
}

/// The source address the kernel wrote into a receive buffer.
fn source(name: &[u8], len: u32) -> Option<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let copied = name.len().min(NAME_LEN);
    // SAFETY: at most NAME_LEN bytes into a zeroed sockaddr_storage of that size.
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), storage.as_mut_ptr().cast(), copied);
    }
    to_socket_addr(storage.as_ptr(), len as libc::socklen_t)
}

/// The arrival time in an SCM_TIMESTAMPNS control message, if the kernel wrote one.
fn timestamp(control: &[u8]) -> Option<SystemTime> {
    let header = size_of::<libc::cmsghdr>();
    if control.len() < header + size_of::<libc::timespec>() {
        return None;
    }
    // SAFETY: both reads are inside `control`, checked above; unaligned reads.
    let (cmsg, ts) = unsafe {
        (
            control.as_ptr().cast::<libc::cmsghdr>().read_unaligned(),
            control
                .as_ptr()
                .add(header)
                .cast::<libc::timespec>()
                .read_unaligned(),
        )
    };
    if cmsg.cmsg_level != libc::SOL_SOCKET || cmsg.cmsg_type != libc::SCM_TIMESTAMPNS {
        return None;
    }
    let since = Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    );
    std::time::UNIX_EPOCH.checked_add(since)
}

/// Checks at start-up that this kernel gives a core's ring everything it needs (the setup
/// flags, a provided-buffer ring, multishot `recvmsg`), on two throwaway sockets.
pub(crate) fn probe(cooperative: bool) -> io::Result<()> {
    let bind = || {
        let socket = crate::udp::bind(([127, 0, 0, 1], 0).into(), false, 1 << 16)?;
        socket.set_nonblocking(false)?;
        io::Result::Ok(socket)
    };
    let (a, b) = (bind()?, bind()?);
    let mut ring = UringUdp::new([a.as_raw_fd(), b.as_raw_fd()], cooperative)?;
    ring.wait(Duration::from_millis(1), None);
    ring.reap();
    if ring.receives.iter().all(|r| *r == Receive::Armed) {
        Ok(())
    } else {
        Err(io::Error::other(
            "multishot recvmsg with provided buffers was refused (Linux 6.0 or later needed)",
        ))
    }
}

/// The io_uring loop of a core: hand every received datagram to the proxy, run timers,
/// send what the proxy produced (in one enter), and wait — in this ring's own enter while
/// the core serves UDP alone, through glommio on the ring's eventfd while TCP connections
/// or S-CSCF tasks need the executor.
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
            let received = ring.take_received(|from, stamp, datagram| {
                let arrived = arrival(now, wall, stamp);
                core.on_message(now, arrived, from, Protocol::Udp, datagram);
            });
            s.receive_errors += ring.take_receive_errors();
            received
        };
        let ticked = tick(shard, &mut publisher, &mut next_tick);
        Shard::route(shard);
        let alone = !accept_pending && !tasks_need_executor(shard);
        with_ring(shard, |ring| {
            ring.held = false;
            if ticked {
                ring.on_tick();
            }
            // Sleeping in the ring submits too; anything else needs the enter now.
            if received > 0 || !alone || ticked {
                ring.submit_now();
            }
        });
        // No moderation here (`coalesce.rs`): a multishot receive completes as task work,
        // which wakes a sleeping thread to run it, so a sleep batched nothing and doubled
        // the context switches (measured at 1,000 calls/s).
        if received > 0 {
            glommio::yield_if_needed().await;
            continue;
        }
        let idle = next_tick.saturating_duration_since(Instant::now());
        if alone {
            if ticked {
                // Once a tick, glommio takes its own completions (the loop is its main
                // future: a yield runs its I/O poll and its tasks): a connection its
                // accept took before this ring's poll of the listener saw it would
                // otherwise wait for a datagram to send the core through glommio.
                future::yield_now().await;
            }
            with_ring(shard, |ring| ring.wait(idle, Some(listener)));
            continue;
        }
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
    }
}

fn with_ring<T>(shard: &Rc<RefCell<Shard>>, f: impl FnOnce(&mut UringUdp) -> T) -> T {
    let mut s = shard.borrow_mut();
    match s.udp.uring() {
        Some(ring) => f(ring),
        None => unreachable!("the io_uring loop runs only on a core with a ring"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    fn bound() -> socket2::Socket {
        let socket = crate::udp::bind(([127, 0, 0, 1], 0).into(), false, 1 << 20).expect("bind");
        socket.set_nonblocking(false).expect("blocking");
        socket
    }

    fn address(socket: &socket2::Socket) -> SocketAddr {
        socket.local_addr().unwrap().as_socket().unwrap()
    }

    /// Receives until `want` datagrams arrived (or a second passed).
    fn receive(ring: &mut UringUdp, want: usize) -> Vec<(SocketAddr, Option<SystemTime>, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while got.len() < want && Instant::now() < deadline {
            ring.wait(Duration::from_millis(50), None);
            ring.reap();
            ring.take_received(|from, stamp, bytes| got.push((from, stamp, bytes.to_vec())));
        }
        got
    }

    #[test]
    fn datagrams_arrive_in_order_with_source_and_kernel_timestamp_on_both_sockets() {
        let (shared, own) = (bound(), bound());
        let mut ring =
            UringUdp::new([shared.as_raw_fd(), own.as_raw_fd()], true).expect("io_uring");
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent_at = SystemTime::now();
        for i in 0..100 {
            let to = if i % 2 == 0 {
                address(&shared)
            } else {
                address(&own)
            };
            peer.send_to(format!("datagram {i}").as_bytes(), to)
                .unwrap();
        }
        let got = receive(&mut ring, 100);
        assert_eq!(got.len(), 100);
        // Each socket's datagrams come in the order they were sent.
        let numbers = |parity: usize| -> Vec<usize> {
            got.iter()
                .filter_map(|(_, _, b)| {
                    std::str::from_utf8(b)
                        .ok()?
                        .strip_prefix("datagram ")?
                        .parse()
                        .ok()
                })
                .filter(|i: &usize| i % 2 == parity)
                .collect()
        };
        assert_eq!(numbers(0), (0..100).step_by(2).collect::<Vec<_>>());
        assert_eq!(numbers(1), (1..100).step_by(2).collect::<Vec<_>>());
        for (from, stamp, _) in &got {
            assert_eq!(*from, peer.local_addr().unwrap());
            let stamp = stamp.expect("SO_TIMESTAMPNS");
            assert!(stamp >= sent_at - Duration::from_secs(1), "{stamp:?}");
        }
    }

    #[test]
    fn more_datagrams_than_buffers_all_arrive_as_buffers_come_back() {
        let (shared, own) = (bound(), bound());
        let mut ring =
            UringUdp::new([shared.as_raw_fd(), own.as_raw_fd()], true).expect("io_uring");
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let count = usize::from(RECV_BUFFERS) * 4;
        for i in 0..count {
            peer.send_to(&(i as u32).to_be_bytes(), address(&shared))
                .unwrap();
        }
        let got = receive(&mut ring, count);
        let order: Vec<u32> = got
            .iter()
            .map(|(_, _, b)| u32::from_be_bytes(b.as_slice().try_into().unwrap()))
            .collect();
        assert_eq!(order, (0..count as u32).collect::<Vec<_>>());
    }

    #[test]
    fn sends_leave_from_the_chosen_socket() {
        let (shared, own) = (bound(), bound());
        let mut ring =
            UringUdp::new([shared.as_raw_fd(), own.as_raw_fd()], true).expect("io_uring");
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let to = peer.local_addr().unwrap();
        ring.send(0, to, b"from shared");
        ring.send(1, to, b"from own");
        ring.submit();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"from shared"[..], address(&shared)));
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"from own"[..], address(&own)));
        ring.reap();
        assert_eq!(ring.take_send_errors(), 0);
        assert_eq!(ring.free_sends.len(), SEND_SLOTS);
    }
}
