//! The alert flags, shared by a labeling run and the dashboard.

use clap::Args;

use super::values::percent;

pub const ALERTS: &str = "Alerts";

#[derive(Debug, Args, Clone)]
pub struct AlertArgs {
    /// POST each alert as JSON {"text": …} (Slack-compatible) to this http(s) URL; retried, never followed through a redirect, never holding up labeling.
    #[arg(long, value_name = "URL", value_parser = parse_webhook, env = "AUTOLABEL_ALERT_WEBHOOK", hide_env_values = true, help_heading = ALERTS, hide_short_help = true)]
    pub alert_webhook: Option<String>,
    /// Alert when a key's tightest quota has less than this share left, in %.
    #[arg(long, value_name = "PCT", default_value_t = 10.0, value_parser = percent, help_heading = ALERTS, hide_short_help = true)]
    pub alert_quota_left: f64,
    /// Alert when the success rate over the last --alert-window requests is below this, in %.
    #[arg(long, value_name = "PCT", default_value_t = 90.0, value_parser = percent, help_heading = ALERTS, hide_short_help = true)]
    pub alert_success: f64,
    /// Requests the success rate is taken over.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000_000), help_heading = ALERTS, hide_short_help = true)]
    pub alert_window: u64,
}

/// An http or https URL. (It is never printed: a webhook URL is a secret of its own.)
fn parse_webhook(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s.trim())
        .map_err(|e| format!("not a URL ({e}); give the whole http(s)://… address"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert!(parse_webhook("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(parse_webhook("http://127.0.0.1:9/hook").is_ok());
        for bad in [
            "hooks.slack.com/x",
            "ftp://h/x",
            "file:///etc/passwd",
            "http://",
        ] {
            assert!(parse_webhook(bad).is_err(), "{bad}");
        }
    }
}
