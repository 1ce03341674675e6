//! The corosync.conf syntax: a tree of `name {` ... `}` sections and `key: value` lines.
//!
//! The rules are those of Corosync's `exec/coroparse.c`, so any file Corosync reads is read
//! the same way here:
//! - one item per line; leading and trailing blanks (spaces, tabs, a CR) are ignored;
//! - a line whose first non-blank character is `#` is a comment (there are no trailing
//!   comments: `token: 3000 # ms` has the value `3000 # ms`);
//! - `name {` opens a section (nothing may follow the brace), a line `}` closes it;
//! - `key: value` splits at the first colon, so values may contain colons (IPv6
//!   addresses); a value wrapped in a matching pair of `"` or `'` loses that one pair;
//! - a key may appear twice, and the last one counts (the mapping step warns).
//!
//! Two deliberate differences, both only on input Corosync itself rejects or misreads:
//! a line with a colon before any brace is a key (Corosync would take `name: a{b` for a
//! section and fail), and a line that is none of the above is reported as a warning
//! instead of being skipped silently.

use std::fmt::Write as _;
use std::path::Path;

use super::{ConfError, ConfErrorKind, Warning, WarningKind};

/// How deep sections may nest. Corosync's deepest is three (`totem { interface { } }`,
/// `quorum { device { net { } } }`); the bound keeps hostile input from growing the stack
/// of open sections without limit.
const MAX_DEPTH: usize = 16;

/// A parsed file: its name (for messages), the top-level items, and syntax warnings.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfFile {
    /// How messages name the file: the path as given, or `<default>` for built-in text.
    pub name: String,
    /// The top level, as a section with an empty name on line 0.
    pub root: Section,
    /// Lines that were skipped, with the reason.
    pub warnings: Vec<Warning>,
}

/// A `name { ... }` section.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Section {
    pub name: String,
    /// The line of `name {`.
    pub line: usize,
    pub items: Vec<Item>,
}

/// One entry of a section, in file order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Item {
    Key(KeyValue),
    Section(Section),
}

/// A `key: value` line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyValue {
    pub key: String,
    /// The value with blanks and one pair of matching quotes removed.
    pub value: String,
    pub line: usize,
}

impl Section {
    /// The key-value items, in order.
    pub fn keys(&self) -> impl Iterator<Item = &KeyValue> {
        self.items.iter().filter_map(|i| match i {
            Item::Key(k) => Some(k),
            Item::Section(_) => None,
        })
    }

    /// The subsections, in order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.items.iter().filter_map(|i| match i {
            Item::Section(s) => Some(s),
            Item::Key(_) => None,
        })
    }
}

/// Reads and parses a configuration file; messages name it by `path` as given.
pub fn parse_file(path: &Path) -> Result<ConfFile, ConfError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfError {
        file: name.clone(),
        line: None,
        key: None,
        kind: ConfErrorKind::Io,
        message: format!("cannot read the configuration: {e}"),
    })?;
    parse(&name, &text)
}

/// Parses configuration text; `name` is how messages refer to it.
pub fn parse(name: &str, text: &str) -> Result<ConfFile, ConfError> {
    let syntax = |line: usize, message: String| ConfError {
        file: name.to_owned(),
        line: Some(line),
        key: None,
        kind: ConfErrorKind::Syntax,
        message,
    };
    let mut warnings = Vec::new();
    // The stack of open sections; the root is at the bottom and never popped.
    let mut stack = vec![Section { name: String::new(), line: 0, items: Vec::new() }];
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_matches([' ', '\t', '\r']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A colon before any brace makes a key line; otherwise a brace opens a section.
        let colon = line.find(':');
        let brace = line.find('{').filter(|&b| colon.is_none_or(|c| b < c));
        match (colon, brace) {
            (_, Some(b)) => {
                let section = line[..b].trim_matches([' ', '\t']);
                let after = line[b + 1..].trim_matches([' ', '\t']);
                if !after.is_empty() {
                    return Err(syntax(
                        line_no,
                        format!("unexpected {after:?} after '{{' (one item per line)"),
                    ));
                }
                if section.is_empty() {
                    return Err(syntax(line_no, "section without a name before '{'".to_owned()));
                }
                if stack.len() > MAX_DEPTH {
                    return Err(syntax(line_no, format!("sections nested more than {MAX_DEPTH} deep")));
                }
                stack.push(Section { name: section.to_owned(), line: line_no, items: Vec::new() });
            }
            (Some(c), _) => {
                let key = line[..c].trim_matches([' ', '\t']);
                if key.is_empty() {
                    return Err(syntax(line_no, "missing key before ':'".to_owned()));
                }
                let value = unquote(line[c + 1..].trim_matches([' ', '\t']));
                let kv = KeyValue { key: key.to_owned(), value: value.to_owned(), line: line_no };
                if let Some(open) = stack.last_mut() {
                    open.items.push(Item::Key(kv));
                }
            }
            (None, None) if line == "}" => {
                if stack.len() == 1 {
                    return Err(syntax(line_no, "'}' without an open section".to_owned()));
                }
                if let Some(done) = stack.pop()
                    && let Some(parent) = stack.last_mut()
                {
                    parent.items.push(Item::Section(done));
                }
            }
            (None, None) if line.contains('}') => {
                return Err(syntax(
                    line_no,
                    format!("unexpected text around '}}' in {line:?} (one item per line)"),
                ));
            }
            (None, None) => warnings.push(Warning {
                file: name.to_owned(),
                line: Some(line_no),
                key: None,
                kind: WarningKind::Ignored,
                message: format!("line ignored: {line:?} is not `key: value`, `name {{` or `}}`"),
            }),
        }
    }
    if stack.len() > 1
        && let Some(open) = stack.last()
    {
        return Err(syntax(open.line, format!("section `{}` is never closed", open.name)));
    }
    let root = stack.pop().unwrap_or(Section { name: String::new(), line: 0, items: Vec::new() });
    Ok(ConfFile { name: name.to_owned(), root, warnings })
}

/// Removes one pair of matching quotes, as Corosync does.
fn unquote(value: &str) -> &str {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(b'"'), Some(b'"')) | (Some(b'\''), Some(b'\'')) if value.len() >= 2 => {
            &value[1..value.len() - 1]
        }
        _ => value,
    }
}

impl ConfFile {
    /// Writes the tree back in corosync.conf syntax (tabs, one item per line). Parsing the
    /// result gives the same tree, line numbers aside; comments are not kept.
    pub fn render(&self) -> String {
        let mut out = String::new();
        render_items(&self.root.items, 0, &mut out);
        out
    }
}

fn render_items(items: &[Item], depth: usize, out: &mut String) {
    let indent = "\t".repeat(depth);
    for item in items {
        match item {
            Item::Key(kv) => {
                let v = &kv.value;
                let needs_quotes = v.is_empty()
                    || v.starts_with([' ', '\t', '"', '\''])
                    || v.ends_with([' ', '\t', '"', '\'', '\r']);
                if needs_quotes {
                    let _ = writeln!(out, "{indent}{}: \"{v}\"", kv.key);
                } else {
                    let _ = writeln!(out, "{indent}{}: {v}", kv.key);
                }
            }
            Item::Section(s) => {
                let _ = writeln!(out, "{indent}{} {{", s.name);
                render_items(&s.items, depth + 1, out);
                let _ = writeln!(out, "{indent}}}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key<'a>(s: &'a Section, k: &str) -> &'a KeyValue {
        s.keys().find(|kv| kv.key == k).unwrap()
    }

    // Goal: sections nest, keys keep their lines, comments and blank lines are skipped,
    // quotes are stripped once, and IPv6 values keep their colons.
    #[test]
    fn parses_corosync_syntax() {
        let text = "# comment\n\ntotem {\n\tversion: 2\n\tcluster_name: \"my cluster\"\n  \
                    interface {\r\n    mcastaddr: ff15::1\n  }\n}\nnodelist {\n node {\n  ring0_addr: 'fe80::1'\n }\n}\n";
        let f = parse("t.conf", text).unwrap();
        assert!(f.warnings.is_empty());
        let totem = f.root.sections().next().unwrap();
        assert_eq!((totem.name.as_str(), totem.line), ("totem", 3));
        assert_eq!(key(totem, "version").line, 4);
        assert_eq!(key(totem, "cluster_name").value, "my cluster");
        let iface = totem.sections().next().unwrap();
        assert_eq!(key(iface, "mcastaddr").value, "ff15::1");
        let node = f.root.sections().nth(1).unwrap().sections().next().unwrap();
        assert_eq!(key(node, "ring0_addr").value, "fe80::1");
    }

    // Goal: every syntax error names the file and the line.
    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("totem {\n  token: 1\n", 1, "never closed"),
            ("totem {\n}\n}\n", 3, "without an open section"),
            ("totem { token: 1 }\n", 1, "after '{'"),
            ("a {\n{\n}\n}\n", 2, "without a name"),
            ("a {\n  : x\n}\n", 2, "missing key"),
            ("a {\n  x }\n}\n", 2, "around '}'"),
        ];
        for (text, line, what) in cases {
            let e = parse("c.conf", text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
            assert_eq!(e.kind, ConfErrorKind::Syntax);
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("c.conf:{line}: ")), "{shown}");
            assert!(shown.contains(what), "{shown}");
        }
        let deep = "a {\n".repeat(MAX_DEPTH + 1);
        assert!(parse("c.conf", &deep).unwrap_err().to_string().contains("nested"));
    }

    // Goal: a line that is neither key, section nor brace is a warning naming its line.
    #[test]
    fn stray_line_is_a_warning() {
        let f = parse("c.conf", "totem {\n  token 3000\n}\n").unwrap();
        assert_eq!(f.warnings.len(), 1);
        assert_eq!(f.warnings[0].line, Some(2));
        assert!(f.warnings[0].to_string().contains("c.conf:2: line ignored"), "{}", f.warnings[0]);
    }

    fn strip_lines(items: &mut [Item]) {
        for i in items {
            match i {
                Item::Key(kv) => kv.line = 0,
                Item::Section(s) => {
                    s.line = 0;
                    strip_lines(&mut s.items);
                }
            }
        }
    }

    fn arb_items(depth: u32) -> impl Strategy<Value = Vec<Item>> {
        let key = ("[a-z_][a-z0-9_]{0,8}", "[ -~]{0,12}")
            .prop_map(|(key, value)| Item::Key(KeyValue { key, value: value.trim().to_owned(), line: 0 }));
        let leaf = proptest::collection::vec(key, 0..5);
        leaf.prop_recursive(depth, 40, 5, |inner| {
            proptest::collection::vec(
                prop_oneof![
                    ("[a-z_][a-z0-9_]{0,8}", "[ -~]{0,12}").prop_map(|(key, value)| Item::Key(KeyValue {
                        key,
                        value: value.trim().to_owned(),
                        line: 0
                    })),
                    ("[a-z][a-z_]{0,8}", inner).prop_map(|(name, items)| Item::Section(Section {
                        name,
                        line: 0,
                        items
                    })),
                ],
                0..5,
            )
        })
    }

    proptest! {
        // Goal: render then parse gives back the same tree, for any keys, nesting and
        // printable values (quotes, colons, braces, '#' included).
        #[test]
        fn render_round_trips(items in arb_items(3)) {
            let f = ConfFile { name: "r".into(), root: Section { name: String::new(), line: 0, items }, warnings: vec![] };
            let mut back = parse("r", &f.render()).unwrap();
            strip_lines(&mut back.root.items);
            prop_assert_eq!(back.root, f.root);
        }

        // Goal: the parser never panics, whatever the input.
        #[test]
        fn parse_never_panics(text in "[ -~\t\n{}:#\"']{0,300}") {
            let _ = parse("p", &text);
        }
    }
}
