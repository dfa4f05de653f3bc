//! Finding the line of a field in the config text, for semantic errors that serde cannot place
//! (a duplicate probe name, a timeout longer than its interval). It reads block-style YAML the
//! way people write configs: top-level keys at column 1, `probes:` as a list of mappings. For
//! anything else (flow style) it finds nothing and the error simply has no line.

pub struct Locator<'a> {
    lines: Vec<&'a str>,
}

/// 1-based line and column.
pub type Pos = (usize, usize);

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// Column of `key:` in `line` if the line's content (after an optional `- `) starts with it.
fn key_col(line: &str, key: &str) -> Option<usize> {
    let start = indent(line);
    let mut rest = &line[start..];
    let mut col = start;
    if let Some(r) = rest.strip_prefix("- ") {
        col += 2 + (r.len() - r.trim_start().len());
        rest = r.trim_start();
    }
    let after = rest.strip_prefix(key)?;
    let after = after.trim_start_matches(['"', '\'']);
    after.starts_with(':').then_some(col + 1)
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Locator {
            lines: text.lines().collect(),
        }
    }

    /// Line range `[start, end)` (0-based) of the body of top-level `key:`.
    fn top_range(&self, key: &str) -> Option<(usize, usize, Pos)> {
        let start = self
            .lines
            .iter()
            .position(|l| indent(l) == 0 && key_col(l, key).is_some())?;
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| !is_blank_or_comment(l) && indent(l) == 0 && !l.starts_with("- "))
            .map_or(self.lines.len(), |p| start + 1 + p);
        Some((start, end, (start + 1, 1)))
    }

    /// Lines of the `i`-th item of the top-level `probes:` list.
    fn probe_range(&self, i: usize) -> Option<(usize, usize)> {
        let (start, end, _) = self.top_range("probes")?;
        let mut items = Vec::new();
        let mut dash_indent = None;
        for n in start + 1..end {
            let l = self.lines[n];
            if is_blank_or_comment(l) {
                continue;
            }
            let ind = indent(l);
            if l[ind..].starts_with("- ") || &l[ind..] == "-" {
                match dash_indent {
                    None => {
                        dash_indent = Some(ind);
                        items.push(n);
                    }
                    Some(d) if d == ind => items.push(n),
                    _ => {}
                }
            }
        }
        let first = *items.get(i)?;
        let last = items.get(i + 1).copied().unwrap_or(end);
        Some((first, last))
    }

    /// Find `path` (keys, outermost first) inside lines `[from, to)`.
    fn find_in(&self, mut from: usize, to: usize, path: &[&str]) -> Option<Pos> {
        let mut pos = None;
        for key in path {
            let n = (from..to).find(|&n| key_col(self.lines[n], key).is_some())?;
            pos = Some((n + 1, key_col(self.lines[n], key)?));
            from = n;
        }
        pos
    }

    /// Position of `path` under top-level `section` (e.g. `otlp`, `["protocol"]`).
    pub fn top(&self, section: &str, path: &[&str]) -> Option<Pos> {
        let (start, end, pos) = self.top_range(section)?;
        if path.is_empty() {
            return Some(pos);
        }
        self.find_in(start, end, path).or(Some(pos))
    }

    /// Position of `path` in probe `i`; the item's first line when the key is not written.
    pub fn probe(&self, i: usize, path: &[&str]) -> Option<Pos> {
        let (start, end) = self.probe_range(i)?;
        let item = (start + 1, indent(self.lines[start]) + 3);
        if path.is_empty() {
            return Some(item);
        }
        self.find_in(start, end, path).or(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "server:\n  listen: 0.0.0.0:9464\nprobes:\n  - name: a\n    target: http://x\n    deadlines:\n      connect: 5s\n  # comment\n  - name: b\n    interval: 30s\notlp:\n  protocol: grpc\n";

    #[test]
    fn finds_probe_keys_and_sections() {
        let l = Locator::new(TEXT);
        assert_eq!(l.probe(0, &["name"]), Some((4, 5)));
        assert_eq!(l.probe(0, &["deadlines", "connect"]), Some((7, 7)));
        assert_eq!(l.probe(1, &["interval"]), Some((10, 5)));
        assert_eq!(
            l.probe(1, &["chunk"]),
            Some((9, 5)),
            "unwritten key: the item's line"
        );
        assert_eq!(l.probe(2, &["name"]), None);
        assert_eq!(l.top("otlp", &["protocol"]), Some((12, 3)));
        assert_eq!(l.top("server", &[]), Some((1, 1)));
    }
}
