//! The `hub` binary: a ready Socket.IO message hub (docs/relay-protocol.md).

use std::io::Write;

use hub::app::config::Settings;

fn main() {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("hub: {error}");
            std::process::exit(2);
        }
    };
    hub::app::init_logging(&settings);
    let result = hub::app::run(settings, |addr, admin| {
        // The lines on stdout that scripts and tests wait for.
        println!("listening on {addr}");
        println!("admin listening on {admin}");
        let _ = std::io::stdout().flush();
    });
    if let Err(error) = result {
        eprintln!("hub: {error}");
        // A bad setting found at start (a certificate file, say) is a usage
        // error, as one found while parsing the flags.
        let code = match error {
            hub::app::AppError::Config(_) => 2,
            _ => 1,
        };
        std::process::exit(code);
    }
}
