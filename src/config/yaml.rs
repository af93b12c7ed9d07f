//! Reading config text within bounds, and finding lines for errors found after parsing. A
//! config is read whole, so it is bounded before the YAML parser sees it: at most
//! [`max_config_bytes`], nested at most [`MAX_DEPTH`] deep. A file past either is refused at
//! once with a clear error, instead of keeping a core busy for minutes.

use std::io::Read;
use std::path::Path;

use super::error::ConfigError;

/// The largest config file read unless [`MAX_CONFIG_BYTES_VAR`] says otherwise: ample for
/// about a hundred thousand nodes.
pub const MAX_CONFIG_BYTES: usize = 8 * 1024 * 1024;
/// The environment variable that raises (or lowers) the limit, in bytes: a million nodes take
/// about 60 MB.
pub const MAX_CONFIG_BYTES_VAR: &str = "HRWPROXY_MAX_CONFIG_BYTES";

/// The largest config text accepted: [`MAX_CONFIG_BYTES_VAR`] where it is set to a number of
/// bytes (a value that is not one is ignored, with a warning), else [`MAX_CONFIG_BYTES`].
pub fn max_config_bytes() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| match std::env::var(MAX_CONFIG_BYTES_VAR) {
        Err(_) => MAX_CONFIG_BYTES,
        Ok(value) => value.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(
                "{MAX_CONFIG_BYTES_VAR}={value:?} is not a number of bytes; \
                 the limit stays {MAX_CONFIG_BYTES}"
            );
            MAX_CONFIG_BYTES
        }),
    })
}

/// Why text of `len` bytes is refused.
fn too_large(what: &str, limit: usize) -> String {
    format!(
        "the {what} is larger than {limit} bytes (set {MAX_CONFIG_BYTES_VAR} to raise the limit)"
    )
}
/// The deepest nesting of mappings and sequences accepted; a real config needs four.
pub const MAX_DEPTH: usize = 32;

/// The text of a config file, refused if it is larger than [`max_config_bytes`].
pub(crate) fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read_error = |reason: String| ConfigError::Read {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| read_error(e.to_string()))?;
    let mut bytes = Vec::new();
    let limit = max_config_bytes();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(e.to_string()))?;
    if bytes.len() > limit {
        return Err(read_error(too_large("file", limit)));
    }
    String::from_utf8(bytes).map_err(|e| {
        read_error(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Refuses text larger than [`max_config_bytes`] or nested deeper than [`MAX_DEPTH`], naming
/// the line where the limit is passed. One pass, no allocation: it runs before the parser.
///
/// Block collections nest by indentation and by `- ` entries that start on the same line;
/// flow collections by `[` and `{`, which open one only where a node can start (a `{` inside
/// a plain value such as a password is just a character). Quoted scalars (with `\` escapes in
/// double quotes and `''` in single quotes) and comments are skipped.
pub(crate) fn check_bounds(text: &str) -> Result<(), ConfigError> {
    let limit = max_config_bytes();
    if text.len() > limit {
        return Err(ConfigError::invalid(too_large("config", limit)));
    }
    let mut scan = Scan::default();
    for (number, line) in text.lines().enumerate() {
        scan.line(line).map_err(|()| {
            ConfigError::at(
                format!("nested more than {MAX_DEPTH} levels deep"),
                Some(number + 1),
                None,
            )
        })?;
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// Open flow collections.
    flow: usize,
    /// The indentation of each open block collection.
    indents: Vec<usize>,
    /// Inside a quoted scalar that may go on over lines: its quote.
    quote: Option<char>,
}

impl Scan {
    fn depth(&self) -> usize {
        self.flow + self.indents.len()
    }

    fn line(&mut self, line: &str) -> Result<(), ()> {
        let content = line.trim_start_matches(' ');
        let mut at_node = self.flow > 0 || self.quote.is_none();
        if self.flow == 0
            && self.quote.is_none()
            && !content.is_empty()
            && !content.starts_with('#')
        {
            let mut indent = line.len() - content.len();
            while self.indents.last().is_some_and(|&i| i >= indent) {
                self.indents.pop();
            }
            let mut rest = content;
            loop {
                self.indents.push(indent);
                if self.depth() > MAX_DEPTH {
                    return Err(());
                }
                match rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
                    Some(after) => {
                        let after_trimmed = after.trim_start_matches(' ');
                        indent += rest.len() - after_trimmed.len();
                        rest = after_trimmed;
                    }
                    None => break,
                }
            }
        }
        let mut chars = line.chars().peekable();
        let mut previous = ' ';
        while let Some(c) = chars.next() {
            match self.quote {
                Some('"') => match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => self.quote = None,
                    _ => {}
                },
                Some(_) => {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            self.quote = None;
                        }
                    }
                }
                None => match c {
                    ' ' | '\t' => {}
                    '#' if previous == ' ' || previous == '\t' => break,
                    '"' | '\'' if at_node => {
                        self.quote = Some(c);
                        at_node = false;
                    }
                    '[' | '{' if at_node || self.flow > 0 => {
                        self.flow += 1;
                        if self.depth() > MAX_DEPTH {
                            return Err(());
                        }
                        at_node = true;
                    }
                    ']' | '}' if self.flow > 0 => {
                        self.flow -= 1;
                        at_node = false;
                    }
                    ',' if self.flow > 0 => at_node = true,
                    // A key's value, or a block entry, starts after its indicator and a space.
                    ':' | '-' | '?' if chars.peek().is_none_or(|n| *n == ' ' || *n == '\t') => {
                        at_node = true
                    }
                    ':' if self.flow > 0 && chars.peek().is_some_and(|n| ",]}".contains(*n)) => {
                        at_node = true
                    }
                    _ => at_node = false,
                },
            }
            previous = c;
        }
        Ok(())
    }
}

/// The 1-based line of a top-level `key:` in block-style YAML, for errors found after parsing.
pub(crate) fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// The 1-based line of the `nth` (1-based) `id: <id>` entry, for errors found after parsing.
pub(crate) fn id_line(text: &str, id: &str, nth: usize) -> Option<usize> {
    let is_id = |line: &str| {
        line.match_indices("id:").any(|(at, _)| {
            let before_ok = at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric();
            let value = line[at + 3..].trim_start();
            let value = value.trim_start_matches(['"', '\'']);
            before_ok
                && value.strip_prefix(id).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with(['"', '\'', ',', '}', ' ', '#'])
                })
        })
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| is_id(line))
        .nth(nth - 1)
        .map(|(i, _)| i + 1)
}

/// Where a key repeated in one mapping really is: the parser reports the mapping that holds
/// it, at `(line, column)`; the duplicate is the second `key:` of that mapping (in block style
/// the lines indented like its first key, in flow style within its braces).
pub(crate) fn duplicate_key_position(
    text: &str,
    key: &str,
    line: usize,
    column: usize,
) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.get(line.checked_sub(1)?)?;
    let starts_key = |s: &str| {
        s.strip_prefix(key)
            .or_else(|| {
                s.strip_prefix('"')
                    .and_then(|s| s.strip_prefix(key))
                    .and_then(|s| s.strip_prefix('"'))
            })
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    };
    let mut seen = 0;
    // Flow style: scan the mapping's braces from where it starts, quoted scalars skipped; a
    // key starts where an entry does (after `{` or `,` at the mapping's own depth).
    if first
        .get(column.saturating_sub(1)..)
        .is_some_and(|s| s.starts_with('{'))
    {
        let mut depth = 0usize;
        let mut entry_starts = false;
        let mut quote: Option<char> = None;
        for (offset, text_line) in lines[line - 1..].iter().enumerate() {
            let start = if offset == 0 { column - 1 } else { 0 };
            for (at, c) in text_line.char_indices().skip_while(|(i, _)| *i < start) {
                if let Some(q) = quote {
                    if c == q {
                        quote = None;
                    }
                    continue;
                }
                match c {
                    '{' | '[' => {
                        depth += 1;
                        entry_starts = depth == 1;
                    }
                    '}' | ']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return None;
                        }
                    }
                    ',' if depth == 1 => entry_starts = true,
                    ' ' | '\t' => {}
                    _ => {
                        if entry_starts && depth == 1 && starts_key(&text_line[at..]) {
                            seen += 1;
                            if seen == 2 {
                                return Some((line + offset, at + 1));
                            }
                        }
                        if c == '"' || c == '\'' {
                            quote = Some(c);
                        }
                        entry_starts = false;
                    }
                }
            }
        }
        return None;
    }
    // Block style: the mapping's keys are the lines at its first key's column.
    let indent = column.saturating_sub(1);
    for (offset, text_line) in lines[line - 1..].iter().enumerate() {
        let content = text_line.trim_start_matches([' ', '-']);
        let at = text_line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if offset > 0 && at < indent {
            break;
        }
        if at == indent && starts_key(content) {
            seen += 1;
            if seen == 2 {
                return Some((line + offset, at + 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_deep_nesting_at_once() {
        let deep = format!("nodes: [{}", "{".repeat(100_000));
        let err = check_bounds(&deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 32 levels"), "{err}");
        let dashes = format!("nodes:\n{}x\n", "- ".repeat(100));
        assert!(check_bounds(&dashes).is_err());
        let mut indented = String::new();
        for depth in 0..40 {
            indented.push_str(&" ".repeat(depth));
            indented.push_str(&format!("k{depth}:\n"));
        }
        let err = check_bounds(&indented).unwrap_err().to_string();
        assert!(err.starts_with("line 33:"), "{err}");
    }

    #[test]
    fn bounds_pass_real_configs_and_ignore_brackets_in_strings_and_plain_values() {
        let real = "listen: 127.0.0.1:8080 # [[[[\nnodes:\n  - id: a\n    url: \"http://h:1/{{{{\"\n  - { id: b, url: 'http://h:2[', weight: 2 }\nlimits: { max_connections: 5 }\n";
        check_bounds(real).unwrap();
        // Passwords with brackets, unquoted, in 40 block-style nodes.
        let mut nodes = String::from("nodes:\n");
        for i in 0..40 {
            nodes.push_str(&format!(
                "  - id: n{i}\n    url: redis://:pa{{ss[@10.0.0.{i}:6379\n"
            ));
        }
        check_bounds(&nodes).unwrap();
        // Quotes that end in escapes, and quoted scalars over several lines.
        check_bounds("nodes: [ \"\\\\\", 'it''s [', \"a\n  [b\" ]\n").unwrap();
    }

    #[test]
    fn escapes_cannot_hide_deep_nesting() {
        for prefix in [
            "nodes: [ \"\\\\\", ",
            "nodes: [ 'it''s', ",
            "nodes: [ \"\\\"\", ",
        ] {
            let deep = format!("{prefix}{}", "[".repeat(100_000));
            let err = check_bounds(&deep).unwrap_err().to_string();
            assert!(err.contains("nested more than"), "{prefix}: {err}");
        }
    }

    #[test]
    fn duplicate_keys_are_found_where_they_are() {
        let block = "listen: 127.0.0.1:0\nnodes:\n  - id: a\n    url: \"http://h:1\"\nreplicas: 1\n# replicas: 9\nreplicas: 2\n";
        assert_eq!(
            duplicate_key_position(block, "replicas", 1, 1),
            Some((7, 1))
        );
        let nested = "nodes:\n  - id: a\n    url: \"http://h:1\"\n    url: \"http://h:2\"\n";
        assert_eq!(duplicate_key_position(nested, "url", 2, 5), Some((4, 5)));
        let flow = "nodes:\n  - { id: a, url: \"http://h:1\",\n      id: b }\n";
        assert_eq!(duplicate_key_position(flow, "id", 2, 5), Some((3, 7)));
    }
}
