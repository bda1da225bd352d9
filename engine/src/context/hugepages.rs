//! Asking the kernel to back large, freshly allocated buffers with 2 MiB pages.
//!
//! A warm re-hash of a large context spends a good part of its system time faulting in fresh
//! memory 4 KiB at a time (the entry list, the hashed tree, the stat cache): each fault costs
//! microseconds, where one 2 MiB page is zeroed in one go. With transparent huge pages in
//! `madvise` mode (the common default) the kernel does this only for ranges marked
//! `MADV_HUGEPAGE`, which is what [`prefer_huge_pages`] does for a buffer's unused capacity.

/// Buffers smaller than this gain nothing: no 2 MiB-aligned range may fit inside.
const WORTHWHILE: usize = 4 << 20;

/// Marks the spare capacity of `buf` (what has not been written yet) for huge pages. A hint:
/// nothing happens where the kernel does not support it, and nothing changes in what the
/// buffer holds.
pub(crate) fn prefer_huge_pages<T>(buf: &mut Vec<T>) {
    let spare = buf.spare_capacity_mut();
    let bytes = std::mem::size_of_val(spare);
    if bytes < WORTHWHILE {
        return;
    }
    const PAGE: usize = 4096;
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
