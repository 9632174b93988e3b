//! Paths of COPY/ADD: sources in the build context (or in a stage's root filesystem for
//! `--from`), resolved beneath their root, globs expanded, `.dockerignore` applied; and a
//! checksum of what a source holds, for the layer cache.
//!
//! In the context, a source that leaves the root (`../x`, or a symlink pointing outside)
//! is an error. In a container root filesystem, paths resolve as if the root were `/`
//! (an absolute symlink target starts at the root, `..` stops there), as chroot does.

use super::ignore::{Ignore, fnmatch};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many symlinks one resolution follows at most (Linux's limit).
const MAX_LINKS: usize = 40;

/// A root that paths are resolved beneath.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
    /// True for the build context: leaving it is an error, and .dockerignore applies.
    pub strict: bool,
    pub ignore: Ignore,
}

/// One matched source: its path relative to the root (resolved) and on the host.
#[derive(Debug, Clone)]
pub struct Source {
    pub rel: Vec<String>,
    pub host: PathBuf,
}

fn has_glob(c: &str) -> bool {
    c.contains(['*', '?', '['])
}

impl Root {
    pub fn context(dir: &Path, ignore: Ignore) -> Result<Root, String> {
        let dir = fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Root {
            dir,
            strict: true,
            ignore,
        })
    }

    pub fn rootfs(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
            strict: false,
            ignore: Ignore::default(),
        }
    }

    pub fn host(&self, rel: &[String]) -> PathBuf {
        let mut p = self.dir.clone();
        p.extend(rel);
        p
    }

    /// Resolves `path` (relative to the root, `/` meaning the root) following every symlink
    /// on the way, the last component's too when `follow_last`.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Vec<String>, String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                if done.pop().is_none() && self.strict {
                    return Err("outside the build context".into());
                }
                continue;
            }
            done.push(c);
            if todo.is_empty() && !follow_last {
                break;
            }
            let host = self.host(&done);
            let Ok(m) = fs::symlink_metadata(&host) else {
                continue;
            };
            if !m.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err("too many levels of symbolic links".into());
            }
            let target = fs::read_link(&host).map_err(|e| format!("{}: {e}", host.display()))?;
            let t = target.to_string_lossy().into_owned();
            let link = done.join("/");
            done.pop();
            if t.starts_with('/') {
                if self.strict {
                    // An absolute target inside the context still names a context path.
                    let inside = Path::new(&t)
                        .strip_prefix(&self.dir)
                        .map_err(|_| format!("symlink {link} points outside the build context"))?;
                    done.clear();
                    todo.extend(
                        inside
                            .to_string_lossy()
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(str::to_string),
                    );
                    continue;
                }
                done.clear();
            }
            todo.extend(
                t.split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                    .map(str::to_string),
            );
        }
        Ok(done)
    }

    fn rel_str(rel: &[String]) -> String {
        rel.join("/")
    }

    /// The sources `src` names: one path, or every match of a glob. An explicit path that
    /// does not exist, or that .dockerignore leaves out, is an error.
    pub fn sources(&self, src: &str) -> Result<Vec<Source>, String> {
        let comps: Vec<&str> = src
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if !comps.iter().any(|c| has_glob(c)) {
            let rel = self.resolve(src, true).map_err(|e| format!("{src}: {e}"))?;
            let host = self.host(&rel);
            if fs::symlink_metadata(&host).is_err()
                || (self.strict && self.ignore.excluded(&Self::rel_str(&rel)))
            {
                let why = if self.strict {
                    "not found in the build context or excluded by .dockerignore"
                } else {
                    "not found"
                };
                return Err(format!("{src}: {why}"));
            }
            return Ok(vec![Source { rel, host }]);
        }
        // Glob: expand component by component (symlinked dirs on the way are resolved).
        let mut partial: Vec<Vec<String>> = vec![Vec::new()];
        for c in comps {
            let mut next = Vec::new();
            for base in partial {
                if c == ".." {
                    let joined = format!("{}/..", Self::rel_str(&base));
                    next.push(
                        self.resolve(&joined, true)
                            .map_err(|e| format!("{src}: {e}"))?,
                    );
                    continue;
                }
                if !has_glob(c) {
                    let mut p = base.clone();
                    p.push(c.to_string());
                    let r = self
                        .resolve(&Self::rel_str(&p), true)
                        .map_err(|e| format!("{src}: {e}"))?;
                    if fs::symlink_metadata(self.host(&r)).is_ok() {
                        next.push(r);
                    }
                    continue;
                }
                let Ok(rd) = fs::read_dir(self.host(&base)) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| fnmatch(c, n))
                    .collect();
                names.sort();
                for n in names {
                    let mut p = base.clone();
                    p.push(n);
                    let r = self
                        .resolve(&Self::rel_str(&p), true)
                        .map_err(|e| format!("{src}: {e}"))?;
                    next.push(r);
                }
            }
            partial = next;
        }
        let out: Vec<Source> = partial
            .into_iter()
            .filter(|r| !(self.strict && self.ignore.excluded(&Self::rel_str(r))))
            .map(|rel| Source {
                host: self.host(&rel),
                rel,
            })
            .collect();
        if out.is_empty() {
            return Err(format!(
                "{src}: no source files were specified (nothing matches)"
            ));
        }
        Ok(out)
    }

    /// Entries below the directory `rel` (depth first, sorted, parents before children),
    /// as paths relative to `rel`; .dockerignore'd ones left out. Symlinks are not followed.
    pub fn walk(&self, rel: &[String]) -> Result<Vec<Vec<String>>, String> {
        let mut out = Vec::new();
        self.walk_into(rel, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    fn walk_into(
        &self,
        base: &[String],
        sub: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) -> Result<(), String> {
        let mut dir = self.host(base);
        dir.extend(sub.iter());
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            sub.push(n);
            let full: Vec<String> = base.iter().chain(sub.iter()).cloned().collect();
            let excluded = self.strict && self.ignore.excluded(&Self::rel_str(&full));
            let is_dir = fs::symlink_metadata(self.host(&full)).is_ok_and(|m| m.is_dir());
            if !excluded {
                out.push(sub.clone());
            }
            if is_dir && (!excluded || self.ignore.may_reinclude_below(&Self::rel_str(&full))) {
                self.walk_into(base, sub, out)?;
            }
            sub.pop();
        }
        Ok(())
    }

    /// A checksum of a source: names, types, modes, sizes, link targets and contents of it
    /// and (for a directory) everything below it. Times and owners are left out, as docker
    /// leaves them out of its cache key.
    pub fn checksum(&self, s: &Source, h: &mut Sha256) -> Result<(), String> {
        let mut entries = vec![Vec::new()];
        if fs::metadata(&s.host).is_ok_and(|m| m.is_dir()) {
            entries.extend(self.walk(&s.rel)?);
        }
        for sub in entries {
            let mut p = s.host.clone();
            p.extend(sub.iter());
            let m = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let m = if sub.is_empty() && m.file_type().is_symlink() {
                fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?
            } else {
                m
            };
            h.update(format!(
                "{}\0{:o}\0{}\0",
                sub.join("/"),
                m.permissions().mode(),
                m.size()
            ));
            if m.file_type().is_symlink() {
                let t = fs::read_link(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                h.update(t.as_os_str().as_encoded_bytes());
            } else if m.is_file() {
                let mut f = fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            h.update([0u8, m.rdev() as u8]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn context_paths_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("ctx");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), "x").unwrap();
        fs::write(t.path().join("secret"), "s").unwrap();
        symlink("../secret", d.join("out")).unwrap();
        symlink("/etc", d.join("abs")).unwrap();
        symlink("sub", d.join("in")).unwrap();
        let r = Root::context(&d, Ignore::default()).unwrap();
        assert_eq!(r.sources("in/f").unwrap()[0].rel, ["sub", "f"]);
        assert!(
            r.sources("../secret")
                .unwrap_err()
                .contains("outside the build context")
        );
        assert!(
            r.sources("out")
                .unwrap_err()
                .contains("outside the build context")
        );
        assert!(
            r.sources("abs/passwd")
                .unwrap_err()
                .contains("outside the build context")
        );
        assert!(r.sources("sub/../sub/f").is_ok());
        // A rootfs clamps instead: /.. is /, and /abs -> /etc is the rootfs's etc.
        let fsroot = Root::rootfs(&d);
        assert_eq!(fsroot.resolve("../../sub", true).unwrap(), ["sub"]);
        assert_eq!(fsroot.resolve("abs/x", true).unwrap(), ["etc", "x"]);
    }

    #[test]
    fn globs_and_ignore() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for f in ["a.txt", "b.txt", "c.md", "skip.txt"] {
            fs::write(d.join(f), f).unwrap();
        }
        let r = Root::context(d, Ignore::parse("skip.txt")).unwrap();
        let names: Vec<String> = r
            .sources("*.txt")
            .unwrap()
            .into_iter()
            .map(|s| s.rel.join("/"))
            .collect();
        assert_eq!(names, ["a.txt", "b.txt"]);
        assert!(r.sources("skip.txt").unwrap_err().contains("excluded"));
        assert!(r.sources("*.rs").is_err());
        let walked: Vec<String> = r.walk(&[]).unwrap().iter().map(|p| p.join("/")).collect();
        assert_eq!(walked, ["a.txt", "b.txt", "c.md"]);
    }
}
