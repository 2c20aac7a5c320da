//! No panic unwinds across `extern "C"`: every entry point runs inside
//! [`catch`], which turns a panic into a logged device error and a fallback
//! value.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// The last panic's message and location, captured by the hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replace the default hook (which prints to stderr) by one that keeps the
/// message for the guard, which reports it through QEMU's log.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
        }));
    });
}

fn describe(payload: &(dyn Any + Send)) -> String {
    LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

/// Run `f`; if it panics, call `on_panic` with the panic's description and
/// return `fallback`. Every entry point that creates something (a GPU, a
/// device) runs through here, and installs the hook on its first call.
#[inline]
pub fn catch<R>(fallback: R, on_panic: impl FnOnce(&str), f: impl FnOnce() -> R) -> R {
    install_hook();
    catch_hooked(fallback, on_panic, f)
}

/// `catch` for an entry point reached only through something an entry
/// point that ran `catch` created (a device's entries, after realize): the
/// hook is in place. Every register access runs through here, so its
/// no-panic path is the closure alone, with no check of the hook.
#[inline(always)]
pub fn catch_hooked<R>(fallback: R, on_panic: impl FnOnce(&str), f: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            on_panic(&describe(payload.as_ref()));
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_fallback_and_is_reported() {
        let mut seen = String::new();
        let r = catch(
            0xffff_ffffu32,
            |m| seen = m.to_string(),
            || -> u32 { panic!("register file on fire") },
        );
        assert_eq!(r, 0xffff_ffff);
        assert!(seen.contains("register file on fire"), "{seen}");
        assert!(seen.contains("guard.rs"), "location missing: {seen}");
    }

    #[test]
    fn no_panic_passes_the_value_through() {
        let r = catch(0, |_| panic!("must not be called"), || 42);
        assert_eq!(r, 42);
    }
}
