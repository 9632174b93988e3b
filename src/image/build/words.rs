//! Dockerfile word processing: quote removal, the escape character and variable
//! substitution (`$V`, `${V}`, `${V:-x}`, `${V:+x}`, `${V-x}`, `${V+x}`, `${V:?msg}`), as the
//! Dockerfile reference describes for the instructions that take variables (ADD, COPY, ENV,
//! EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, and ARG defaults).
//!
//! RUN, CMD and ENTRYPOINT never come here: their shell does its own expansion.

/// Looks a variable up (the stage's ENV and ARGs in scope).
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Vars::get(self.as_slice(), name)
    }
}

/// The words of `s` after quote removal and substitution: unquoted whitespace (also inside
/// a substituted value) separates words, quotes keep an empty word.
pub fn process_words(s: &str, escape: char, vars: &dyn Vars) -> Result<Vec<String>, String> {
    let mut lx = Lexer::new(s, escape, vars);
    lx.run(true)?;
    Ok(lx.words)
}

/// `s` as one word: quotes removed, variables substituted, whitespace kept.
pub fn process_word(s: &str, escape: char, vars: &dyn Vars) -> Result<String, String> {
    let mut lx = Lexer::new(s, escape, vars);
    lx.run(false)?;
    Ok(lx.words.concat())
}

/// Substitution only (no quote processing): for heredoc bodies and JSON-form arguments.
pub fn expand_only(s: &str, escape: char, vars: &dyn Vars) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut lx = Lexer {
        chars,
        pos: 0,
        escape,
        vars,
        words: Vec::new(),
        cur: String::new(),
        have_word: false,
    };
    let mut out = String::new();
    while let Some(c) = lx.peek() {
        if c == escape && lx.peek_at(1) == Some('$') {
            lx.pos += 2;
            out.push('$');
        } else if c == '$' {
            lx.pos += 1;
            out.push_str(&lx.dollar()?);
        } else {
            lx.pos += 1;
            out.push(c);
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    words: Vec<String>,
    cur: String,
    /// The current word exists even if empty (`""`).
    have_word: bool,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl<'a> Lexer<'a> {
    fn new(s: &str, escape: char, vars: &'a dyn Vars) -> Lexer<'a> {
        Lexer {
            chars: s.chars().collect(),
            pos: 0,
            escape,
            vars,
            words: Vec::new(),
            cur: String::new(),
            have_word: false,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }

    fn end_word(&mut self) {
        if self.have_word || !self.cur.is_empty() {
            self.words.push(std::mem::take(&mut self.cur));
        }
        self.have_word = false;
    }

    fn push_unquoted(&mut self, s: &str, split: bool) {
        if !split {
            self.cur.push_str(s);
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.end_word();
            } else {
                self.cur.push(c);
            }
        }
    }

    fn run(&mut self, split: bool) -> Result<(), String> {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == self.escape {
                // Escape outside quotes: the next character is literal; at the end, nothing.
                if let Some(n) = self.peek() {
                    self.pos += 1;
                    self.cur.push(n);
                }
            } else if c == '\'' {
                self.have_word = true;
                self.single_quoted()?;
            } else if c == '"' {
                self.have_word = true;
                self.double_quoted()?;
            } else if c == '$' {
                let v = self.dollar()?;
                self.push_unquoted(&v, split);
            } else if split && c.is_whitespace() {
                self.end_word();
            } else {
                self.cur.push(c);
            }
        }
        self.end_word();
        Ok(())
    }

    fn single_quoted(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '\'' {
                return Ok(());
            }
            self.cur.push(c);
        }
        Err("unterminated single quote".into())
    }

    fn double_quoted(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '"' {
                return Ok(());
            }
            if c == self.escape {
                match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        self.cur.push(n);
                    }
                    _ => self.cur.push(c),
                }
            } else if c == '$' {
                let v = self.dollar()?;
                self.cur.push_str(&v);
            } else {
                self.cur.push(c);
            }
        }
        Err("unterminated double quote".into())
    }

    /// After a `$`: the substitution, or `$` itself when no name follows.
    fn dollar(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if is_name_start(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_name_char) {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                Ok(self.vars.get(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }

    /// After `${`: `NAME}` or `NAME` OP WORD `}`.
    fn braced(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if name.is_empty() || !is_name_start(name.chars().next().unwrap_or('0')) {
            return Err("bad substitution: ${ must be followed by a variable name".into());
        }
        let val = self.vars.get(&name);
        let op = match self.peek() {
            Some('}') => {
                self.pos += 1;
                return Ok(val.unwrap_or_default());
            }
            Some(':') => {
                self.pos += 1;
                match self.peek() {
                    Some(c @ ('-' | '+' | '?')) => {
                        self.pos += 1;
                        format!(":{c}")
                    }
                    _ => return Err(format!("bad substitution in ${{{name}: ...}}")),
                }
            }
            Some(c @ ('-' | '+' | '?')) => {
                self.pos += 1;
                c.to_string()
            }
            _ => return Err(format!("bad substitution: ${{{name}...: missing }}")),
        };
        let word = self.word_until_brace()?;
        let set = val.is_some();
        let nonempty = val.as_deref().is_some_and(|v| !v.is_empty());
        Ok(match op.as_str() {
            ":-" if nonempty => val.unwrap_or_default(),
            ":-" => word,
            "-" if set => val.unwrap_or_default(),
            "-" => word,
            ":+" if nonempty => word,
            ":+" => String::new(),
            "+" if set => word,
            "+" => String::new(),
            ":?" if nonempty => val.unwrap_or_default(),
            "?" if set => val.unwrap_or_default(),
            _ => {
                let msg = if word.is_empty() { "is not set" } else { &word };
                return Err(format!("{name}: {msg}"));
            }
        })
    }

    /// The WORD of `${NAME:-WORD}` up to the matching `}`, itself processed as one word.
    fn word_until_brace(&mut self) -> Result<String, String> {
        let mut depth = 0usize;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == self.escape {
                self.pos += 2;
                continue;
            }
            if c == '$' && self.peek_at(1) == Some('{') {
                depth += 1;
                self.pos += 2;
                continue;
            }
            if c == '}' {
                if depth == 0 {
                    let raw: String = self.chars[start..self.pos].iter().collect();
                    self.pos += 1;
                    return process_word(&raw, self.escape, self.vars);
                }
                depth -= 1;
            }
            self.pos += 1;
        }
        Err("bad substitution: missing }".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [("A", "a"), ("E", ""), ("S", "x y"), ("P", "/p")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn words_table() {
        let v = vars();
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("$A ${A}b", &["a", "ab"]),
            ("${E:-d} ${E-d} ${U-u} ${U:-u}", &["d", "u", "u"]),
            ("${A:+y} ${E:+y} ${E+y}x", &["y", "yx"]),
            (r"\$A '$A' x", &["$A", "$A", "x"]),
            (r#""$A b" "" c"#, &["a b", "", "c"]),
            ("$S z", &["x", "y", "z"]),
            (r#""$S""#, &["x y"]),
            ("${U:-${A}q}", &["aq"]),
            ("a\\ b", &["a b"]),
            ("$ $1 ${P}/x", &["$", "$1", "/p/x"]),
            (r#""a\"b" "\q""#, &["a\"b", "\\q"]),
        ];
        for (input, want) in cases {
            assert_eq!(process_words(input, '\\', &v).unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn one_word_keeps_spaces_and_backtick_escape_works() {
        let v = vars();
        assert_eq!(process_word("a  $A \"q\"", '\\', &v).unwrap(), "a  a q");
        assert_eq!(process_word("c:\\dir `$A", '`', &v).unwrap(), "c:\\dir $A");
        assert_eq!(
            expand_only("x=$A '$A' \\$A", '\\', &v).unwrap(),
            "x=a 'a' $A"
        );
    }

    #[test]
    fn errors() {
        let v = vars();
        for bad in ["${A", "${}", "'x", "\"x", "${U:?need U}", "${A:x}"] {
            assert!(process_word(bad, '\\', &v).is_err(), "{bad}");
        }
        assert_eq!(
            process_word("${U:?need U}", '\\', &v).unwrap_err(),
            "U: need U"
        );
    }
}
