//! Locks by key, held only while someone holds them: a commit for an aggregate (or a write to
//! a stream) holds its key across the version check and the durable append, so two commits to
//! the same aggregate run one after the other while commits to different aggregates share
//! group commits freely. Memory is one entry per key currently held.

use std::collections::HashSet;
use std::task::{Poll, Waker};

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    busy: Mutex<Busy>,
    released: Condvar,
}

/// The keys held, and the tasks waiting for one of them.
#[derive(Debug, Default)]
struct Busy {
    keys: HashSet<Vec<u8>>,
    waiting: Vec<Waker>,
}

pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Vec<u8>,
}

impl KeyLocks {
    /// Blocks until `key` is free, then holds it until the guard drops.
    pub(crate) fn lock(&self, key: Vec<u8>) -> KeyGuard<'_> {
        let mut busy = self.busy.lock();
        while busy.keys.contains(&key) {
            self.released.wait(&mut busy);
        }
        busy.keys.insert(key.clone());
        KeyGuard { locks: self, key }
    }

    /// Waits (without blocking the thread) until `key` is free, then holds it until the
    /// guard drops.
    pub(crate) async fn lock_async(&self, key: Vec<u8>) -> KeyGuard<'_> {
        let mut key = Some(key);
        std::future::poll_fn(|cx| {
            let mut busy = self.busy.lock();
            let Some(wanted) = key.take() else {
                unreachable!("polled again after it was ready");
            };
            if busy.keys.contains(&wanted) {
                busy.waiting.push(cx.waker().clone());
                key = Some(wanted);
                return Poll::Pending;
            }
            busy.keys.insert(wanted.clone());
            Poll::Ready(KeyGuard {
                locks: self,
                key: wanted,
            })
        })
        .await
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let waiting = {
            let mut busy = self.locks.busy.lock();
            let held = busy.keys.remove(&self.key);
            assert!(held, "a key lock was released that was not held");
            std::mem::take(&mut busy.waiting)
        };
        // Contention on one key is rare; waking every waiter keeps this simple.
        self.locks.released.notify_all();
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    #[test]
    fn one_holder_per_key_and_keys_are_independent() {
        let locks = Arc::new(KeyLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (locks, inside) = (Arc::clone(&locks), Arc::clone(&inside));
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _g = locks.lock(b"a".to_vec());
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                        // Another key is never blocked by "a".
                        drop(locks.lock(b"b".to_vec()));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(locks.busy.lock().keys.is_empty());
    }
}
