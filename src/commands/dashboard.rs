//! `autolabel dashboard`: check where to listen, load the pool and the state, bind, say
//! where the page is and which token its actions take, then serve until Ctrl-C.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::cli::DashboardArgs;
use crate::config::Config;
use crate::dashboard::{self, App};
use crate::error::{Error, Outcome, Result};
use crate::store::State;

pub async fn run(args: &DashboardArgs) -> Result<Outcome> {
    let addr = dashboard::check_listen(&args.listen, args.token.as_deref())?;
    let mut pool = Config::resolve_for_report(&args.common())?;
    let state = State::open_at(&pool[0].state)?;
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
    let app = App {
        pool,
        state,
        token,
        loopback: local.ip().is_loopback(),
        verbose: args.view.verbose,
    };
    crate::outln!("dashboard: http://{local}/");
    crate::outln!("action token (for disable, enable, rotate): {say_token}");
    let limits = dashboard::server::Limits {
        client_timeout: args.client_timeout,
        max_connections: args.max_connections as usize,
    }
    .within_file_limit();
    dashboard::serve(listener, app, limits).await?;
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
