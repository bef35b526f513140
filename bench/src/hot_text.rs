//! `functions/hot-text.ld` from callgrind profiles: the functions a binary ran, as linker-script
//! patterns that gather them into one `.text.hot` section (see `functions/build.rs` for why).
//!
//! Symbol hashes differ between targets and builds, so each symbol becomes a pattern without
//! them: a legacy-mangled `_ZN…17h<16 hex>E` keeps its path (`_ZN…17h*`), a v0-mangled `_R…`
//! has its crate disambiguators (`Cs<base-62>_`) globbed, and a C symbol stays as it is. A
//! generic function's pattern therefore also takes its instances that did not run: the section
//! grows, but stays a fraction of `.text`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Names of the functions a callgrind profile shows running in its program's own binary (not
/// in shared libraries: those are mapped from their own files). Reads both compressed
/// (`fn=(12) name`, later `fn=(12)`) and uncompressed (`fn=name`) output.
pub fn functions_run(profile: &str) -> Vec<String> {
    let mut names: HashMap<String, String> = HashMap::new();
    let mut objects: HashMap<String, String> = HashMap::new();
    let mut in_shared_object = false;
    let mut out = Vec::new();
    for line in profile.lines() {
        if let Some(ob) = line.strip_prefix("ob=") {
            let path = resolve(ob, &mut objects);
            let file = path.rsplit('/').next().unwrap_or_default();
            in_shared_object = file.ends_with(".so") || file.contains(".so.");
        } else if let Some(f) = line.strip_prefix("fn=") {
            let name = resolve(f, &mut names);
            if !in_shared_object && !name.is_empty() {
                out.push(name);
            }
        } else if let Some(cob) = line.strip_prefix("cob=") {
            // A called function's object and name share the tables: a string may be defined
            // here first and only referred to by `ob=`/`fn=` later.
            resolve(cob, &mut objects);
        } else if let Some(cfn) = line.strip_prefix("cfn=") {
            resolve(cfn, &mut names);
        }
    }
    out
}

/// `(id) name` defines a compressed string, `(id)` refers to one, anything else is the string.
fn resolve(field: &str, table: &mut HashMap<String, String>) -> String {
    let Some(rest) = field.strip_prefix('(') else {
        return field.to_owned();
    };
    let Some((id, name)) = rest.split_once(')') else {
        return field.to_owned();
    };
    let name = name.trim_start();
    if name.is_empty() {
        table.get(id).cloned().unwrap_or_default()
    } else {
        table.insert(id.to_owned(), name.to_owned());
        name.to_owned()
    }
}

/// The hash-free pattern for a symbol, or `None` for what is no function symbol of ours (an
/// address valgrind could not name, `(below main)`, anything a linker script cannot spell).
pub fn pattern(symbol: &str) -> Option<String> {
    let symbol = symbol.split('@').next().unwrap_or_default();
    if symbol.is_empty()
        || symbol.starts_with("0x")
        || !symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.$".contains(&b))
    {
        return None;
    }
    // LLVM numbers the copies of a local function it makes unique (`name.1234`,
    // `name.llvm.1234`); the numbers change with every build, so they become a wildcard.
    let (symbol, numbered) = match without_copy_number(symbol) {
        Some(base) => (base, true),
        None => (symbol, false),
    };
    let p = hash_free(symbol);
    Some(if numbered && !p.ends_with('*') {
        format!("{p}*")
    } else {
        p
    })
}

/// `name` of `name.1234` or `name.llvm.1234`.
fn without_copy_number(symbol: &str) -> Option<&str> {
    let (base, number) = symbol.rsplit_once('.')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || base.is_empty() {
        return None;
    }
    Some(base.strip_suffix(".llvm").unwrap_or(base))
}

fn hash_free(symbol: &str) -> String {
    if let Some(path) = symbol.strip_prefix("_ZN") {
        // _ZN <path> 17h <16 hex> E
        let hashed = path.len().checked_sub(20).and_then(|at| {
            let (head, tail) = path.split_at(at);
            let is_hash = tail.starts_with("17h")
                && tail.ends_with('E')
                && tail[3..19].bytes().all(|b| b.is_ascii_hexdigit());
            is_hash.then(|| format!("_ZN{head}17h*"))
        });
        return hashed.unwrap_or_else(|| symbol.to_owned());
    }
    if symbol.starts_with("_R") {
        return glob_crate_disambiguators(symbol);
    }
    symbol.to_owned()
}

/// `Cs<base-62>_` → `Cs*_` in a v0-mangled symbol.
fn glob_crate_disambiguators(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len());
    let mut rest = symbol;
    while let Some(at) = rest.find("Cs") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let digits = from[2..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if from[2 + digits..].starts_with('_') {
            out.push_str("Cs*_");
            rest = &from[2 + digits + 1..];
        } else {
            out.push_str("Cs");
            rest = &from[2..];
        }
    }
    out.push_str(rest);
    out
}

/// The linker script: the tiers' patterns in order (a pattern already placed by an earlier tier
/// is left out of later ones), as one output section inserted before `.text`. A tier holds
/// profiles (each the functions one program ran); within it, code more of them ran comes first,
/// so what every function runs at start sits together and each function's own code follows
/// it instead of being spread among the others'. Every pattern is `.text*.<symbol>`, so it also
/// takes the `.text.unlikely.` section LLVM gives a cold function.
pub fn linker_script(header: &str, tiers: &[(String, Vec<Vec<String>>)]) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    out.push_str("/*\n");
    for line in header.lines() {
        let _ = writeln!(out, " * {}", line.replace("*/", "* /"));
    }
    out.push_str(" */\nSECTIONS\n{\n  .text.hot :\n  {\n");
    for (name, profiles) in tiers {
        let mut ran_by: HashMap<String, usize> = HashMap::new();
        for profile in profiles {
            let patterns: HashSet<String> = profile.iter().filter_map(|s| pattern(s)).collect();
            for p in patterns.into_iter().filter(|p| !seen.contains(p)) {
                *ran_by.entry(p).or_default() += 1;
            }
        }
        let mut patterns: Vec<(String, usize)> = ran_by.into_iter().collect();
        patterns.sort_by(|(a, n), (b, m)| m.cmp(n).then_with(|| a.cmp(b)));
        let _ = writeln!(
            out,
            "    /* {name}: {} functions from {} profiles */",
            patterns.len(),
            profiles.len()
        );
        for (p, _) in patterns {
            let _ = writeln!(out, "    *(.text*.{p})");
            seen.insert(p);
        }
    }
    out.push_str("  }\n}\nINSERT BEFORE .text;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Release links use the committed script, and no test links a release binary: a hand edit
    /// that broke its form would first show in `scripts/package`. Its shape is checked here.
    #[test]
    fn the_committed_script_has_the_generated_form() {
        let script = include_str!("../../functions/hot-text.ld");
        let body = script
            .split_once(" */\nSECTIONS\n{\n  .text.hot :\n  {\n")
            .expect("header, then the one output section")
            .1;
        let body = body
            .strip_suffix("  }\n}\nINSERT BEFORE .text;\n")
            .expect("inserted before .text");
        let mut patterns = 0;
        for line in body.lines() {
            let line = line.trim_start();
            if line.starts_with("/*") {
                assert!(line.ends_with("*/"), "{line}");
                continue;
            }
            let p = line
                .strip_prefix("*(.text*.")
                .and_then(|l| l.strip_suffix(')'))
                .unwrap_or_else(|| panic!("not a pattern line: {line}"));
            assert!(
                p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b)),
                "{p}"
            );
            patterns += 1;
        }
        assert!(patterns > 500, "only {patterns} patterns");
    }

    #[test]
    fn legacy_symbols_lose_their_hash_and_nothing_else() {
        assert_eq!(
            pattern("_ZN5tokio7runtime4task3raw4poll17h0123456789abcdefE").as_deref(),
            Some("_ZN5tokio7runtime4task3raw4poll17h*")
        );
        // No hash where one belongs: kept whole.
        assert_eq!(
            pattern("_ZN5tokio4pollE").as_deref(),
            Some("_ZN5tokio4pollE")
        );
    }

    #[test]
    fn copy_numbers_llvm_gives_local_functions_become_wildcards() {
        assert_eq!(
            pattern("_ZN5tokio4park5inner17h0123456789abcdefE.llvm.4711").as_deref(),
            Some("_ZN5tokio4park5inner17h*")
        );
        assert_eq!(
            pattern("_RNvNtCsab_5alloc5boxed14box_new_uninit.10133").as_deref(),
            Some("_RNvNtCs*_5alloc5boxed14box_new_uninit*")
        );
        assert_eq!(pattern("helper.12").as_deref(), Some("helper*"));
        // A dot that is part of a name, not a number after it, stays.
        assert_eq!(
            pattern("_ZN4core3fmt5write17h0123456789abcdefE").as_deref(),
            Some("_ZN4core3fmt5write17h*")
        );
        assert_eq!(pattern("x.y").as_deref(), Some("x.y"));
    }

    #[test]
    fn v0_symbols_lose_their_crate_disambiguators_only() {
        assert_eq!(
            pattern("_RNvMs0_NtNtCsjrHSEGnQ3l9_3std4sync4OnceCslNYArtu3iFV_5alloc").as_deref(),
            Some("_RNvMs0_NtNtCs*_3std4sync4OnceCs*_5alloc")
        );
        // An identifier that merely contains "Cs" without a disambiguator's shape is kept.
        assert_eq!(
            pattern("_RNvNtCsab_4Csv04read").as_deref(),
            Some("_RNvNtCs*_4Csv04read")
        );
    }

    #[test]
    fn what_is_no_symbol_of_ours_gives_no_pattern() {
        assert_eq!(pattern("0x0000000000416b20"), None);
        assert_eq!(pattern("(below main)"), None);
        assert_eq!(pattern(""), None);
        assert_eq!(
            pattern("pthread_setspecific@@GLIBC_2.34").as_deref(),
            Some("pthread_setspecific")
        );
    }

    #[test]
    fn only_functions_of_the_program_itself_are_read_compressed_or_not() {
        let profile = "\
ob=(1) /lib/x86_64-linux-gnu/libc.so.6
fn=(1) memcpy
cob=(2) /var/task/bootstrap
cfn=(5) _ZN4main8callback17h0123456789abcdefE
ob=(2)
fn=(2) _ZN4main3run17h0123456789abcdefE
cfn=(1)
cob=(3) /lib/x86_64-linux-gnu/libm.so.6
cfn=(4) sin
fn=(3) aws_lc_sha256
ob=(1)
fn=(1)
ob=(2)
fn=(2)
ob=(3)
fn=(4)
ob=(2)
fn=(5)
ob=/var/task/bootstrap
fn=_ZN4main4idle17h0123456789abcdefE
";
        assert_eq!(
            functions_run(profile),
            [
                "_ZN4main3run17h0123456789abcdefE",
                "aws_lc_sha256",
                "_ZN4main3run17h0123456789abcdefE",
                "_ZN4main8callback17h0123456789abcdefE",
                "_ZN4main4idle17h0123456789abcdefE"
            ]
        );
    }

    #[test]
    fn the_script_places_earlier_tiers_first_common_code_first_and_each_pattern_once() {
        let script = linker_script(
            "generated",
            &[
                (
                    "start".into(),
                    vec![
                        vec![
                            "_ZN1b3run17h0123456789abcdefE".into(),
                            "_ZN1a3run17hfedcba9876543210E".into(),
                        ],
                        vec!["_ZN1b3run17h1111111111111111E".into()],
                    ],
                ),
                (
                    "pipeline".into(),
                    vec![vec![
                        "_ZN1a3run17h00000000000000ffE".into(),
                        "_ZN1c3run17h0123456789abcdefE".into(),
                    ]],
                ),
            ],
        );
        let a = script.find("*(.text*._ZN1a3run17h*)").expect("a placed");
        let b = script.find("*(.text*._ZN1b3run17h*)").expect("b placed");
        let c = script.find("*(.text*._ZN1c3run17h*)").expect("c placed");
        // b: run by both start profiles; a: by one; c: only in the later tier.
        assert!(b < a && a < c, "{script}");
        assert_eq!(script.matches("_ZN1a3run17h*").count(), 1, "{script}");
        assert!(script.contains("/* start: 2 functions from 2 profiles */"));
        assert!(script.contains("/* pipeline: 1 functions from 1 profiles */"));
        assert!(script.trim_end().ends_with("INSERT BEFORE .text;"));
    }
}
