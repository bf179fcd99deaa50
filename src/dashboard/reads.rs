//! The API's reads: each answers from the one usage model over the period asked for
//! (`?days=N`, 7 by default), so the page's cards, tables and charts agree.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;

use super::{answer, api, fail, json_out, App};
use crate::report::PoolReport;

/// `?days=N`: from 1 to 3650, 7 when not given; else the answer that refuses it.
pub(super) fn days(q: &HashMap<String, String>) -> Result<u32, Box<Response>> {
    match q.get("days").map(|d| d.trim().parse::<u32>()) {
        None => Ok(api::SUMMARY_DAYS),
        Some(Ok(d)) if (1..=3650).contains(&d) => Ok(d),
        Some(_) => Err(Box::new(fail(
            StatusCode::BAD_REQUEST,
            "days: a whole number from 1 to 3650",
        ))),
    }
}

type Q = Query<HashMap<String, String>>;

pub(super) async fn summary(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match days(&q) {
        Ok(d) => answer(api::summary(&app.pool, &app.state, d)),
        Err(r) => *r,
    }
}

pub(super) async fn keys(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match days(&q) {
        Ok(d) => answer(api::keys(&app.pool, &app.state, d)),
        Err(r) => *r,
    }
}

pub(super) async fn runs(AxState(app): AxState<Arc<App>>) -> Response {
    answer(api::runs(&app.state))
}

pub(super) async fn usage(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    let d = match days(&q) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    match api::usage(&app.pool, &app.state, d) {
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
    match days(&q) {
        Ok(d) => answer(api::rotations(&app.pool, &app.state, d)),
        Err(r) => *r,
    }
}

pub(super) async fn actions(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match days(&q) {
        Ok(d) => answer(api::actions(&app.state, d)),
        Err(r) => *r,
    }
}

pub(super) async fn errors(AxState(app): AxState<Arc<App>>, Query(q): Q) -> Response {
    match days(&q) {
        Ok(d) => answer(api::errors(&app.state, d)),
        Err(r) => *r,
    }
}
