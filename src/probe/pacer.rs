//! A high-resolution `sleep_until` for audio pacing. tokio's timer has millisecond ticks and
//! its driver parks with a millisecond timeout, so a tokio sleep ends on average ~1.5 ms late;
//! the pacing target is well under a millisecond. One shared OS thread waits on a condition
//! variable (futex, nanosecond timeouts) for the earliest due instant and wakes that task, so
//! precision costs one thread for the whole process and no spinning.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::sync;

struct Entry {
    due: Instant,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

struct Pacer {
    heap: Mutex<BinaryHeap<Reverse<Entry>>>,
    cv: Condvar,
}

fn pacer() -> &'static Pacer {
    static P: OnceLock<&'static Pacer> = OnceLock::new();
    P.get_or_init(|| {
        let p: &'static Pacer = Box::leak(Box::new(Pacer {
            heap: Mutex::new(BinaryHeap::new()),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("rtprobe-pacer".into())
            .spawn(move || p.run())
            .expect("spawning the pacer thread");
        p
    })
}

impl Pacer {
    fn run(&self) {
        let mut heap = sync::lock(&self.heap);
        loop {
            let now = Instant::now();
            match heap.peek() {
                None => heap = sync::wait(&self.cv, heap),
                Some(Reverse(e)) if e.due <= now => {
                    if let Some(Reverse(e)) = heap.pop() {
                        e.waker.wake();
                    }
                }
                Some(Reverse(e)) => {
                    let wait = e.due - now;
                    heap = sync::wait_timeout(&self.cv, heap, wait).0;
                }
            }
        }
    }

    fn register(&self, due: Instant, waker: Waker) {
        let mut heap = sync::lock(&self.heap);
        let earliest = heap.peek().is_none_or(|Reverse(e)| due < e.due);
        heap.push(Reverse(Entry { due, waker }));
        drop(heap);
        if earliest {
            self.cv.notify_one();
        }
    }
}

/// Completes at `due` (within the OS's timer slack, typically ~0.1 ms), not on a millisecond tick.
pub fn sleep_until(due: Instant) -> PreciseSleep {
    PreciseSleep { due }
}

pub struct PreciseSleep {
    due: Instant,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        // Re-register on every pending poll: the task may have moved (new waker). A stale entry
        // only causes one spurious wake-up, after which this check runs again.
        pacer().register(self.due, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_at_or_after_the_deadline_in_order() {
        let start = Instant::now();
        let a = start + Duration::from_millis(30);
        let b = start + Duration::from_millis(10);
        let (ra, rb) = tokio::join!(
            async {
                sleep_until(a).await;
                Instant::now()
            },
            async {
                sleep_until(b).await;
                Instant::now()
            }
        );
        assert!(ra >= a && rb >= b);
        assert!(rb < ra);
        sleep_until(start).await; // already due: ready at once
    }
}
