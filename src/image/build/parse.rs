//! The Dockerfile parser: parser directives (`# escape=`, `# syntax=`), comments, line
//! continuations, heredocs, instruction flags, and each instruction's argument form (exec
//! JSON, shell, words, KEY=VALUE pairs). Substitution happens later, when a stage runs
//! ([`super::words`]); this module only cuts the text. Every error names its line.

use std::fmt;

/// A parse error: the (1-based) line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Line of the instruction keyword.
    pub line: usize,
    /// Upper case: `RUN`, `COPY`, ...
    pub keyword: String,
    /// `--name=value` flags before the arguments, in order (`--link` has value None).
    pub flags: Vec<(String, Option<String>)>,
    pub args: Args,
    /// The instruction as written, continuations joined, heredoc bodies left out: what
    /// `created_by` shows.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// A JSON array of strings (`RUN ["a","b"]`).
    Exec(Vec<String>),
    /// The rest of the line as written (shell form, or words split when the stage runs).
    Shell(String),
    /// ENV and LABEL: KEY and the raw VALUE (quotes still in it).
    Pairs(Vec<(String, String)>),
    /// HEALTHCHECK NONE.
    None,
    /// ONBUILD's instruction (also HEALTHCHECK CMD's command, as a `CMD`).
    Nested(Box<Instruction>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub body: String,
    /// False when the delimiter was quoted (`<<'EOF'`): the body is taken literally.
    pub expand: bool,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn flag_all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
            .collect()
    }
}

/// Flags each instruction accepts (BuildKit's names).
fn allowed_flags(kw: &str) -> &'static [&'static str] {
    match kw {
        "FROM" => &["platform"],
        "RUN" => &["mount", "network", "security"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
        "ADD" => &[
            "chown",
            "chmod",
            "checksum",
            "keep-git-dir",
            "link",
            "exclude",
        ],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "EXPOSE",
    "VOLUME",
    "WORKDIR",
    "USER",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
    "MAINTAINER",
];

pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top; any other line ends them.
    while i < lines.len() {
        let Some(rest) = lines[i].trim_start().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) {
            break;
        }
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError {
                            line: i + 1,
                            msg: format!("invalid escape directive {v:?}: \\ or `"),
                        });
                    }
                }
            }
            "syntax" => syntax = Some(v.to_string()),
            _ => {}
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let first = i;
        let l = lines[i];
        i += 1;
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment and blank lines inside are dropped.
        let mut logical = String::new();
        let mut cur = t.trim_end().to_string();
        loop {
            match cur.strip_suffix(escape) {
                Some(head) => {
                    logical.push_str(head);
                    let mut next = None;
                    while i < lines.len() {
                        let n = lines[i];
                        i += 1;
                        let nt = n.trim_start();
                        if nt.starts_with('#') || nt.is_empty() {
                            continue;
                        }
                        next = Some(n.trim_end().to_string());
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let err = |msg: String| ParseError {
            line: first + 1,
            msg,
        };
        let mut ins = instruction(&logical, escape, first + 1, false)?;
        // Heredoc bodies follow the instruction line, in the order they were named.
        let mut docs = Vec::new();
        for (name, expand, strip_tabs) in heredoc_names(&ins) {
            let mut body = String::new();
            loop {
                let Some(l) = lines.get(i) else {
                    return Err(err(format!("heredoc {name} is not terminated")));
                };
                i += 1;
                let l = if strip_tabs {
                    l.trim_start_matches('\t')
                } else {
                    l
                };
                if l == name {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            docs.push(Heredoc { name, body, expand });
        }
        ins.heredocs = docs;
        out.push(ins);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instructions: out,
    })
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` words of a RUN, COPY or ADD (shell form):
/// (name, expand, strip leading tabs).
fn heredoc_names(ins: &Instruction) -> Vec<(String, bool, bool)> {
    if !matches!(ins.keyword.as_str(), "RUN" | "COPY" | "ADD") {
        return Vec::new();
    }
    let Args::Shell(s) = &ins.args else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = s.as_str();
    while let Some(p) = rest.find("<<") {
        let mut w = &rest[p + 2..];
        let strip = w.starts_with('-');
        if strip {
            w = &w[1..];
        }
        let (quoted, w) = match w.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &w[1..]),
            _ => (None, w),
        };
        let end = w
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(w.len());
        let name = &w[..end];
        let mut after = &w[end..];
        if let Some(q) = quoted {
            match after.strip_prefix(q) {
                Some(a) => after = a,
                None => break,
            }
        }
        if !name.is_empty() {
            out.push((name.to_string(), quoted.is_none(), strip));
        }
        rest = after;
    }
    out
}

/// Cuts `--flag[=value]` words off the front of `rest`.
type Flags = Vec<(String, Option<String>)>;

fn take_flags<'a>(
    kw: &str,
    mut rest: &'a str,
    line: usize,
) -> Result<(Flags, &'a str), ParseError> {
    let mut flags = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(f) = rest.strip_prefix("--") else {
            break;
        };
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word, None),
        };
        if !allowed_flags(kw).contains(&name) {
            return Err(ParseError {
                line,
                msg: format!("unknown flag --{name} for {kw}"),
            });
        }
        if value.is_none() && !matches!(name, "link" | "parents" | "keep-git-dir") {
            return Err(ParseError {
                line,
                msg: format!("{kw} --{name} needs a value (--{name}=VALUE)"),
            });
        }
        flags.push((name.to_string(), value));
        rest = &f[end..];
    }
    Ok((flags, rest.trim()))
}

/// A JSON array of strings, or None when `s` is not one (then it is shell form).
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// ENV/LABEL `K=V K2="v 2"` (or ENV's old `K V...` form): keys and raw values.
fn pairs(
    kw: &str,
    s: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let err = |msg: String| ParseError { line, msg };
    let words = split_raw(s, escape).map_err(|m| err(format!("{kw}: {m}")))?;
    if words.is_empty() {
        return Err(err(format!("{kw} needs at least one KEY=VALUE")));
    }
    if !words[0].contains('=') {
        // `ENV KEY VALUE WORDS`: the rest of the line is the value.
        if kw != "ENV" && kw != "LABEL" {
            return Err(err(format!("{kw}: expected KEY=VALUE")));
        }
        let key = words[0].clone();
        let value = s.trim_start()[key.len()..].trim().to_string();
        if value.is_empty() && kw == "ENV" {
            return Err(err(format!("ENV {key} needs a value (ENV {key}=VALUE)")));
        }
        return Ok(vec![(key, value)]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(err(format!("{kw}: {w:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// Splits on unquoted whitespace, keeping quotes and escapes in the words.
pub fn split_raw(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = it.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c == escape => {
                cur.push(c);
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// One logical line -> an instruction. `nested`: inside ONBUILD.
fn instruction(
    logical: &str,
    escape: char,
    line: usize,
    nested: bool,
) -> Result<Instruction, ParseError> {
    let err = |msg: String| ParseError { line, msg };
    let logical = logical.trim();
    let (word, rest) = logical
        .split_once(char::is_whitespace)
        .unwrap_or((logical, ""));
    let kw = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&kw.as_str()) {
        return Err(err(format!("unknown instruction: {word}")));
    }
    if nested && matches!(kw.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(err(format!("{kw} is not allowed in ONBUILD")));
    }
    let (flags, rest) = take_flags(&kw, rest, line)?;
    let need = |what: &str| -> Result<(), ParseError> {
        if rest.is_empty() {
            Err(err(format!("{kw} needs {what}")))
        } else {
            Ok(())
        }
    };
    let args = match kw.as_str() {
        "FROM" => {
            need("an image (FROM IMAGE [AS NAME])")?;
            let w = split_raw(rest, escape).map_err(|m| err(format!("FROM: {m}")))?;
            let ok = w.len() == 1 || (w.len() == 3 && w[1].eq_ignore_ascii_case("as"));
            if !ok {
                return Err(err("FROM takes IMAGE [AS NAME]".into()));
            }
            Args::Shell(rest.to_string())
        }
        "RUN" | "CMD" | "ENTRYPOINT" => {
            if kw == "RUN" {
                need("a command")?;
            }
            match json_array(rest) {
                Some(v) => Args::Exec(v),
                None => Args::Shell(rest.to_string()),
            }
        }
        "SHELL" => match json_array(rest) {
            Some(v) if !v.is_empty() => Args::Exec(v),
            _ => {
                return Err(err(
                    "SHELL must be a JSON array: SHELL [\"sh\", \"-c\"]".into()
                ));
            }
        },
        "COPY" | "ADD" => {
            need("SOURCE... DEST")?;
            match json_array(rest) {
                Some(v) if v.len() >= 2 => Args::Exec(v),
                Some(_) => return Err(err(format!("{kw} needs SOURCE... DEST"))),
                None => {
                    let w = split_raw(rest, escape).map_err(|m| err(format!("{kw}: {m}")))?;
                    if w.len() < 2 {
                        return Err(err(format!("{kw} needs SOURCE... DEST")));
                    }
                    Args::Shell(rest.to_string())
                }
            }
        }
        "ENV" | "LABEL" => Args::Pairs(pairs(&kw, rest, escape, line)?),
        "ARG" => {
            need("a name (ARG NAME[=DEFAULT])")?;
            for w in split_raw(rest, escape).map_err(|m| err(format!("ARG: {m}")))? {
                let name = w.split_once('=').map_or(w.as_str(), |(k, _)| k);
                if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(err(format!("ARG: bad name {name:?}")));
                }
            }
            Args::Shell(rest.to_string())
        }
        "EXPOSE" => {
            need("a port (EXPOSE PORT[/PROTO]...)")?;
            Args::Shell(rest.to_string())
        }
        "VOLUME" => {
            need("a path")?;
            match json_array(rest) {
                Some(v) => Args::Exec(v),
                None => Args::Shell(rest.to_string()),
            }
        }
        "WORKDIR" | "USER" | "MAINTAINER" => {
            need("an argument")?;
            Args::Shell(rest.to_string())
        }
        "STOPSIGNAL" => {
            need("a signal")?;
            if rest.split_whitespace().count() != 1 {
                return Err(err("STOPSIGNAL takes one signal".into()));
            }
            Args::Shell(rest.to_string())
        }
        "HEALTHCHECK" => {
            need("NONE or CMD COMMAND")?;
            let (w, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match w.to_ascii_uppercase().as_str() {
                "NONE" if r.trim().is_empty() && flags.is_empty() => Args::None,
                "NONE" => return Err(err("HEALTHCHECK NONE takes no arguments".into())),
                "CMD" => Args::Nested(Box::new(instruction(
                    &format!("CMD {}", r.trim()),
                    escape,
                    line,
                    true,
                )?)),
                _ => return Err(err("HEALTHCHECK takes NONE or CMD COMMAND".into())),
            }
        }
        "ONBUILD" => {
            need("an instruction")?;
            Args::Nested(Box::new(instruction(rest, escape, line, true)?))
        }
        _ => unreachable!("keyword list and match agree"),
    };
    Ok(Instruction {
        line,
        keyword: kw,
        flags,
        args,
        original: logical.to_string(),
        heredocs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let d = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(d.instructions.len(), 1, "{text:?}");
        d.instructions.into_iter().next().unwrap()
    }

    fn sh(s: &str) -> Args {
        Args::Shell(s.into())
    }

    fn ex(v: &[&str]) -> Args {
        Args::Exec(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn argument_forms_table() {
        let cases: Vec<(&str, &str, Args)> = vec![
            ("run echo hi", "RUN", sh("echo hi")),
            ("RUN [\"a\", \"b c\"]", "RUN", ex(&["a", "b c"])),
            ("RUN [not json", "RUN", sh("[not json")),
            ("CMD [\"x\"]", "CMD", ex(&["x"])),
            ("ENTRYPOINT top -b", "ENTRYPOINT", sh("top -b")),
            (
                "SHELL [\"/bin/bash\", \"-c\"]",
                "SHELL",
                ex(&["/bin/bash", "-c"]),
            ),
            ("COPY a b /d/", "COPY", sh("a b /d/")),
            ("ADD [\"a b\", \"/d\"]", "ADD", ex(&["a b", "/d"])),
            ("FROM base AS build", "FROM", sh("base AS build")),
            ("VOLUME [\"/v\"]", "VOLUME", ex(&["/v"])),
            ("VOLUME /a /b", "VOLUME", sh("/a /b")),
            ("WORKDIR /a b", "WORKDIR", sh("/a b")),
            ("HEALTHCHECK NONE", "HEALTHCHECK", Args::None),
            ("ARG A B=1", "ARG", sh("A B=1")),
            ("EXPOSE 80 443/udp", "EXPOSE", sh("80 443/udp")),
        ];
        for (text, kw, args) in cases {
            let i = one(text);
            assert_eq!((i.keyword.as_str(), &i.args), (kw, &args), "{text}");
        }
    }

    #[test]
    fn env_and_label_pairs() {
        let p = |t: &str| match one(t).args {
            Args::Pairs(p) => p,
            a => panic!("{a:?}"),
        };
        let kv = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(p("ENV A=1 B=\"x y\""), kv(&[("A", "1"), ("B", "\"x y\"")]));
        assert_eq!(p("ENV A x y  z"), kv(&[("A", "x y  z")]));
        assert_eq!(
            p("LABEL a.b=c d=e\\ f"),
            kv(&[("a.b", "c"), ("d", "e\\ f")])
        );
    }

    #[test]
    fn continuations_comments_and_directives() {
        let d = parse(
            "# syntax=docker/dockerfile:1\n# escape=`\n\n# a comment\nRUN echo a `\n  # inside\n\n  b\nFROM x\n",
        )
        .unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.instructions[0].args, sh("echo a   b"));
        assert_eq!(d.instructions[0].line, 5);
        assert_eq!(d.instructions[1].line, 9);
        // A directive after any other line is a comment.
        let d = parse("FROM x\n# escape=`\nRUN a \\\n b").unwrap();
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, sh("a  b"));
    }

    #[test]
    fn flags() {
        let i = one("COPY --from=build --chown=1:2 --link a /b");
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("chown"), Some("1:2"));
        assert_eq!(i.flag("link"), Some(""));
        assert_eq!(i.args, sh("a /b"));
        let i = one("HEALTHCHECK --interval=5s CMD [\"true\"]");
        assert_eq!(i.flag("interval"), Some("5s"));
        match i.args {
            Args::Nested(c) => assert_eq!(c.args, ex(&["true"])),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn heredocs() {
        let d = parse("RUN <<EOF\necho $A\nEOF\nCOPY <<-'X' <<Y /d/\n\tone\n\tX\ntwo\nY\nUSER u\n")
            .unwrap();
        let i = &d.instructions;
        assert_eq!(i.len(), 3);
        assert_eq!(
            i[0].heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                body: "echo $A\n".into(),
                expand: true
            }]
        );
        assert_eq!(i[1].heredocs[0].body, "one\n");
        assert!(!i[1].heredocs[0].expand);
        assert_eq!(i[1].heredocs[1].body, "two\n");
        assert_eq!(i[2].keyword, "USER");
    }

    #[test]
    fn onbuild_nests() {
        match one("ONBUILD RUN make").args {
            Args::Nested(n) => assert_eq!((n.keyword.as_str(), n.args), ("RUN", sh("make"))),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("FROM a\nFOO bar", 2, "unknown instruction: FOO"),
            (
                "FROM a\n\nCOPY --bogus=1 a b",
                3,
                "unknown flag --bogus for COPY",
            ),
            ("COPY a", 1, "COPY needs SOURCE... DEST"),
            ("FROM a b", 1, "FROM takes IMAGE [AS NAME]"),
            ("SHELL sh -c", 1, "SHELL must be a JSON array"),
            ("RUN", 1, "RUN needs a command"),
            ("ENV A", 1, "ENV A needs a value"),
            ("LABEL \"a=b", 1, "unterminated quote"),
            ("ONBUILD FROM x", 1, "FROM is not allowed in ONBUILD"),
            ("# escape=x\nFROM a", 1, "invalid escape directive"),
            ("RUN <<EOF\nno end", 1, "heredoc EOF is not terminated"),
            ("COPY --chown a b", 1, "COPY --chown needs a value"),
            ("ARG a-b", 1, "ARG: bad name"),
            ("STOPSIGNAL 1 2", 1, "STOPSIGNAL takes one signal"),
        ];
        for (text, line, msg) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.msg.contains(msg), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
