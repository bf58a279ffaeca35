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
    let code = match hostd::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            hostd::error::exit_code_of(&err)
        }
    };
    std::process::exit(code);
}
