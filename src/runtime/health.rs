//! STUB
pub async fn serve(
    _: tokio::net::TcpListener,
    _: std::sync::Arc<super::metrics::Metrics>,
    _: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    Ok(())
}
