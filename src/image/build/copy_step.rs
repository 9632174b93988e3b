//! COPY and ADD: arguments after substitution, sources (the context, an earlier stage or
//! an image, heredocs, URLs), the checksum that keys the cache, and the step run in a
//! container (see [`super::copy`] for what is written).

use super::context;
use super::copy;
use super::fetch;
use super::parse::{Args, Instruction};
use super::step::{self, StepContainer};
use super::{Builder, Stage, config, now_rfc3339, words};
use crate::image::rootfs::Rootfs;
use sha2::Digest as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Files ADD downloaded, removed when the step is over.
struct Fetched<'a>(Vec<(&'a String, PathBuf)>);

impl Drop for Fetched<'_> {
    fn drop(&mut self) {
        for (_, p) in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

impl Builder<'_> {
    /// --chown's USER[:GROUP] resolved in the step's rootfs; a user alone gives the same
    /// numeric group (docker's rule).
    fn owner(merged: &Path, spec: &str) -> Result<(u32, u32), String> {
        let (u, _) = Rootfs::open(merged)?
            .user(spec)
            .map_err(|e| format!("--chown={spec}: {e}"))?;
        Ok((u.uid, if spec.contains(':') { u.gid } else { u.uid }))
    }

    pub(super) fn copy(&mut self, s: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let kw = ins.keyword.as_str();
        let vars = s.vars();
        let mut list = match &ins.args {
            Args::Exec(v) => v
                .iter()
                .map(|w| words::expand_only(w, self.escape, &vars))
                .collect::<Result<Vec<_>, _>>()?,
            Args::Shell(t) => words::process_words(t, self.escape, &vars)?,
            _ => return Err(format!("{kw} needs SOURCE... DEST")),
        };
        let dest_raw = list.pop().ok_or(format!("{kw} needs SOURCE... DEST"))?;
        let workdir = config::string(&s.state.config, "WorkingDir").unwrap_or_else(|| "/".into());
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let mut d = format!("{}/{}", workdir.trim_end_matches('/'), dest_raw);
            if dest_raw == "." || dest_raw == "./" {
                d = format!("{}/", workdir.trim_end_matches('/'));
            }
            d
        };
        let chmod = ins
            .flag("chmod")
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|v| *v <= 0o7777)
                    .ok_or_else(|| format!("--chmod={m}: an octal mode"))
            })
            .transpose()?;
        for f in ["checksum", "keep-git-dir", "parents", "exclude"] {
            if ins.flag(f).is_some() {
                return Err(format!("{kw} --{f} is not supported"));
            }
        }
        // Heredoc sources and file sources.
        let mut inline = Vec::new();
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        for src in list {
            let name = src
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\'']);
            if src.starts_with("<<")
                && let Some(h) = ins.heredocs.iter().find(|h| h.name == name)
            {
                let body = if h.expand {
                    words::expand_only(&h.body, self.escape, &vars)?
                } else {
                    h.body.clone()
                };
                inline.push((h.name.clone(), body));
            } else if kw == "ADD" && fetch::is_url(&src) {
                urls.push(src);
            } else if src.contains("://") {
                return Err(format!("{kw} {src}: only ADD takes URLs (http, https)"));
            } else {
                paths.push(src);
            }
        }
        // The sources' root: the context, an earlier stage, or an image.
        let from = ins.flag("from");
        let from_state = from.map(|f| self.state_of_from(f)).transpose()?;
        let from_sc = match &from_state {
            Some(fs) => Some(StepContainer::new(self.st, fs, "build-from")?),
            None => None,
        };
        let root = match &from_sc {
            Some(sc) => sc.rootfs(),
            None => self.ctx.clone(),
        };
        let mut sources = Vec::new();
        for p in &paths {
            sources.push(root.sources(p)?);
        }
        // URLs are fetched first: their content is part of the key.
        let fetched = Fetched(
            urls.iter()
                .map(|u| fetch::download(self.st, u, self.o.client.tls_verify).map(|p| (u, p)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let mut url_sources = Vec::new();
        for (u, p) in &fetched.0 {
            let name = match fetch::file_name(u) {
                Some(n) => n,
                None if !dest.ends_with('/') => "download".into(),
                None => {
                    return Err(format!(
                        "ADD {u}: no file name in the URL; give the destination file's"
                    ));
                }
            };
            url_sources.push(context::Source {
                rel: vec![name],
                host: p.clone(),
            });
        }
        let mut h = sha2::Sha256::new();
        match &from_state {
            Some(fs) => {
                // An earlier stage's or image's files are known by its ID.
                h.update(fs.id().as_str());
                for p in &paths {
                    h.update(p.as_bytes());
                    h.update([0]);
                }
            }
            None => {
                for group in &sources {
                    for src in group {
                        h.update(src.rel.join("/").as_bytes());
                        h.update([0]);
                        root.checksum(src, &mut h)?;
                    }
                }
            }
        }
        for (u, src) in urls.iter().zip(&url_sources) {
            h.update(u.as_bytes());
            h.update([0]);
            root.checksum(src, &mut h)?;
        }
        let all: Vec<_> = sources.iter().flatten().chain(url_sources.iter()).collect();
        if all.len() + inline.len() > 1 && !dest.ends_with('/') {
            return Err(format!(
                "{kw} with several sources needs a destination ending in / (got {dest_raw})"
            ));
        }
        let kind = match all.as_slice() {
            [one] if inline.is_empty() && one.host.is_dir() => "dir",
            [_] if inline.is_empty() => "file",
            _ => "multi",
        };
        for (n, b) in &inline {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(b.as_bytes());
        }
        let sum = format!("{:x}", h.finalize());
        let created_by = format!("/bin/sh -c #(nop) {kw} {kind}:{sum} in {dest} ");
        let flags: Vec<String> = ins
            .flags
            .iter()
            .map(|(k, v)| format!("--{k}={}", v.as_deref().unwrap_or("")))
            .collect();
        let flags = flags.join(" ");
        let (key, hit) = self.cached(s, &[&created_by, &flags]);
        if hit {
            return Ok(());
        }
        let sc = StepContainer::new(self.st, &s.state, "build")?;
        step::ensure_workdir(&sc, &s.state)?;
        let chown = ins
            .flag("chown")
            .map(|c| Self::owner(&sc.merged, c))
            .transpose()?;
        let attrs = copy::Attrs {
            chown,
            chmod,
            keep_owner: from.is_some(),
        };
        let rootfs = sc.rootfs();
        for group in &sources {
            let unpacks = kw == "ADD" && from.is_none();
            for src in group {
                let kind = unpacks
                    .then(|| copy::archive_kind(&src.host))
                    .flatten()
                    .filter(|_| src.host.is_file());
                match kind {
                    Some(k) => copy::add_archive(self.st, &src.host, k, &rootfs, &dest)?,
                    None => copy::copy_sources(
                        &root,
                        std::slice::from_ref(src),
                        &rootfs,
                        &dest,
                        &attrs,
                    )?,
                }
            }
        }
        for src in &url_sources {
            copy::copy_sources(&root, std::slice::from_ref(src), &rootfs, &dest, &attrs)?;
        }
        for (n, b) in &inline {
            copy::write_inline(&rootfs, &dest, n, b, &attrs)?;
        }
        drop(from_sc);
        sc.commit(&mut s.state, &now_rfc3339(), &created_by)?;
        drop(sc);
        self.remember(&key, s)
    }
}
