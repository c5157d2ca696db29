# fhirlock's image for people who build with Docker (or buildah, kaniko): the same image as
# `make image`, which needs no daemon (hack/image/build.sh). A statically linked binary (glibc,
# -C target-feature=+crt-static; see docs/install.md for why not musl) on an empty base, run as
# the non-root user 65532, with no shell.
#
#   docker build -t registry.example.org/platform/fhirlock:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --locked --release --target x86_64-unknown-linux-gnu -p fhirlock --bin fhirlock \
 && ! readelf -lW target/x86_64-unknown-linux-gnu/release/fhirlock | grep -q 'program interpreter' \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
 && chmod 1777 /rootfs/tmp && chmod 700 /rootfs/home/nonroot && chown 65532:65532 /rootfs/home/nonroot \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && cp target/x86_64-unknown-linux-gnu/release/fhirlock /rootfs/fhirlock

FROM scratch
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/fhirlock"]
CMD ["run"]
