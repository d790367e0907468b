//! Containing panics: a panic in application code, or in the code serving
//! one connection, costs that connection, not the shard.
//!
//! glommio does not catch a panic in a task: it unwinds out of the
//! executor and the shard's thread dies. So the places that run code on
//! behalf of one connection (the application's handlers, a connection's
//! task) run it through [`catch`] or [`CatchUnwind`], which turn a panic
//! into an error the caller handles by closing that connection.
//!
//! The panic hook installed by [`install_hook`] records where a panic
//! happened and its message; inside a [`catch`] it prints nothing (the
//! catch site logs it with the connection's id), outside it hands over to
//! the previous hook, and the shard's thread dies (see
//! `shard::runtime`, which makes the process exit then).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

/// What [`on_uncaught`] registered.
type Uncaught = Box<dyn FnOnce(&str)>;

thread_local! {
    /// How many [`catch`] scopes the thread is in.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// The last panic's location and message, from the hook.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Told of a panic that nothing on this thread will catch.
    static ON_UNCAUGHT: RefCell<Option<Uncaught>> = const { RefCell::new(None) };
}

/// A panic that was caught: where and why, as the hook saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caught {
    /// `panicked at <file>:<line>:<col>: <message>`.
    pub message: String,
}

impl std::fmt::Display for Caught {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Install the hook that records panics (once per process; the previous
/// hook still reports panics that nothing catches).
pub fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let message = describe(info);
            if CATCHING.with(Cell::get) == 0 {
                previous(info);
                // The thread is going down (on a shard: the shard is).
                let told = ON_UNCAUGHT.try_with(|told| told.borrow_mut().take());
                if let Ok(Some(tell)) = told {
                    tell(&message);
                }
            }
            let _ = LAST.try_with(|last| *last.borrow_mut() = Some(message));
        }));
    });
}

fn describe(info: &PanicHookInfo<'_>) -> String {
    let message = payload_text(info.payload());
    match info.location() {
        Some(at) => format!(
            "panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {message}"),
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic payload that is not text)"
    }
}

/// What the hook recorded of the panic whose payload this is (the payload
/// alone if the hook is not installed).
fn caught(payload: Box<dyn Any + Send>) -> Caught {
    let recorded = LAST.with(|last| last.borrow_mut().take());
    Caught {
        message: recorded.unwrap_or_else(|| format!("panicked: {}", payload_text(&*payload))),
    }
}

/// Have the hook call `tell` with the panic's description when a panic on
/// this thread is not inside a [`catch`]: the thread is dying. glommio does
/// not catch panics in tasks, and does not drop the task it was running
/// as the executor unwinds, so this is how a shard's death is reported.
pub(crate) fn on_uncaught(tell: impl FnOnce(&str) + 'static) {
    ON_UNCAUGHT.with(|told| *told.borrow_mut() = Some(Box::new(tell)));
}

struct Scope;

impl Scope {
    fn enter() -> Scope {
        CATCHING.with(|c| c.set(c.get() + 1));
        Scope
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CATCHING.with(|c| c.set(c.get() - 1));
    }
}

/// Run `f`; a panic in it is returned as an error (and counted in
/// `hub_panics_total`) instead of unwinding further.
///
/// The caller must leave its state consistent for a panic at any point of
/// `f`: hold no `RefCell` borrow across it (an unwinding panic releases
/// borrows taken inside `f`), and close the connection `f` served.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    let scope = Scope::enter();
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    drop(scope);
    result.map_err(|payload| {
        crate::metrics::with(|m| {
            m.panics.inc();
        });
        caught(payload)
    })
}

pin_project_lite::pin_project! {
    /// A future whose panics are returned as errors, as [`catch`] does for
    /// a call: each poll of the inner future is caught. The inner future is
    /// kept in place (pinned through this one), not boxed: a WebSocket
    /// session's task is one of these, and an idle connection should not
    /// pay for a second allocation.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> CatchUnwind<F> {
    pub fn new(inner: F) -> CatchUnwind<F> {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Caught>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch(|| inner.poll(cx)) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(caught) => Poll::Ready(Err(caught)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_names_its_place_and_message() {
        install_hook();
        let caught = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert!(caught.message.contains("boom 7"), "{caught}");
        assert!(caught.message.contains("panics.rs"), "{caught}");
        assert_eq!(catch(|| 5), Ok(5));
        assert_eq!(CATCHING.with(Cell::get), 0);
    }

    #[test]
    fn a_future_that_panics_is_an_error() {
        install_hook();
        let done = futures_lite::future::block_on(CatchUnwind::new(async { 3 }));
        assert_eq!(done, Ok(3));
        let failed = futures_lite::future::block_on(CatchUnwind::new(async {
            futures_lite::future::yield_now().await;
            panic!("later");
        }));
        assert!(failed.unwrap_err().message.contains("later"));
    }

    #[test]
    fn nested_catches_each_see_their_own_panic() {
        install_hook();
        let outer = catch(|| {
            let inner = catch(|| panic!("inner"));
            assert!(inner.unwrap_err().message.contains("inner"));
            panic!("outer");
        });
        assert!(outer.unwrap_err().message.contains("outer"));
    }
}
