//! The image verbs on the store: `load`, `save`, `images`, `inspect`, `history`, `tag`, `rmi`,
//! `prune`, and the table, size and time helpers the other verb groups share. To add a verb: a
//! variant with its arguments in [`Verb`], a line in [`Verb::name`] and an arm in [`Verb::run`].

use super::template::{self, Format};
use super::{CliError, Res};
use crate::image::archive;
use crate::image::container;
use crate::image::digest::Digest;
use crate::image::layout::ANN_REF_NAME;
use crate::image::progress::Bars;
use crate::image::reference::Reference;
use crate::image::store::{self, Image, Store};
use crate::image::unpack::{Limits, Options};
use CliError::{Failed, Usage};
use clap::{Args, Subcommand, ValueHint};
use serde_json::{Value, json};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Verb {
    /// Load images from a docker-archive or OCI layout tar (stdin or -i FILE)
    Load(LoadArgs),
    /// Save images as one tar (docker-archive and OCI layout at once)
    Save(SaveArgs),
    /// List the images in the store
    Images(ImagesArgs),
    /// Show images' configuration and layers as JSON
    Inspect(InspectArgs),
    /// Show an image's history, newest layer first
    History(HistoryArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images (their unused layers go too)
    Rmi(RmiArgs),
    /// Remove unused images, then unused layers and blobs
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read the archive from FILE instead of stdin
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    input: Option<String>,
    /// Print nothing
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write the archive to FILE instead of stdout
    #[arg(short, long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    output: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// json (JSON lines), or a Go template: '{{.ID}} {{.Repository}}:{{.Tag}}', 'table ...'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Show full image IDs
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// json (the default), or a Go template per image: '{{.Id}}', '{{json .Config.Env}}'
    #[arg(short, long, value_name = "FORMAT")]
    format: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Show full image IDs and commands
    #[arg(long)]
    no_trunc: bool,
    /// Print only the image IDs
    #[arg(short, long)]
    quiet: bool,
    /// json (JSON lines), or a Go template: '{{.CreatedBy}}', 'table {{.ID}}\t{{.Size}}'
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    #[arg(value_name = "IMAGE")]
    image: String,
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE")]
    source: String,
    #[arg(value_name = "TARGET")]
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Remove every tag of an image named by ID
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only untagged ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask (prune never asks; docker's flag)
    #[arg(short, long)]
    force: bool,
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Load(_) => "load",
            Verb::Save(_) => "save",
            Verb::Images(_) => "images",
            Verb::Inspect(_) => "inspect",
            Verb::History(_) => "history",
            Verb::Tag(_) => "tag",
            Verb::Rmi(_) => "rmi",
            Verb::Prune(_) => "prune",
        }
    }

    pub fn run(self, store: Option<PathBuf>) -> Res {
        let st = open_store(store)?;
        match self {
            Verb::Load(a) => load(&st, a),
            Verb::Save(a) => save(&st, a),
            Verb::Images(a) => images(&st, a),
            Verb::Inspect(a) => inspect(&st, a),
            Verb::History(a) => history(&st, a),
            Verb::Tag(a) => tag(&st, a),
            Verb::Rmi(a) => rmi(&st, a),
            Verb::Prune(a) => prune(&st, a),
        }
    }
}

/// The store at `--store DIR`, else the default one.
pub fn open_store(flag: Option<PathBuf>) -> Result<Store, CliError> {
    let root = store::default_root(flag.as_deref())?;
    Ok(Store::open(&root)?)
}

pub fn unpack_options() -> Options {
    Options {
        limits: Limits::default(),
        as_root: store::is_root(),
    }
}

fn load(st: &Store, a: LoadArgs) -> Res {
    // Bars on a terminal, as docker load draws them; -q or a pipe keeps stderr quiet.
    let bars = Bars::new(!a.quiet && io::stderr().is_terminal());
    let loaded = match a.input.as_deref() {
        Some(f) if f != "-" => {
            let file = File::open(f).map_err(|e| format!("cannot open {f}: {e}"))?;
            let input = io::BufReader::with_capacity(1 << 20, file);
            archive::load_with(st, input, &unpack_options(), &bars)
        }
        _ => {
            if io::stdin().is_terminal() {
                return Err(Usage("load: give -i FILE or pipe an archive in".into()));
            }
            archive::load_with(st, io::stdin().lock(), &unpack_options(), &bars)
        }
    }
    .map_err(|m| format!("load: {m}"))?;
    if !a.quiet {
        for (id, tags) in loaded {
            if tags.is_empty() {
                println!("Loaded image ID: {id}");
            }
            for t in tags {
                println!("Loaded image: {t}");
            }
        }
    }
    Ok(())
}

fn save(st: &Store, a: SaveArgs) -> Res {
    match a.output.as_deref() {
        Some(f) if f != "-" => {
            let out = Path::new(f);
            let tmp = PathBuf::from(format!("{f}.tmp-{}", std::process::id()));
            let res = (|| {
                let file = File::create_new(&tmp)
                    .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
                let mut w = io::BufWriter::with_capacity(1 << 20, file);
                archive::save(st, &a.images, &mut w)?;
                let file = w
                    .into_inner()
                    .map_err(|e| format!("cannot write {f}: {}", e.error()))?;
                file.sync_all()
                    .map_err(|e| format!("cannot sync {f}: {e}"))?;
                fs::rename(&tmp, out).map_err(|e| format!("cannot rename to {f}: {e}"))
            })();
            if res.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            res?;
        }
        _ => {
            if io::stdout().is_terminal() {
                return Err(Usage(
                    "save: refusing to write an archive to a terminal; give -o FILE".into(),
                ));
            }
            let mut out = io::stdout().lock();
            archive::save(st, &a.images, &mut out)?;
        }
    }
    Ok(())
}

/// The image's size: its layers' uncompressed tar bytes (as recorded when unpacked).
fn image_size(st: &Store, img: &Image) -> u64 {
    let diffs = img.diff_ids().unwrap_or_default();
    diffs
        .iter()
        .zip(&img.manifest.layers)
        .map(|(d, l)| st.layer_info(d).map_or(l.size, |i| i.size))
        .sum()
}

fn created(img: &Image) -> String {
    img.config
        .get("created")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn images(st: &Store, a: ImagesArgs) -> Res {
    let format = Format::parse(a.format.as_deref()).map_err(Usage)?;
    let mut imgs = st.images()?;
    imgs.sort_by_key(|i| std::cmp::Reverse(parse_time(&created(i)).unwrap_or(i64::MIN)));
    let mut rows = Vec::new();
    let mut objects = Vec::new();
    for img in &imgs {
        let size = image_size(st, img);
        let id = if a.no_trunc {
            img.id().to_string()
        } else {
            img.id().hex()[..12].to_string()
        };
        let pairs: Vec<(String, String)> = if img.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.tags
                .iter()
                .map(|t| match Reference::parse(t) {
                    Ok(r) => (r.name, r.tag),
                    Err(_) => (t.clone(), "<none>".into()),
                })
                .collect()
        };
        for (repo, tag) in pairs {
            let c = created(img);
            if let Format::Default = format {
                rows.push(vec![repo, tag, id.clone(), since(&c), human_size(size)]);
                continue;
            }
            // `--format json` has always carried the full ID; a template's {{.ID}} is the
            // table's (12 hex digits unless --no-trunc), as docker's.
            let json = matches!(format, Format::Json);
            let shown = if json {
                img.id().to_string()
            } else {
                id.clone()
            };
            let line = json!({
                "Repository": repo, "Tag": tag, "ID": shown,
                "Digest": img.manifest_digest.to_string(), "CreatedAt": c,
                "CreatedSince": since(&c), "Size": human_size(size), "SizeBytes": size,
            });
            if json {
                println!("{line}");
            } else {
                objects.push(line);
            }
        }
    }
    match format {
        Format::Default => {
            print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
        }
        Format::Json => {}
        Format::Template(t) => {
            let header = |f: &str| match f {
                "ID" => "IMAGE ID".to_string(),
                "CreatedSince" => "CREATED".to_string(),
                f => template::default_header(f),
            };
            print!("{}", t.render_all(&objects, &header)?);
        }
    }
    Ok(())
}

fn inspect(st: &Store, a: InspectArgs) -> Res {
    // `json` (and none) print docker's pretty array; a template is applied to each image.
    let format = Format::parse(a.format.as_deref()).map_err(Usage)?;
    let mut out = Vec::new();
    for name in &a.images {
        let img = st.resolve(name)?;
        let diffs = img.diff_ids()?;
        let lower: Vec<String> = diffs
            .iter()
            .rev()
            .map(|d| st.layer_dir(d).display().to_string())
            .collect();
        let c = &img.config;
        out.push(json!({
            "Id": img.id().to_string(),
            "RepoTags": img.tags,
            "RepoDigests": [],
            "Created": c.get("created").cloned().unwrap_or(Value::Null),
            "Author": c.get("author").cloned().unwrap_or(json!("")),
            "Config": c.get("config").cloned().unwrap_or(Value::Null),
            "Architecture": c.get("architecture").cloned().unwrap_or(Value::Null),
            "Os": c.get("os").cloned().unwrap_or(Value::Null),
            "Size": image_size(st, &img),
            "RootFS": {"Type": "layers", "Layers": diffs.iter().map(Digest::to_string).collect::<Vec<_>>()},
            "History": c.get("history").cloned().unwrap_or(json!([])),
            "Manifest": {"Digest": img.manifest_digest.to_string(),
                         "MediaType": img.manifest.media_type},
            "GraphDriver": {"Name": "unionrs", "Data": {"LowerDir": lower.join(":")}},
        }));
    }
    if let Format::Template(t) = format {
        print!("{}", t.render_all(&out, &template::default_header)?);
        return Ok(());
    }
    let s = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(())
}

fn history(st: &Store, a: HistoryArgs) -> Res {
    let format = Format::parse(a.format.as_deref()).map_err(Usage)?;
    let json = !matches!(format, Format::Default);
    let mut objects = Vec::new();
    let img = st.resolve(&a.image)?;
    let diffs = img.diff_ids()?;
    let hist: Vec<Value> = match img.config.get("history").and_then(Value::as_array) {
        Some(h) if !h.is_empty() => h.clone(),
        _ => diffs.iter().map(|_| json!({})).collect(),
    };
    // Pair each non-empty history entry with the next layer, bottom up.
    let mut layer = 0;
    let mut rows: Vec<(String, String, String, Option<u64>, String)> = Vec::new();
    for h in &hist {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            None
        } else {
            let s = diffs.get(layer).map(|d| {
                st.layer_info(d)
                    .map_or(img.manifest.layers.get(layer).map_or(0, |l| l.size), |i| {
                        i.size
                    })
            });
            layer += 1;
            s
        };
        let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        rows.push((
            s("created"),
            s("created_by"),
            s("comment"),
            size,
            s("author"),
        ));
    }
    rows.reverse();
    let trunc = !a.no_trunc;
    let mut table = Vec::new();
    for (i, (created, by, comment, size, _)) in rows.iter().enumerate() {
        let id = if i == 0 {
            if trunc {
                img.id().hex()[..12].to_string()
            } else {
                img.id().to_string()
            }
        } else {
            "<missing>".to_string()
        };
        if json {
            let line = json!({"ID": id, "CreatedAt": created, "CreatedSince": since(created),
                "CreatedBy": by, "Size": human_size(size.unwrap_or(0)),
                "SizeBytes": size.unwrap_or(0), "Comment": comment});
            if let Format::Json = format {
                println!("{line}");
            } else {
                objects.push(line);
            }
        } else if a.quiet {
            println!("{id}");
        } else {
            let by = if trunc && by.chars().count() > 45 {
                format!("{}…", by.chars().take(44).collect::<String>())
            } else {
                by.clone()
            };
            table.push(vec![
                id,
                since(created),
                by,
                human_size(size.unwrap_or(0)),
                comment.clone(),
            ]);
        }
    }
    if let Format::Template(t) = format {
        let header = |f: &str| match f {
            "ID" => "IMAGE".to_string(),
            "CreatedSince" => "CREATED".to_string(),
            f => template::default_header(f),
        };
        print!("{}", t.render_all(&objects, &header)?);
    } else if !json && !a.quiet {
        print_table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table,
        );
    }
    Ok(())
}

fn tag(st: &Store, a: TagArgs) -> Res {
    let img = st.resolve(&a.source)?;
    let r = Reference::parse(&a.target)?;
    let mut index = st.read_index()?;
    let desc = index
        .manifests
        .iter()
        .find(|d| d.digest == img.manifest_digest.as_str())
        .cloned()
        .ok_or_else(|| Failed("image vanished from index.json".into()))?;
    Store::set_tag(&mut index, &r, &desc);
    st.write_index(&index)?;
    Ok(())
}

fn rmi(st: &Store, a: RmiArgs) -> Res {
    let mut first_err = None;
    for name in &a.images {
        if let Err(m) = rmi_one(st, name, a.force) {
            eprintln!("unionrs: rmi {name}: {m}");
            first_err.get_or_insert(m);
        }
    }
    for d in st.gc(&container::used_diff_ids(st)?)?.layers {
        println!("Deleted: {d}");
    }
    match first_err {
        Some(_) => Err(Failed("some images were not removed".into())),
        None => Ok(()),
    }
}

fn rmi_one(st: &Store, name: &str, force: bool) -> Result<(), String> {
    let img = st.resolve(name)?;
    if let Some(c) = container::list(st)?
        .iter()
        .find(|c| c.image_id == img.id().as_str())
    {
        return Err(format!(
            "image is used by container {}; remove it first",
            c.name
        ));
    }
    let mut index = st.read_index()?;
    let by_tag = Reference::parse(name)
        .ok()
        .map(|r| r.to_string())
        .filter(|t| img.tags.contains(t));
    let untag: Vec<String> = match by_tag {
        Some(t) => vec![t],
        None if img.tags.len() > 1 && !force => {
            return Err(format!(
                "image {} is tagged {}; remove the tags one by one or use -f",
                &img.id().hex()[..12],
                img.tags.join(", ")
            ));
        }
        None => img.tags.clone(),
    };
    index.manifests.retain(|d| {
        let tagged = d
            .annotation(ANN_REF_NAME)
            .is_some_and(|r| untag.iter().any(|t| t == r));
        let untagged_same =
            d.digest == img.manifest_digest.as_str() && d.annotation(ANN_REF_NAME).is_none();
        !(tagged || untagged_same)
    });
    for t in &untag {
        println!("Untagged: {t}");
    }
    if !index
        .manifests
        .iter()
        .any(|d| d.digest == img.manifest_digest.as_str())
    {
        println!("Deleted: {}", img.id());
    }
    st.write_index(&index)
}

fn prune(st: &Store, a: PruneArgs) -> Res {
    // -f is Docker's "do not ask"; prune never asks.
    let _ = a.force;
    let r = crate::image::prune::prune(st, a.all)?;
    if !r.untagged.is_empty() || !r.images.is_empty() {
        println!("Deleted Images:");
        for t in &r.untagged {
            println!("untagged: {t}");
        }
        for id in &r.images {
            println!("deleted: {id}");
        }
    }
    for l in &r.freed.layers {
        println!("deleted layer: {l}");
    }
    println!(
        "Total reclaimed space: {} ({} bytes; {} images, {} layers, {} blobs)",
        human_size(r.freed.bytes),
        r.freed.bytes,
        r.images.len(),
        r.freed.layers.len(),
        r.freed.blobs.len()
    );
    Ok(())
}

pub fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            }
        }
        s
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", line(head.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

/// Docker's human sizes: decimal units, 3 significant digits ("5.59MB", "123B").
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[u])
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `+01:00`).
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let off = match b.get(i) {
        Some(b'Z' | b'z') => 0,
        Some(c @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *c == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - off)
}

/// "3 days ago", as Docker words it.
pub fn since(created: &str) -> String {
    let Some(t) = parse_time(created) else {
        return "N/A".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let s = (now - t).max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86399 => (s / 3600, "hour"),
        86400..=1_209_599 => (s / 86400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(human_size(123), "123B");
        assert_eq!(human_size(5_590_000), "5.59MB");
        assert_eq!(human_size(77_800_000), "77.8MB");
        assert_eq!(human_size(5_000_000), "5MB");
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2024-01-02T03:04:05.5+01:00"),
            Some(1704164645 - 3600)
        );
        assert_eq!(parse_time("junk"), None);
    }
}
