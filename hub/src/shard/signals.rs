//! SIGTERM and SIGINT stop the server gracefully.

use signal_hook::consts::{SIGINT, SIGTERM};
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
