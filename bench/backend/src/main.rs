//! weft-bench-backend: the upstream that `make bench` and the proxy tests send traffic to.
//!
//! One current-thread runtime (the benchmark pins the backends to one core shared with the load
//! generator, so more threads would only contend), HTTP/1.1 and h2c (prior knowledge) on the same
//! port, and a request counter so the benchmark can show how requests were spread over backends.
#![forbid(unsafe_code)]

mod args;
mod reply;
mod server;

use std::process::ExitCode;

use args::{Args, ArgsError, USAGE};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("weft-bench-backend: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft-bench-backend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-bench-backend: {e}");
            ExitCode::FAILURE
        }
    }
}
