//! The API's actions, the same as `autolabel keys`: rotate (the key in use, or a chosen
//! one), disable with a reason and a duration, enable, reset a key's minute, day or month
//! counts or all of them. Each needs the token, answers what it did or why it refused,
//! and is recorded in the action log as done from the dashboard with the client's address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::{fail, json_out, refusal, App};
use crate::control::{self, KeyAction};

#[derive(Serialize)]
struct Done {
    done: String,
}

/// Who, for the action log: the dashboard and the client's address.
fn who(client: SocketAddr) -> String {
    format!("dashboard {}", client.ip())
}

fn answer(done: crate::error::Result<String>) -> Response {
    match done {
        Ok(done) => json_out(StatusCode::OK, &Done { done }),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/rotate`: every running run moves off the key it uses now.
pub(super) async fn rotate(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(no) = refusal(&app, &headers) {
        return no;
    }
    answer(control::rotate(&app.pool, &app.state, &who(client)))
}

/// What `action` with the query `q` asks for, or why it cannot be done.
fn parse(action: &str, q: &HashMap<String, String>) -> Result<KeyAction, String> {
    match action {
        "enable" => Ok(KeyAction::Enable),
        "rotate" => Ok(KeyAction::rotate_out("the dashboard")),
        "disable" => {
            let duration = match q.get("for").map(|d| d.trim()).filter(|d| !d.is_empty()) {
                None => None,
                Some(d) => Some(crate::cli::parse_duration(d).map_err(|e| format!("for: {e}"))?),
            };
            let reason = q
                .get("reason")
                .map(|r| control::clean_reason(r.trim()))
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "disabled from the dashboard".into());
            Ok(KeyAction::Disable { reason, duration })
        }
        "reset" => {
            let what = q.get("what").map_or("all", |w| w.as_str());
            control::reset_what(what)
                .map(KeyAction::Reset)
                .ok_or_else(|| format!("what: minute, day, month or all, not '{what}'"))
        }
        _ => Err("actions: disable, enable, rotate, reset".into()),
    }
}

/// `POST /api/keys/<provider>/<N>/<action>[?reason=R&for=D | ?what=W]`.
pub(super) async fn key_action(
    AxState(app): AxState<Arc<App>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path((provider, index, action)): Path<(String, usize, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(no) = refusal(&app, &headers) {
        return no;
    }
    let Some(cfg) = app.pool.iter().find(|c| c.provider.as_str() == provider) else {
        return fail(StatusCode::NOT_FOUND, "no such provider here");
    };
    let Some(key) = cfg.keys.iter().find(|k| k.index == index) else {
        return fail(StatusCode::NOT_FOUND, format!("no key {index}"));
    };
    let action = match parse(&action, &q) {
        Ok(a) => a,
        Err(e) if e.starts_with("actions:") => return fail(StatusCode::NOT_FOUND, e),
        Err(e) => return fail(StatusCode::BAD_REQUEST, e),
    };
    answer(control::apply(cfg, key, &action, &app.state, &who(client)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn actions_take_the_same_choices_as_the_cli() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            parse("disable", &q(&[("reason", "leaked"), ("for", "2h")])),
            Ok(KeyAction::Disable {
                reason: "leaked".into(),
                duration: Some(Duration::from_secs(7200))
            })
        );
        assert!(parse("disable", &q(&[("for", "soon")]))
            .unwrap_err()
            .starts_with("for:"));
        assert_eq!(
            parse("reset", &q(&[("what", "day")])),
            Ok(KeyAction::Reset("day"))
        );
        assert_eq!(parse("reset", &q(&[])), Ok(KeyAction::Reset("all")));
        // Rotating a chosen key is the CLI's `keys rotate N`: one definition.
        assert_eq!(
            parse("rotate", &q(&[])),
            Ok(KeyAction::rotate_out("the dashboard"))
        );
        assert!(parse("reset", &q(&[("what", "year")])).is_err());
        assert!(parse("explode", &q(&[]))
            .unwrap_err()
            .starts_with("actions:"));
    }
}
