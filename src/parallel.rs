//! Two pieces of work at once, for the control path of large profiles
//! (validating while compiling, writing the LPM tries while writing the
//! hash maps): scoped, so both borrow from the caller.

/// `a()` on a second thread and `b()` on this one; both results. One after
/// the other when no thread can be started. A panic on the second thread
/// resumes on this one (the C API turns it into an error there).
pub(crate) fn on_two_threads<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: Fn() -> RA + Sync,
    B: FnOnce() -> RB,
    RA: Send,
{
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("minerguard-aux".into())
            .spawn_scoped(s, &a);
        match spawned {
            Ok(handle) => {
                let second = b();
                let first = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (first, second)
            }
            Err(_) => (a(), b()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_run_and_both_results_come_back() {
        let data = [1, 2, 3];
        let (a, b) = on_two_threads(
            || (std::thread::current().id(), data.iter().sum::<i32>()),
            || (std::thread::current().id(), data.len()),
        );
        assert_eq!((a.1, b.1), (6, 3));
        assert_ne!(a.0, b.0, "the first ran on another thread");
    }
}
