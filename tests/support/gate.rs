//! Keeps the files of the `solo` test binary apart. Each of them was once a binary of its own,
//! because what it measures (latencies against the simulator, a soak's schedule, a real
//! Prometheus's or browser's view) suffers when other tests load the same cores. A test calls
//! `alone(module_path!())` first: it waits while a test of another file holds the gate, and tests
//! of its own file share it, so a file still runs its tests in parallel with each other only.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Which file holds the gate, and how many of its tests are running.
static HOLDER: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static RELEASED: Condvar = Condvar::new();

fn holder() -> MutexGuard<'static, (Option<&'static str>, usize)> {
    // A test that panicked while holding the lock left the count consistent (it is only changed
    // under the lock, in one step), so the value is still good.
    HOLDER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held for the length of one test; dropping it (also on a panic) lets the next file in.
pub struct Alone;

/// Blocks the calling test thread until no test of a file other than `file` is running. Blocking
/// is fine here: it runs first in the test, before its runtime has anything to drive.
pub fn alone(file: &'static str) -> Alone {
    let mut h = holder();
    while h.0.is_some_and(|f| f != file) {
        h = RELEASED.wait(h).unwrap_or_else(|p| p.into_inner());
    }
    h.0 = Some(file);
    h.1 += 1;
    Alone
}

impl Drop for Alone {
    fn drop(&mut self) {
        let mut h = holder();
        h.1 -= 1;
        if h.1 == 0 {
            h.0 = None;
            RELEASED.notify_all();
        }
    }
}

/// The guards of a test that times something (or would steal the CPU from one that does): the
/// gate of its file, and `lock`, its file's lock that runs such tests one at a time.
pub struct OneAtATime(Alone, tokio::sync::MutexGuard<'static, ()>);

/// [`alone`], then `lock`.
pub async fn one_at_a_time(
    file: &'static str,
    lock: &'static tokio::sync::Mutex<()>,
) -> OneAtATime {
    let alone = alone(file);
    OneAtATime(alone, lock.lock().await)
}
