//! What a bench's `main` does around its run.

use std::future::Future;

use anyhow::Result;

/// Installs the TLS crypto provider, then awaits `run`; an error is printed
/// as `bench: error: cause…` and the process exits 1.
pub async fn run_main(bench: &str, run: impl Future<Output = Result<()>>) {
    shoal::install_crypto_provider();
    if let Err(error) = run.await {
        eprintln!("{bench}: {error:#}");
        std::process::exit(1);
    }
}
