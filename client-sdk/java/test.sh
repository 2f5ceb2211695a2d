#!/usr/bin/env bash
# The Java SDK's build and checks (the contract with client-sdk/test-sdks.sh):
#
#   client-sdk/java/test.sh check                                  toolchain, generate, build, unit tests
#   client-sdk/java/test.sh build                                  toolchain, generate, build; prints the jar
#   client-sdk/java/test.sh classpath                              the runtime classpath (jars), after build
#   client-sdk/java/test.sh example --write E1,E2,E3 --read R      examples/TransferAndWatch.java
#   client-sdk/java/test.sh live --write E1,E2,E3 --read R         live checks against a cluster
#   client-sdk/java/test.sh watch --read R --account ID [--updates N] [--deadline S]
#                                                                  the watch that survives a read
#                                                                  node's kill -9 (checks/WatchCheck)
#   client-sdk/java/test.sh secured --write HOST:PORT --certs DIR --server-name NAME
#                                                                  TLS + tokens (WALLET_TOKEN, WALLET_READ_TOKEN)
#
# The Java code is generated from proto/ at build time (protoc + Debian's grpc-java plugin)
# from copies of the .proto files that get `java_package = "io.walletledger.v1"` and
# `java_multiple_files = true` (the files in proto/ stay unchanged: buf breaking refuses a
# changed file option). Everything is built into /var/tmp/wallet-java-<hash of the inputs>
# (never into the source tree) with plain javac + jar, and reused while the inputs are the same.
# Missing Debian packages are installed with apt-get (as root, or with sudo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "java-sdk: $*" >&2; }
cleanup_dirs=()
trap 'rm -rf "${cleanup_dirs[@]}"' EXIT

J=/usr/share/java
# The Debian packages it needs. The runtime: grpc-java 1.41 (netty transport), protobuf 3.21,
# netty 4.1, guava, perfmark, and netty-tcnative (OpenSSL) for TLS: Debian's netty has no JDK
# ALPN support, and gRPC needs ALPN. Build: a JDK, protoc, the grpc-java plugin,
# javax.annotation (the generated stubs' @Generated), libprotobuf-dev (the well-known types'
# .proto files, google/protobuf/duration.proto and timestamp.proto, in /usr/include; their Java
# classes are in protobuf-java). Tests: junit4 (+ hamcrest), openssl.
PACKAGES=(openjdk-17-jdk-headless protobuf-compiler libprotobuf-dev protobuf-compiler-grpc-java-plugin libprotobuf-java
  libgrpc-java libnetty-java libnetty-tcnative-java libnetty-tcnative-jni libperfmark-java libguava-java
  libgeronimo-annotation-1.3-spec-java junit4 libhamcrest-java openssl python3)
RUNTIME_JARS=(grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  protobuf guava perfmark-api netty-buffer netty-codec netty-codec-http netty-codec-http2
  netty-codec-socks netty-common netty-handler netty-handler-proxy netty-resolver netty-transport
  netty-tcnative)
# Built here: the Debian tcnative library, where netty looks for it (see build()).
TCNATIVE_JAR_NAME=wallet-ledger-tcnative.jar
COMPILE_JARS=(geronimo-annotation-1.3-spec)
TEST_JARS=(junit4 hamcrest-core)

apt_install() { "$here/../../scripts/apt-install" "java sdk" --no-install-recommends "$@"; }

toolchain() {
  local missing=() package installed
  installed=" $({ dpkg-query -W -f='${Package}:${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true; } \
    | sed -n 's/:install ok installed$//p' | tr '\n' ' ') "
  for package in "${PACKAGES[@]}"; do
    [[ $installed == *" $package "* ]] || missing+=("$package")
  done
  # Another JDK 17+ on the PATH will do instead of Debian's.
  if [[ ${missing[0]:-} == openjdk-17-jdk-headless ]] && command -v javac >/dev/null 2>&1 \
    && (($(javac -version 2>&1 | sed -E 's/^javac ([0-9]+).*/\1/') >= 17)); then
    missing=("${missing[@]:1}")
  fi
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
}

jars() {  # $@: jar names -> a classpath
  local out="" name
  for name in "$@"; do out+="${out:+:}$J/$name.jar"; done
  echo "$out"
}
RUNTIME_CP=$(jars "${RUNTIME_JARS[@]}")

inputs_hash() {
  (cd "$root" && find proto/wallet proto/vendor client-sdk/java -type f \( -name '*.proto' -o -name '*.java' -o -name test.sh \) \
    | LC_ALL=C sort | xargs sha256sum; protoc --version; javac -version 2>&1) | sha256sum | cut -c1-16
}

# Generates and compiles into $build (reused when complete); sets build, jar, test_classes.
build() {
  toolchain
  build=/var/tmp/wallet-java-$(inputs_hash)
  jar_file=$build/wallet-ledger-client.jar
  tcnative_jar=$build/$TCNATIVE_JAR_NAME
  test_classes=$build/test-classes
  [[ -f $build/.complete ]] && return 0
  local tmp
  tmp=$(mktemp -d /var/tmp/wallet-java-build.XXXXXX)
  cleanup_dirs+=("$tmp")
  mkdir -p "$tmp/proto/wallet/v1" "$tmp/proto/google/rpc" "$tmp/gen" "$tmp/classes" "$tmp/test-classes"
  # The Java options go into copies: proto/ itself stays as it is.
  local file base outer
  for file in "$root"/proto/wallet/v1/*.proto; do
    base=$(basename "$file" .proto)
    outer=$(echo "$base" | awk -F_ '{for (i = 1; i <= NF; i++) printf "%s%s", toupper(substr($i,1,1)), substr($i,2)}')Proto
    awk -v outer="$outer" '{print} /^package wallet\.v1;/ {
      print "option java_package = \"io.walletledger.v1\";"
      print "option java_multiple_files = true;"
      print "option java_outer_classname = \"" outer "\";"}' "$file" >"$tmp/proto/wallet/v1/$base.proto"
    grep -q '^option java_package = "io.walletledger.v1";' "$tmp/proto/wallet/v1/$base.proto" \
      || { log "$file: no 'package wallet.v1;' line to add the Java options after"; exit 1; }
  done
  cp "$root"/proto/vendor/google/rpc/*.proto "$tmp/proto/google/rpc/"  # java_package com.google.rpc already
  protoc -I "$tmp/proto" -I /usr/include --java_out="$tmp/gen" \
    --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin --grpc-java_out="$tmp/gen" \
    "$tmp"/proto/wallet/v1/*.proto "$tmp"/proto/google/rpc/*.proto
  log "generated $(find "$tmp/gen" -name '*.java' | wc -l) Java files from proto/; compiling"
  javac --release 17 -nowarn -encoding UTF-8 -d "$tmp/classes" \
    -cp "$RUNTIME_CP:$(jars "${COMPILE_JARS[@]}")" \
    $(find "$tmp/gen" "$here/src/main/java" -name '*.java') 2> >(grep -v '^Note:' >&2)
  # A jar is a zip file: python3's zipfile makes it without starting another JVM.
  (cd "$tmp/classes" && python3 -m zipfile -c "$tmp/wallet-ledger-client.jar" $(ls))
  javac --release 17 -Xlint:all,-serial,-processing,-classfile -encoding UTF-8 -d "$tmp/test-classes" \
    -cp "$tmp/wallet-ledger-client.jar:$RUNTIME_CP:$(jars "${TEST_JARS[@]}")" \
    $(find "$here/src/test/java" "$here/examples" -name '*.java')
  rm -rf "$build"
  mkdir -p "$build"
  # Debian ships libnetty-tcnative.so, but netty loads libnetty_tcnative_<os>_<arch>.so (from
  # java.library.path, or extracted from META-INF/native/ on the classpath, which also makes
  # the library's own name check pass): a jar holding a copy under that name.
  local so arch
  so=$(dpkg -L libnetty-tcnative-jni | grep '/libnetty-tcnative\.so$' | head -n 1)
  case $(uname -m) in
    x86_64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch_64 ;;
    *) arch=$(uname -m) ;;
  esac
  mkdir -p "$tmp/native/META-INF/native"
  cp "$so" "$tmp/native/META-INF/native/libnetty_tcnative_linux_$arch.so"
  (cd "$tmp/native" && python3 -m zipfile -c "$tmp/$TCNATIVE_JAR_NAME" META-INF)
  mv "$tmp/gen" "$tmp/wallet-ledger-client.jar" "$tmp/$TCNATIVE_JAR_NAME" "$tmp/test-classes" "$build/"
  touch "$build/.complete"
  # Builds of older inputs, unused for a day.
  find /var/tmp -maxdepth 1 -name 'wallet-java-????????????????' -type d -mtime +0 \
    ! -path "$build" -exec rm -rf {} + 2>/dev/null || true
  log "built $jar_file"
}

run_java() {  # main class and its arguments, with the SDK, its runtime and the tests on the classpath
  java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -cp "$jar_file:$tcnative_jar:$test_classes:$RUNTIME_CP:$(jars "${TEST_JARS[@]}")" "$@"
}

command=${1:-check}
shift || true
case $command in
  check)
    build
    log "unit tests"
    # Every *Test class under src/test/java, in one JVM.
    mapfile -t tests < <(cd "$here/src/test/java" && find . -name '*Test.java' | LC_ALL=C sort \
      | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g')
    run_java org.junit.runner.JUnitCore "${tests[@]}" >&2
    ;;
  build)
    build >&2
    echo "$jar_file"
    ;;
  classpath)
    build >&2
    echo "$jar_file:$tcnative_jar:$RUNTIME_CP"
    ;;
  example)
    build >&2
    run_java TransferAndWatch "$@"
    ;;
  live)
    build >&2
    run_java io.walletledger.checks.LiveCheck "$@"
    ;;
  watch)
    build >&2
    # exec: the caller's pid is the JVM's, so that it can stop it.
    exec java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
      -cp "$jar_file:$tcnative_jar:$test_classes:$RUNTIME_CP" io.walletledger.checks.WatchCheck "$@"
    ;;
  secured)
    build >&2
    # Netty reads PKCS#8 PEM keys only: walletctl dev-certs writes PKCS#8 already; convert a
    # key in another format (PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY") with openssl.
    args=("$@") certs=""
    for ((i = 0; i < ${#args[@]}; i++)); do
      [[ ${args[i]} == --certs ]] && certs=${args[i + 1]}
    done
    if [[ -n $certs && -f $certs/client.key ]] && ! grep -q -- '-----BEGIN PRIVATE KEY-----' "$certs/client.key"; then
      converted=$(mktemp -d /var/tmp/wallet-java-certs.XXXXXX)
      cleanup_dirs+=("$converted")
      cp "$certs"/ca.crt "$certs"/client.crt "$converted/"
      openssl pkcs8 -topk8 -nocrypt -in "$certs/client.key" -out "$converted/client.key"
      log "converted $certs/client.key to PKCS#8 (openssl pkcs8 -topk8 -nocrypt) for netty"
      for ((i = 0; i < ${#args[@]}; i++)); do
        [[ ${args[i]} == --certs ]] && args[i + 1]=$converted
      done
    fi
    run_java io.walletledger.checks.SecuredCheck "${args[@]}"
    ;;
  *)
    log "unknown command $command (check, build, classpath, example, live, watch, secured)"
    exit 2
    ;;
esac
