#![forbid(unsafe_code)]

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;
use weft_proxy::args::{Args, ArgsError};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            print!("{}", weft_proxy::args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("weft-proxy: {error}\n\n{}", weft_proxy::args::USAGE);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = if args.workers == 1 {
        // The benchmark pins the proxy to one core: one thread, no work stealing.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weft-proxy: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weft_proxy::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
