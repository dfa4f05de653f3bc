//! Word error rate of a transcript against a reference text: word-level Levenshtein distance
//! (substitutions + deletions + insertions) over normalised words, divided by the number of
//! reference words. Normalisation keeps ASR formatting differences (case, punctuation, spacing)
//! from counting as errors.

/// Lowercase, drop punctuation, split on whitespace.
pub fn normalize(text: &str) -> Vec<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    cleaned.split_whitespace().map(str::to_owned).collect()
}

/// Edit distance between two word sequences, in O(len(b)) memory.
pub fn word_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(wa != wb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// WER of `hypothesis` against `reference`; `None` when the reference has no words (the ratio
/// would be undefined).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> Option<f64> {
    let r = normalize(reference);
    if r.is_empty() {
        return None;
    }
    let h = normalize(hypothesis);
    Some(word_distance(&r, &h) as f64 / r.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_case_punctuation_and_spacing() {
        assert_eq!(
            normalize("  Mary had a LITTLE lamb,\n its fleece... "),
            ["mary", "had", "a", "little", "lamb", "its", "fleece"]
        );
        assert_eq!(
            word_error_rate("Mary had a little lamb.", " mary  had a little LAMB"),
            Some(0.0)
        );
    }

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        // one substitution (b→x) over 4 words
        assert_eq!(word_error_rate("a b c d", "a x c d"), Some(0.25));
        // two deletions
        assert_eq!(word_error_rate("a b c d", "a d"), Some(0.5));
        // three insertions: WER can exceed 1
        assert_eq!(word_error_rate("a", "x a y z"), Some(3.0));
        // empty hypothesis: everything deleted
        assert_eq!(word_error_rate("a b", ""), Some(1.0));
        // substitution + insertion
        assert_eq!(
            word_error_rate("the cat sat", "the bat sat down"),
            Some(2.0 / 3.0)
        );
    }

    #[test]
    fn no_reference_words_means_undefined() {
        assert_eq!(word_error_rate("", "a b"), None);
        assert_eq!(word_error_rate(" ,.! ", "a b"), None);
    }
}
