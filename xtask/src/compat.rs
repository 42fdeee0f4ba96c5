//! `cargo xtask compat`: loads the previous and current proto trees (from git objects or
//! directories), runs `spire_plugin_codegen::compat` and prints the findings of the enforced
//! categories as text or JSON, then exits 0 (compatible), 1 (breaking) or 2 (usage or load
//! error). The rules themselves live in the codegen library; this module only does the IO.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, format_err};
use spire_plugin_codegen::ProtoTree;
use spire_plugin_codegen::compat::{self, Category, Comparison, Finding, Side};

use crate::flags::{self, CompatCategory, CompatFormat};

/// Runs the task, turning the verdict into the process's exit status.
pub(crate) fn run(flags: &flags::Compat) -> Result<()> {
    match check(flags) {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2)
        }
    }
}

/// One side of the comparison, as the user named it.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A proto root directory.
    Dir(PathBuf),
    /// `root` at git revision `rev` of `repo`.
    Git {
        repo: PathBuf,
        rev: String,
        root: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(dir) => write!(f, "{}", dir.display()),
            Source::Git { rev, root, .. } => write!(f, "{rev}:{root}"),
        }
    }
}

/// Returns whether the enforced categories are compatible.
fn check(flags: &flags::Compat) -> Result<bool> {
    let repo = flags.repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let against = match (&flags.against, flags.against_newest_tag) {
        (Some(against), _) => against.clone(),
        (None, _) => match newest_tag(&repo)? {
            Some(tag) => tag,
            None => {
                eprintln!(
                    "compat: {} has no tag yet, so there is no released API to check against",
                    repo.display()
                );
                return Ok(true);
            }
        },
    };
    let previous = resolve(&against, &repo, &flags.root)?;
    let current = match &flags.head {
        Some(head) => resolve(head, &repo, &flags.root)?,
        None => Source::Dir(repo.join(&flags.root)),
    };
    let previous_tree =
        load(&previous).with_context(|| format!("loading previous side {previous}"))?;
    let current_tree = load(&current).with_context(|| format!("loading current side {current}"))?;
    let comparison = compat::compare(&previous_tree, &current_tree).map_err(|err| {
        let root = match err.side() {
            Side::Previous => &previous,
            Side::Current => &current,
        };
        format_err!("{} side {root}: {}", err.side(), err.error())
    })?;
    let enforced = enforced(flags);
    let report = Report {
        comparison: &comparison,
        enforced: &enforced,
        policy: flags.policy,
    };
    let output = match flags.format {
        CompatFormat::Text => report.text(&previous, &current),
        CompatFormat::Json => format!("{:#}\n", report.json(&previous, &current)),
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(output.as_bytes());
    Ok(report.failures() == 0)
}

fn enforced(flags: &flags::Compat) -> Vec<Category> {
    if flags.categories.is_empty() {
        return if flags.policy {
            vec![Category::Package, Category::Source]
        } else {
            vec![Category::File]
        };
    }
    let mut out: Vec<Category> = flags
        .categories
        .iter()
        .map(|c| match c {
            CompatCategory::File => Category::File,
            CompatCategory::Package => Category::Package,
            CompatCategory::WireJson => Category::WireJson,
            CompatCategory::Wire => Category::Wire,
            CompatCategory::Source => Category::Source,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The findings of a comparison as the user asked to see them.
struct Report<'a> {
    comparison: &'a Comparison,
    enforced: &'a [Category],
    policy: bool,
}

impl Report<'_> {
    /// The findings in an enforced category, each with its policy waiver.
    fn shown(&self) -> impl Iterator<Item = (&Finding, Option<String>)> + '_ {
        self.comparison
            .findings
            .iter()
            .filter(|f| self.enforced.iter().any(|c| f.is_in(*c)))
            .map(|f| {
                let waiver = if self.policy {
                    compat::policy::waiver(self.comparison, f)
                } else {
                    None
                };
                (f, waiver)
            })
    }

    fn failures(&self) -> usize {
        self.shown().filter(|(_, waiver)| waiver.is_none()).count()
    }

    fn text(&self, previous: &Source, current: &Source) -> String {
        let mut out = String::new();
        for (finding, waiver) in self.shown() {
            out.push_str(&finding.to_string());
            if let Some(waiver) = waiver {
                out.push_str(&format!(" (allowed by the version policy: {waiver})"));
            }
            out.push('\n');
        }
        let counts: Vec<String> = Category::ALL
            .iter()
            .map(|c| format!("{c} {}", self.comparison.count(*c)))
            .collect();
        let enforced: Vec<&str> = self.enforced.iter().map(|c| c.id()).collect();
        let failures = self.failures();
        let verdict = if failures == 0 {
            "compatible".to_owned()
        } else {
            format!("breaking ({failures} finding(s))")
        };
        out.push_str(&format!(
            "compat: {current} against {previous}: findings per category: {}; enforced {}{}: {verdict}\n",
            counts.join(", "),
            enforced.join(", "),
            if self.policy { " with the version policy" } else { "" },
        ));
        out
    }

    fn json(&self, previous: &Source, current: &Source) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .shown()
            .map(|(f, waiver)| {
                serde_json::json!({
                    "rule": f.rule.id,
                    "categories": f.rule.categories.iter().map(|c| c.id()).collect::<Vec<_>>(),
                    "file": f.location.file,
                    "line": f.location.line,
                    "column": f.location.column,
                    "side": match f.location.side {
                        Side::Previous => "previous",
                        Side::Current => "current",
                    },
                    "package": f.package,
                    "message": f.message,
                    "waived": waiver,
                })
            })
            .collect();
        let counts: serde_json::Map<String, serde_json::Value> = Category::ALL
            .iter()
            .map(|c| (c.id().to_owned(), self.comparison.count(*c).into()))
            .collect();
        serde_json::json!({
            "previous": previous.to_string(),
            "current": current.to_string(),
            "enforced": self.enforced.iter().map(|c| c.id()).collect::<Vec<_>>(),
            "policy": self.policy,
            "compatible": self.failures() == 0,
            "counts": counts,
            "findings": findings,
        })
    }
}

/// A directory when one exists at `value`, else a git ref of `repo`.
pub(crate) fn resolve(value: &str, repo: &Path, root: &str) -> Result<Source> {
    if Path::new(value).is_dir() {
        return Ok(Source::Dir(PathBuf::from(value)));
    }
    let output = git(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{value}^{{tree}}"))
        .output()
        .context("running `git rev-parse`")?;
    if !output.status.success() {
        bail!(
            "`{value}` is neither a directory nor a git ref of the repository at {}",
            repo.display()
        );
    }
    Ok(Source::Git {
        repo: repo.to_path_buf(),
        rev: value.to_owned(),
        root: root.trim_matches('/').to_owned(),
    })
}

fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("-C").arg(repo);
    command
}

/// The repository's newest tag in version order, if it has one.
pub(crate) fn newest_tag(repo: &Path) -> Result<Option<String>> {
    let output = git(repo)
        .args(["tag", "--list", "--sort=-v:refname"])
        .output()
        .context("running `git tag`")?;
    if !output.status.success() {
        bail!(
            "`git tag` failed in {}: {}",
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned))
}

/// Reads every `.proto` file of a side, keyed by its path relative to the proto root.
pub(crate) fn load(source: &Source) -> Result<ProtoTree> {
    let files = match source {
        Source::Dir(dir) => read_dir(dir)?,
        Source::Git { repo, rev, root } => read_git(repo, rev, root)?,
    };
    if files.is_empty() {
        bail!("no .proto files in {source}");
    }
    let mut tree = ProtoTree::default();
    for (path, text) in files {
        tree.file(path, text);
    }
    Ok(tree)
}

/// Every `.proto` file under `root`, as (relative `/`-separated path, contents), sorted.
pub(crate) fn read_dir(root: &Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                let relative = path.strip_prefix(root).expect("walked under root");
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                files.push((name, text));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every `.proto` blob under `root` at `rev`, read with `git ls-tree` and `git cat-file --batch`.
fn read_git(repo: &Path, rev: &str, root: &str) -> Result<Vec<(String, String)>> {
    let listing = git(repo)
        .args(["ls-tree", "-r", "-z", "--full-tree", rev, "--"])
        .arg(if root.is_empty() { "." } else { root })
        .output()
        .context("running `git ls-tree`")?;
    if !listing.status.success() {
        bail!(
            "`git ls-tree {rev}` failed: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        );
    }
    let prefix = if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    };
    let mut blobs = Vec::new();
    for entry in listing.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else {
            bail!("unexpected `git ls-tree` line: {entry}");
        };
        let meta: Vec<&str> = meta.split(' ').collect();
        if let (["100644" | "100755", "blob", oid], Some(relative)) =
            (&meta[..], path.strip_prefix(&prefix))
            && relative.ends_with(".proto")
        {
            blobs.push(((*oid).to_owned(), relative.to_owned()));
        }
    }
    let mut child = git(repo)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running `git cat-file --batch`")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let request: String = blobs.iter().map(|(oid, _)| format!("{oid}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(request.as_bytes()));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut files = Vec::with_capacity(blobs.len());
    for (oid, path) in blobs {
        let mut header = String::new();
        stdout
            .read_line(&mut header)
            .context("reading `git cat-file` output")?;
        let size: usize = match header.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "blob", size] => size.parse().context("parsing a blob size")?,
            _ => bail!(
                "`git cat-file` could not read {oid} ({path}): {}",
                header.trim()
            ),
        };
        let mut contents = vec![0; size + 1];
        stdout
            .read_exact(&mut contents)
            .context("reading `git cat-file` output")?;
        contents.pop();
        let text =
            String::from_utf8(contents).with_context(|| format!("{path} at {rev} is not UTF-8"))?;
        files.push((path, text));
    }
    writer
        .join()
        .expect("the writer thread does not panic")
        .context("writing to `git cat-file`")?;
    let status = child.wait().context("waiting for `git cat-file`")?;
    if !status.success() {
        bail!("`git cat-file --batch` failed ({status})");
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=compat",
                "-c",
                "user.email=compat@example.invalid",
            ])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    fn write(dir: &Path, path: &str, text: &str) {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    const V1: &str =
        "syntax = \"proto3\";\npackage a.v1;\nmessage A {\n  int32 x = 1;\n  string y = 2;\n}\n";
    const V1_BROKEN: &str = "syntax = \"proto3\";\npackage a.v1;\nmessage A {\n  int32 x = 1;\n}\n";
    const V2: &str = "syntax = \"proto3\";\npackage a.v2;\nmessage A {\n  int32 x = 1;\n}\n";
    const PLUGIN: &str = "syntax = \"proto3\";\npackage plugin;\nmessage Empty {}\n";

    /// Fails the policy: the number of breaking findings it does not waive.
    fn policy_failures(repo: &Path) -> usize {
        let previous = load(&resolve("v1.0.0", repo, "proto").expect("a tag")).expect("loads");
        let current = load(&Source::Dir(repo.join("proto"))).expect("loads");
        let comparison = compat::compare(&previous, &current).expect("compiles");
        let report = Report {
            comparison: &comparison,
            enforced: &[Category::Package, Category::Source],
            policy: true,
        };
        report.failures()
    }

    #[test]
    fn git_sides_and_the_version_policy() {
        let repo = tempfile::tempdir().expect("a temporary directory");
        let repo = repo.path();
        git_in(repo, &["init", "--quiet"]);
        assert_eq!(newest_tag(repo).expect("git tag"), None);
        write(repo, "proto/a/v1/a.proto", V1);
        write(repo, "proto/plugin/p.proto", PLUGIN);
        write(repo, "README", "not a proto\n");
        git_in(repo, &["add", "."]);
        git_in(repo, &["commit", "--quiet", "-m", "v1"]);
        git_in(repo, &["tag", "v1.0.0"]);
        git_in(repo, &["tag", "v0.9.0"]);
        assert_eq!(
            newest_tag(repo).expect("git tag").as_deref(),
            Some("v1.0.0")
        );

        let tree = load(&resolve("v1.0.0", repo, "proto").expect("a tag")).expect("loads");
        let files: Vec<&str> = tree.files().map(|(path, _)| path).collect();
        assert_eq!(files, ["a/v1/a.proto", "plugin/p.proto"]);
        assert_eq!(tree.source("a/v1/a.proto"), Some(V1));
        assert_eq!(policy_failures(repo), 0);

        // A break inside the released a.v1 fails ...
        write(repo, "proto/a/v1/a.proto", V1_BROKEN);
        assert_eq!(
            policy_failures(repo),
            2,
            "FIELD_NO_DELETE and FIELD_SAME_RUST_NAME"
        );
        // ... unless a newer version package is introduced.
        write(repo, "proto/a/v2/a.proto", V2);
        assert_eq!(policy_failures(repo), 0);
        // A break in an unversioned package always fails: there is no version to move to.
        write(
            repo,
            "proto/plugin/p.proto",
            "syntax = \"proto3\";\npackage plugin;\n",
        );
        assert!(policy_failures(repo) > 0);
    }
}
