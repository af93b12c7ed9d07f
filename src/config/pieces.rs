//! A large config's node list parsed in pieces, on every core. The YAML parser reads a whole
//! document into events before it builds anything (a million nodes: about a gigabyte, three
//! seconds on one core); a block sequence under a top-level `nodes:` is cut instead into runs
//! of whole items, each parsed on its own, and the rest of the file with `nodes: []` in their
//! place. Errors name the same line and item as a whole parse would. A file that could mean
//! something else cut up (anchors or aliases, which may point across items; several
//! documents; tabs) is parsed whole.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::ConfigError;
use super::schema::NodeSpec;

/// Files smaller than this are parsed whole: the pieces only pay for large node lists.
pub(super) const MIN_BYTES: usize = 1 << 20;
/// Lines in one piece: its events stay a few megabytes.
const PIECE_LINES: usize = 16_384;

/// A file with its node list cut out.
pub(super) struct Cut<'a> {
    /// The file with `[]` in place of the node list, every line where it was.
    pub head: String,
    /// Runs of whole items: the 1-based line each starts at, the index of its first item, its
    /// text.
    pieces: Vec<Piece<'a>>,
}

struct Piece<'a> {
    first_line: usize,
    first_item: usize,
    text: &'a str,
}

/// Cuts out the node list of `text`, if it is a large block sequence safe to cut.
pub(super) fn cut(text: &str) -> Option<Cut<'_>> {
    if text.len() < MIN_BYTES || text.contains(['&', '*', '\t']) {
        return None;
    }
    let mut lines = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        lines.push((at, line));
        at += line.len();
    }
    let directive = |l: &str| l.starts_with("---") || l.starts_with("...") || l.starts_with('%');
    if lines.iter().any(|(_, l)| directive(l)) {
        return None;
    }
    let key = lines.iter().position(|(_, l)| {
        l.strip_prefix("nodes:").is_some_and(|rest| {
            let rest = rest.trim();
            rest.is_empty() || rest.starts_with('#')
        })
    })?;
    let first = key + 1 + lines[key + 1..].iter().position(|(_, l)| !skipped(l))?;
    let indent = lines[first].1.len() - lines[first].1.trim_start_matches(' ').len();
    if !is_item(lines[first].1, indent) {
        return None;
    }
    // The list goes on while lines are items at its indent, more indented, blank or comments.
    let end = first
        + lines[first..]
            .iter()
            .position(|(_, l)| !skipped(l) && !is_item(l, indent) && indentation(l) <= indent)
            .unwrap_or(lines.len() - first);
    let mut pieces = Vec::new();
    let (mut start, mut items) = (first, 0);
    for i in first..=end {
        let boundary = i == end || (i - start >= PIECE_LINES && is_item(lines[i].1, indent));
        if boundary && i > start {
            let (from, to) = (lines[start].0, lines.get(i).map_or(text.len(), |l| l.0));
            let text = &text[from..to];
            pieces.push(Piece {
                first_line: start + 1,
                first_item: items,
                text,
            });
            items += lines[start..i]
                .iter()
                .filter(|(_, l)| is_item(l, indent))
                .count();
            start = i;
        }
    }
    let mut head = String::with_capacity(lines[..first].iter().map(|l| l.1.len()).sum());
    for (i, (_, line)) in lines.iter().enumerate() {
        match i {
            // Indented, so that it is the value of `nodes:` even where the items were not.
            i if i == first => head.push_str(&format!("{}[]\n", " ".repeat(indent.max(1)))),
            i if i > first && i < end => head.push('\n'),
            _ => head.push_str(line),
        }
    }
    Some(Cut { head, pieces })
}

/// Blank or comment only.
fn skipped(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A sequence item at `indent`: `-` followed by a space or the end of the line.
fn is_item(line: &str, indent: usize) -> bool {
    indentation(line) == indent
        && line[indent..]
            .strip_prefix('-')
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\n', '\r']))
}

impl Cut<'_> {
    /// Parses every piece, on as many threads as there are cores; the first error in file
    /// order is the one reported.
    pub(super) fn nodes(&self, full_text: &str) -> Result<Vec<NodeSpec>, ConfigError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(self.pieces.len());
        let next = AtomicUsize::new(0);
        // Each worker takes the next piece until none is left.
        let work = || {
            let mut parsed: Vec<(usize, Parsed)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(piece) = self.pieces.get(i) else {
                    return parsed;
                };
                parsed.push((i, piece.parse(full_text)));
            }
        };
        let mut parsed: Vec<(usize, Parsed)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a piece's parser panicked"))
                .collect()
        });
        parsed.sort_unstable_by_key(|(i, _)| *i);
        let count = parsed
            .iter()
            .map(|(_, p)| p.as_ref().map_or(0, Vec::len))
            .sum();
        let mut nodes = Vec::with_capacity(count);
        for (_, piece) in parsed {
            nodes.extend(piece?);
        }
        Ok(nodes)
    }
}

/// One piece's nodes, or why not.
type Parsed = Result<Vec<NodeSpec>, ConfigError>;

impl Piece<'_> {
    fn parse(&self, full_text: &str) -> Result<Vec<NodeSpec>, ConfigError> {
        serde_yaml::from_str(self.text).map_err(|e| {
            // As a whole parse says it: `nodes[i]` for this piece's `[j]`, lines in the file.
            let message = e.to_string();
            let path = message.strip_prefix('.').unwrap_or(&message);
            let message = match path.strip_prefix('[').and_then(|m| m.split_once(']')) {
                Some((j, rest)) if j.parse::<usize>().is_ok() => {
                    let i = self.first_item + j.parse::<usize>().unwrap_or(0);
                    format!("nodes[{i}]{rest}")
                }
                _ => message,
            };
            super::parse_error_with(full_text, message, e.location(), self.first_line - 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{schema, Config};
    use super::*;

    /// A config over [`MIN_BYTES`] with its nodes between other keys, in every style a list
    /// may take: flow items, block items, comments and blank lines, a block scalar.
    fn large(items_indent: &str) -> String {
        let mut yaml = "listen: 127.0.0.1:0\nreplicas: 2\nnodes:   # the nodes\n".to_string();
        for i in 0..40_000 {
            match i % 4 {
                0 => yaml += &format!("{items_indent}- {{ id: n{i}, url: \"http://127.0.0.1:{}\" }}\n", 1 + i),
                1 => yaml += &format!(
                    "{items_indent}- id: n{i}\n{items_indent}  url: http://127.0.0.1:{}\n{items_indent}  weight: 2\n",
                    1 + i
                ),
                2 => yaml += &format!(
                    "\n# a comment\n{items_indent}-\n{items_indent}  id: 'n{i}'\n{items_indent}  zone: >-\n{items_indent}    z{i}\n{items_indent}  url: \"http://127.0.0.1:{}\"\n",
                    1 + i
                ),
                _ => yaml += &format!("{items_indent}- {{id: n{i},\n{items_indent}   url: \"http://127.0.0.1:{}\"}}\n", 1 + i),
            }
        }
        yaml + "write_quorum: 1\n"
    }

    fn whole(text: &str) -> Result<Config, ConfigError> {
        let file: schema::File =
            serde_yaml::from_str(text).map_err(|e| super::super::parse_error(text, &e))?;
        super::super::validate(text, file)
    }

    #[test]
    fn a_large_list_cut_in_pieces_reads_as_the_whole_file_does() {
        for indent in ["", "  "] {
            let text = large(indent);
            let cut = cut(&text).expect("a list to cut");
            assert!(cut.pieces.len() > 4, "{} pieces", cut.pieces.len());
            let config = Config::from_yaml(&text).unwrap();
            assert_eq!(config.nodes.len(), 40_000);
            assert_eq!((config.replicas, config.write_quorum), (2, 1));
            assert_eq!(config, whole(&text).unwrap());
        }
    }

    #[test]
    fn an_error_in_a_piece_names_the_item_and_line_a_whole_parse_does() {
        let text = large("  ");
        let cases = [
            ("id: n30001\n", "id: n30001\n    wieght: 3\n"),
            ("url: http://127.0.0.1:30002\n", "url: 7\n"),
            ("{ id: n36000,", "{ id: n36000, weight: -1,"),
        ];
        for (from, to) in cases {
            let bad = text.replacen(from, to, 1);
            let (cut_error, whole_error) = (Config::from_yaml(&bad), whole(&bad));
            assert!(cut_error.is_err(), "{to}");
            assert_eq!(
                cut_error.unwrap_err().to_string(),
                whole_error.unwrap_err().to_string()
            );
        }
        // And one in the rest of the file.
        let bad = text.replacen("replicas: 2", "replicas: two", 1);
        assert_eq!(
            Config::from_yaml(&bad).unwrap_err().to_string(),
            whole(&bad).unwrap_err().to_string()
        );
    }

    #[test]
    fn what_cutting_could_change_is_parsed_whole() {
        let text = large("");
        for unsafe_to_cut in [
            text.replacen("replicas: 2", "defaults: &d { weight: 1 }\nreplicas: 2", 1),
            text.replacen("listen:", "---\nlisten:", 1),
            text.replacen("  url: http://127.0.0.1:2", "\turl: http://127.0.0.1:2", 1),
        ] {
            assert!(cut(&unsafe_to_cut).is_none());
        }
        assert!(cut(&text[..1000]).is_none(), "small files are parsed whole");
    }
}
