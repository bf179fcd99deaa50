//! A provider's keys: those the env file and the environment hold, each with its own
//! settings, or stand-ins for a dry run (`--keys N`); none at all is an error that says
//! where to put one.

use crate::cli::CommonArgs;
use crate::error::{Error, Result};
use crate::keys::envfile::{self, Vars};
use crate::keys::settings::{self, KeySettings};
use crate::keys::ApiKey;
use crate::provider::defaults::ProviderName;

/// The keys of `provider` in configuration order, and whether they are stand-ins.
pub(super) fn resolve_keys(
    args: &CommonArgs,
    provider: ProviderName,
    pool: bool,
    vars: &Vars,
) -> Result<(Vec<ApiKey>, bool)> {
    let secrets = if provider.needs_key() {
        envfile::collect_keys_with_vars(provider.as_str(), vars)
    } else {
        vec![("ollama".to_string(), String::new())]
    };
    let keys_assumed = secrets.is_empty() && args.assume_keys.is_some();
    let secrets = match args.assume_keys {
        // Stand-ins: a dry run counts keys, it never sends with them.
        Some(n) if keys_assumed => (1..=n)
            .map(|i| (format!("assumed-key-{i}"), String::new()))
            .collect(),
        _ => secrets,
    };
    if secrets.is_empty() {
        let names = envfile::key_var_names(provider.as_str()).join(", ");
        let file = args.env_file.display();
        let upper = provider.as_str().to_uppercase();
        let fix = if vars.file_found {
            format!("{file} has none of them set: put your key(s) after the = in it, e.g. {upper}_API_KEY_1=your-key")
        } else {
            format!("{file} does not exist: copy envs/.envs.example to {file} and put your key(s) in it, e.g. {upper}_API_KEY_1=your-key")
        };
        return Err(Error::Config(format!(
            "no {} API key found: looked for {names} in {file} and the environment; {fix} (--dry-run estimates without keys)",
            provider.as_str()
        )));
    }
    let pool_name = pool.then_some(provider.as_str());
    let keys: Vec<ApiKey> = secrets
        .into_iter()
        .enumerate()
        .map(|(i, (secret, var))| {
            let settings = if var.is_empty() {
                KeySettings::default()
            } else {
                settings::read(&var, vars)?
            };
            Ok(ApiKey::new(i + 1, secret)
                .with_settings(settings)
                .in_pool(pool_name))
        })
        .collect::<Result<_>>()?;
    Ok((keys, keys_assumed))
}
