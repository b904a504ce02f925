//! Audit findings of the whole tree: every finding record, symbolized in the image that made
//! the call, filtered by `SHMTRACE_SUPPRESS` (every rule: unlike the shim, the command can
//! symbolize, so rules naming a function or `file:line` apply here), and grouped by code and
//! call site across processes.

use std::collections::BTreeMap;

use shmtrace_core::suppress;

use super::collect::Collector;
use super::model::{FindingTotals, MergedFinding};
use super::tree::Tree;
use crate::args::ViewOptions;
use crate::logs::{Finding, Pos};
use crate::symbols::{Symbol, Symbolizer};

/// The rules of a suppression file; malformed lines become warnings naming file and line.
pub struct Rules {
    text: String,
}

impl Rules {
    /// `SHMTRACE_SUPPRESS`, if set.
    pub fn from_env(warnings: &mut Vec<String>) -> Rules {
        match std::env::var_os("SHMTRACE_SUPPRESS") {
            Some(path) if !path.is_empty() => {
                Rules::from_file(std::path::Path::new(&path), warnings)
            }
            _ => Rules {
                text: String::new(),
            },
        }
    }

    pub fn from_file(path: &std::path::Path, warnings: &mut Vec<String>) -> Rules {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                warnings.push(format!(
                    "SHMTRACE_SUPPRESS={}: cannot read: {e}; nothing is suppressed",
                    path.display()
                ));
                String::new()
            }
        };
        for (line, rule) in suppress::parse(&text, is_code) {
            if let Err(e) = rule {
                warnings.push(format!(
                    "{}:{line}: ignored: {}",
                    path.display(),
                    e.reason()
                ));
            }
        }
        Rules { text }
    }

    #[cfg(test)]
    pub fn from_text(text: &str) -> Rules {
        Rules { text: text.into() }
    }

    /// Whether a finding with this code at this site is suppressed.
    pub fn suppresses(&self, code: &str, site: Option<&Symbol>) -> bool {
        suppress::parse(&self.text, is_code)
            .filter_map(|(_, rule)| rule.ok())
            .any(|rule| {
                rule.code.is_none_or(|c| suppress::same_code(c, code))
                    && rule.site.is_none_or(|s| {
                        site.is_some_and(|sym| {
                            s.matches(sym.function.as_deref(), sym.file.as_deref(), sym.line)
                        })
                    })
            })
    }
}

fn is_code(word: &str) -> bool {
    suppress::code_index(word).is_some()
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "error" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// The same call site in every process: by module and offset (its address differs from one
/// process to the next with address randomisation), else by the text.
fn site_key(site: Option<&Symbol>) -> String {
    match site {
        Some(Symbol {
            module: Some(module),
            module_offset: Some(offset),
            ..
        }) => format!("{module}+{offset:#x}"),
        Some(s) => s.text(),
        None => String::new(),
    }
}

/// Every finding of the tree (totals over all processes; the list over those shown): the
/// shim's records, but for `SHM009` the command's own judgement over the tree
/// (`exit_holding`).
pub(super) fn merge(
    collector: &Collector,
    exit_holding: &[(Pos, Finding)],
    tree: &Tree,
    view: &ViewOptions,
    symbolizer: &mut Symbolizer,
    rules: &Rules,
) -> (Vec<MergedFinding>, FindingTotals) {
    let mut totals = FindingTotals::default();
    let mut by_key: BTreeMap<(u8, String, String), MergedFinding> = BTreeMap::new();
    let logged = collector
        .findings
        .iter()
        .filter(|(_, f)| f.code != super::exit_holding::CODE);
    for (pos, f) in logged.chain(exit_holding) {
        let modules = tree.modules_at(f.pid, *pos, f.ts);
        let site = f.site.map(|a| symbolizer.symbolize(a, modules));
        if rules.suppresses(&f.code, site.as_ref()) {
            totals.suppressed += 1;
            continue;
        }
        match f.severity.as_str() {
            "error" => totals.errors += 1,
            "warning" => totals.warnings += 1,
            _ => totals.info += 1,
        }
        if !view.shows_pid(f.pid) {
            continue;
        }
        let key = (
            severity_rank(&f.severity),
            f.code.clone(),
            site_key(site.as_ref()),
        );
        let entry = by_key.entry(key).or_insert_with(|| MergedFinding {
            code: f.code.clone(),
            name: f.name.clone(),
            severity: f.severity.clone(),
            func: f.func.clone(),
            site,
            count: 0,
            pids: Vec::new(),
            message: f.message.clone(),
            first_ts: f.ts,
        });
        entry.count += 1;
        if !entry.pids.contains(&f.pid) {
            entry.pids.push(f.pid);
        }
    }
    (by_key.into_values().collect(), totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(function: &str, file: &str, line: u32) -> Symbol {
        Symbol {
            function: Some(function.into()),
            file: Some(file.into()),
            line: Some(line),
            ..Symbol::raw(0x1234)
        }
    }

    #[test]
    fn one_site_in_two_processes_is_one_key() {
        let at = |addr: u64, base: u64| Symbol {
            module: Some("/usr/lib/libXext.so.6".into()),
            module_offset: Some(addr - base),
            ..Symbol::raw(addr)
        };
        let first = at(0x7f00_0000_1234, 0x7f00_0000_0000);
        let second = at(0x7e11_0000_1234, 0x7e11_0000_0000);
        assert_ne!(first.text(), second.text());
        assert_eq!(site_key(Some(&first)), site_key(Some(&second)));
        assert_ne!(
            site_key(Some(&first)),
            site_key(Some(&at(0x7f00_0000_1238, 0x7f00_0000_0000)))
        );
    }

    #[test]
    fn rules_by_code_site_or_both() {
        let at = sym("make_segment", "/src/app/queue.c", 42);
        let rules = Rules::from_text("code SHM002\n");
        assert!(rules.suppresses("SHM002", Some(&at)));
        assert!(!rules.suppresses("SHM001", Some(&at)));
        let rules = Rules::from_text("site make_segment\n");
        assert!(rules.suppresses("SHM001", Some(&at)));
        assert!(!rules.suppresses("SHM001", None));
        let rules = Rules::from_text("code world-accessible at site app/queue.c:42\n");
        assert!(rules.suppresses("SHM001", Some(&at)));
        assert!(!rules.suppresses("SHM002", Some(&at)));
        assert!(!rules.suppresses("SHM001", Some(&sym("make_segment", "/src/app/queue.c", 43))));
        assert!(!Rules::from_text("").suppresses("SHM001", Some(&at)));
    }

    #[test]
    fn malformed_lines_are_warned_about_with_their_number() {
        let dir = std::env::temp_dir().join(format!("shmtrace-rules-{}", std::process::id()));
        std::fs::write(&dir, "# ok\ncode SHM002\nsite\n").unwrap();
        let mut warnings = Vec::new();
        let rules = Rules::from_file(&dir, &mut warnings);
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].ends_with(":3: ignored: a site is `file.c:LINE` or a function name"));
        assert!(rules.suppresses("SHM002", None));
    }
}
