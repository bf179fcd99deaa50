//! Entry point: parse, run, map the outcome to an exit code (SPEC §7).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = autolabel::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autolabel: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // On a worker thread, not the main one: the collector is woken by every finished
    // request, and waking the main thread costs a futex and a context switch each time.
    let result = runtime.block_on(async {
        tokio::spawn(autolabel::run(cli)).await.unwrap_or_else(|e| {
            Err(autolabel::error::Error::Runtime(format!(
                "the run failed: {e}"
            )))
        })
    });
    if let Err(e) = &result {
        eprintln!("autolabel: error: {e}");
    }
    ExitCode::from(autolabel::error::exit_code(&result))
}
