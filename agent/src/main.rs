//! Entry point: parse the command line, bind the real host, map errors to exit codes (spec §10).

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AGENTKEYS_HOSTD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = hostd::cli::Cli::parse();
    let code = match runtime() {
        Ok(rt) => run(cli, &rt),
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// The one runtime of the process: the command's thread drives it with `block_on`, and one
/// worker runs what the daemon spawns (its metrics endpoint) while the main loop waits.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()
}

fn run(cli: hostd::cli::Cli, rt: &tokio::runtime::Runtime) -> i32 {
    let env = hostd::cli::Env { rt, clock: &hostd::host::clock::SystemClock };
    match hostd::cli::run(cli, &env) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            hostd::decide::error::exit_code_of(&err)
        }
    }
}
