//! The suppression file (`SHMTRACE_SUPPRESS=FILE`): one rule per line, `#` starts a comment.
//!
//! ```text
//! code SHM002                  every finding with this code (or its name)
//! site queue.c:42              every finding at this source line
//! site make_segment            every finding in this function
//! code SHM002 at site queue.c:42   this code at this site only
//! ```
//!
//! The shim and the `shmtrace` command both use this module, so they read the format
//! identically. The shim applies the rules without a site (it cannot symbolize); the command
//! applies all of them.

/// Every finding code and its name, in code order (`Code` in the shim follows this table). A
/// code is never reused, so the numbers may have gaps.
pub const CODES: [(&str, &str); 16] = [
    ("SHM001", "world-accessible"),
    ("SHM002", "create-without-excl"),
    ("SHM003", "write-exec-mapping"),
    ("SHM004", "fixed-replaces-live"),
    ("SHM005", "shmdt-not-attachment"),
    ("SHM006", "munmap-never-mapped"),
    ("SHM007", "double-release"),
    ("SHM008", "use-after-remove"),
    ("SHM009", "exit-holding-semaphore"),
    ("SHM010", "semop-blocked"),
    ("SHM011", "size-not-page-multiple"),
    ("SHM012", "foreign-creator"),
    ("SHM013", "deadlock"),
    ("SHM014", "sem-not-closed"),
    ("SHM015", "queue-removed-with-messages"),
    ("SHM016", "msg-blocked"),
];

/// The index in [`CODES`] of `word` (a code in any case, or a name).
pub fn code_index(word: &str) -> Option<usize> {
    CODES
        .iter()
        .position(|(code, name)| code.eq_ignore_ascii_case(word) || *name == word)
}

/// Whether `rule_code` (as written in a rule) names the finding `code`.
pub fn same_code(rule_code: &str, code: &str) -> bool {
    code_index(rule_code).is_some_and(|i| code_index(code) == Some(i))
}

/// One rule. `code` is as written (the caller checks it names a finding code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule<'a> {
    pub code: Option<&'a str>,
    pub site: Option<Site<'a>>,
}

/// Where a finding happened, as a person writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site<'a> {
    /// `file.c:42`: the source file (its name, or a trailing part of its path) and line.
    Line { file: &'a str, line: u32 },
    /// A function name, exactly.
    Function(&'a str),
}

impl<'a> Site<'a> {
    fn parse(word: &'a str) -> Option<Site<'a>> {
        if let Some((file, line)) = word.rsplit_once(':')
            && !file.is_empty()
            && let Ok(line) = line.parse::<u32>()
        {
            return Some(Site::Line { file, line });
        }
        let ident = word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | ':' | '<' | '>'));
        (ident && !word.contains(':')).then_some(Site::Function(word))
    }

    /// Whether a symbolized site (function, source file path, line) is this one.
    pub fn matches(&self, function: Option<&str>, file: Option<&str>, line: Option<u32>) -> bool {
        match *self {
            Site::Function(name) => function == Some(name),
            Site::Line {
                file: want,
                line: want_line,
            } => {
                line == Some(want_line)
                    && file.is_some_and(|f| {
                        f == want
                            || (f.ends_with(want)
                                && f.as_bytes().get(f.len() - want.len() - 1) == Some(&b'/'))
                    })
            }
        }
    }
}

/// Why a line is not a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    UnknownKeyword,
    UnknownCode,
    BadSite,
    Trailing,
}

impl Malformed {
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::UnknownKeyword => {
                "expected `code CODE`, `site SITE` or `code CODE at site SITE`"
            }
            Malformed::UnknownCode => "not a finding code (SHM001..) or name",
            Malformed::BadSite => "a site is `file.c:LINE` or a function name",
            Malformed::Trailing => "unexpected words after the rule",
        }
    }
}

/// One line: `Ok(None)` for a blank or comment line.
pub fn parse_line<'a>(
    line: &'a str,
    is_code: impl Fn(&str) -> bool,
) -> Result<Option<Rule<'a>>, Malformed> {
    let line = line.split('#').next().unwrap_or("");
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Ok(None);
    };
    let site = |word: Option<&'a str>| word.and_then(Site::parse).ok_or(Malformed::BadSite);
    let rule = match first {
        "code" => {
            let code = words.next().ok_or(Malformed::UnknownCode)?;
            if !is_code(code) {
                return Err(Malformed::UnknownCode);
            }
            let site = match words.next() {
                None => None,
                Some("at") => {
                    if words.next() != Some("site") {
                        return Err(Malformed::UnknownKeyword);
                    }
                    Some(site(words.next())?)
                }
                Some(_) => return Err(Malformed::Trailing),
            };
            Rule {
                code: Some(code),
                site,
            }
        }
        "site" => Rule {
            code: None,
            site: Some(site(words.next())?),
        },
        _ => return Err(Malformed::UnknownKeyword),
    };
    if words.next().is_some() {
        return Err(Malformed::Trailing);
    }
    Ok(Some(rule))
}

/// Every line of `text`, in order: `(line number, rule or why not)`, comments and blanks left
/// out.
pub fn parse<'a>(
    text: &'a str,
    is_code: impl Fn(&str) -> bool + Copy,
) -> impl Iterator<Item = (usize, Result<Rule<'a>, Malformed>)> {
    text.lines()
        .enumerate()
        .filter_map(move |(i, line)| match parse_line(line, is_code) {
            Ok(None) => None,
            Ok(Some(rule)) => Some((i + 1, Ok(rule))),
            Err(e) => Some((i + 1, Err(e))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_code(w: &str) -> bool {
        matches!(w, "SHM002" | "create-without-excl")
    }

    #[test]
    fn every_form() {
        let text = "# comment\n\ncode SHM002\nsite queue.c:42  # trailing comment\nsite make_segment\n\
                    code create-without-excl at site main\nbogus\ncode SHM999\nsite a:b:c\n\
                    code SHM002 site x.c:1\ncode SHM002 at site x.c:1 extra\n";
        let got: Vec<_> = parse(text, is_code).collect();
        assert_eq!(
            got,
            vec![
                (
                    3,
                    Ok(Rule {
                        code: Some("SHM002"),
                        site: None
                    })
                ),
                (
                    4,
                    Ok(Rule {
                        code: None,
                        site: Some(Site::Line {
                            file: "queue.c",
                            line: 42
                        })
                    })
                ),
                (
                    5,
                    Ok(Rule {
                        code: None,
                        site: Some(Site::Function("make_segment"))
                    })
                ),
                (
                    6,
                    Ok(Rule {
                        code: Some("create-without-excl"),
                        site: Some(Site::Function("main"))
                    })
                ),
                (7, Err(Malformed::UnknownKeyword)),
                (8, Err(Malformed::UnknownCode)),
                (9, Err(Malformed::BadSite)),
                (10, Err(Malformed::Trailing)),
                (11, Err(Malformed::Trailing)),
            ]
        );
    }

    #[test]
    fn sites_match_by_function_or_file_suffix_and_line() {
        let f = Site::Function("main");
        assert!(f.matches(Some("main"), None, None));
        assert!(!f.matches(Some("main2"), None, None));
        let l = Site::Line {
            file: "dir/queue.c",
            line: 42,
        };
        assert!(l.matches(None, Some("/src/dir/queue.c"), Some(42)));
        assert!(l.matches(None, Some("dir/queue.c"), Some(42)));
        assert!(!l.matches(None, Some("/src/xdir/queue.c"), Some(42)));
        assert!(!l.matches(None, Some("/src/dir/queue.c"), Some(43)));
        assert!(!l.matches(None, None, Some(42)));
    }
}
