//! The parser's own checks; the help texts are tested on the real binary (tests/cli_errors.rs).

use super::*;
use clap::CommandFactory;

use crate::provider::defaults::ProviderName;

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn label_flags_work_with_and_without_the_subcommand() {
    let cli = Cli::try_parse_from(["autolabel", "--input", "a.csv", "--output", "b.csv"]).unwrap();
    assert!(cli.command.is_none());
    assert_eq!(cli.label.delay, 2.5);
    let cli = Cli::try_parse_from(["autolabel", "label", "-i", "a.csv", "-o", "b.csv"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Label(_))));
    let cli = Cli::try_parse_from(["autolabel", "test-keys", "--json"]).unwrap();
    assert!(matches!(cli.command, Some(Command::TestKeys(_))));
    assert!(Cli::try_parse_from(["autolabel", "--input", "a.csv"]).is_err());
}

#[test]
fn batch_size_is_a_number_from_1_to_100_or_auto() {
    let parse = |v: &str| {
        Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b", "--batch-size", v])
            .map(|c| c.label.batch_size)
    };
    let default = Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b"]).unwrap();
    assert_eq!(default.label.batch_size, BatchSize::Fixed(1));
    assert_eq!(parse("20").unwrap(), BatchSize::Fixed(20));
    assert_eq!(parse("100").unwrap(), BatchSize::Fixed(100));
    assert_eq!(parse("auto").unwrap(), BatchSize::Auto);
    assert_eq!(parse("AUTO").unwrap(), BatchSize::Auto);
    for bad in ["0", "101", "-1", "auto5", "", "1.5"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn provider_is_one_name_or_a_list_without_repeats() {
    let parse = |v: &str| {
        Cli::try_parse_from(["autolabel", "-i", "a", "-o", "b", "--provider", v])
            .map(|c| c.label.common.provider)
    };
    assert_eq!(
        parse("gemini").unwrap(),
        Providers(vec![ProviderName::Gemini])
    );
    let pool = parse("groq, Gemini,openrouter").unwrap();
    assert!(pool.is_pool());
    assert_eq!(
        pool.0,
        [
            ProviderName::Groq,
            ProviderName::Gemini,
            ProviderName::Openrouter
        ]
    );
    for bad in ["groq,groq", "groq,", "mistral", ""] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
