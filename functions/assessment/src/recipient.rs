//! Which address a homepage shows is the business's own, and so the one its email goes to.
//!
//! A page shows more addresses than its owner's: the web designer's credit in the footer, the
//! site builder's support address, an error tracker's DSN, a `noreply@`. Writing to any of them
//! embarrasses us and the agency. So an address counts only when it is the business's:
//! 1. on the business's own domain (the registrable domain of the site asked for or of the page
//!    it redirected to), linked (`mailto:`) before written out in the text;
//! 2. else a personal mailbox (Gmail, Outlook, …) the page links as its contact address: small
//!    businesses often have no mail on their domain, and a `mailto:` link is the page saying
//!    "write here" (the same mailbox only in the text may as well be the designer's);
//!
//! and never an address on another business's domain, a platform's, or one that takes no mail.
//! Within a class, contact roles (`info@`, `contact@`, …) come before personal names, then the
//! page's order. The reason is recorded with the address.

use shared::domain::Email;

/// Why an address was chosen; stored as `businesses.email_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    OwnDomainLink,
    OwnDomainText,
    MailboxLink,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OwnDomainLink => "own_domain_link",
            Reason::OwnDomainText => "own_domain_text",
            Reason::MailboxLink => "mailbox_link",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: Email,
    pub reason: Reason,
}

/// Registrable domains whose addresses belong to a website builder, host, form or tracking
/// service, never to the business using it (its support or system mail).
const PLATFORMS: &[&str] = &[
    "wix.com",
    "wixsite.com",
    "wixpress.com",
    "squarespace.com",
    "square.site",
    "squareup.com",
    "godaddy.com",
    "godaddysites.com",
    "secureserver.net",
    "weebly.com",
    "wordpress.com",
    "wordpress.org",
    "wpengine.com",
    "shopify.com",
    "myshopify.com",
    "webflow.io",
    "jimdo.com",
    "duda.co",
    "business.site",
    "sentry.io",
    "hubspot.com",
    "mailchimp.com",
    "yelp.com",
    "google.com",
    "facebook.com",
];

/// Personal mailbox providers: an address there is the business's only when the page links it.
const MAILBOXES: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "ymail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "zoho.com",
    "comcast.net",
    "att.net",
    "sbcglobal.net",
    "verizon.net",
];

/// Local parts that take no mail or reach no person.
const NO_MAIL: &[&str] = &[
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "mailer-daemon",
    "postmaster",
    "hostmaster",
    "abuse",
    "bounce",
    "bounces",
];

/// Local parts a business uses for enquiries, preferred over a person's name.
const CONTACT_ROLES: &[&str] = &[
    "info",
    "contact",
    "hello",
    "office",
    "enquiries",
    "inquiries",
    "bookings",
    "reservations",
    "sales",
    "admin",
];

/// The address to write to, from the page's `linked` (`mailto:`) and `found` (all, linked or in
/// the text) addresses; `site_domains` are the registrable domains of the site.
pub fn choose(linked: &[String], found: &[String], site_domains: &[&str]) -> Option<Recipient> {
    let own_site: Vec<&str> = site_domains
        .iter()
        .copied()
        .filter(|d| !PLATFORMS.contains(d))
        .collect();
    let linked_set: Vec<Email> = linked.iter().filter_map(|l| Email::parse(l).ok()).collect();
    let is_linked = |e: &Email| linked_set.contains(e);
    linked
        .iter()
        .chain(found)
        .enumerate()
        .filter_map(|(position, raw)| {
            let address = Email::parse(raw).ok()?;
            let reason = classify(&address, is_linked(&address), &own_site)?;
            let role = CONTACT_ROLES.contains(&address.local_part());
            Some(((reason, !role, position), Recipient { address, reason }))
        })
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, r)| r)
}

fn classify(address: &Email, linked: bool, own_site: &[&str]) -> Option<Reason> {
    let local = address.local_part();
    if NO_MAIL.contains(&local) || local.starts_with("noreply") || local.starts_with("no-reply") {
        return None;
    }
    let domain = address.registrable_domain()?;
    if PLATFORMS.contains(&domain) {
        return None;
    }
    match (
        own_site.contains(&domain),
        MAILBOXES.contains(&domain),
        linked,
    ) {
        (true, _, true) => Some(Reason::OwnDomainLink),
        (true, _, false) => Some(Reason::OwnDomainText),
        (false, true, true) => Some(Reason::MailboxLink),
        // Another business's domain (the designer's, a supplier's), or a mailbox only in the text.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pick(linked: &[&str], text: &[&str], site: &[&str]) -> Option<(String, Reason)> {
        let linked = strings(linked);
        let mut found = linked.clone();
        found.extend(strings(text));
        choose(&linked, &found, site).map(|r| (r.address.to_string(), r.reason))
    }

    #[test]
    fn the_designers_address_never_wins_even_when_it_sorts_first() {
        // The old rule took the alphabetically first address: the designer's.
        assert_eq!(
            pick(
                &["design@aaa-webstudio.com", "info@joes-pizza.com"],
                &[],
                &["joes-pizza.com"]
            ),
            Some(("info@joes-pizza.com".into(), Reason::OwnDomainLink))
        );
        assert_eq!(
            pick(&["design@aaa-webstudio.com"], &[], &["joes-pizza.com"]),
            None
        );
    }

    #[test]
    fn platform_and_no_mail_addresses_are_never_chosen() {
        for bad in [
            "support@wix.com",
            "abc123@sentry.io",
            "noreply@joes-pizza.com",
            "no-reply-bookings@joes-pizza.com",
            "postmaster@joes-pizza.com",
        ] {
            assert_eq!(pick(&[bad], &[bad], &["joes-pizza.com"]), None, "{bad}");
        }
        // A site on a builder's subdomain does not make the builder's mail its own.
        assert_eq!(pick(&["help@wixsite.com"], &[], &["wixsite.com"]), None);
    }

    #[test]
    fn own_domain_beats_a_mailbox_and_a_link_beats_the_text() {
        assert_eq!(
            pick(
                &["joespizza@gmail.com"],
                &["info@joes-pizza.com"],
                &["joes-pizza.com"]
            ),
            Some(("info@joes-pizza.com".into(), Reason::OwnDomainText))
        );
        assert_eq!(
            pick(
                &["maria@joes-pizza.com"],
                &["info@joes-pizza.com"],
                &["joes-pizza.com"]
            ),
            Some(("maria@joes-pizza.com".into(), Reason::OwnDomainLink))
        );
        assert_eq!(
            pick(&["joespizza@gmail.com"], &[], &["joes-pizza.com"]),
            Some(("joespizza@gmail.com".into(), Reason::MailboxLink))
        );
        // A mailbox written in the text only may as well be the designer's.
        assert_eq!(
            pick(&[], &["bob.designs@gmail.com"], &["joes-pizza.com"]),
            None
        );
    }

    #[test]
    fn a_contact_role_comes_before_a_name_and_subdomains_count_as_own() {
        assert_eq!(
            pick(
                &["maria@joes-pizza.com", "Info@Mail.Joes-Pizza.com"],
                &[],
                &["joes-pizza.com"]
            ),
            Some(("info@mail.joes-pizza.com".into(), Reason::OwnDomainLink))
        );
        // The domain the page redirected to is the business's too.
        assert_eq!(
            pick(
                &["hello@joesnewname.co.uk"],
                &[],
                &["joes-pizza.com", "joesnewname.co.uk"]
            ),
            Some(("hello@joesnewname.co.uk".into(), Reason::OwnDomainLink))
        );
    }
}
