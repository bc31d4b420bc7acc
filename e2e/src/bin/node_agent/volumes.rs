//! A pod's volumes, each made a directory (or file) under the pod's directory before its
//! containers start, from what the node may read of the API (the Node authorizer lets a node get
//! exactly the Secrets, ConfigMaps, claims and volumes of pods bound to it, and request tokens
//! for their service accounts).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    if let Some(source) = &volume.config_map {
        let map = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
        let Some(map) = map else {
            if source.optional == Some(true) {
                return directory(path, &BTreeMap::new(), &None, 0o644);
            }
            bail!("configmap {} not found", source.name);
        };
        let files = config_map_files(&map);
        return directory(path, &files, &source.items, source.default_mode.unwrap_or(0o644));
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(client.clone(), ns).get_opt(&name).await?;
        let Some(secret) = secret else {
            if source.optional == Some(true) {
                return directory(path, &BTreeMap::new(), &None, 0o644);
            }
            bail!("secret {name} not found");
        };
        let files = secret_files(&secret);
        return directory(path, &files, &source.items, source.default_mode.unwrap_or(0o644));
    }
    if let Some(projected) = &volume.projected {
        std::fs::create_dir_all(path)?;
        let mode = projected.default_mode.unwrap_or(0o644);
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let text = request_token(client, pod, ns, token.audience.clone(), token.expiration_seconds).await?;
                write(&path.join(&token.path), text.as_bytes(), mode)?;
            }
            if let Some(source) = &source.config_map {
                let map = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
                match map {
                    Some(map) => {
                        directory(path, &config_map_files(&map), &source.items, mode)?;
                    }
                    None if source.optional == Some(true) => {}
                    None => bail!("configmap {} not found", source.name),
                }
            }
            if let Some(source) = &source.secret {
                let secret = Api::<Secret>::namespaced(client.clone(), ns).get_opt(&source.name).await?;
                match secret {
                    Some(secret) => {
                        directory(path, &secret_files(&secret), &source.items, mode)?;
                    }
                    None if source.optional == Some(true) => {}
                    None => bail!("secret {} not found", source.name),
                }
            }
            if let Some(source) = &source.downward_api {
                downward(pod, path, source.items.iter().flatten(), ips, mode)?;
            }
        }
        return Ok(path.to_owned());
    }
    if let Some(source) = &volume.downward_api {
        std::fs::create_dir_all(path)?;
        downward(pod, path, source.items.iter().flatten(), ips, source.default_mode.unwrap_or(0o644))?;
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

/// Writes `files` into `dir` (all keys, or only `items` at their paths).
fn directory(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: &Option<Vec<KeyToPath>>,
    mode: i32,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    match items {
        Some(items) => {
            for item in items {
                let Some(data) = files.get(&item.key) else { bail!("key {} is missing", item.key) };
                write(&dir.join(&item.path), data, item.mode.unwrap_or(mode))?;
            }
        }
        None => {
            for (key, data) in files {
                write(&dir.join(key), data, mode)?;
            }
        }
    }
    Ok(dir.to_owned())
}

fn downward<'a>(
    pod: &Pod,
    dir: &Path,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    (pod_ip, host_ip): (&str, &str),
    mode: i32,
) -> anyhow::Result<()> {
    for item in items {
        let Some(field) = &item.field_ref else { bail!("downwardAPI {}: only fieldRef is supported", item.path) };
        let value = crate::pod::field(pod, &field.field_path, pod_ip, host_ip)?;
        write(&dir.join(&item.path), value.as_bytes(), item.mode.unwrap_or(mode))?;
    }
    Ok(())
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
