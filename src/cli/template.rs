//! docker's `--format` for `images`, `ps` and `inspect`: `json`, `table`, or a Go template of
//! the small subset docker users write: `{{.Field.Sub}}`, `{{.}}`, `{{json .X}}`, `{{join .X
//! ","}}`, `{{upper}}`, `{{lower}}`, `{{len}}`, `{{index .X "k"}}`, pipes (`{{.X | json}}`),
//! `{{range .X}}..{{end}}`, `{{if .X}}..{{else}}..{{end}}` and `{{-`/`-}}` trimming. Values are
//! JSON values, printed as Go prints them (`[a b]` for a list, `map[k:v]` for an object).
//! `table TEMPLATE` adds a header row and aligns the tab-separated columns as docker's
//! tabwriter does; `\t` and `\n` in the template are a tab and a newline, as in docker.

use serde_json::Value;

/// What `--format` asked for.
pub enum Format {
    /// No `--format`, or `table` alone: the verb's own table.
    Default,
    /// `json`: one JSON object per line (docker's).
    Json,
    Template(Template),
}

impl Format {
    pub fn parse(f: Option<&str>) -> Result<Format, String> {
        match f.map(str::trim) {
            None | Some("" | "table") => Ok(Format::Default),
            Some("json") => Ok(Format::Json),
            Some(t) => Template::parse(t).map(Format::Template),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    Str(String),
    Num(i64),
    Func(String),
}

/// `cmd1 | cmd2`, each a list of words.
type Pipeline = Vec<Vec<Arg>>;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    Range(Pipeline, Vec<Node>),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed `--format` template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
    pub table: bool,
}

const FUNCS: &[&str] = &["json", "join", "upper", "lower", "len", "index", "println"];

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let (table, body) = match src.trim().strip_prefix("table") {
            Some(rest) if rest.starts_with([' ', '\t']) => (true, rest.trim()),
            _ => (false, src.trim()),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let tokens = lex(&body)?;
        let mut it = tokens.into_iter().peekable();
        let (nodes, end) = parse_nodes(&mut it)?;
        if let Some(e) = end {
            return Err(format!("template: unexpected {{{{{e}}}}}"));
        }
        Ok(Template { nodes, table })
    }

    /// The template applied to one value.
    pub fn render(&self, v: &Value) -> Result<String, String> {
        let mut out = String::new();
        exec(&self.nodes, v, v, &mut out)?;
        Ok(out)
    }

    /// The header row of a `table` template: each action shows the header of the first field
    /// it names (`header("ID")` ...).
    pub fn header(&self, header: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let field = p.iter().flatten().find_map(|a| match a {
                        Arg::Field(path) => Some(path.last().cloned().unwrap_or_default()),
                        _ => None,
                    });
                    out.push_str(&field.map(|f| header(&f)).unwrap_or_default());
                }
                Node::Range(..) | Node::If(..) => {}
            }
        }
        out
    }

    /// Renders every row, one per line; a table gets its header and aligned columns.
    pub fn render_all(
        &self,
        rows: &[Value],
        header: &dyn Fn(&str) -> String,
    ) -> Result<String, String> {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.header(header));
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        Ok(if self.table { tabwriter(&text) } else { text })
    }
}

/// docker's default header for a field: `CreatedAt` -> `CREATED AT`, `ID` -> `ID`.
pub fn default_header(field: &str) -> String {
    let mut s = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        if i > 0 && c.is_uppercase() && (chars[i - 1].is_lowercase() || next_lower) {
            s.push(' ');
        }
        s.extend(c.to_uppercase());
    }
    s
}

/// Columns aligned as Go's tabwriter with docker's settings (minimum width 10, padding 3):
/// a cell ends at a tab; the last cell of a line is not padded.
fn tabwriter(text: &str) -> String {
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = (c.chars().count() + 3).max(10);
            match widths.get_mut(i) {
                Some(x) => *x = (*x).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                out.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Debug)]
enum Token {
    Text(String),
    Action(String),
}

/// Splits text from `{{ }}` actions, applying `{{-` and `-}}` trimming.
fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or("template: unclosed action (no }})")?;
        let mut inner = &after[..end];
        if let Some(i) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = i;
        }
        trim_next = false;
        if let Some(i) = inner.strip_suffix(" -") {
            trim_next = true;
            inner = i;
        }
        if !text.is_empty() {
            out.push(Token::Text(text.to_string()));
        }
        out.push(Token::Action(inner.trim().to_string()));
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Token::Text(text.to_string()));
    }
    Ok(out)
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// Nodes up to an `{{end}}` or `{{else}}` (returned) or the end of the template (None).
fn parse_nodes(it: &mut Tokens) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(t) = it.next() {
        let a = match t {
            Token::Text(s) => {
                nodes.push(Node::Text(s));
                continue;
            }
            Token::Action(a) => a,
        };
        if a == "end" || a == "else" {
            return Ok((nodes, Some(a)));
        }
        if let Some(p) = a.strip_prefix("range ") {
            let (body, end) = parse_nodes(it)?;
            if end.as_deref() != Some("end") {
                return Err("template: {{range}} without {{end}}".into());
            }
            nodes.push(Node::Range(pipeline(p)?, body));
        } else if let Some(p) = a.strip_prefix("if ") {
            let (then, end) = parse_nodes(it)?;
            let otherwise = match end.as_deref() {
                Some("end") => Vec::new(),
                Some("else") => match parse_nodes(it)? {
                    (o, Some(e)) if e == "end" => o,
                    _ => return Err("template: {{else}} without {{end}}".into()),
                },
                _ => return Err("template: {{if}} without {{end}}".into()),
            };
            nodes.push(Node::If(pipeline(p)?, then, otherwise));
        } else if a.is_empty() || a.starts_with("/*") {
            // A comment or an empty action prints nothing.
        } else {
            nodes.push(Node::Action(pipeline(&a)?));
        }
    }
    Ok((nodes, None))
}

fn pipeline(s: &str) -> Result<Pipeline, String> {
    let mut cmds = Vec::new();
    let mut words = Vec::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            cmds.push(std::mem::take(&mut words));
        } else if c == '"' {
            chars.next();
            let mut lit = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => lit.push('\n'),
                        Some('t') => lit.push('\t'),
                        Some(o) => lit.push(o),
                        None => return Err("template: unterminated string".into()),
                    },
                    Some(o) => lit.push(o),
                    None => return Err("template: unterminated string".into()),
                }
            }
            words.push(Arg::Str(lit));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            words.push(word(&w)?);
        }
    }
    cmds.push(words);
    if cmds.iter().any(Vec::is_empty) {
        return Err(format!("template: empty command in {{{{{s}}}}}"));
    }
    Ok(cmds)
}

fn word(w: &str) -> Result<Arg, String> {
    if w == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(path) = w.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("template: bad field {w:?}"));
        }
        return Ok(Arg::Field(parts));
    }
    if let Ok(n) = w.parse::<i64>() {
        return Ok(Arg::Num(n));
    }
    if FUNCS.contains(&w) {
        return Ok(Arg::Func(w.to_string()));
    }
    Err(format!(
        "template: function {w:?} not defined (unionrs knows {})",
        FUNCS.join(", ")
    ))
}

fn exec(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&go_string(&eval(p, dot, root)?)),
            Node::Range(p, body) => match eval(p, dot, root)? {
                Value::Array(items) => {
                    for i in &items {
                        exec(body, i, root, out)?;
                    }
                }
                Value::Object(m) => {
                    for v in m.values() {
                        exec(body, v, root, out)?;
                    }
                }
                Value::Null => {}
                v => return Err(format!("template: range can't iterate over {v}")),
            },
            Node::If(p, then, otherwise) => {
                let branch = if truthy(&eval(p, dot, root)?) {
                    then
                } else {
                    otherwise
                };
                exec(branch, dot, root, out)?;
            }
        }
    }
    Ok(())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A pipeline's value: each command's result is the last argument of the next.
fn eval(p: &Pipeline, dot: &Value, root: &Value) -> Result<Value, String> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let mut args: Vec<Value> = Vec::new();
        let (func, rest) = match &cmd[0] {
            Arg::Func(f) => (Some(f.as_str()), &cmd[1..]),
            _ => (None, &cmd[..]),
        };
        for a in rest {
            args.push(match a {
                Arg::Field(path) => field(dot, path, std::ptr::eq(dot, root))?,
                Arg::Str(s) => Value::String(s.clone()),
                Arg::Num(n) => Value::from(*n),
                Arg::Func(f) => return Err(format!("template: {f} must come first")),
            });
        }
        args.extend(prev.take());
        prev = Some(match func {
            None => match args.as_slice() {
                [v] => v.clone(),
                _ => return Err("template: a value takes no arguments".into()),
            },
            Some(f) => call(f, &args)?,
        });
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// `.A.B` of `v`. A field missing from the row itself is an error (a typo, as docker's
/// "can't evaluate field"); one missing deeper prints `<no value>`, as a Go map's does.
fn field(v: &Value, path: &[String], at_root: bool) -> Result<Value, String> {
    let mut cur = v;
    for (i, p) in path.iter().enumerate() {
        match cur.get(p) {
            Some(next) => cur = next,
            None if i == 0 && at_root && cur.is_object() => {
                let known: Vec<&str> = cur
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                return Err(format!(
                    "template: can't evaluate field {p} (fields: {})",
                    known.join(", ")
                ));
            }
            None => return Ok(Value::String("<no value>".into())),
        }
    }
    Ok(cur.clone())
}

fn call(f: &str, args: &[Value]) -> Result<Value, String> {
    let one = || match args {
        [v] => Ok(v),
        _ => Err(format!("template: {f} takes one argument")),
    };
    Ok(match f {
        "json" => Value::String(serde_json::to_string(one()?).map_err(|e| e.to_string())?),
        "upper" => Value::String(go_string(one()?).to_uppercase()),
        "lower" => Value::String(go_string(one()?).to_lowercase()),
        "len" => Value::from(match one()? {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.len(),
            v => return Err(format!("template: len of {v}")),
        }),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(go_string).collect::<Vec<_>>().join(" ")
        )),
        "join" => match args {
            [Value::Array(a), Value::String(sep)] => Value::String(
                a.iter()
                    .map(go_string)
                    .collect::<Vec<_>>()
                    .join(sep.as_str()),
            ),
            [Value::Null, Value::String(_)] => Value::String(String::new()),
            _ => return Err("template: join takes a list and a separator".into()),
        },
        "index" => match args {
            [v, keys @ ..] if !keys.is_empty() => {
                let mut cur = v.clone();
                for k in keys {
                    cur = match (k, &cur) {
                        (Value::String(s), Value::Object(o)) => {
                            o.get(s).cloned().unwrap_or(Value::Null)
                        }
                        (Value::Number(n), Value::Array(a)) => n
                            .as_u64()
                            .and_then(|i| a.get(i as usize))
                            .cloned()
                            .ok_or_else(|| format!("template: index {n} out of range"))?,
                        _ => return Err(format!("template: can't index {cur} with {k}")),
                    };
                }
                cur
            }
            _ => return Err("template: index takes a value and keys".into()),
        },
        _ => return Err(format!("template: function {f:?} not defined")),
    })
}

/// A value as Go's fmt prints it: strings bare, lists `[a b]`, objects `map[k:v]`, null
/// `<nil>`.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> Result<String, String> {
        Template::parse(t)?.render(v)
    }

    #[test]
    fn fields_functions_and_go_printing() {
        let v = json!({"ID": "abc", "Repository": "busybox", "Tag": "1",
            "Config": {"Env": ["PATH=/bin", "A=b c"], "Labels": {"x": "1"}, "User": ""},
            "Size": 12});
        assert_eq!(r("{{.ID}}", &v).unwrap(), "abc");
        assert_eq!(r("{{.Repository}}:{{.Tag}}", &v).unwrap(), "busybox:1");
        assert_eq!(r("{{.Config.Env}}", &v).unwrap(), "[PATH=/bin A=b c]");
        assert_eq!(
            r("{{json .Config.Env}}", &v).unwrap(),
            r#"["PATH=/bin","A=b c"]"#
        );
        assert_eq!(
            r("{{.Config.Env | json}}", &v).unwrap(),
            r#"["PATH=/bin","A=b c"]"#
        );
        assert_eq!(r("{{.Config.Labels}}", &v).unwrap(), "map[x:1]");
        assert_eq!(r("{{index .Config.Labels \"x\"}}", &v).unwrap(), "1");
        assert_eq!(r("{{index .Config.Env 1}}", &v).unwrap(), "A=b c");
        assert_eq!(
            r("{{join .Config.Env \",\"}}", &v).unwrap(),
            "PATH=/bin,A=b c"
        );
        assert_eq!(
            r("{{upper .Repository}} {{len .Config.Env}}", &v).unwrap(),
            "BUSYBOX 2"
        );
        assert_eq!(r("{{.Size}}", &v).unwrap(), "12");
        assert_eq!(r("{{.Config.Missing}}", &v).unwrap(), "<no value>");
        let all: Value = serde_json::from_str(&r("{{json .}}", &v).unwrap()).unwrap();
        assert_eq!(all, v);
        assert_eq!(r("id={{.ID}}\\tx", &v).unwrap(), "id=abc\tx");
    }

    #[test]
    fn range_if_and_trimming() {
        let v = json!({"Env": ["A=1", "B=2"], "User": "", "Name": "n"});
        assert_eq!(r("{{range .Env}}{{.}};{{end}}", &v).unwrap(), "A=1;B=2;");
        assert_eq!(
            r("{{if .User}}{{.User}}{{else}}root{{end}}", &v).unwrap(),
            "root"
        );
        assert_eq!(r("{{if .Name}}<{{.Name}}>{{end}}", &v).unwrap(), "<n>");
        assert_eq!(r("a  {{- .Name -}}  b", &v).unwrap(), "anb");
        // Inside range, `.` is the element; a missing field there is not the row's.
        assert_eq!(r("{{range .Env}}{{len .}}{{end}}", &v).unwrap(), "33");
    }

    #[test]
    fn mistakes_are_reported() {
        let v = json!({"ID": "x"});
        assert!(
            r("{{.Nope}}", &v)
                .unwrap_err()
                .contains("can't evaluate field Nope")
        );
        assert!(r("{{.ID", &v).unwrap_err().contains("unclosed"));
        assert!(r("{{frob .ID}}", &v).unwrap_err().contains("not defined"));
        assert!(
            r("{{range .ID}}", &v)
                .unwrap_err()
                .contains("without {{end}}")
        );
        assert!(r("{{end}}", &v).is_err());
        assert!(r("{{if .ID}}a{{else}}b", &v).is_err());
        assert!(r("{{.ID | }}", &v).is_err());
    }

    #[test]
    fn tables_have_headers_and_aligned_columns() {
        let t = Template::parse("table {{.Repository}}\\t{{.ID}}\\t{{.CreatedSince}}").unwrap();
        assert!(t.table);
        let rows = [
            json!({"Repository": "busybox", "ID": "0123456789ab", "CreatedSince": "2 days ago"}),
            json!({"Repository": "a", "ID": "x", "CreatedSince": "now"}),
        ];
        let header = |f: &str| match f {
            "ID" => "IMAGE ID".to_string(),
            f => default_header(f),
        };
        let out = t.render_all(&rows, &header).unwrap();
        assert_eq!(
            out,
            "REPOSITORY   IMAGE ID       CREATED SINCE\n\
             busybox      0123456789ab   2 days ago\n\
             a            x              now\n"
        );
        assert_eq!(default_header("CreatedAt"), "CREATED AT");
        assert_eq!(default_header("ImageID"), "IMAGE ID");
        assert_eq!(default_header("ID"), "ID");
        assert!(matches!(Format::parse(Some("table")), Ok(Format::Default)));
        assert!(matches!(Format::parse(Some("json")), Ok(Format::Json)));
        assert!(matches!(Format::parse(None), Ok(Format::Default)));
    }
}
