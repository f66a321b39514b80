//! Buffers lent to connections while they are busy: an idle connection
//! holds none (`Pools`), and input is kept in place as it is consumed
//! (`Input`).

/// Bytes read per `read` call at least, and a fresh input buffer's size.
pub(super) const READ_CHUNK: usize = 4 * 1024;
/// Pooled buffers larger than this are freed instead of kept.
const MAX_POOLED_BYTES: usize = 64 * 1024;
/// Buffers kept in each pool at most.
const MAX_POOLED: usize = 16;

/// Free buffers shared by all connections.
#[derive(Default)]
pub struct Pools {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

impl Pools {
    pub(super) fn take_input(&mut self) -> Vec<u8> {
        self.inputs.pop().unwrap_or_else(|| vec![0; READ_CHUNK])
    }
    pub(super) fn take_output(&mut self) -> Vec<u8> {
        self.outputs.pop().unwrap_or_default()
    }
    pub(super) fn give_input(&mut self, buf: Vec<u8>) {
        if buf.len() <= MAX_POOLED_BYTES && self.inputs.len() < MAX_POOLED {
            self.inputs.push(buf);
        }
    }
    pub(super) fn give_output(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= MAX_POOLED_BYTES && self.outputs.len() < MAX_POOLED {
            buf.clear();
            self.outputs.push(buf);
        }
    }
    /// Frees every pooled buffer (once the daemon has been quiet a while).
    pub fn clear(&mut self) {
        *self = Pools::default();
    }
}

/// Input bytes: `data` is always fully initialized (`len` is the capacity in
/// use), the unconsumed bytes are `start..end`.
#[derive(Default)]
pub(super) struct Input {
    pub(super) data: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Input {
    pub(super) fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    pub(super) fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }
    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    pub(super) fn truncate(&mut self, len: usize) {
        self.end = self.start + len;
    }
    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
    /// Room to read into: at least `READ_CHUNK` bytes, compacting or
    /// growing as needed. `want`: the size the request being read needs in
    /// all, when its head said (the buffer grows to exactly that rather
    /// than doubling). None when growing would pass `cap` bytes.
    pub(super) fn spare(
        &mut self,
        pools: &mut Pools,
        want: Option<usize>,
        cap: usize,
    ) -> Option<&mut [u8]> {
        if self.data.is_empty() {
            self.data = pools.take_input();
        }
        if self.data.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < READ_CHUNK {
                let need = self.end + READ_CHUNK;
                if need > cap {
                    return None;
                }
                let grown = match want {
                    Some(w) => w.max(need),
                    None => (self.data.len() * 2).max(need),
                };
                self.data.resize(grown.min(cap), 0);
            }
        }
        Some(&mut self.data[self.end..])
    }
}
