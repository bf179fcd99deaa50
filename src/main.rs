//! Entry point: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Bare `autolabel`: the commands and where to start, rather than clap's terse
    // "required arguments were not provided".
    if std::env::args_os().len() <= 1 {
        eprintln!("{}", autolabel::commands::docs::short_usage());
        return ExitCode::from(2);
    }
    let cli = autolabel::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autolabel: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // One thread: the work is waiting on the network and the quotas; a single-threaded
    // runtime spends no CPU handing every finished request between threads (the
    // benchmark's `cpu` scenario: 1.12x a bare reqwest loop, against 1.46x multi-threaded).
    // The input is read on a thread of its own (pipeline::feeder).
    let result = runtime.block_on(autolabel::run(cli));
    if let Err(e) = &result {
        eprintln!("autolabel: error: {e}");
    }
    ExitCode::from(autolabel::error::exit_code(&result))
}
