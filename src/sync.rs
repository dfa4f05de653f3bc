//! Lock access that recovers from poisoning, the one way rtprobe takes its std locks.
//!
//! A lock is poisoned when a thread panicked while holding it. rtprobe contains panics instead
//! of dying of them (a panicking stream task becomes an `internal` result in the scheduler, a
//! panicking simulator connection ends only that connection), and every value behind these
//! locks is replaced or updated in one step (a config `Arc` swapped, a counter bumped, a record
//! pushed), so a panic cannot leave it half-written. Refusing the lock afterwards would turn one
//! contained bug into a panic on every later scrape, reload or run; taking the guard is right.

use std::sync::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
};
use std::time::Duration;

/// `m.lock()`, recovering from poisoning.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `l.read()`, recovering from poisoning.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// `l.write()`, recovering from poisoning.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The value of a mutex nobody else holds any more, recovering from poisoning.
pub fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// `cv.wait(guard)`, recovering from poisoning.
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(|p| p.into_inner())
}

/// `cv.wait_timeout(guard, dur)`, recovering from poisoning.
pub fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    dur: Duration,
) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
    cv.wait_timeout(guard, dur)
        .unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_hands_out_its_value() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let l = std::sync::Arc::new(RwLock::new(2));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = l2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 10;
        assert_eq!(*lock(&m), 11);
        *write(&l) += 20;
        assert_eq!(*read(&l), 22);
        let m = std::sync::Arc::try_unwrap(m).unwrap();
        assert_eq!(into_inner(m), 11);
    }
}
