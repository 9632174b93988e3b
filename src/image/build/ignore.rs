//! `.dockerignore` / `.containerignore`: which context paths COPY and ADD never see.
//!
//! Docker's rules: one pattern a line, `#` lines are comments, patterns are cleaned
//! (`./a/` -> `a`, a leading `/` dropped) and matched with Go's filepath.Match per path
//! component (`*`, `?`, `[a-z]`, `[^a]`, `\` escapes), `**` matches any number of
//! components; a path is excluded when it or one of its parents matches; `!PATTERN` makes
//! an exception; the last matching line wins.

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    /// (exception, pattern components)
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exc, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let comps: Vec<String> = p
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_string)
                .fold(Vec::new(), |mut v, c| {
                    if c == ".." {
                        v.pop();
                    } else {
                        v.push(c);
                    }
                    v
                });
            if !comps.is_empty() {
                rules.push((exc, comps));
            }
        }
        Ignore { rules }
    }

    /// Whether the context-relative path `rel` (components joined by `/`) is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        if comps.is_empty() {
            return false;
        }
        let mut out = false;
        for (exc, pat) in &self.rules {
            // The path itself or one of its parents.
            let hit = (1..=comps.len()).any(|n| match_comps(pat, &comps[..n]));
            if hit {
                out = !exc;
            }
        }
        out
    }

    /// Whether an exception could re-include something below the excluded dir `rel`: then
    /// the walk must still descend into it.
    pub fn may_reinclude_below(&self, rel: &str) -> bool {
        self.rules.iter().any(|(exc, pat)| {
            *exc && (pat.iter().any(|c| c == "**")
                || pat.len() > rel.split('/').filter(|c| !c.is_empty()).count())
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn match_comps(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|k| match_comps(rest, &path[k..])),
        Some((p, rest)) => match path.split_first() {
            Some((c, prest)) => fnmatch(p, c) && match_comps(rest, prest),
            None => false,
        },
    }
}

/// Go's filepath.Match for one component (no `/` in either).
pub fn fnmatch(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        let Some((&c, prest)) = p.split_first() else {
            return n.is_empty();
        };
        match c {
            '*' => (0..=n.len()).any(|k| go(prest, &n[k..])),
            '?' => !n.is_empty() && go(prest, &n[1..]),
            '[' => {
                let Some((&ch, nrest)) = n.split_first() else {
                    return false;
                };
                match class(prest, ch) {
                    Some((true, after)) => go(after, nrest),
                    _ => false,
                }
            }
            '\\' if !prest.is_empty() => {
                !n.is_empty() && n[0] == prest[0] && go(&prest[1..], &n[1..])
            }
            _ => !n.is_empty() && n[0] == c && go(prest, &n[1..]),
        }
    }
    go(&p, &n)
}

/// A `[...]` class (after the `[`): whether `ch` matches, and the pattern after `]`.
fn class(p: &[char], ch: char) -> Option<(bool, &[char])> {
    let (neg, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((hit != neg, &p[i + 1..]));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        let mut hi = lo;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
            hi = p[i + 2];
            if hi == '\\' {
                hi = *p.get(i + 3)?;
                i += 1;
            }
            i += 2;
        }
        if lo <= ch && ch <= hi {
            hit = true;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_table() {
        let cases = [
            ("*.txt", "a.txt", true),
            ("*.txt", "a.md", false),
            ("a?c", "abc", true),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[!a]x", "zx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(fnmatch(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn dockerignore_rules() {
        let ig =
            Ignore::parse("# c\n*.log\n/build/\n!keep.log\n**/tmp\ndocs/*.md\n!docs/README.md\n");
        let cases = [
            ("a.log", true),
            ("keep.log", false),
            ("sub/a.log", false), // `*.log` is rooted: one component
            ("build", true),
            ("build/x/y", true),
            ("x/y/tmp/z", true),
            ("tmp", true),
            ("docs/a.md", true),
            ("docs/README.md", false),
            ("src/main.rs", false),
        ];
        for (p, want) in cases {
            assert_eq!(ig.excluded(p), want, "{p}");
        }
        assert!(ig.may_reinclude_below("docs"));
    }
}
