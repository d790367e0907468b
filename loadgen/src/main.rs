//! `loadgen`: drives a Socket.IO server with real Engine.IO v4 / Socket.IO
//! v5 clients and reports what it measured.

mod args;
mod conn;
mod ledger;
mod output;
mod placement;
mod procfs;
mod report;
mod run;
mod scenario;
mod shard;
mod stats;
mod target;
mod wire;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = args::Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    raise_open_file_limit();
    let (json, plot) = (args.json, args.plot.clone());
    let title = format!("{:?} latency, {}", args.scenario, args.urls.join(" ")).to_lowercase();
    let outcome = match run::run(args) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = plot {
        if let Err(e) = output::plot(&path, &outcome.latency, &title) {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.summary).expect("summary serializes")
        );
    } else {
        print!("{}", outcome.summary.table());
    }
    if let Some(churn) = &outcome.summary.churn {
        let failures = churn.failures();
        if !failures.is_empty() {
            eprintln!("loadgen: churn: {}", failures.join("; "));
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

/// Each client is a descriptor (two over polling): take the hard limit.
fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit on a stack value.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
