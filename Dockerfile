# fhirlock's image for people who build with Docker (or buildah, kaniko): the same image as
# `make image`, which needs no daemon (hack/image/build.sh). A static musl binary
# (x86_64-unknown-linux-musl; aws-lc-sys's C is compiled with musl-gcc from musl-tools) on an
# empty base, run as the non-root user 65532, with no shell.
#
#   docker build -t registry.example.org/platform/fhirlock:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# .dockerignore leaves .git out, so `fhirlock version` says "unknown" unless the build is told:
#   docker build --build-arg FHIRLOCK_GIT_COMMIT=$(git rev-parse HEAD) ...
ARG FHIRLOCK_GIT_COMMIT=""
RUN CC_x86_64_unknown_linux_musl=musl-gcc \
      cargo build --locked --release --target x86_64-unknown-linux-musl -p fhirlock --bin fhirlock \
 && ! readelf -lW target/x86_64-unknown-linux-musl/release/fhirlock | grep -q 'program interpreter' \
 && ! readelf -dW target/x86_64-unknown-linux-musl/release/fhirlock | grep -q '(NEEDED)' \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot \
 && chmod 1777 /rootfs/tmp && chmod 700 /rootfs/home/nonroot && chown 65532:65532 /rootfs/home/nonroot \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && strip --strip-all -o /rootfs/fhirlock target/x86_64-unknown-linux-musl/release/fhirlock \
 && ln -s fhirlock /rootfs/kubectl-fhirlock

FROM scratch
COPY --from=build /rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/fhirlock"]
CMD ["run"]
