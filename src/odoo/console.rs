//! placeholder
use super::Odoo;
pub async fn run(_odoo: Odoo, _login: Option<String>, _read_only: bool) -> anyhow::Result<()> {
    anyhow::bail!("the Odoo console is not built yet")
}
