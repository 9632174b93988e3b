//! `unionrs check UPPER [--work W] [--lower L1:L2] [--repair]`: the upper-dir fsck's command line.

use crate::union::check::{CheckOptions, check};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;

pub const USAGE: &str =
    "usage: unionrs check UPPER_DIR [--work WORK_DIR] [--lower L1:L2:...] [--repair]
  Checks an upper dir (and the workdir given at mount time) for stray work entries, orphaned
  hard-link index entries, malformed overlay xattrs, whiteouts that hide nothing and metacopy
  files whose data no lower holds (orphaned index entries, dangling redirects, lost metacopy
  data and most useless whiteouts need --lower; without it only
  structural problems are reported). Prints one line per
  finding; exit 0 when clean, 1 when something was found, 2 on a usage or I/O error.
  --repair fixes what leaves the merged view unchanged and prints what it did; exit 0 when
  everything found was fixed. Unmount first: a workdir held by a live mount is refused.";

/// Runs the check; `args` follow the word `check`.
pub fn run(args: &[OsString]) -> ExitCode {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("unionrs check: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = match check(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("unionrs check: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    for f in &report.findings {
        println!("{f}");
    }
    for r in &report.repaired {
        println!("repaired: {r}");
    }
    for u in &report.unrepaired {
        println!("not repaired: {u}");
    }
    if report.clean(opts.repair) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// None: help was asked for.
fn parse(args: &[OsString]) -> Result<Option<CheckOptions>, String> {
    let mut opts = CheckOptions::default();
    let mut upper = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.as_bytes();
        let mut value = |flag: &str| -> Result<OsString, String> {
            match s.strip_prefix(format!("{flag}=").as_bytes()) {
                Some(v) => Ok(OsString::from_vec(v.to_vec())),
                None => it.next().cloned().ok_or(format!("{flag} needs a value")),
            }
        };
        match s {
            b"-h" | b"--help" => return Ok(None),
            b"--repair" => opts.repair = true,
            _ if s == b"--work" || s.starts_with(b"--work=") => {
                opts.work = Some(PathBuf::from(value("--work")?))
            }
            _ if s == b"--lower" || s.starts_with(b"--lower=") => {
                opts.lowers = split_lowers(value("--lower")?.as_bytes())
            }
            _ if s.starts_with(b"-") => {
                return Err(format!("unknown option {}", a.to_string_lossy()));
            }
            _ if upper.is_none() => upper = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {}", a.to_string_lossy())),
        }
    }
    opts.upper = upper.ok_or("UPPER_DIR is missing")?;
    Ok(Some(opts))
}

/// `L1:L2` with `\:` escaping a colon, as in lowerdir=.
fn split_lowers(s: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = s.iter();
    while let Some(&c) = bytes.next() {
        match c {
            b'\\' => cur.extend(bytes.next()),
            b':' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsString::from_vec(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_flags_in_both_forms() {
        let o = parse(&args(&[
            "/u",
            "--work",
            "/w",
            "--lower=/a:/b\\:c",
            "--repair",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.upper, PathBuf::from("/u"));
        assert_eq!(o.work, Some(PathBuf::from("/w")));
        assert_eq!(o.lowers, vec![PathBuf::from("/a"), PathBuf::from("/b:c")]);
        assert!(o.repair);
        assert!(parse(&args(&["--help"])).unwrap().is_none());
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["/u", "--bogus"])).is_err());
        assert!(parse(&args(&["/u", "--work"])).is_err());
        assert!(parse(&args(&["/u", "/v"])).is_err());
    }
}
