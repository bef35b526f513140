//! What every send shares, outreach and fulfilment alike: the compliant message, the call, and
//! the state the email row moves to.
//!
//! The row is claimed (`queued → sending`, committed) before the call; the call's result moves it
//! to `sent`, `failed`, or — when the request may have reached SendGrid but no answer came —
//! `unknown`, which is parked for an operator and never resent. A refusal SendGrid answered
//! (rate limit, outage, bad key) puts the row back to `queued` and the message is retried.

use std::collections::BTreeMap;

use base64::Engine;
use shared::db::{DbError, Pool, Tx, begin_tenant, cached};
use shared::domain::TenantId;
use shared::vendors::VendorError;
use shared::vendors::sendgrid::{Address, Attachment, Content, Mail, Personalization};

/// A message ready to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub email_id: uuid::Uuid,
    pub to: String,
    pub from_email: String,
    pub from_name: String,
    pub subject: String,
    /// The body without the footer.
    pub body: String,
    /// Postal address and unsubscribe link (outreach); `None` for transactional mail.
    pub footer: Option<Footer>,
    pub custom_args: BTreeMap<String, String>,
    pub category: &'static str,
    pub attachment: Option<(String, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct Footer {
    pub postal_address: String,
    pub unsubscribe_url: String,
    pub unsubscribe_mailto: String,
}

/// The text with its compliance footer.
pub fn text_body(o: &Outbound) -> String {
    match &o.footer {
        Some(f) => format!(
            "{}\n\n--\n{}\n{}\nTo stop receiving these emails: {}\n",
            o.body.trim_end(),
            o.from_name,
            f.postal_address,
            f.unsubscribe_url
        ),
        None => format!("{}\n", o.body.trim_end()),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML alternative: the same words, paragraphs kept, our links clickable.
pub fn html_body(o: &Outbound) -> String {
    let linkify = |p: &str| {
        p.split_whitespace()
            .map(|w| {
                let trimmed = w.trim_end_matches(['.', ',', ')', ';']);
                if trimmed.starts_with("https://") || trimmed.starts_with("http://") {
                    let rest = &w[trimmed.len()..];
                    format!("<a href=\"{0}\">{0}</a>{1}", escape(trimmed), escape(rest))
                } else {
                    escape(w)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut html = String::from(
        "<!doctype html><html><body style=\"font-family:Arial,sans-serif;font-size:15px;line-height:1.5;color:#222\">",
    );
    for p in o.body.split("\n\n").filter(|p| !p.trim().is_empty()) {
        html.push_str("<p>");
        html.push_str(&p.lines().map(linkify).collect::<Vec<_>>().join("<br>"));
        html.push_str("</p>");
    }
    if let Some(f) = &o.footer {
        html.push_str(&format!(
            "<hr><p style=\"font-size:12px;color:#666\">{}<br>{}<br><a href=\"{}\">Unsubscribe</a></p>",
            escape(&o.from_name),
            escape(&f.postal_address),
            escape(&f.unsubscribe_url)
        ));
    }
    html.push_str("</body></html>");
    html
}

/// The SendGrid v3 request: text and HTML, RFC 8058 one-click unsubscribe headers on outreach,
/// `custom_args` that bring every event back to its email.
pub fn mail(o: &Outbound) -> Mail {
    let mut headers = BTreeMap::new();
    if let Some(f) = &o.footer {
        headers.insert(
            "List-Unsubscribe".to_owned(),
            format!("<{}>, <{}>", f.unsubscribe_url, f.unsubscribe_mailto),
        );
        headers.insert(
            "List-Unsubscribe-Post".to_owned(),
            "List-Unsubscribe=One-Click".to_owned(),
        );
    }
    Mail {
        personalizations: vec![Personalization {
            to: vec![Address {
                email: o.to.clone(),
                name: None,
            }],
            custom_args: o.custom_args.clone(),
        }],
        from: Address {
            email: o.from_email.clone(),
            name: Some(o.from_name.clone()),
        },
        reply_to: None,
        subject: o.subject.clone(),
        content: vec![
            Content {
                kind: "text/plain".into(),
                value: text_body(o),
            },
            Content {
                kind: "text/html".into(),
                value: html_body(o),
            },
        ],
        headers,
        categories: vec![o.category.to_owned()],
        attachments: o
            .attachment
            .iter()
            .map(|(name, bytes)| Attachment {
                content: base64::engine::general_purpose::STANDARD.encode(bytes),
                kind: "application/pdf".into(),
                filename: name.clone(),
                disposition: Some("attachment".into()),
            })
            .collect(),
    }
}

/// Where a claimed email ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Sent {
        message_id: String,
    },
    /// SendGrid refused this message for good (e.g. an invalid address).
    Failed {
        reason: String,
    },
    /// May or may not have gone out: parked, never resent.
    Unknown {
        reason: String,
    },
}

/// What a send's result means for the row; `Err` = refused but retryable (row back to queued).
pub fn classify(r: Result<String, VendorError>) -> Result<Sent, VendorError> {
    match r {
        Ok(message_id) => Ok(Sent::Sent { message_id }),
        Err(VendorError::Ambiguous { detail, .. }) => Ok(Sent::Unknown { reason: detail }),
        // A 2xx without a message id: SendGrid accepted it, we cannot link its events by id
        // (custom_args still do). It went out.
        Err(e @ VendorError::Malformed { .. }) => Ok(Sent::Unknown {
            reason: e.to_string(),
        }),
        // SendGrid refused it, or it could never be sent as built (a line break in a header):
        // sending it again cannot help.
        Err(e @ (VendorError::BadRequest { .. } | VendorError::InvalidInput { .. })) => {
            Ok(Sent::Failed {
                reason: e.to_string(),
            })
        }
        Err(e) => Err(e),
    }
}

/// The row's final state after a send.
pub fn state_of(s: &Sent) -> (&'static str, Option<&str>, Option<&str>) {
    match s {
        Sent::Sent { message_id } => ("sent", Some(message_id), None),
        Sent::Failed { reason } => ("failed", None, Some(reason)),
        Sent::Unknown { reason } => ("unknown", None, Some(reason)),
    }
}

const WRITE_STATES: &str =
    "UPDATE emails e SET send_state = x.state, sg_message_id = coalesce(x.msg, e.sg_message_id),
        sent_at = CASE WHEN x.state = 'sent' THEN now() ELSE e.sent_at END, last_error = x.err
 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS x(id, state, msg, err)
 WHERE e.id = x.id AND e.send_state IN ('sending', 'queued')";

/// Writes the final state of every send (and every suppressed row) in one statement; only rows
/// still `sending` (or `queued`, for suppressions decided before a claim) move.
pub async fn write_states<'a>(
    tx: &dyn Tx,
    done: impl Iterator<Item = &'a crate::Done>,
) -> Result<u64, DbError> {
    let (mut ids, mut states, mut msgs, mut errs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for d in done {
        let (id, (state, msg, err)) = match d {
            crate::Done::Sent(id, s) => (*id, state_of(s)),
            crate::Done::Suppressed(id) => (*id, ("failed", None, Some("suppressed"))),
            crate::Done::Skipped(_) | crate::Done::Deferred(_) => continue,
        };
        ids.push(id);
        states.push(state);
        msgs.push(msg);
        errs.push(err);
    }
    if ids.is_empty() {
        return Ok(0);
    }
    cached::execute(tx, WRITE_STATES, &[&ids, &states, &msgs, &errs]).await
}

const RELEASE_EMAIL: &str = "UPDATE emails SET send_state = 'queued', sending_at = NULL, last_error = $2 WHERE id = $1 AND send_state = 'sending'";
const RELEASE_COUNTER: &str = "UPDATE send_counters SET sent = greatest(sent - 1, 0)
 WHERE tenant_id = $1 AND scope = ANY($2) AND day = (now() AT TIME ZONE 'UTC')::date";

/// A refusal SendGrid answered: the row goes back to `queued` (and its claim off the day's
/// count) so the redelivered message sends it.
pub async fn release_claim(
    pool: &Pool,
    tenant: TenantId,
    email_id: uuid::Uuid,
    counter_scopes: &[String],
    error: &str,
) -> Result<(), DbError> {
    let mut c = pool.get().await?;
    let tx = begin_tenant(&mut c, tenant).await?;
    let released = cached::execute(&tx, RELEASE_EMAIL, &[&email_id, &error]).await?;
    if released == 1 && !counter_scopes.is_empty() {
        cached::execute(&tx, RELEASE_COUNTER, &[&tenant.as_uuid(), &counter_scopes]).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound() -> Outbound {
        Outbound {
            email_id: uuid::Uuid::nil(),
            to: "owner@example.com".into(),
            from_email: "hello@agency.example".into(),
            from_name: "Dana at Agency".into(),
            subject: "About your site".into(),
            body: "Hi there,\n\nYour report: https://r.example/r/tok.\n\nDana".into(),
            footer: Some(Footer {
                postal_address: "1 Main St, San Jose, CA 95112".into(),
                unsubscribe_url: "https://r.example/u/abc".into(),
                unsubscribe_mailto: "mailto:unsubscribe@agency.example?subject=unsubscribe%20abc"
                    .into(),
            }),
            custom_args: BTreeMap::from([("email_id".into(), "x".into())]),
            category: "outreach",
            attachment: Some(("a.pdf".into(), b"%PDF".to_vec())),
        }
    }

    #[test]
    fn outreach_mail_carries_the_compliance_parts() {
        let m = mail(&outbound());
        assert_eq!(
            m.headers["List-Unsubscribe"],
            "<https://r.example/u/abc>, <mailto:unsubscribe@agency.example?subject=unsubscribe%20abc>"
        );
        assert_eq!(
            m.headers["List-Unsubscribe-Post"],
            "List-Unsubscribe=One-Click"
        );
        assert_eq!(m.content[0].kind, "text/plain");
        assert!(m.content[0].value.contains("1 Main St, San Jose, CA 95112"));
        assert!(m.content[0].value.contains("https://r.example/u/abc"));
        assert!(
            m.content[1]
                .value
                .contains("<a href=\"https://r.example/r/tok\">https://r.example/r/tok</a>.")
        );
        assert_eq!(m.personalizations[0].custom_args["email_id"], "x");
        assert_eq!(m.attachments[0].content, "JVBERg==");
    }

    #[test]
    fn transactional_mail_has_no_unsubscribe_headers() {
        let mut o = outbound();
        o.footer = None;
        let m = mail(&o);
        assert!(m.headers.is_empty());
        assert!(!m.content[0].value.contains("unsubscribe"));
    }

    #[test]
    fn html_escapes_what_the_model_wrote() {
        let mut o = outbound();
        o.body = "<script>alert(1)</script> & more".into();
        assert!(html_body(&o).contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    }

    #[test]
    fn only_a_lost_answer_is_unknown_and_only_answered_refusals_retry() {
        use shared::vendors::Vendor::SendGrid as V;
        assert!(
            matches!(classify(Ok("m1".into())), Ok(Sent::Sent { message_id }) if message_id == "m1")
        );
        assert!(matches!(
            classify(Err(VendorError::Ambiguous {
                vendor: V,
                detail: "t".into()
            })),
            Ok(Sent::Unknown { .. })
        ));
        assert!(matches!(
            classify(Err(VendorError::BadRequest {
                vendor: V,
                status: 400,
                message: "bad".into()
            })),
            Ok(Sent::Failed { .. })
        ));
        assert!(
            classify(Err(VendorError::RateLimited {
                vendor: V,
                attempts: 4,
                retry_after: None
            }))
            .is_err()
        );
        assert!(
            classify(Err(VendorError::Unauthorized {
                vendor: V,
                status: 401,
                message: "key".into()
            }))
            .is_err()
        );
    }
}
