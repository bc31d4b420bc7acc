//! The StorageClass `standard` (the default) and its provisioner: a PersistentVolume that is a
//! directory under the agent's `volumes/` for each claim the PV controller hands to it, deleted
//! with its directory when released under the `Delete` reclaim policy — what a CSI hostpath
//! driver does, under the admin identity (nodes may not create volumes).

use std::path::PathBuf;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

/// The provisioner's name in the StorageClass and on the claims handed to it.
pub const PROVISIONER: &str = "paddock.dev/node-agent";
const CLASS: &str = "standard";

pub async fn ensure_storage_class(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    });
    api.patch(CLASS, &PatchParams::apply("paddock-node-agent").force(), &Patch::Apply(class)).await?;
    Ok(())
}

/// Provisions and deletes volumes until the agent stops.
pub async fn run(client: kube::Client, dir: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let claims = watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
        .map(|e| Either::Claim(Box::new(e)))
        .boxed();
    let volumes = watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())
        .map(|e| Either::Volume(Box::new(e)))
        .boxed();
    let mut events = futures::stream::select(claims, volumes);
    while let Some(event) = events.next().await {
        let result = match event {
            Either::Claim(event) => match *event {
                Ok(watcher::Event::Apply(claim) | watcher::Event::InitApply(claim)) => {
                    provision(&client, &dir, &claim).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Either::Volume(event) => match *event {
                Ok(watcher::Event::Apply(volume) | watcher::Event::InitApply(volume)) => {
                    reclaim(&client, &volume).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            },
        };
        if let Err(e) = result {
            tracing::warn!("provisioner: {e:#}");
        }
    }
    Ok(())
}

enum Either {
    Claim(Box<Result<watcher::Event<PersistentVolumeClaim>, watcher::Error>>),
    Volume(Box<Result<watcher::Event<PersistentVolume>, watcher::Error>>),
}

async fn provision(client: &kube::Client, dir: &std::path::Path, claim: &PersistentVolumeClaim) -> anyhow::Result<()> {
    let asked = claim.annotations().get("volume.kubernetes.io/storage-provisioner").map(String::as_str);
    let spec = claim.spec.clone().unwrap_or_default();
    let bound = spec.volume_name.as_deref().is_some_and(|v| !v.is_empty());
    if asked != Some(PROVISIONER) || bound || claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let uid = claim.uid().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let path = dir.join(&name);
    std::fs::create_dir_all(&path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
    }
    let size = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").map(|q| q.0.clone()))
        .unwrap_or_else(|| "1Gi".to_owned());
    let volume: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.storage_class_name.unwrap_or_else(|| CLASS.to_owned()),
            "hostPath": {"path": path.display().to_string(), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.namespace(), "name": claim.name_any(), "uid": uid,
            },
        },
    }))?;
    match Api::<PersistentVolume>::all(client.clone()).create(&PostParams::default(), &volume).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reclaim(client: &kube::Client, volume: &PersistentVolume) -> anyhow::Result<()> {
    let ours = volume.annotations().get("pv.kubernetes.io/provisioned-by").map(String::as_str) == Some(PROVISIONER);
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let spec = volume.spec.clone().unwrap_or_default();
    if !ours || !released || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
        return Ok(());
    }
    if let Some(path) = spec.host_path.map(|h| h.path) {
        let _ = std::fs::remove_dir_all(path);
    }
    match Api::<PersistentVolume>::all(client.clone()).delete(&volume.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
