//! Just enough of PromQL's lexical structure for the dashboard and rule tests: the metric
//! names an expression queries, and the operands of its top-level `and`/`or`/`unless` and
//! comparisons. Both skip string literals the same way ([`string_end`]).

use std::collections::BTreeSet;

/// The index after the string literal that opens at `chars[start]` (a `"`), escapes included.
fn string_end(chars: &[char], start: usize) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// PromQL keywords, functions and modifiers: identifiers that are not metric names.
pub const PROMQL_WORDS: &[&str] = &[
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "min",
    "avg",
    "count",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "time",
    "le",
    "bool",
    "offset",
    "irate",
    "delta",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "absent",
    "absent_over_time",
    "label_replace",
    "clamp_min",
    "clamp_max",
    "vector",
    "scalar",
    "changes",
    "topk",
    "bottomk",
    "abs",
    "inf",
    "nan",
];

/// Identifiers in an expression outside label matchers, strings and grouping clauses that
/// stand where a metric name can: the names an expression queries.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let bytes: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut brace) = (0, 0);
    let mut after_grouping = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            '"' => {
                i = string_end(&bytes, i);
                continue;
            }
            '{' => brace += 1,
            '}' => brace -= 1,
            '[' => {
                // Skip range/subquery durations.
                while i < bytes.len() && bytes[i] != ']' {
                    i += 1;
                }
            }
            '(' if after_grouping => {
                while i < bytes.len() && bytes[i] != ')' {
                    i += 1;
                }
                after_grouping = false;
            }
            c if brace == 0 && (c.is_ascii_alphabetic() || c == '_' || c == ':') => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
                {
                    i += 1;
                }
                let word: String = bytes[start..i].iter().collect();
                after_grouping = [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str());
                let prev = bytes[..start].iter().rev().find(|c| !c.is_whitespace());
                let unit_suffix = prev.is_some_and(|p| p.is_ascii_digit()); // 5m, 1h
                if !PROMQL_WORDS.contains(&word.as_str()) && !word.starts_with("__") && !unit_suffix
                {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Split at top-level `and`/`or`/`unless` and comparison operators (outside parentheses,
/// brackets, braces and strings).
pub fn top_level_operands(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut depth = 0i32;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut cut = 0; // length of an operator starting at i
        match c {
            '"' => {
                i = string_end(&chars, i);
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if depth == 0 => {
                let rest: String = chars[i..].iter().take(7).collect();
                let word_boundary_before = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
                for kw in ["and", "or", "unless"] {
                    let after = chars.get(i + kw.len());
                    if word_boundary_before
                        && rest.starts_with(kw)
                        && after.is_none_or(|a| !a.is_ascii_alphanumeric() && *a != '_')
                    {
                        cut = kw.len();
                    }
                }
                for op in ["==", "!=", ">=", "<=", ">", "<"] {
                    if cut == 0 && rest.starts_with(op) {
                        cut = op.len();
                    }
                }
            }
            _ => {}
        }
        if cut > 0 {
            parts.push(chars[start..i].iter().collect::<String>());
            i += cut;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(chars[start..].iter().collect());
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Operands worth evaluating on their own: not numeric literals; `absent*(x)` becomes `x`.
pub fn witness_operands(expr: &str) -> Vec<String> {
    top_level_operands(expr)
        .into_iter()
        .filter(|p| p.chars().any(|c| c.is_ascii_alphabetic()))
        .map(|p| {
            for f in ["absent_over_time(", "absent("] {
                if let Some(inner) = p.strip_prefix(f).and_then(|r| r.strip_suffix(')')) {
                    let inner = inner.trim();
                    return match inner.rfind('[') {
                        Some(b) if f == "absent_over_time(" => inner[..b].to_string(),
                        _ => inner.to_string(),
                    };
                }
            }
            p
        })
        .collect()
}
