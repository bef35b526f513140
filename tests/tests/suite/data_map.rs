//! `docs/data.md` is the map of personal data: every column that can hold it has an entry
//! (what, why, from where, kept how long, who reads it), and every entry names a real column.

use std::collections::BTreeSet;
use std::path::Path;

use testkit::TestDb;

/// Words of a column's name (split at `_`) that say it holds, or can hold, something about a
/// person: an address, a name, a phone number, free text written by or about someone, or what
/// came from outside. A name ending in `_id`, `_at`, `_key`, `_tokens` or `_bytes` is an id, a time, an
/// object's key (the objects are mapped by prefix), a count or a size. Every `jsonb` column counts too.
const PERSONAL: &[&str] = &[
    "email",
    "emails",
    "name",
    "phone",
    "phones",
    "address",
    "address1",
    "payload",
    "raw",
    "prompt",
    "completion",
    "body",
    "html",
    "text",
    "notes",
    "reviewer",
    "url",
    "contact",
    "subject",
    "message",
    "reason",
    "ip",
    "agent",
    "customer",
    "to",
    "city",
    "zip",
    "codes",
    "location",
    "description",
    "template",
];

fn can_be_personal(column: &str, data_type: &str) -> bool {
    if data_type == "jsonb" {
        return true;
    }
    if ["_id", "_at", "_key", "_tokens", "_bytes"]
        .iter()
        .any(|s| column.ends_with(s))
    {
        return false;
    }
    column.split('_').any(|w| PERSONAL.contains(&w))
}

/// `table.column` for every entry of the map's tables section: a row whose first cell is
/// `` `t.c` `` (the objects section names prefixes).
fn mapped(doc: &str) -> BTreeSet<String> {
    let tables = doc
        .split("\n## Tables")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default();
    tables
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[tokio::test]
async fn every_column_that_can_hold_personal_data_is_in_the_data_map_and_every_entry_exists() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/data.md"))
            .expect("docs/data.md");
    let map = mapped(&doc);
    let db = TestDb::new().await;
    let columns: Vec<(String, String)> = db
        .admin()
        .await
        .query(
            "SELECT c.table_name::text AS t, c.column_name::text AS c, c.data_type::text AS ty
             FROM information_schema.columns c JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
               AND c.table_name NOT LIKE 'refinery%'
             ORDER BY 1, c.ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            let (c, ty): (String, String) = (r.get("c"), r.get("ty"));
            can_be_personal(&c, &ty)
        })
        .map(|r| (r.get("t"), r.get("c")))
        .collect();
    let all: BTreeSet<String> = columns.iter().map(|(t, c)| format!("{t}.{c}")).collect();
    let missing: Vec<&String> = all.iter().filter(|c| !map.contains(*c)).collect();
    assert!(
        missing.is_empty(),
        "columns that can hold personal data with no entry in docs/data.md: {missing:#?}"
    );
    let existing = db.admin().await;
    let mut stale = Vec::new();
    for entry in &map {
        let (t, c) = entry.split_once('.').unwrap();
        let found = existing
            .query_opt(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2",
                &[&t, &c],
            )
            .await
            .unwrap();
        if found.is_none() {
            stale.push(entry.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/data.md names columns the schema does not have: {stale:?}"
    );
}
