//! `autolabel dashboard`: check where to listen, load the pool and the state, bind, say
//! where the page is and which token it takes, then serve until Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cli::DashboardArgs;
use crate::config::Config;
use crate::dashboard::{self, auth::Auth, server::Limits, App};
use crate::error::{Error, Outcome, Result};
use crate::store::State;
use crate::ui::Ui;

pub async fn run(args: &DashboardArgs) -> Result<Outcome> {
    let addr = dashboard::check_listen(&args.listen, args.token.as_deref())?;
    // Read before anything binds, so a wrong path is exit 2 and not a half-started server.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(dashboard::tls::acceptor(cert, key)?),
        _ => None,
    };
    let mut pool = Config::resolve_for_report(&args.common())?;
    let state = super::open_existing(&pool[0].state, &args.view)?;
    for cfg in &mut pool {
        cfg.load_learned(&state)?;
    }
    let (listener, local) = bind(addr).await?;
    let (token, say_token) = match &args.token {
        Some(t) => (t.clone(), "the one given with --token".to_string()),
        None => {
            let t = dashboard::new_token();
            (t.clone(), t)
        }
    };
    let loopback = local.ip().is_loopback();
    let auth = Auth::new(token, args.token_ttl, !loopback, tls.is_some())
        .with_login_window(args.login_window);
    if !loopback && tls.is_none() {
        eprintln!(
            "warning: the token and the data travel in clear to {local}: pass --tls-cert and --tls-key, or put a TLS proxy in front"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    crate::outln!("dashboard: {scheme}://{local}/");
    if loopback {
        crate::outln!("action token (for disable, enable, rotate): {say_token}");
    } else {
        crate::outln!("token (to log in, for every page and API, and for actions): {say_token}");
    }
    if let Some(at) = auth.expires() {
        crate::outln!("the token expires at {}", crate::timeutil::rfc3339(at));
    }
    // The alerts watch the state through a handle of their own, on a thread of their own.
    let ui = Arc::new(Ui::new(
        args.view.quiet,
        args.view.verbose,
        Duration::from_secs(10),
    ));
    let monitor = crate::alerts::watch(
        pool.clone(),
        Arc::new(State::open_at(&pool[0].state)?),
        (
            crate::alerts::Thresholds::from_args(&args.alerts),
            crate::alerts::monitor::EVERY_SERVED,
        ),
        args.alerts.alert_webhook.clone(),
        ui,
    );
    let app = App {
        pool,
        state,
        auth,
        alerts: monitor.active.clone(),
        loopback,
        verbose: args.view.verbose,
    };
    let limits = Limits {
        client_timeout: args.client_timeout,
        max_connections: args.max_connections as usize,
    }
    .within_file_limit();
    let served = dashboard::serve(listener, app, tls, limits).await;
    monitor.finish().await;
    served?;
    Ok(Outcome::Complete)
}

/// The listener, and the address it got (the port, when `--listen` asked for port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("--listen {addr}: cannot listen"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(format!("--listen {addr}"), e))?;
    Ok((listener, local))
}
