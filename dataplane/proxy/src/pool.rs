//! Recycled message buffers, so a warm core forwards without touching the allocator.

/// A stack of cleared buffers with their capacity kept.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
    max_free: usize,
}

/// A buffer is kept for reuse only below this capacity; an occasional 60 KiB message
/// should not pin 60 KiB per pooled slot.
const MAX_KEPT_CAPACITY: usize = 8 * 1024;

impl BufferPool {
    pub(crate) fn new(max_free: usize) -> Self {
        Self {
            free: Vec::with_capacity(max_free),
            max_free,
        }
    }

    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| Vec::with_capacity(2048))
    }

    pub(crate) fn give(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        if self.free.len() < self.max_free {
            buf.clear();
            self.free.push(buf);
        }
    }
}
