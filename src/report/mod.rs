//! What a run and the state say, for people and for scripts, one job a module: the
//! end-of-run summary (`summary`), `--dry-run` (`dryrun`), and the usage report as one
//! typed model (`usage`) over a period (`span`) rendered as text (`usage_text`), JSON (serde, from the model
//! itself) and HTML (the dashboard's page, as a static snapshot: `dashboard::api`).

pub mod counts;
pub mod csv_export;
pub mod dryrun;
pub mod forecast;
pub mod key_limits;
pub mod key_report;
pub mod keys;
pub mod span;
pub mod summary;
pub mod usage;
pub mod usage_text;

pub use dryrun::dry_run;
pub use span::Span;
pub use summary::summary;
pub use usage::{usage_report, write_daily_report, PoolReport, UsageReport};
pub use usage_text::print_usage;
