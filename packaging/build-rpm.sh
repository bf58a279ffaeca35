#!/usr/bin/env bash
# Build the .rpm (Amazon Linux 2023) from the .deb's files with rpmbuild: one release binary, two
# packages (the .rpm's binary is the .deb's, byte for byte). rpmbuild (Debian's rpm package) is
# RPM's own builder: the spec states %config(noreplace), the scriptlets and the requirements,
# and rpm's ELF dependency generator adds the glibc ones. Timestamps from the last commit.
#   build-rpm.sh DEB    (default: build it with build-deb.sh)
# Prints the path of the package on its last line. Needs: rpm (rpmbuild).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:-$(./packaging/build-deb.sh | tail -1)}
version=$(dpkg-deb -f "$deb" Version)
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 1764331200)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/staged"
out="$PWD/target/rpm"
mkdir -p "$out"
SOURCE_DATE_EPOCH="$epoch" rpmbuild -bb --quiet \
  --define "_topdir $work/rpmbuild" \
  --define "_rpmdir $out" \
  --define "staged $work/staged" \
  --define "pkg_version ${version%-*}" \
  --define "pkg_release ${version##*-}" \
  --define "_buildhost agentkeys-hostd-build" \
  --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" \
  packaging/rpm/agentkeys-hostd.spec >&2
echo "$out/x86_64/agentkeys-hostd-${version%-*}-${version##*-}.x86_64.rpm"
