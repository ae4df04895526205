//! Live handles. A C handle is an opaque token, never a dereferenced
//! address: every call looks it up here, so a freed, forged or wrong-type
//! handle is reported as `MG_ERR_INVALID_HANDLE` instead of being undefined
//! behaviour. Tokens are never reused, so a stale handle cannot alias a newer
//! one, and an object freed while another thread is inside a call on it lives
//! until that call returns.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use super::result::{mg_result::*, Failure};

/// Shared by every registry, so tokens of different types never collide.
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

/// The live objects of one handle type.
pub(crate) struct Registry<T> {
    type_name: &'static str,
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub(crate) const fn new(type_name: &'static str) -> Self {
        Registry {
            type_name,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // The map is only ever inserted into or removed from: a panic
        // elsewhere cannot leave it half-written.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `value` and returns its token as an opaque C pointer.
    pub(crate) fn insert<C>(&self, value: T) -> *mut C {
        // Multiples of 16 look like aligned pointers to tools that check.
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed) << 4;
        self.map().insert(token, Arc::new(value));
        token as *mut C
    }

    /// The live object behind `handle`.
    pub(crate) fn get<C>(&self, handle: *const C, what: &str) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::null(what));
        }
        self.map()
            .get(&(handle as usize))
            .cloned()
            .ok_or_else(|| self.not_live(what))
    }

    /// Unregisters `handle`; NULL is a no-op.
    pub(crate) fn remove<C>(&self, handle: *const C, what: &str) -> Result<(), Failure> {
        if handle.is_null() {
            return Ok(());
        }
        // Dropped here, or by the last call still using it.
        self.take(handle, what).map(drop)
    }

    /// Unregisters `handle` (not NULL) and returns its object: later calls
    /// with the handle are refused, calls in progress keep their reference.
    pub(crate) fn take<C>(&self, handle: *const C, what: &str) -> Result<Arc<T>, Failure> {
        if handle.is_null() {
            return Err(Failure::null(what));
        }
        let removed = self.map().remove(&(handle as usize));
        removed.ok_or_else(|| self.not_live(what))
    }

    /// The failure for a handle that is not (or no longer) live.
    pub(crate) fn not_live(&self, what: &str) -> Failure {
        Failure::new(
            MG_ERR_INVALID_HANDLE,
            format!(
                "`{what}` is not a live {}: it was freed already, never created, or is another kind of handle",
                self.type_name
            ),
        )
    }
}

/// Locks a handle's object; a lock poisoned by an earlier panic means the
/// object may be half-updated, so it is refused rather than used.
pub(crate) fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>, Failure> {
    m.lock().map_err(|_| {
        Failure::new(
            MG_ERR_PANIC,
            format!("`{what}` is unusable after an earlier panic inside minerguard; free it"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing;

    static THINGS: Registry<u32> = Registry::new("thing");

    #[test]
    fn freed_tokens_are_reported_and_never_reissued() {
        let a: *mut Thing = THINGS.insert(1);
        THINGS.remove(a, "a").unwrap();
        let b: *mut Thing = THINGS.insert(2);
        assert_ne!(a, b, "tokens are never reused");
        assert_eq!(THINGS.get(a, "a").unwrap_err().code, MG_ERR_INVALID_HANDLE);
        assert_eq!(
            THINGS.remove(a, "a").unwrap_err().code,
            MG_ERR_INVALID_HANDLE
        );
        assert_eq!(*THINGS.get(b, "b").unwrap(), 2);
        THINGS.remove(std::ptr::null::<Thing>(), "null").unwrap();
        THINGS.remove(b, "b").unwrap();
    }
}
