//! Reading manifests named on the command line: files, directories (recursively, `.yaml`,
//! `.yml` and `.json` in name order) and `-` for standard input. Bounded in size.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

/// Largest single manifest file accepted.
pub(crate) const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// One manifest source: its display name and text.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) content: String,
}

/// Reads every source named by `paths`.
pub(crate) fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut content = String::new();
            std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_string(&mut content)
                .context("reading standard input")?;
            check_size("<stdin>", content.len() as u64)?;
            out.push(Source {
                name: "<stdin>".into(),
                content,
            });
        } else if path.is_dir() {
            let mut files = Vec::new();
            collect(path, &mut files)?;
            files.sort();
            for file in files {
                out.push(read_file(&file)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    Ok(out)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {name}"))?
        .len();
    check_size(&name, size)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
    let content = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("{name}: not UTF-8 (byte {})", e.utf8_error().valid_up_to())
    })?;
    Ok(Source { name, content })
}

fn check_size(name: &str, size: u64) -> anyhow::Result<()> {
    if size > MAX_FILE_BYTES {
        bail!("{name}: {size} bytes is more than the {MAX_FILE_BYTES}-byte limit");
    }
    Ok(())
}
