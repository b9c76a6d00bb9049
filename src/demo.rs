//! placeholder
pub async fn run(_d: &std::path::Path) -> anyhow::Result<()> { Ok(()) }
