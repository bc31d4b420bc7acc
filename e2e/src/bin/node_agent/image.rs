//! Images: OCI archives (what `make images` writes) unpacked once by umoci into a root file
//! system and the image's defaults (entrypoint, env, user, working directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// An unpacked image.
pub struct Image {
    /// Its root file system, the lower layer of every container's root.
    pub rootfs: PathBuf,
    /// The image's entrypoint and arguments.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
}

/// `REF` as the agent looks it up: without the default registry and library path, with
/// `:latest` when it names no tag or digest.
pub fn normalize(reference: &str) -> String {
    let r = reference.trim();
    let r = r.strip_prefix("docker.io/library/").or_else(|| r.strip_prefix("docker.io/")).unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || last.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

impl Image {
    /// Unpacks the OCI archive `archive` (one image) into `dir`.
    pub fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<Image> {
        let layout = dir.join("layout");
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&layout)?;
        run(Command::new("tar").arg("-C").arg(&layout).arg("-xf").arg(archive))?;
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .context("the archive's index names no image (org.opencontainers.image.ref.name)")?
            .to_owned();
        let mut image = layout.into_os_string();
        image.push(format!(":{tag}"));
        run(Command::new("umoci").arg("unpack").arg("--image").arg(&image).arg(&bundle))?;
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json"))?)?;
        let process = &config["process"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
        };
        let env = strings(&process["env"])
            .into_iter()
            .filter(|e| !e.starts_with("TERM="))
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        Ok(Image {
            rootfs: bundle.join("rootfs"),
            args: strings(&process["args"]),
            env,
            uid: process["user"]["uid"].as_u64().unwrap_or(0) as u32,
            gid: process["user"]["gid"].as_u64().unwrap_or(0) as u32,
            cwd: process["cwd"].as_str().unwrap_or("/").to_owned(),
        })
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("{command:?}"))?;
    if !output.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn references_are_normalized_as_docker_does() {
        assert_eq!(normalize("paddock:0.1.0"), "paddock:0.1.0");
        assert_eq!(normalize("docker.io/library/paddock:0.1.0"), "paddock:0.1.0");
        assert_eq!(normalize("paddock"), "paddock:latest");
        assert_eq!(normalize("registry.example:5000/team/paddock"), "registry.example:5000/team/paddock:latest");
        assert_eq!(normalize("registry.example/paddock@sha256:ab"), "registry.example/paddock@sha256:ab");
    }
}
