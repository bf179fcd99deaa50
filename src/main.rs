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
    let result = runtime.block_on(autolabel::run(cli));
    if let Err(e) = &result {
        eprintln!("autolabel: error: {e}");
    }
    ExitCode::from(autolabel::error::exit_code(&result))
}
