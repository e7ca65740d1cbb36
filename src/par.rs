//! Rayon where it pays. From a thread outside the pool (a build worker), a
//! parallel iterator hands its work to the pool and sleeps until it is done;
//! for a few small items that costs more than the work, and it wakes pool
//! threads that spin for a while, taking CPU from the commands a build runs.

use rayon::prelude::*;

/// Below this many items (of unknown size) work stays on the calling thread.
pub(crate) const MIN_ITEMS: usize = 16;
/// Bytes of file work worth spreading over the pool however few the files.
pub(crate) const MIN_BYTES: u64 = 4 << 20;

/// Maps `items` with `f` on the pool when `parallel`, else on this thread.
pub(crate) fn map<T, R, C>(items: &[T], parallel: bool, f: impl Fn(&T) -> R + Sync + Send) -> C
where
    T: Sync,
    R: Send,
    C: FromIterator<R> + FromParallelIterator<R>,
{
    if parallel {
        items.par_iter().map(f).collect()
    } else {
        items.iter().map(f).collect()
    }
}

/// Whether work on `count` files of `bytes` in total is worth the pool.
pub(crate) fn worth_it(count: usize, bytes: u64) -> bool {
    count >= MIN_ITEMS || (count > 1 && bytes >= MIN_BYTES)
}
