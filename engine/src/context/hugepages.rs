//! Asking the kernel to back large, freshly allocated buffers with 2 MiB pages.
//!
//! A warm re-hash of a large context spends a good part of its system time faulting in fresh
//! memory 4 KiB at a time (the entry list, the hashed tree, the stat cache): each fault costs
//! microseconds, where one 2 MiB page is zeroed in one go. With transparent huge pages in
//! `madvise` mode (the common default) the kernel does this only for ranges marked
//! `MADV_HUGEPAGE`.

/// Below this a buffer stays on ordinary pages: a huge page would be mostly unused.
const LARGE: usize = 1 << 20;
/// Large buffers get at least this much room, so that whole 2 MiB-aligned ranges fit inside
/// (the room is address space; only what is written takes memory).
const ROOM: usize = 4 << 20;

/// A vector with room for `n` elements, on huge pages when that is large.
pub(crate) fn vec_with_capacity<T>(n: usize) -> Vec<T> {
    let size = std::mem::size_of::<T>().max(1);
    if n.saturating_mul(size) < LARGE {
        return Vec::with_capacity(n);
    }
    let mut buf = Vec::with_capacity(n.max(ROOM / size));
    prefer_huge_pages(&mut buf);
    buf
}

/// Makes room for one more element in `buf` (when full): as usual while it is small, then in
/// steps large enough for huge pages.
pub(crate) fn reserve_one<T>(buf: &mut Vec<T>) {
    if buf.len() < buf.capacity() {
        return;
    }
    let size = std::mem::size_of::<T>().max(1);
    if buf.capacity().saturating_mul(size) < LARGE {
        buf.reserve(1);
        return;
    }
    buf.reserve(buf.capacity().max(ROOM / size));
    prefer_huge_pages(buf);
}

/// Marks the spare capacity of `buf` (what has not been written yet) for huge pages. A hint:
/// nothing happens where the kernel does not support it, and nothing changes in what the
/// buffer holds.
fn prefer_huge_pages<T>(buf: &mut Vec<T>) {
    const PAGE: usize = 4096;
    let spare = buf.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    if bytes < LARGE {
        return;
    }
    let start = spare.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + bytes) / PAGE * PAGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside `buf`'s allocation, which this function borrows mutably,
    // and MADV_HUGEPAGE changes only how the kernel backs those pages, never their contents
    // or their validity.
    let advised = unsafe { rustix::mm::madvise(first as *mut _, end - first, rustix::mm::Advice::LinuxHugepage) };
    if let Err(errno) = advised {
        tracing::trace!(%errno, "no huge pages for a large buffer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_always_made_and_contents_kept() {
        for n in [0, 1, 1000, LARGE / 8 + 1, (ROOM / 8) * 3] {
            let buf: Vec<u64> = vec_with_capacity(n);
            assert!(buf.capacity() >= n, "{n}");
        }
        let mut buf: Vec<u64> = Vec::new();
        for i in 0..(LARGE / 8) as u64 * 3 {
            reserve_one(&mut buf);
            assert!(buf.len() < buf.capacity());
            buf.push(i);
        }
        assert!(buf.iter().enumerate().all(|(i, &v)| v == i as u64));
    }
}
