//! A pod's volumes, each made a directory (or file) under the pod's directory before its
//! containers start, from what the node may read of the API (the Node authorizer lets a node get
//! exactly the Secrets, ConfigMaps, claims and volumes of pods bound to it, and request tokens
//! for their service accounts).
//!
//! Secret, ConfigMap, projected and downwardAPI volumes are laid out as kubelet's atomic writer
//! lays them out: the files in a timestamped `..<stamp>` directory, `..data` a symlink to it, and
//! each top-level name a symlink through `..data`; a new version is written beside the old and
//! `..data` swapped by a rename, so a reader sees one version or the other, never a mix.
//! [`keep_fresh`] reads Secret and ConfigMap volumes again while the pod runs and rewrites them
//! when they changed, as kubelet's sync does (projected volumes keep what they got at start).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

/// Makes every volume of `pod` under `dir`: volume name → its path on this machine.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    dir: &Path,
    pod_ip: &str,
    host_ip: &str,
) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut paths = HashMap::new();
    let ns = pod.namespace().unwrap_or_default();
    let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|c| c.fs_group);
    for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let path = dir.join(&volume.name);
        let made = make(client, pod, &ns, volume, &path, (pod_ip, host_ip))
            .await
            .with_context(|| format!("volume {}", volume.name))?;
        if let Some(gid) = fs_group {
            chgrp(&made, gid as u32)?;
        }
        paths.insert(volume.name.clone(), made);
    }
    Ok(paths)
}

/// Files of a volume: path in the volume → (content, mode).
type Files = BTreeMap<String, (Vec<u8>, i32)>;

/// The content of Secret or ConfigMap volume `volume`, `None` for other kinds.
async fn sourced(client: &kube::Client, ns: &str, volume: &Volume) -> anyhow::Result<Option<Files>> {
    if let Some(source) = &volume.config_map {
        let map = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
        let mode = source.default_mode.unwrap_or(0o644);
        return Ok(Some(match map {
            Some(map) => select(&config_map_files(&map), &source.items, mode)?,
            None if source.optional == Some(true) => Files::new(),
            None => bail!("configmap {} not found", source.name),
        }));
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(client.clone(), ns).get_opt(&name).await?;
        let mode = source.default_mode.unwrap_or(0o644);
        return Ok(Some(match secret {
            Some(secret) => select(&secret_files(&secret), &source.items, mode)?,
            None if source.optional == Some(true) => Files::new(),
            None => bail!("secret {name} not found"),
        }));
    }
    Ok(None)
}

/// Reads the pod's Secret and ConfigMap volumes again every `every` and rewrites those that
/// changed (atomically, see the module docs); runs until aborted. A read that fails keeps what
/// the volume has.
pub async fn keep_fresh(client: kube::Client, pod: Pod, dir: PathBuf, every: Duration) {
    let ns = pod.namespace().unwrap_or_default();
    let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|c| c.fs_group);
    let volumes: Vec<Volume> = pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    let mut seen: HashMap<String, Files> = HashMap::new();
    for volume in &volumes {
        if let Ok(Some(files)) = sourced(&client, &ns, volume).await {
            seen.insert(volume.name.clone(), files);
        }
    }
    loop {
        tokio::time::sleep(every).await;
        for volume in &volumes {
            let Ok(Some(files)) = sourced(&client, &ns, volume).await else { continue };
            if seen.get(&volume.name) == Some(&files) {
                continue;
            }
            let path = dir.join(&volume.name);
            let written = atomic_write(&path, &files).and_then(|()| match fs_group {
                Some(gid) => chgrp(&path, gid as u32),
                None => Ok(()),
            });
            match written {
                Ok(()) => {
                    tracing::info!(pod = %pod.name_any(), volume = %volume.name, "volume updated");
                    seen.insert(volume.name.clone(), files);
                }
                Err(e) => tracing::warn!(pod = %pod.name_any(), volume = %volume.name, "volume update failed: {e:#}"),
            }
        }
    }
}

async fn make(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    volume: &Volume,
    path: &Path,
    ips: (&str, &str),
) -> anyhow::Result<PathBuf> {
    if volume.empty_dir.is_some() {
        std::fs::create_dir_all(path)?;
        set_mode(path, 0o777)?;
        return Ok(path.to_owned());
    }
    if let Some(files) = sourced(client, ns, volume).await? {
        atomic_write(path, &files)?;
        return Ok(path.to_owned());
    }
    if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(0o644);
        let mut files = Files::new();
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let text = request_token(client, pod, ns, token.audience.clone(), token.expiration_seconds).await?;
                files.insert(token.path.clone(), (text.into_bytes(), mode));
            }
            if let Some(source) = &source.config_map {
                let map = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
                match map {
                    Some(map) => files.extend(select(&config_map_files(&map), &source.items, mode)?),
                    None if source.optional == Some(true) => {}
                    None => bail!("configmap {} not found", source.name),
                }
            }
            if let Some(source) = &source.secret {
                let secret = Api::<Secret>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
                match secret {
                    Some(secret) => files.extend(select(&secret_files(&secret), &source.items, mode)?),
                    None if source.optional == Some(true) => {}
                    None => bail!("secret {} not found", source.name),
                }
            }
            if let Some(source) = &source.downward_api {
                files.extend(downward(pod, source.items.iter().flatten(), ips, mode)?);
            }
        }
        atomic_write(path, &files)?;
        return Ok(path.to_owned());
    }
    if let Some(source) = &volume.downward_api {
        let files = downward(pod, source.items.iter().flatten(), ips, source.default_mode.unwrap_or(0o644))?;
        atomic_write(path, &files)?;
        return Ok(path.to_owned());
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).get(&claim.claim_name).await?;
        let Some(pv_name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|n| !n.is_empty()) else {
            bail!("claim {} is not bound yet", claim.claim_name);
        };
        let pv = Api::<PersistentVolume>::all(client.clone()).get(&pv_name).await?;
        let spec = pv.spec.unwrap_or_default();
        let dir = spec
            .host_path
            .map(|h| h.path)
            .or_else(|| spec.local.map(|l| l.path))
            .with_context(|| format!("volume {pv_name} is neither hostPath nor local"))?;
        return Ok(PathBuf::from(dir));
    }
    if let Some(host) = &volume.host_path {
        let p = PathBuf::from(&host.path);
        if host.type_.as_deref() == Some("DirectoryOrCreate") {
            std::fs::create_dir_all(&p)?;
        }
        if !p.exists() {
            bail!("hostPath {} does not exist", host.path);
        }
        return Ok(p);
    }
    bail!("this volume type is not supported by the node agent")
}

fn config_map_files(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> =
        map.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    files.extend(map.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    files
}

fn secret_files(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> =
        secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    files.extend(secret.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    files
}

/// The files of a source: all keys, or only `items` at their paths.
fn select(files: &BTreeMap<String, Vec<u8>>, items: &Option<Vec<KeyToPath>>, mode: i32) -> anyhow::Result<Files> {
    match items {
        Some(items) => items
            .iter()
            .map(|item| {
                let Some(data) = files.get(&item.key) else { bail!("key {} is missing", item.key) };
                Ok((item.path.clone(), (data.clone(), item.mode.unwrap_or(mode))))
            })
            .collect(),
        None => Ok(files.iter().map(|(key, data)| (key.clone(), (data.clone(), mode))).collect()),
    }
}

/// Writes `files` as a new version of the volume at `dir` (see the module docs): staged in a
/// fresh `..<stamp>` directory, published by renaming a new `..data` link over the old, the
/// top-level names linked through `..data`, and what the new version no longer has removed.
fn atomic_write(dir: &Path, files: &Files) -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let stamp = format!("..{nanos}");
    let staged = dir.join(&stamp);
    std::fs::create_dir(&staged)?;
    for (path, (data, mode)) in files {
        if Path::new(path).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            bail!("path {path:?} is not relative and plain");
        }
        write(&staged.join(path), data, *mode)?;
    }
    let next = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&next);
    symlink(&stamp, &next)?;
    std::fs::rename(&next, dir.join("..data"))?;
    let tops: std::collections::BTreeSet<String> =
        files.keys().filter_map(|p| p.split('/').next()).map(str::to_owned).collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{top}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let old_version = name.starts_with("..") && name != "..data" && name != stamp;
        let dropped = !name.starts_with("..") && !tops.contains(&name);
        if old_version {
            std::fs::remove_dir_all(entry.path())?;
        } else if dropped {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn downward<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    (pod_ip, host_ip): (&str, &str),
    mode: i32,
) -> anyhow::Result<Files> {
    let mut files = Files::new();
    for item in items {
        let Some(field) = &item.field_ref else { bail!("downwardAPI {}: only fieldRef is supported", item.path) };
        let value = crate::pod::field(pod, &field.field_path, pod_ip, host_ip)?;
        files.insert(item.path.clone(), (value.into_bytes(), item.mode.unwrap_or(mode)));
    }
    Ok(files)
}

async fn request_token(
    client: &kube::Client,
    pod: &Pod,
    ns: &str,
    audience: Option<String>,
    expiration: Option<i64>,
) -> anyhow::Result<String> {
    let account =
        pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".to_owned());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.into_iter().filter(|a| !a.is_empty()).collect(),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let answer: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .with_context(|| format!("token of service account {ns}/{account}"))?;
    answer.status.map(|s| s.token).context("the token request returned no token")
}

fn write(path: &Path, data: &[u8], mode: i32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)?;
    set_mode(path, mode as u32)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn chgrp(path: &Path, gid: u32) -> anyhow::Result<()> {
    let group = Some(nix::unistd::Gid::from_raw(gid));
    nix::unistd::chown(path, None, group)?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chgrp(&entry?.path(), gid)?;
        }
    }
    Ok(())
}
