"""The image `make images` builds, checked from the archive alone.

The archive named by PADDOCK_IMAGE is unpacked by umoci (not by our build script), and every
binary runs from the image's own root file system, chrooted, as the image's user: a library the
image lacks, a binary built for another machine or a wrong path fails here, not in a pod.
skopeo, the containers/image library podman and CRI-O load images with, reads the archive by
the tag the chart and the CRD default to.
"""

import json
import os
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARIES = ["paddock-server", "paddock-sidecar", "paddock-operator", "paddock"]


def version():
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


@pytest.fixture(scope="module")
def archive():
    path = os.environ.get("PADDOCK_IMAGE")
    if not path:
        pytest.fail("PADDOCK_IMAGE names no image archive (make image-test sets it)")
    return Path(path)


@pytest.fixture(scope="module")
def bundle(archive, tmp_path_factory):
    work = tmp_path_factory.mktemp("image")
    with tarfile.open(archive) as tar:
        tar.extractall(work / "layout", filter="tar")
    subprocess.run(
        ["umoci", "unpack", "--image", f"{work / 'layout'}:{version()}", str(work / "bundle")],
        check=True,
        capture_output=True,
    )
    return work / "bundle"


def test_every_binary_runs_from_the_image_root_as_the_image_user(bundle):
    process = json.loads((bundle / "config.json").read_text())["process"]
    user = process["user"]
    assert (user["uid"], user["gid"]) == (65532, 65532)
    for binary in BINARIES:
        out = subprocess.run(
            ["chroot", f"--userspec={user['uid']}:{user['gid']}", str(bundle / "rootfs"),
             f"/usr/local/bin/{binary}", "--version"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, f"{binary} --version in the image: {out.stderr}"
        assert out.stdout.strip() == f"{binary} {version()}"


def test_the_entrypoint_is_the_server_and_the_user_not_root(bundle):
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["args"] == ["/usr/local/bin/paddock-server"]
    passwd = (bundle / "rootfs/etc/passwd").read_text()
    assert "nonroot:x:65532:65532:" in passwd
    assert (bundle / "rootfs/tmp").stat().st_mode & 0o1777 == 0o1777


def test_loaders_find_the_image_by_the_default_reference(archive):
    # The chart and the CRD default to paddock:<version>; podman/skopeo read the tag from
    # org.opencontainers.image.ref.name, containerd (kind) and docker the full name.
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("./index.json"))
    [manifest] = index["manifests"]
    assert manifest["annotations"]["org.opencontainers.image.ref.name"] == version()
    assert manifest["annotations"]["io.containerd.image.name"] == f"docker.io/library/paddock:{version()}"
    out = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{archive}:{version()}"],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(out.stdout)
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert info["Labels"]["org.opencontainers.image.version"] == version()


def test_the_default_references_name_this_image():
    # What the operator, its CRD default and the chart point at is the image this build makes.
    reference = f"paddock:{version()}"
    crd = (ROOT / "crds/coordinationclusters.paddock.dev.yaml").read_text()
    assert f"default: {reference}" in crd
    values = (ROOT / "charts/paddock/values.yaml").read_text()
    assert "repository: paddock\n" in values
