//! `unionrs check UPPER [--work W] [--lower L1:L2] [--repair]`: the upper-dir fsck's command line.

use crate::union::check::{CheckOptions, check};
use clap::{Args, ValueHint};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check an upper dir (fsck); --repair fixes what leaves the merged view unchanged
///
/// Checks an upper dir (and the workdir given at mount time) for stray work entries, orphaned
/// hard-link index entries, malformed overlay xattrs, whiteouts that hide nothing and metacopy
/// files whose data no lower holds (orphaned index entries, dangling redirects, lost metacopy
/// data and most useless whiteouts need --lower; without it only structural problems are
/// reported). Prints one line per finding; exit 0 when clean, 1 when something was found, 2 on
/// a usage or I/O error. --repair fixes what leaves the merged view unchanged and prints what
/// it did; exit 0 when everything found was fixed. Unmount first: a workdir held by a live
/// mount is refused.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// The workdir the upper was mounted with
    #[arg(long, value_name = "WORK_DIR", value_hint = ValueHint::DirPath)]
    work: Option<PathBuf>,
    /// The lower layers, top first (`\:` for a colon in a path)
    #[arg(long, value_name = "L1:L2:...")]
    lower: Option<OsString>,
    /// Fix what can be fixed without changing the merged view
    #[arg(long)]
    repair: bool,
    #[arg(value_name = "UPPER_DIR", value_hint = ValueHint::DirPath)]
    upper: PathBuf,
}

/// Runs the check.
pub fn run(a: CheckArgs) -> ExitCode {
    let opts = CheckOptions {
        upper: a.upper,
        work: a.work,
        lowers: a
            .lower
            .map(|l| split_lowers(l.as_bytes()))
            .unwrap_or_default(),
        repair: a.repair,
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

    #[test]
    fn lowers_split_at_unescaped_colons() {
        assert_eq!(
            split_lowers(b"/a:/b\\:c::"),
            vec![PathBuf::from("/a"), PathBuf::from("/b:c")]
        );
    }
}
