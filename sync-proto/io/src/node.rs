//! What every node binary (`taplink-central`, `taplink-hub`, `taplink-kiosk`) does the same
//! way around its library: waiting for the signal to stop.

/// Ctrl-C or SIGTERM. If SIGTERM cannot be watched, Ctrl-C still works (and a warning
/// says so); never waits forever for a signal it cannot receive.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stop with Ctrl-C");
            if let Err(error) = ctrl_c.await {
                tracing::error!(%error, "cannot watch Ctrl-C either; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}
