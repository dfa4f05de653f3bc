//! The one stop signal of the program: SIGTERM (Kubernetes stopping the pod) or SIGINT
//! (Ctrl-C). `serve`, `demo` and `simulate` all stop on it, so they all stop the same way.
//! `serve`'s SIGHUP reload is its own business and lives there.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGTERM or SIGINT. Handlers are installed now, so a signal that
/// arrives during startup is not lost.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
