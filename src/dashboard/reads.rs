//! The API's reads: each answers from the one usage model over the period asked for
//! (`?days=N`, 7 by default, or `?from=YYYY-MM-DD&to=YYYY-MM-DD`, UTC days, both
//! included), so the page's cards, tables and charts agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{answer, api, fail, json_out, App};
use crate::report::{csv_export, PoolReport, Span};

/// The period of `?days=N` (1 to 3650, 7 when not given) or `?from=…&to=…`; else the
/// answer that refuses it, saying why.
pub(super) fn span(q: &HashMap<String, String>) -> Result<Span, Box<Response>> {
    let refuse = |why: String| Box::new(fail(StatusCode::BAD_REQUEST, why));
    let now = SystemTime::now();
    match (q.get("from"), q.get("to"), q.get("days")) {
        (None, None, days) => match days.map(|d| d.trim().parse::<u32>()) {
            None => Ok(Span::last_days(now, api::SUMMARY_DAYS)),
            Some(Ok(d)) if (1..=3650).contains(&d) => Ok(Span::last_days(now, d)),
            Some(_) => Err(refuse("days: a whole number from 1 to 3650".into())),
        },
        (Some(_), Some(_), Some(_)) => {
            Err(refuse("days, or from and to: one period, not both".into()))
        }
        (Some(from), Some(to), None) => Span::range(from, to, ("from", "to")).map_err(refuse),
        _ => Err(refuse(
            "from and to go together: ?from=2026-12-01&to=2026-12-07 (UTC days, both included)"
                .into(),
        )),
    }
}

type Q = Query<HashMap<String, String>>;

pub(super) async fn summary(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => answer(api::summary(&app.pool, &app.state, &d)),
        Err(r) => *r,
    }
}

pub(super) async fn keys(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => answer(api::keys(&app.pool, &app.state, &d)),
        Err(r) => *r,
    }
}

pub(super) async fn runs(AxState(app): AxState<Arc<App>>) -> Response {
    answer(api::runs(&app.state))
}

pub(super) async fn usage(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    let d = match span(&q) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    match api::usage(&app.pool, &app.state, &d) {
        Ok(reports) => json_out(
            StatusCode::OK,
            &PoolReport {
                providers: &reports,
            },
        ),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(super) async fn rotations(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => answer(api::rotations(&app.pool, &app.state, &d)),
        Err(r) => *r,
    }
}

pub(super) async fn actions(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => answer(api::actions(&app.state, &d)),
        Err(r) => *r,
    }
}

pub(super) async fn errors(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => answer(api::errors(&app.state, &d)),
        Err(r) => *r,
    }
}

/// `GET /api/usage.csv`: what `usage --csv` prints for the period, as a file to save.
pub(super) async fn usage_csv(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => csv_file(
            api::usage(&app.pool, &app.state, &d).map(|r| csv_export::usage_csv(&r)),
            "usage",
            &d,
        ),
        Err(r) => *r,
    }
}

/// `GET /api/errors.csv`: what `usage --csv --errors` prints for the period.
pub(super) async fn errors_csv(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match span(&q) {
        Ok(d) => csv_file(
            api::errors_all(&app.pool, &app.state, &d).map(|e| csv_export::errors_csv(&e)),
            "errors",
            &d,
        ),
        Err(r) => *r,
    }
}

/// A CSV download named after what it holds and its period, through the key scrubber
/// like every answer.
fn csv_file(text: crate::error::Result<String>, what: &str, span: &Span) -> Response {
    match text {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!(
                        "attachment; filename=\"autolabel-{what}-{}-{}.csv\"",
                        span.from, span.to
                    ),
                ),
            ],
            crate::keys::mask::scrub(&text),
        )
            .into_response(),
        Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
