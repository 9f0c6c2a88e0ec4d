//! The UDP fast path: sockets made with socket2 and batched `recvmmsg`/`sendmmsg` with
//! MSG_DONTWAIT. glommio's own `UdpSocket` does one syscall per datagram, allocates on its
//! io_uring fallback, and its fallback send can report 0 bytes sent; so datagrams move here
//! and glommio is used only to wait for readability when a socket runs dry.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Datagrams moved per syscall.
pub const BATCH: usize = 32;
/// The largest datagram received (UDP's limit; anything larger is truncated by the kernel).
pub const MAX_DATAGRAM: usize = 65_535;

/// A bound, non-blocking UDP socket with generous buffers.
pub fn bind(addr: SocketAddr, reuse_port: bool, buffer_bytes: usize) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(reuse_port)?;
    // The kernel caps these at net.core.{r,w}mem_max; tuning/ raises the caps.
    socket.set_recv_buffer_size(buffer_bytes)?;
    socket.set_send_buffer_size(buffer_bytes)?;
    socket.set_nonblocking(true)?;
    enable_receive_timestamps(&socket)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Asks the kernel to stamp every datagram with its arrival time (SO_TIMESTAMPNS), so the
/// time a request waited in the socket counts in its latency.
fn enable_receive_timestamps(socket: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for one SCM_TIMESTAMPNS control message, 8-byte aligned as cmsg requires.
type Control = [u64; 8];

/// What [`Readable::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Some descriptor is readable; the flags say which, in the order given.
    Ready([bool; 3]),
    /// The timeout passed.
    TimedOut,
}

/// The idle wait of a core that serves only UDP: an epoll set of its two UDP sockets and
/// its TCP listener, registered once. One `epoll_wait` per idle period, with no allocation
/// (glommio's waits cost an io_uring submission and allocations each), and unlike poll(2)
/// it does not hook and unhook a wait on every descriptor each time.
pub struct Readable {
    epoll: OwnedFd,
}

impl Readable {
    /// An epoll set watching `fds` for input, level-triggered.
    pub fn new(fds: [RawFd; 3]) -> io::Result<Self> {
        // SAFETY: a plain syscall; a valid descriptor is owned below.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        for (index, fd) in fds.into_iter().enumerate() {
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: index as u64,
            };
            // SAFETY: both descriptors are open; `event` outlives the call.
            let rc = unsafe { libc::epoll_ctl(raw, libc::EPOLL_CTL_ADD, fd, &mut event) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { epoll })
    }

    /// Blocks the thread until a descriptor is readable or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> io::Result<Readiness> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 3];
        let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events` has room for the three events the call may return.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                millis,
            )
        };
        match n {
            0 => Ok(Readiness::TimedOut),
            n if n > 0 => {
                let mut ready = [false; 3];
                for event in &events[..n as usize] {
                    if let Some(flag) = ready.get_mut(event.u64 as usize) {
                        *flag = true;
                    }
                }
                Ok(Readiness::Ready(ready))
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    Ok(Readiness::TimedOut)
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// Receive buffers for one batch, allocated once per core.
pub struct RecvBatch {
    buffers: Vec<u8>,
    addrs: [MaybeUninit<libc::sockaddr_storage>; BATCH],
    lens: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    controls: [Control; BATCH],
    stamps: [Option<SystemTime>; BATCH],
    count: usize,
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to [`MAX_DATAGRAM`] bytes.
    pub fn new() -> Self {
        Self {
            buffers: vec![0; BATCH * MAX_DATAGRAM],
            addrs: [MaybeUninit::zeroed(); BATCH],
            lens: [0; BATCH],
            sources: [None; BATCH],
            controls: [[0; 8]; BATCH],
            stamps: [None; BATCH],
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; 0 when none are waiting.
    pub fn recv(&mut self, socket: &Socket) -> io::Result<usize> {
        let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
        let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::zeroed(); BATCH];
        let base = self.buffers.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: each iovec points at its own MAX_DATAGRAM slice of `buffers`, which
            // outlives the syscall; the headers point at the iovecs and address slots.
            unsafe {
                iovecs[i].write(libc::iovec {
                    iov_base: base.add(i * MAX_DATAGRAM).cast(),
                    iov_len: MAX_DATAGRAM,
                });
                let hdr = headers[i].as_mut_ptr();
                (*hdr).msg_hdr.msg_name = self.addrs[i].as_mut_ptr().cast();
                (*hdr).msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                (*hdr).msg_hdr.msg_iov = iovecs[i].as_mut_ptr();
                (*hdr).msg_hdr.msg_iovlen = 1;
                (*hdr).msg_hdr.msg_control = self.controls[i].as_mut_ptr().cast();
                (*hdr).msg_hdr.msg_controllen = size_of::<Control>();
            }
        }
        // SAFETY: `headers` holds BATCH initialised mmsghdr values set up above.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr().cast(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            self.count = 0;
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        for (i, header) in headers.iter().take(n).enumerate() {
            // SAFETY: the kernel filled the first `n` headers and their addresses.
            unsafe {
                let hdr = header.assume_init_ref();
                self.lens[i] = hdr.msg_len as usize;
                self.sources[i] = to_socket_addr(self.addrs[i].as_ptr(), hdr.msg_hdr.msg_namelen);
                self.stamps[i] = receive_timestamp(&hdr.msg_hdr);
            }
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last [`recv`](Self::recv), with their sources and, when the
    /// kernel gave one, their arrival time.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, Option<SystemTime>, &[u8])> {
        (0..self.count).filter_map(|i| {
            let from = self.sources[i]?;
            let start = i * MAX_DATAGRAM;
            Some((
                from,
                self.stamps[i],
                &self.buffers[start..start + self.lens[i]],
            ))
        })
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

fn receive_timestamp(hdr: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed cmsgs into the buffer
    // `hdr` points at; the CMSG_* macros stay inside it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                let since = Duration::new(
                    u64::try_from(ts.tv_sec).ok()?,
                    u32::try_from(ts.tv_nsec).ok()?,
                );
                return UNIX_EPOCH.checked_add(since);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

pub(crate) fn to_socket_addr(
    addr: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    // SAFETY: `addr` points at a sockaddr_storage the kernel filled with `len` bytes.
    unsafe {
        match i32::from((*addr).ss_family) {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                let a = &*addr.cast::<libc::sockaddr_in>();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    u32::from_be(a.sin_addr.s_addr).into(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                let a = &*addr.cast::<libc::sockaddr_in6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    a.sin6_addr.s6_addr.into(),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Datagrams queued for one socket, sent with `sendmmsg`.
pub struct SendBatch {
    addrs: Vec<SockAddr>,
    slices: Vec<(usize, usize)>,
    bytes: Vec<u8>,
}

/// What a flush achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams refused with an error other than a full buffer (each is reported).
    pub failed: usize,
}

impl SendBatch {
    /// An empty batch with room for [`BATCH`] datagrams of typical size.
    pub fn new() -> Self {
        Self {
            addrs: Vec::with_capacity(BATCH),
            slices: Vec::with_capacity(BATCH),
            bytes: Vec::with_capacity(BATCH * 2048),
        }
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }

    /// Queues one datagram.
    pub fn push(&mut self, to: SocketAddr, datagram: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        self.addrs.push(to.into());
        self.slices.push((start, datagram.len()));
    }

    /// Sends everything queued, [`BATCH`] per syscall. A full socket buffer is retried a
    /// bounded number of times (UDP would drop it anyway; SIP retransmits), other errors
    /// drop the datagram and call `on_error` with its destination.
    pub fn flush(
        &mut self,
        socket: RawFd,
        mut on_error: impl FnMut(SocketAddr, io::Error),
    ) -> Flushed {
        let mut done = Flushed::default();
        let mut next = 0;
        let mut retries = 0;
        while next < self.slices.len() {
            let end = (next + BATCH).min(self.slices.len());
            let mut iovecs: [MaybeUninit<libc::iovec>; BATCH] = [MaybeUninit::uninit(); BATCH];
            let mut headers: [MaybeUninit<libc::mmsghdr>; BATCH] = [MaybeUninit::zeroed(); BATCH];
            for (k, i) in (next..end).enumerate() {
                let (start, len) = self.slices[i];
                // SAFETY: pointers into `bytes` and `addrs`, untouched until the call returns.
                unsafe {
                    iovecs[k].write(libc::iovec {
                        iov_base: self.bytes.as_ptr().add(start) as *mut libc::c_void,
                        iov_len: len,
                    });
                    let hdr = headers[k].as_mut_ptr();
                    (*hdr).msg_hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
                    (*hdr).msg_hdr.msg_namelen = self.addrs[i].len();
                    (*hdr).msg_hdr.msg_iov = iovecs[k].as_mut_ptr();
                    (*hdr).msg_hdr.msg_iovlen = 1;
                }
            }
            // SAFETY: the first `end - next` headers were initialised above.
            let n = unsafe {
                libc::sendmmsg(
                    socket,
                    headers.as_mut_ptr().cast(),
                    (end - next) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                done.sent += n as usize;
                next += n as usize;
                retries = 0;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if retries < 16 => {
                    retries += 1;
                    std::thread::yield_now();
                }
                _ => {
                    if let Some(to) = self.addrs[next].as_socket() {
                        on_error(to, err);
                    }
                    done.failed += 1;
                    next += 1;
                    retries = 0;
                }
            }
        }
        self.addrs.clear();
        self.slices.clear();
        self.bytes.clear();
        done
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}
