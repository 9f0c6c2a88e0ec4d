//! Recycled message buffers in two size classes, so a warm core forwards without touching
//! the allocator and a small message held for a while does not pin a large buffer.

/// Buffers for responses and small requests.
const SMALL: usize = 512;
/// Buffers for requests as forwarded (an INVITE with SDP is around 1 KiB).
const LARGE: usize = 2048;
/// A buffer is kept for reuse only up to this capacity; an occasional 60 KiB message
/// should not pin 60 KiB per pooled slot.
const MAX_KEPT_CAPACITY: usize = 8 * 1024;

/// Two stacks of cleared buffers with their capacity kept.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
    max_free: usize,
}

impl BufferPool {
    pub(crate) fn new(max_free: usize) -> Self {
        Self {
            small: Vec::with_capacity(max_free),
            large: Vec::with_capacity(max_free),
            max_free,
        }
    }

    /// A buffer for a request to be written (large class).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.large
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(LARGE))
    }

    /// A pooled copy of `bytes`, from the smallest class that holds it.
    pub(crate) fn copy_of(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = if bytes.len() <= SMALL {
            self.small
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(SMALL))
        } else {
            self.take()
        };
        buf.extend_from_slice(bytes);
        buf
    }

    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        let class = match buf.capacity() {
            c if !(SMALL..=MAX_KEPT_CAPACITY).contains(&c) => return,
            c if c < LARGE => &mut self.small,
            _ => &mut self.large,
        };
        if class.len() < self.max_free {
            buf.clear();
            class.push(buf);
        }
    }
}
