//! A container's log (`ctr.log`): what its process wrote, one record per line, in the CRI
//! form `TIMESTAMP STREAM F|P TEXT` (P: a partial line, continued by the next record), so
//! `logs -t` can show when each line came and `logs` can send stderr back to stderr.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub fn path(dir: &Path) -> PathBuf {
    dir.join("ctr.log")
}

/// Now as RFC 3339 with nanoseconds.
pub fn timestamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = crate::image::container::rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", s.trim_end_matches('Z'), d.subsec_nanos())
}

/// Copies everything read from `from` into the log as records of `stream`, and as it is to
/// the attached `clients`, until EOF.
pub fn copy(
    mut from: impl Read,
    stream: &str,
    log: Arc<Mutex<File>>,
    clients: Option<super::attach::Clients>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Some(c) = &clients {
            c.send(&buf[..n]);
        }
        let ts = timestamp();
        let mut out = Vec::new();
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let (line, full) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            out.extend_from_slice(
                format!("{ts} {stream} {} ", if full { 'F' } else { 'P' }).as_bytes(),
            );
            // A terminal's lines end in \r\n: the \r is not part of the text.
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.push(b'\n');
            rest = &rest[(line.len() + usize::from(full)).min(rest.len())..];
        }
        if let Ok(mut f) = log.lock() {
            let _ = f.write_all(&out);
        }
    }
}

/// One record of the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stderr: bool,
    /// Ends a line (else the next record continues it).
    pub full: bool,
    pub text: Vec<u8>,
}

pub fn parse(line: &[u8]) -> Option<Record> {
    let mut it = line.splitn(4, |&b| b == b' ');
    let time = String::from_utf8(it.next()?.to_vec()).ok()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let text = it.next().unwrap_or_default().to_vec();
    Some(Record {
        time,
        stderr: stream == b"stderr",
        full: tag != b"P",
        text,
    })
}

/// Options of `logs`.
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// Writes one record; `mid` says, per stream (stdout, stderr), that a line is half written
/// (its timestamp already shown).
fn emit(
    r: &Record,
    o: &LogOptions,
    mid: &mut [bool; 2],
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    let w: &mut dyn Write = if r.stderr { err } else { out };
    let m = &mut mid[usize::from(r.stderr)];
    if o.timestamps && !*m {
        write!(w, "{} ", r.time)?;
    }
    *m = !r.full;
    w.write_all(&r.text)?;
    if r.full {
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Writes the log to `out`/`err`; with `follow`, keeps writing what comes until `done()`
/// says the container stopped (and the log is read to its end).
pub fn show(
    file: &Path,
    o: &LogOptions,
    done: &mut dyn FnMut() -> bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), String> {
    let f = File::open(file).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            // No output yet: an empty log.
            File::open("/dev/null")
        } else {
            Err(e)
        }
    });
    let mut f = BufReader::new(f.map_err(|e| format!("{}: {e}", file.display()))?);
    let mut records = Vec::new();
    let mut line = Vec::new();
    while f.read_until(b'\n', &mut line).map_err(|e| e.to_string())? > 0 {
        if line.ends_with(b"\n") {
            line.pop();
            records.extend(parse(&line));
            line.clear();
        } else {
            break;
        }
    }
    let skip = o.tail.map_or(0, |n| {
        records.iter().filter(|r| r.full).count().saturating_sub(n)
    });
    // Skip whole lines: `skip` complete lines (and the partial records before each).
    let mut skipped = 0;
    let mut start = 0;
    while skipped < skip && start < records.len() {
        if records[start].full {
            skipped += 1;
        }
        start += 1;
    }
    let mut mid = [false; 2];
    for r in &records[start..] {
        emit(r, o, &mut mid, out, err).map_err(|e| e.to_string())?;
    }
    if !o.follow {
        return Ok(());
    }
    // Follow: a partial line read above stays in `line` until its newline comes.
    let mut pos = f.stream_position().map_err(|e| e.to_string())?;
    let mut f = f.into_inner();
    loop {
        let stopped = done();
        let mut chunk = Vec::new();
        f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
        let n = f.read_to_end(&mut chunk).map_err(|e| e.to_string())?;
        pos += n as u64;
        line.extend_from_slice(&chunk);
        while let Some(i) = line.iter().position(|&b| b == b'\n') {
            if let Some(r) = parse(&line[..i]) {
                emit(&r, o, &mut mid, out, err).map_err(|e| e.to_string())?;
            }
            line.drain(..=i);
        }
        if stopped && n == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tail_counts_lines() {
        let t = tempfile::tempdir().unwrap();
        let p = path(t.path());
        let log = Arc::new(Mutex::new(File::create(&p).unwrap()));
        copy(&b"one\ntwo\r\nthr"[..], "stdout", log.clone(), None);
        copy(&b"ee\n"[..], "stdout", log.clone(), None);
        copy(&b"oops\n"[..], "stderr", log, None);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = LogOptions {
            follow: false,
            tail: None,
            timestamps: false,
        };
        show(&p, &o, &mut || true, &mut out, &mut err).unwrap();
        assert_eq!(
            (out.as_slice(), err.as_slice()),
            (&b"one\ntwo\nthree\n"[..], &b"oops\n"[..])
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let o = LogOptions {
            follow: true,
            tail: Some(2),
            timestamps: true,
        };
        show(&p, &o, &mut || true, &mut out, &mut err).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(lines[0].ends_with("Z three"), "{out}");
        assert!(lines[0].starts_with("20"), "{out}");
    }
}
