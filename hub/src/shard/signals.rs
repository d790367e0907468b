//! SIGTERM and SIGINT stop the server gracefully; SIGHUP, when something
//! asks for it, reloads (the TLS certificates).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::runtime::ShutdownHandle;

/// On the first SIGTERM or SIGINT, ask every shard to stop; a second one
/// exits at once, for an operator who does not want to wait.
pub fn stop_on_signals(handle: ShutdownHandle) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("hub-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal, "stopping: closing sessions");
                    handle.shutdown();
                } else {
                    std::process::exit(130);
                }
            }
        })?;
    Ok(())
}

/// On each SIGHUP, run `reload` on a thread of its own (never a shard's:
/// it reads files). Without this a SIGHUP ends the process, as by default.
pub fn reload_on_hangup(reload: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP])?;
    std::thread::Builder::new()
        .name("hub-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                reload();
            }
        })?;
    Ok(())
}
