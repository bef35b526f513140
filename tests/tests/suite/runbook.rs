//! `docs/runbook.md` names commands an operator types in an emergency: every one of them must
//! exist in the CLI as written (a subcommand named after a command that has subcommands must be
//! one of them).

use std::collections::BTreeSet;
use std::path::Path;

/// `leadfactory a b …` inside backticks, as its leading words (up to the first flag,
/// placeholder or argument).
fn commands(doc: &str) -> BTreeSet<Vec<String>> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|code| code.split(['|', ';', '&']))
        .filter_map(|code| {
            let code = code.trim();
            let at = code.find("leadfactory ")?;
            let words: Vec<String> = code[at + "leadfactory ".len()..]
                .split_whitespace()
                .take_while(|w| {
                    w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
                })
                .take(2)
                .map(str::to_owned)
                .collect();
            (!words.is_empty()).then_some(words)
        })
        .collect()
}

fn help(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(testkit::built_binaries().join("leadfactory"))
        .args(args)
        .arg("--help")
        .output()
        .expect("running leadfactory");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> BTreeSet<String> {
    help.split("Commands:")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_command_the_runbook_names_exists_in_the_cli() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbook.md"))
            .expect("docs/runbook.md");
    let named = commands(&doc);
    assert!(named.len() >= 10, "the runbook names commands: {named:?}");
    let (ok, top) = help(&[]);
    assert!(ok, "leadfactory --help: {top}");
    let top = subcommands(&top);
    let mut missing = Vec::new();
    for words in &named {
        if !top.contains(&words[0]) {
            missing.push(words.join(" "));
            continue;
        }
        let (ok, sub) = help(&[&words[0]]);
        assert!(ok, "leadfactory {} --help: {sub}", words[0]);
        let subs = subcommands(&sub);
        if let Some(second) = words.get(1)
            && !subs.is_empty()
            && !subs.contains(second)
        {
            missing.push(words.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "the runbook names commands the CLI lacks: {missing:?}"
    );
}

#[test]
fn commands_are_read_from_code_spans_up_to_their_arguments() {
    let doc = "run `leadfactory qa review <id> --verdict pass` or `DATABASE_URL=… leadfactory status`; \
               then `leadfactory export --to x | leadfactory restore --from x`";
    let got: Vec<String> = commands(doc).into_iter().map(|w| w.join(" ")).collect();
    assert_eq!(got, ["export", "qa review", "restore", "status"]);
}
