//! Regular expressions over a collection of strings (Beam's `Regex`
//! transforms), with the `regex` crate's syntax. A pattern is compiled by
//! the caller (`Regex::new(pattern)?`), so a bad pattern is an error where
//! the pipeline is built, not while it runs. Whole-string matches
//! (`regex_matches*`) rebuild the pattern from its text: give flags inline
//! (`(?i)…`), not through `RegexBuilder`.

use regex::Regex;

use crate::transforms::elementwise::ElementwiseExt;
use crate::PCollection;

pub use regex::Regex as Pattern;

/// `regex_*`: match, find, replace and split strings (Beam's `Regex`).
///
/// ```
/// use weir_pipeline::prelude::*;
/// use weir_pipeline::transforms::regex::Pattern;
///
/// let p = Pipeline::new();
/// let lines = p.create(["GET /a 200", "POST /b 500", "oops"].map(String::from));
/// let status = Pattern::new(r"^(\w+) (\S+) (\d{3})$").unwrap();
/// let failing = lines.regex_find_kv(&status, 2, 3).filter(|(_, code)| code.starts_with('5')).collect();
/// let words = lines.regex_split(&Pattern::new(" ").unwrap(), false).collect();
/// p.run_with(&weir_runner_reference::ReferenceRunner::default()).unwrap();
/// assert_eq!(failing.values(), vec![("/b".to_string(), "500".to_string())]);
/// assert_eq!(words.values().len(), 7);
/// ```
pub trait RegexExt {
    /// The strings the pattern matches as a whole (Java's
    /// `Matcher.matches`); the others are dropped.
    fn regex_matches(&self, re: &Regex) -> PCollection<String>;
    /// Of the strings the pattern matches as a whole, capture group
    /// `group` (0: the whole match); a string whose group took no part in
    /// the match is dropped.
    fn regex_matches_group(&self, re: &Regex, group: usize) -> PCollection<String>;
    /// The first match of the pattern in each string (Java's
    /// `Matcher.find`); strings without one are dropped.
    fn regex_find(&self, re: &Regex) -> PCollection<String>;
    /// Capture group `group` of the first match in each string.
    fn regex_find_group(&self, re: &Regex, group: usize) -> PCollection<String>;
    /// Capture groups `key` and `value` of the first match in each string
    /// as a pair (Beam's `Regex.findKV`); a string without a match, or
    /// whose groups took no part in it, is dropped.
    fn regex_find_kv(&self, re: &Regex, key: usize, value: usize) -> PCollection<(String, String)>;
    /// Every match in each string, each as its capture groups (group 0
    /// first; an empty string for a group that took no part): Beam's
    /// `Regex.findAll`. Strings without a match are dropped.
    fn regex_find_all(&self, re: &Regex) -> PCollection<Vec<String>>;
    /// Each string with every match replaced (`$1`, `${name}` refer to
    /// groups, as in [`Regex::replace_all`]).
    fn regex_replace_all(&self, re: &Regex, replacement: &str) -> PCollection<String>;
    /// Each string with its first match replaced.
    fn regex_replace_first(&self, re: &Regex, replacement: &str) -> PCollection<String>;
    /// The pieces of each string between matches, each as an element;
    /// empty pieces only if `output_empty` (Beam's `Regex.split`).
    fn regex_split(&self, re: &Regex, output_empty: bool) -> PCollection<String>;
}

/// `re` anchored at both ends, for whole-string matches with the same
/// group numbers and names.
fn whole(re: &Regex) -> Regex {
    Regex::new(&format!(r"\A(?:{})\z", re.as_str())).unwrap_or_else(|_| re.clone())
}

/// Whether `m` (a match of `whole(re)`, or of `re` if anchoring failed) is
/// a match of the whole of `s`.
fn spans(s: &str, m: &regex::Match<'_>) -> bool {
    m.start() == 0 && m.end() == s.len()
}

impl RegexExt for PCollection<String> {
    fn regex_matches(&self, re: &Regex) -> PCollection<String> {
        let re = whole(re);
        self.filter(move |s| re.find(s).is_some_and(|m| spans(s, &m))).named("Regex.Matches")
    }
    fn regex_matches_group(&self, re: &Regex, group: usize) -> PCollection<String> {
        let re = whole(re);
        self.flat_map(move |s: String| {
            let c = re.captures(&s)?;
            let m = c.get(0)?;
            if !spans(&s, &m) {
                return None;
            }
            c.get(group).map(|g| g.as_str().to_string())
        })
        .named("Regex.MatchesGroup")
    }
    fn regex_find(&self, re: &Regex) -> PCollection<String> {
        let re = re.clone();
        self.flat_map(move |s: String| re.find(&s).map(|m| m.as_str().to_string())).named("Regex.Find")
    }
    fn regex_find_group(&self, re: &Regex, group: usize) -> PCollection<String> {
        let re = re.clone();
        self.flat_map(move |s: String| re.captures(&s)?.get(group).map(|g| g.as_str().to_string()))
            .named("Regex.FindGroup")
    }
    fn regex_find_kv(&self, re: &Regex, key: usize, value: usize) -> PCollection<(String, String)> {
        let re = re.clone();
        self.flat_map(move |s: String| {
            let c = re.captures(&s)?;
            Some((c.get(key)?.as_str().to_string(), c.get(value)?.as_str().to_string()))
        })
        .named("Regex.FindKV")
    }
    fn regex_find_all(&self, re: &Regex) -> PCollection<Vec<String>> {
        let re = re.clone();
        self.flat_map(move |s: String| {
            re.captures_iter(&s)
                .map(|c| c.iter().map(|g| g.map_or(String::new(), |g| g.as_str().to_string())).collect())
                .collect::<Vec<Vec<String>>>()
        })
        .named("Regex.FindAll")
    }
    fn regex_replace_all(&self, re: &Regex, replacement: &str) -> PCollection<String> {
        let (re, with) = (re.clone(), replacement.to_string());
        self.map(move |s: String| re.replace_all(&s, with.as_str()).into_owned()).named("Regex.ReplaceAll")
    }
    fn regex_replace_first(&self, re: &Regex, replacement: &str) -> PCollection<String> {
        let (re, with) = (re.clone(), replacement.to_string());
        self.map(move |s: String| re.replace(&s, with.as_str()).into_owned()).named("Regex.ReplaceFirst")
    }
    fn regex_split(&self, re: &Regex, output_empty: bool) -> PCollection<String> {
        let re = re.clone();
        self.flat_map(move |s: String| {
            re.split(&s).filter(|piece| output_empty || !piece.is_empty()).map(str::to_string).collect::<Vec<_>>()
        })
        .named("Regex.Split")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_string_matches_keep_group_numbers() {
        let re = whole(&Regex::new(r"(a)|(ab)").unwrap());
        // Leftmost-first would stop at "a"; anchored, "ab" matches whole.
        let c = re.captures("ab").unwrap();
        assert!(spans("ab", &c.get(0).unwrap()));
        assert!(c.get(1).is_none() && c.get(2).unwrap().as_str() == "ab");
        assert!(re.find("abc").is_none());
    }
}
