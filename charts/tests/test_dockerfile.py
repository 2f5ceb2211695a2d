"""The Dockerfile (no Docker engine here, so its properties are checked by parsing it with
the official BuildKit parser, via the `dockerfile` package)."""

from __future__ import annotations

import re
import shlex
import tomllib

import dockerfile

from conftest import REPO

BINARIES = {"wallet-write-node", "wallet-read-node", "walletctl"}


def stages():
    """[(base image, alias, [instructions])] in order."""
    result = []
    for instruction in dockerfile.parse_file(str(REPO / "Dockerfile")):
        if instruction.cmd == "FROM":
            image, *rest = instruction.value
            alias = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            result.append((image, alias, []))
        else:
            assert result, f"{instruction.cmd} before FROM"
            result[-1][2].append(instruction)
    return result


def cargo_build_args(command: str) -> list[str]:
    """The arguments of the first `cargo build` in a shell command line."""
    words = shlex.split(command)
    start = next(i for i in range(len(words) - 1) if words[i : i + 2] == ["cargo", "build"])
    args = []
    for word in words[start + 2 :]:
        if word in ("&&", "||", ";", "|"):
            break
        args.append(word)
    return args


def split_features(args: list[str]) -> tuple[list[str], set[str]]:
    """The arguments without their `--features`, and the features those list."""
    rest, features = [], set()
    words = iter(args)
    for word in words:
        if word == "--features":
            features |= set(next(words).split(","))
        elif word.startswith("--features="):
            features |= set(word.removeprefix("--features=").split(","))
        else:
            rest.append(word)
    return rest, features


def test_multi_stage_build_into_a_runtime_without_shell():
    (build_image, build_alias, build), (runtime_image, _, runtime) = stages()
    assert build_image.split("/")[-1].startswith("rust:")
    # bindgen (librocksdb-sys) needs libclang in the build stage.
    assert any(i.cmd == "RUN" and "libclang-dev" in i.value[0] for i in build)
    # distroless: no shell, no package manager; not its :debug variant (which has busybox).
    assert runtime_image.startswith("gcr.io/distroless/cc-") and "debug" not in runtime_image
    entrypoint = [i for i in runtime if i.cmd == "ENTRYPOINT"]
    assert entrypoint and all(i.json for i in entrypoint), "exec form: no shell to run it"
    assert all(i.cmd != "RUN" for i in runtime), "RUN needs a shell the runtime image lacks"
    copies = [i for i in runtime if i.cmd == "COPY"]
    assert copies and all(f"--from={build_alias}" in i.flags for i in copies)
    copied = {path.rsplit("/", 1)[-1] for i in copies for path in i.value[:-1]}
    assert copied == BINARIES
    assert all(i.value[-1] == "/usr/local/bin/" for i in copies)


def test_runtime_user_is_numeric_and_not_root():
    *_, (_, _, runtime) = stages()
    users = [i.value[0] for i in runtime if i.cmd == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes can check runAsNonRoot without an /etc/passwd lookup.
    assert uid.isdigit() and int(uid) != 0
    assert gid == "" or (gid.isdigit() and int(gid) != 0)


def test_the_image_builds_what_ci_builds():
    """Same workspace and lock file as CI's build in scripts/test; the profile (release), the
    targets (binaries, not tests) and the features differ: the image has trace export, the
    features CI checks the whole workspace with and runs the trace test under, and never the
    test build's storage failpoints."""
    (_, _, build), *_ = stages()
    image_builds = [i.value[0] for i in build if i.cmd == "RUN" and "cargo build" in i.value[0]]
    assert len(image_builds) == 1
    image_args, image_features = split_features(cargo_build_args(image_builds[0]))
    ci_script = (REPO / "scripts" / "test").read_text()
    ci_lines = [line for line in ci_script.splitlines() if re.match(r"\s*cargo build\b", line)]
    assert len(ci_lines) == 1, ci_lines
    ci_args = cargo_build_args(ci_lines[0])
    assert "--all-targets" in ci_args and "--locked" in ci_args
    # CI's "${features[@]}" is write-node/failpoints (storage fault injection), for the test
    # build only: the image must not have it.
    assert '"${features[@]}"' in ci_lines[0] and "failpoints" not in image_builds[0]
    ci_args = [a for a in ci_args if a != "${features[@]}"]
    expected = sorted([a for a in ci_args if a != "--all-targets"] + ["--bins", "--release"])
    assert sorted(image_args) == expected
    # Trace export (off until otlp_endpoint is set) is what CI compiles the workspace with.
    (otel_check,) = re.findall(r"^\s*cargo check (.*)$", ci_script, re.MULTILINE)
    _, checked_features = split_features(shlex.split(otel_check))
    assert image_features == checked_features == {"write-node/otel", "read-node/otel"}
    # The binaries copied out are the ones that build produced.
    (run,) = image_builds
    for binary in BINARIES:
        assert f"target/release/{binary}" in run


def test_dockerignore_keeps_the_context_small():
    ignored = {
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "target"} <= ignored
    # What the build needs must stay in the context: the manifests and every member.
    workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]
    for needed in ["Cargo.toml", "Cargo.lock", *workspace["members"]]:
        assert needed not in ignored
