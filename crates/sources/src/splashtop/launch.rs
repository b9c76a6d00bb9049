//! `session create --provider splashtop`, the confirmed PSA flow: team id (config or
//! `users/basic_info`), channel (config or `psa/channel_list`), `POST …/psa/support_sessions`;
//! the code and the session id are both linked to the ticket, so the session log matches by
//! either.

use async_trait::async_trait;
use serde_json::json;

use super::config::SplashtopConfig;
use super::{wire, SplashtopApi};
use crate::launch::{launch_err, LaunchRequest, Launched, Launcher, NoteKind};
use crate::note::{Field, Link, Note, Visibility};
use crate::store::Store;
use crate::SourceError;

#[async_trait]
impl Launcher for SplashtopConfig {
    async fn launch(&self, store: &Store, req: &LaunchRequest<'_>) -> Result<Launched, SourceError> {
        let (cfg, ticket) = (self, req.ticket);
        let api = SplashtopApi::new(cfg, store)?;
        let mut truncated = Vec::new();
        let wanted = req.customer_name.map(str::to_string).unwrap_or_else(|| format!("Ticket #{ticket}"));
        let (name, cut) = super::customer_name(&wanted);
        if cut {
            truncated.push(format!(
                "customer name cut to {} characters (Splashtop limit): {name:?}",
                wire::CUSTOMER_NAME_MAX
            ));
        }
        let info = api.basic_info().await?;
        let team = match cfg.team_id {
            Some(t) => t,
            None => wire::team_id(&info).ok_or_else(|| {
                launch_err(
                    wire::VENDOR,
                    "users/basic_info has no PSA team id (token without the `psa` scope?); set sources.splashtop.team_id",
                )
            })?,
        };
        let channel = match cfg.channel_id {
            Some(c) => c,
            None => api.default_channel(team).await?,
        };
        let body = wire::create_body(channel, &name, &super::customer_issue(cfg, ticket));
        let created = api.create_support_session(team, &body).await?;
        let account = wire::account_email(&info);
        let end_user = wire::end_user_link(&created, &cfg.console_url());
        let tech = wire::technician_link(&created.code, account.as_deref());
        let details = json!({
            "support_session_id": created.id, "end_user_link": end_user, "technician_link": tech,
            "status": created.status, "expires_at": created.expires_at, "team_id": team, "channel_id": channel,
        });
        let code = created.code.clone();
        let code_norm = crate::session::normalize_code(&code);
        let internal = Note {
            title: format!("Splashtop support session {code} created for this ticket"),
            fields: vec![
                Field { label: "Session code".into(), value: code.clone() },
                Field { label: "Session id".into(), value: created.id.clone() },
                Field { label: "Customer name".into(), value: name.clone() },
                Field { label: "Expires".into(), value: created.expires_at.clone().unwrap_or_else(|| "-".into()) },
            ],
            links: vec![
                Link { label: "Connect (Splashtop Business app)".into(), url: tech },
                Link { label: "End-user link (send this to the customer)".into(), url: end_user.clone() },
            ],
            body: Some(format!(
                "Technician: send the end-user link (or the code {code}) to the customer. Once the customer runs the              Splashtop SOS app the session shows as ready in your Service Desk channel; connect with the link above              and request permission. The session log is added to this ticket when the session ends."
            )),
            attachments: vec![],
            visibility: Visibility::Internal,
            marker: store.marker_key().marker(wire::VENDOR, &code_norm, NoteKind::SessionLinks.as_str()),
        };
        let customer = Note {
            title: "Remote support session".into(),
            fields: vec![Field { label: "Session code".into(), value: code.clone() }],
            links: vec![Link { label: "Join the remote support session".into(), url: end_user }],
            body: Some(
                "Open the link above, run the Splashtop SOS app, and tell our technician when it shows the code."
                    .into(),
            ),
            attachments: vec![],
            visibility: Visibility::Public,
            marker: store.marker_key().marker(wire::VENDOR, &code_norm, NoteKind::CustomerLink.as_str()),
        };
        Ok(Launched {
            code,
            also_known_as: Some(created.id.clone()),
            details,
            notes: vec![(NoteKind::SessionLinks, internal), (NoteKind::CustomerLink, customer)],
            truncated,
        })
    }
}
