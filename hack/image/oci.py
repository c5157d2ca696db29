#!/usr/bin/env python3
"""Writes fhirlock's OCI image layout without a container engine (standard library only).

One layer holds /fhirlock (static) and /kubectl-fhirlock (a link to it, the kubectl plugin), /etc/ssl/certs/ca-certificates.crt, /etc/passwd and
/etc/group naming the non-root user 65532, an empty /tmp (a mount point for an emptyDir under a
read-only root filesystem) and, with --sbom, the binary's CycloneDX SBOM at /sbom/fhirlock.cdx.json.
The layer is reproducible: fixed order, owners and timestamps.
Spec: https://github.com/opencontainers/image-spec (image-layout.md, manifest.md, config.md).
--arch is the config's and the index's platform architecture, in Go's GOARCH names (config.md).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

UID = GID = 65532
EPOCH = "1970-01-01T00:00:00Z"
SBOM_PATH = "sbom/fhirlock.cdx.json"


def add_dir(tar, name, mode=0o755, owner=0):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.uid = info.gid = owner
    tar.addfile(info)


def add_file(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def add_symlink(tar, name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    tar.addfile(info)


def layer(binary, ca, sbom=None):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_dir(tar, "etc/")
        add_file(tar, "etc/group", b"root:x:0:\nnonroot:x:65532:\n")
        add_file(
            tar,
            "etc/passwd",
            b"root:x:0:0:root:/root:/sbin/nologin\n"
            b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        )
        add_dir(tar, "etc/ssl/")
        add_dir(tar, "etc/ssl/certs/")
        with open(ca, "rb") as f:
            add_file(tar, "etc/ssl/certs/ca-certificates.crt", f.read())
        with open(binary, "rb") as f:
            add_file(tar, "fhirlock", f.read(), mode=0o755)
        # The kubectl plugin: the same binary, which acts as `kubectl fhirlock` by this name.
        add_symlink(tar, "kubectl-fhirlock", "fhirlock")
        add_dir(tar, "home/")
        add_dir(tar, "home/nonroot/", mode=0o700, owner=UID)
        if sbom:
            add_dir(tar, "sbom/")
            with open(sbom, "rb") as f:
                add_file(tar, SBOM_PATH, f.read())
        add_dir(tar, "tmp/", mode=0o1777)
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as z:
        z.write(tar_bytes)
    return tar_bytes, gz.getvalue()


def platform(arch):
    # image-index.md: arm64 images name the variant v8 (the ARMv8 64-bit instruction set).
    return {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})}


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--revision", default="unknown")
    p.add_argument("--out", required=True)
    p.add_argument("--tar")
    p.add_argument("--arch", default="amd64", choices=["amd64", "arm64"])
    p.add_argument("--sbom", help="a CycloneDX JSON SBOM of the binary, put at /" + SBOM_PATH)
    a = p.parse_args()

    tar_bytes, gz_bytes = layer(a.binary, a.ca, a.sbom)
    labels = {
        "org.opencontainers.image.title": "fhirlock",
        "org.opencontainers.image.description": "Keeps an Azure FHIR API reachable only through a private Application Gateway",
        "org.opencontainers.image.version": a.version,
        "org.opencontainers.image.revision": a.revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = {
        "created": EPOCH,
        "architecture": a.arch,
        "os": "linux",
        "config": {
            "User": f"{UID}:{GID}",
            "Entrypoint": ["/fhirlock"],
            "Cmd": ["run"],
            "Env": ["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "WorkingDir": "/",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(tar_bytes)]},
        "history": [{"created": EPOCH, "created_by": "hack/image/oci.py: static fhirlock, CA bundle, non-root user"}],
        **({"variant": "v8"} if a.arch == "arm64" else {}),
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(gz_bytes),
                "size": len(gz_bytes),
            }
        ],
        "annotations": labels,
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(manifest_bytes),
                "size": len(manifest_bytes),
                "platform": platform(a.arch),
                "annotations": {"org.opencontainers.image.ref.name": a.version},
            }
        ],
    }

    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs)
    for data in (gz_bytes, config_bytes, manifest_bytes):
        with open(os.path.join(blobs, digest(data).split(":", 1)[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    if a.tar:
        with tarfile.open(a.tar, "w", format=tarfile.PAX_FORMAT) as t:
            for dirpath, dirnames, filenames in os.walk(a.out):
                dirnames.sort()
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    info = t.gettarinfo(full, os.path.relpath(full, a.out))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = 0
                    with open(full, "rb") as f:
                        t.addfile(info, f)
    print(f"oci: {a.out} manifest {digest(manifest_bytes)} ({len(gz_bytes)} bytes compressed)")


if __name__ == "__main__":
    main()
