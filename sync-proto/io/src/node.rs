//! What every node binary (`taplink-central`, `taplink-hub`, `taplink-kiosk`) does the same
//! way around its library: waiting for the signal to stop.

/// Ctrl-C or SIGTERM. If SIGTERM cannot be watched, Ctrl-C still works (and a warning
/// says so); never waits forever for a signal it cannot receive.
pub async fn shutdown_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    first_signal(term, tokio::signal::ctrl_c()).await;
}

/// Whichever comes first of SIGTERM (if it could be watched) and `ctrl_c`. If neither can
/// be watched there is nothing to wait for: the node keeps running until killed, and says
/// so.
async fn first_signal(
    term: std::io::Result<tokio::signal::unix::Signal>,
    ctrl_c: impl std::future::Future<Output = std::io::Result<()>>,
) {
    match term {
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

#[cfg(test)]
mod tests {
    /// A node whose SIGTERM cannot be watched still stops on Ctrl-C (it used to wait on a
    /// future that never completes).
    #[tokio::test]
    async fn without_sigterm_ctrl_c_still_stops_the_node() {
        let no_term = Err(std::io::Error::other("signal registration refused"));
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            super::first_signal(no_term, async { Ok(()) }),
        )
        .await
        .expect("Ctrl-C did not stop the node");
    }
}
