#!/usr/bin/env python3
"""Joins single-platform OCI image layouts (hack/image/oci.py's) into one multi-platform layout.

An image index blob lists each layout's manifest with its platform, and the layout's index.json
names that one index (tagged VERSION), as multi-platform OCI layouts are written: tools take a
layout whose index.json has one entry as that image, and refuse to guess among several (skopeo:
"more than one image in oci, choose an image"). So `skopeo copy --all
oci-archive:fhirlock-VERSION.oci.tar docker://REGISTRY/fhirlock:VERSION` pushes one tag that pulls
the right architecture. Blobs are content-addressed, so copying them all into one directory is
safe. Spec: https://github.com/opencontainers/image-spec (image-layout.md, image-index.md: an
index's manifests may be indexes).
"""
import argparse
import hashlib
import json
import os
import shutil
import tarfile


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--version", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tar", required=True)
    p.add_argument("layouts", nargs="+")
    a = p.parse_args()

    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs)
    manifests = []
    for layout in a.layouts:
        with open(os.path.join(layout, "index.json")) as f:
            index = json.load(f)
        for m in index["manifests"]:
            if "platform" not in m:
                raise SystemExit(f"{layout}: a manifest without a platform cannot join an index")
            if any(o["platform"] == m["platform"] for o in manifests):
                raise SystemExit(f"{layout}: a second manifest for {m['platform']}")
            manifests.append({k: v for k, v in m.items() if k != "annotations"})
        src = os.path.join(layout, "blobs", "sha256")
        for name in sorted(os.listdir(src)):
            shutil.copyfile(os.path.join(src, name), os.path.join(blobs, name))
    platforms = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }
    blob = json.dumps(platforms, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(blob).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(blob)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": "sha256:" + digest,
                "size": len(blob),
                "annotations": {"org.opencontainers.image.ref.name": a.version},
            }
        ],
    }
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True, separators=(",", ":"))
    # Reproducible: sorted names, no owners, time zero (as oci.py writes its archive).
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
    platforms = ", ".join(m["platform"]["architecture"] for m in manifests)
    print(f"oci index: {a.out} ({platforms})")


if __name__ == "__main__":
    main()
