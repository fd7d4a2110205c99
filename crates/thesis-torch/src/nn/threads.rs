//! The torch thread lease: one libtorch intra-op thread count in the process at a time.
//!
//! `tch::set_num_threads` is process-global in libtorch (it stores the count every thread that
//! has not set its own reads, and with native/TBB thread pools it resizes the one shared pool),
//! while the local executor runs instances of different `threads` on threads of one process.
//! The rule: **every code path that computes tensors on libtorch holds a [`TorchThreads`] lease
//! for the whole computation**, acquired with the thread count its results depend on. Leases of
//! the same count are held concurrently; a lease of a different count waits until every holder
//! has released, so no instance ever computes while another one's count is in force.
//!
//! Waiters are served in arrival order (a run of waiters with the same count enters together),
//! so a lease for a different count is not starved by a stream of same-count instances. Each
//! holder calls `tch::set_num_threads` on its own thread when it enters, since with libtorch's
//! OpenMP builds (the PyPI wheels) the count is also a per-thread OpenMP setting, and that call
//! also sets MKL's thread-local count. A thread that already holds a lease may acquire the same
//! count again (nested calls); asking for another count while holding one is a programming error
//! and keeps the outer count (a warning is logged).
//!
//! Inter-op threads (`tch::set_num_interop_threads`) are not leased: libtorch accepts that call
//! once, before any inter-op work, and nothing in `pipe` uses inter-op parallelism (no
//! `torch.jit.fork`), so the default inter-op pool never computes a result.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Who holds the lease and who waits for it.
#[derive(Debug)]
struct LeaseState {
    /// The count in force while `holders > 0`.
    current: usize,
    holders: usize,
    /// Waiting acquirers in arrival order: (ticket, count).
    queue: VecDeque<(u64, usize)>,
    next_ticket: u64,
}

static STATE: Mutex<LeaseState> = Mutex::new(LeaseState {
    current: 0,
    holders: 0,
    queue: VecDeque::new(),
    next_ticket: 0,
});
static RELEASED: Condvar = Condvar::new();

thread_local! {
    /// The count this thread holds and how many nested leases it has (0 = none).
    static HELD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn state() -> MutexGuard<'static, LeaseState> {
    // A panic while the mutex is held leaves the counters consistent (every mutation is one
    // statement), so a poisoned lock is still usable.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A held lease on libtorch's intra-op thread count; released on drop.
#[derive(Debug)]
#[must_use = "the lease is released as soon as it is dropped"]
pub struct TorchThreads {
    threads: usize,
    /// Leases are per thread (they set the thread's own OpenMP count).
    _not_send: std::marker::PhantomData<*const ()>,
}

impl TorchThreads {
    /// Waits until libtorch can run with `threads` intra-op threads (0 counts as 1), sets that
    /// count on this thread and holds it until the returned lease is dropped.
    pub fn acquire(threads: usize) -> TorchThreads {
        let threads = threads.max(1);
        let (held, depth) = HELD.with(Cell::get);
        if depth > 0 {
            if held != threads {
                tracing::warn!(
                    "a libtorch lease for {threads} threads was asked for inside one for {held}; \
                     keeping {held}"
                );
            }
            let mut state = state();
            state.holders += 1;
            drop(state);
            HELD.with(|h| h.set((held, depth + 1)));
            return TorchThreads {
                threads: held,
                _not_send: std::marker::PhantomData,
            };
        }
        let mut state = state();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back((ticket, threads));
        loop {
            let first = state.queue.front().map(|&(t, _)| t) == Some(ticket);
            if first && (state.holders == 0 || state.current == threads) {
                break;
            }
            state = RELEASED
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.queue.pop_front();
        state.current = threads;
        state.holders += 1;
        // Set while the mutex is held, so no other lease changes the count in between.
        tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
        drop(state);
        // The next waiter may have the same count and can then enter too.
        RELEASED.notify_all();
        HELD.with(|h| h.set((threads, 1)));
        TorchThreads {
            threads,
            _not_send: std::marker::PhantomData,
        }
    }

    /// The intra-op thread count this lease holds.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Drop for TorchThreads {
    fn drop(&mut self) {
        HELD.with(|h| {
            let (held, depth) = h.get();
            h.set(if depth > 1 { (held, depth - 1) } else { (0, 0) });
        });
        let mut state = state();
        state.holders = state.holders.saturating_sub(1);
        let free = state.holders == 0;
        drop(state);
        if free {
            RELEASED.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Leases of one count overlap; a lease of another count never overlaps them, and while it
    /// is held libtorch reports its count.
    #[test]
    fn different_counts_never_overlap_and_same_counts_do() {
        let active = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let overlap_same = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for round in 0..12 {
            let active = Arc::clone(&active);
            let overlap_same = Arc::clone(&overlap_same);
            handles.push(std::thread::spawn(move || {
                let threads = 1 + round % 2;
                let lease = TorchThreads::acquire(threads);
                assert_eq!(lease.threads(), threads);
                assert_eq!(tch::get_num_threads() as usize, threads);
                let mine = &active[threads - 1];
                let other = &active[2 - threads];
                if mine.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlap_same.fetch_add(1, Ordering::SeqCst);
                }
                for _ in 0..5 {
                    assert_eq!(other.load(Ordering::SeqCst), 0, "counts overlapped");
                    assert_eq!(tch::get_num_threads() as usize, threads);
                    std::thread::sleep(Duration::from_millis(5));
                }
                mine.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for handle in handles {
            handle.join().expect("no lease overlapped another count");
        }
    }

    #[test]
    fn nested_leases_keep_the_outer_count_and_do_not_wait() {
        let outer = TorchThreads::acquire(1);
        let inner = TorchThreads::acquire(1);
        assert_eq!(inner.threads(), 1);
        drop(inner);
        let mismatched = TorchThreads::acquire(3);
        assert_eq!(mismatched.threads(), 1);
        assert_eq!(tch::get_num_threads(), 1);
        drop(mismatched);
        drop(outer);
        let again = TorchThreads::acquire(2);
        assert_eq!(tch::get_num_threads(), 2);
        drop(again);
    }
}
