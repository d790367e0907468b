//! Each session's clock: sleeps until the session's next deadline and runs
//! its timers, re-arming when the deadline moves.

use std::rc::Rc;
use std::time::Instant;

use futures_lite::future;
use glommio::timer::Timer;

use super::state::Shard;
use crate::engine::SessionEntry;

pub(crate) async fn run(shard: Rc<Shard>, endpoint: usize, entry: Rc<SessionEntry>) {
    loop {
        let listen = entry.timer_changed.listen();
        let deadline = {
            let session = entry.session.borrow();
            let deadline = session.next_deadline();
            if session.is_finished() || (session.is_closed() && deadline.is_none()) {
                break;
            }
            deadline
        };
        entry.armed_deadline.set(deadline);
        match deadline {
            Some(at) => {
                let now = Instant::now();
                if at > now {
                    future::or(
                        async {
                            Timer::new(at - now).await;
                        },
                        listen,
                    )
                    .await;
                }
            }
            None => listen.await,
        }
        entry.armed_deadline.set(None);
        // Woken early (the deadline moved): only look again.
        let now = Instant::now();
        if deadline.is_some_and(|at| at <= now) {
            entry.session.borrow_mut().handle_timeout(now);
            shard.settle(endpoint, &entry);
        }
    }
    if entry.session.borrow().is_finished() {
        shard.forget(endpoint, &entry);
    }
}
