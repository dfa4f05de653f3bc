//! Word error rate of a transcript against a reference: word-level Levenshtein distance
//! (substitutions + deletions + insertions) over normalised words, divided by the reference's
//! word count. Normalisation lowercases, turns punctuation into spaces (keeping apostrophes
//! inside words, so "it's" stays one word) and collapses whitespace.

/// Lowercased words with punctuation removed.
pub fn normalise(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Minimum number of word edits turning `reference` into `hypothesis` (two-row DP).
pub fn word_edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

/// WER, or `None` when the reference has no words (the rate would be undefined).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> Option<f64> {
    let r = normalise(reference);
    if r.is_empty() {
        return None;
    }
    let h = normalise(hypothesis);
    Some(word_edits(&r, &h) as f64 / r.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_after_normalisation_is_zero() {
        assert_eq!(
            word_error_rate("Mary had a little lamb.", " mary HAD a  little lamb"),
            Some(0.0)
        );
        assert_eq!(
            word_error_rate("It's white as snow", "it's white, as snow!"),
            Some(0.0)
        );
    }

    #[test]
    fn counts_substitutions_deletions_insertions() {
        // one substitution (had→has) of 5 words
        assert_eq!(
            word_error_rate("mary had a little lamb", "mary has a little lamb"),
            Some(0.2)
        );
        // one deletion
        assert_eq!(
            word_error_rate("mary had a little lamb", "mary a little lamb"),
            Some(0.2)
        );
        // two insertions
        assert_eq!(
            word_error_rate("mary had a little lamb", "oh mary had a little lamb too"),
            Some(0.4)
        );
        // empty hypothesis: all deletions
        assert_eq!(word_error_rate("one two", ""), Some(1.0));
    }

    #[test]
    fn empty_reference_is_undefined() {
        assert_eq!(word_error_rate("  ...  ", "anything"), None);
    }
}
