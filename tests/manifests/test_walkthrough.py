"""docs/kubernetes.md against the repository: the commands that need a cluster cannot
run here, so what they rely on is checked instead. Every file a command applies or
imports exists and parses; every image the walkthrough loads is the one docker/build.sh
makes or a manifest uses; the role a patch path points at is the store role; the pod
names it reads logs from follow from the RoleBasedGroup names and roles; the master's
log line it shows has the format the master logs (the manifest test checks the real
line)."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kubernetes.md"


def code_blocks():
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)


def commands():
    """Shell commands of the walkthrough, continuation lines joined."""
    out = []
    for block in code_blocks():
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split("  #")[0].strip()
            if cmd:
                out.append(cmd)
    return out


def rbg(path):
    (doc,) = [d for d in yaml.safe_load_all((ROOT / path).read_text())
              if d and d["kind"] == "RoleBasedGroup"]
    return doc


def test_every_applied_file_exists_and_parses():
    applied = [m for c in commands() for m in re.findall(r"kubectl apply -f (\S+)", c)]
    local = [p for p in applied if "://" not in p]
    assert "docker/rbg/mooncake-rbg.yaml" in local and "docker/rbg/mooncake-rbg-ha.yaml" in local
    for p in local:
        docs = [d for d in yaml.safe_load_all((ROOT / p).read_text()) if d]
        assert docs and all("kind" in d for d in docs), p


def test_the_scripts_and_dashboard_it_names_exist():
    text = DOC.read_text()
    for p in ["docker/build.sh", "docker/Dockerfile.sglang", "docker/k8s/mooncake.yaml",
              "docker/grafana/mooncake-dashboard.json", "benches/compare/trace_replay.py",
              "tests/containers/run.sh", "tests/manifests/test_manifests.py"]:
        assert p in text, p
        assert (ROOT / p).exists(), p
    json.loads((ROOT / "docker/grafana/mooncake-dashboard.json").read_text())


def test_the_images_loaded_are_the_ones_built_and_used():
    build = (ROOT / "docker/build.sh").read_text()
    assert re.search(r"TAG=\$\{TAG:-mooncake:local\}", build)
    loads = [c for c in commands() if c.startswith("kind load docker-image")]
    assert loads, "no kind load step"
    loaded = set(loads[0].split()[3:])
    used = {c["image"] for r in rbg("docker/rbg/mooncake-rbg.yaml")["spec"]["roles"]
            for c in r["template"]["spec"]["containers"]}
    assert loaded == used, (loaded, used)
    built = [c for c in commands() if "Dockerfile.sglang" in c]
    assert built and "-t mooncake-sglang:local" in built[0]


def test_the_scale_patch_points_at_the_store_role():
    (patch,) = [c for c in commands() if c.startswith("kubectl patch")]
    m = re.search(r"/spec/roles/(\d+)/replicas", patch)
    roles = rbg("docker/rbg/mooncake-rbg.yaml")["spec"]["roles"]
    assert roles[int(m.group(1))]["name"] == "mooncake-store"
    assert f"kubectl patch rolebasedgroup {rbg('docker/rbg/mooncake-rbg.yaml')['metadata']['name']} " in patch


def test_pod_names_follow_the_groups_and_roles():
    for path, pod in [("docker/rbg/mooncake-rbg.yaml", "sglang-demo-mooncake-master-0"),
                      ("docker/rbg/mooncake-rbg-ha.yaml", "sglang-demo-ha-mooncake-master-0")]:
        g = rbg(path)
        names = {f"{g['metadata']['name']}-{r['name']}-0" for r in g["spec"]["roles"]}
        assert pod in names, (pod, names)
        assert pod in DOC.read_text()


def test_the_log_line_shown_is_the_masters_format():
    shown = re.search(r"```\n(Storage: .*)\n```", DOC.read_text()).group(1)
    fmt = r"Storage: \S+ \S+ / \S+ \S+ \(\d+\.\d+%\) \| Keys: \d+ \(soft-pinned: \d+\)"
    assert re.fullmatch(fmt, shown), shown
    report = (ROOT / "crates/mooncake-master/src/report.rs").read_text()
    assert shown in report  # the format the master's code documents and logs


def test_the_benchmark_command_is_the_seeds():
    (bench,) = [c for c in commands() if "sglang.bench_serving" in c]
    for arg in ["--backend sglang-oai", "--num-prompts 300", "--random-input 2048",
                "--random-output 512", "--random-range-ratio 0.5", "--request-rate 10",
                "--seed 43", "--model /models/Qwen3-32B/"]:
        assert arg in bench, arg
