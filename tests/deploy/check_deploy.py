#!/usr/bin/python3
"""Checks the deployment files in deploy/ against the built binaries (offline; no docker, no
cluster). Run by tests/deploy/check_deploy.sh (CTest: deploy_files_match_binaries).

  check_deploy.py --source-dir DIR --server-bin B --agent-bin B --cli-bin B [--rendered-k8s FILE]

What it asserts (each failure is printed with the file and the item, the exit code is 1):
  * docker-compose.yml, the k8s manifests (and, when given, `kubectl kustomize` output) parse;
  * every MODELFLEET_* variable and --flag that compose and k8s hand to modelfleet-server is one
    that `modelfleet-server --help` (and `serve --help`, `create-token --help`) lists, and each
    subcommand exists; the same for the CLI (`modelfleet --help`) and the bootstrap script's
    own MODELFLEET_BOOTSTRAP_* variables; the CLI commands the bootstrap script runs exist;
  * every agent key in compose's agent command lines, its agent.conf, deploy/agent.conf.example
    and the systemd units is one `modelfleet-agent --help` lists, and agent.conf.example documents
    every key the agent has; every variable in modelfleet-server.env.example is the server's;
  * compose: every long-running service has a health check, every depends_on waits on a
    condition (service_healthy only on services with a health check);
  * k8s: every server container has readiness and liveness probes (gRPC health on the port it
    listens on, or the HTTP face's /readyz and /healthz on its HTTP port), exposes its ports,
    runs as non-root with a read-only root filesystem and no privilege escalation, and has
    its artifact cache on an emptyDir; replicas >= 2; the Service and the PodDisruptionBudget
    select the server pods;
  * the Dockerfile builds FROM debian:12 only and has server, agent and cli targets, each
    running as a non-root USER with an ENTRYPOINT; its MODELFLEET_* ENV are the server's.
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys

import yaml

FAILURES = []
CHECKS = [0]


def check(condition, where, message):
    CHECKS[0] += 1
    if not condition:
        FAILURES.append(f"{where}: {message}")
    return condition


# ----------------------------------------------------------------------------- the binaries


def run_help(argv):
    """Returns stdout+stderr of `argv` (a --help call); fails the check if it does not exit 0."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, " ".join(argv), f"exit code {p.returncode}: {p.stderr.strip()[:300]}")
    return p.stdout + p.stderr, p.returncode


class Server:
    def __init__(self, binary):
        self.flags, self.env = set(), set()
        top, _ = run_help([binary, "--help"])
        self.subcommands = set(re.findall(r"^  ([a-z][a-z-]*)\s{2,}", top.split("Subcommands:")[-1], re.M)) \
            if "Subcommands:" in top else set()
        check(bool(self.subcommands), binary, "--help lists no subcommands")
        texts = [top]
        for sub in sorted(self.subcommands):
            text, _ = run_help([binary, sub, "--help"])
            texts.append(text)
        for text in texts:
            self.flags |= set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", text))
            self.env |= set(re.findall(r"Env:\s*(MODELFLEET_[A-Z0-9_]+)", text))
        check("--database-url" in self.flags and "MODELFLEET_DATABASE_URL" in self.env, binary,
              "cannot read flags and environment variables from --help (format changed?)")


class Agent:
    def __init__(self, binary):
        text, _ = run_help([binary, "--help"])
        self.keys = set(re.findall(r"^\s+--([a-z0-9_]+)\s*$", text, re.M))
        check("server" in self.keys, binary, "cannot read the config keys from --help (format changed?)")


class Cli:
    def __init__(self, binary):
        self.binary = binary
        text, _ = run_help([binary, "--help"])
        self.env = set(re.findall(r"MODELFLEET_[A-Z0-9_]+", text))
        self.flags = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", text)) | {"-o"}
        check("MODELFLEET_SERVER" in self.env, binary, "cannot read environment variables from --help")

    def command_exists(self, words, options):
        """`modelfleet WORDS --help` shows that command's own help (CLI11 shows the top level's for an
        unknown command, and exits 0) and lists every one of `options`."""
        p = subprocess.run([self.binary, *words, "--help"], capture_output=True, text=True, timeout=60)
        text = p.stdout + p.stderr
        usage = re.search(r"^Usage: \S+((?: [a-z][a-z-]*)*)", text, re.M)
        shown = usage.group(1).split() if usage else []
        if p.returncode != 0 or shown != list(words):
            return False, f"`--help` shows the usage of `modelfleet {' '.join(shown)}`"
        missing = [o for o in options if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", text)]
        return not missing, f"its help lists no {missing}"


# ------------------------------------------------------------------------- parsing helpers


def load_yaml_docs(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        check(False, path, f"does not parse: {e}")
        return []


def agent_flag_keys(args):
    """Keys of `--key value` / `--key=value` arguments of modelfleet-agent (as the agent reads them)."""
    keys = []
    for a in args:
        if isinstance(a, str) and a.startswith("--"):
            keys.append(a[2:].split("=", 1)[0].replace("-", "_"))
    return [k for k in keys if k != "config"]


def conf_keys(path, include_commented):
    """Keys of an agent `key = value` file; with include_commented also `#key = value` lines."""
    keys = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"^\s*(#\s*)?([a-z][a-z0-9_]*)\s*=", line)
            if m and (include_commented or not m.group(1)):
                keys.append((n, m.group(2)))
    return keys


def long_flags(args):
    return [a.split("=", 1)[0] for a in args if isinstance(a, str) and a.startswith("--")]


def as_list(command):
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def parse_quantity(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    if not m:
        return None
    mult = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return int(m.group(1)) * mult


# ---------------------------------------------------------------------------------- compose


def check_compose(deploy, server, agent, cli, bootstrap_vars, agent_entrypoint_vars):
    path = os.path.join(deploy, "docker-compose.yml")
    docs = load_yaml_docs(path)
    if not check(len(docs) == 1 and isinstance(docs[0], dict), path, "is not one YAML mapping"):
        return
    services = docs[0].get("services", {})
    check(bool(services), path, "has no services")
    one_shots = {dep for s in services.values() for dep, spec in (s.get("depends_on") or {}).items()
                 if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"}
    kinds = {}
    for name, s in services.items():
        where = f"{path}: service {name}"
        target = (s.get("build") or {}).get("target") if isinstance(s.get("build"), dict) else None
        image = str(s.get("image", ""))
        kind = target or next((k for k in ("server", "agent", "cli") if f"modelfleet/{k}" in image), None)
        kinds[name] = kind
        if "healthcheck" not in s:
            check(name in one_shots or s.get("profiles"), where,
                  "has no healthcheck (only one-shot services and tools may go without)")
        deps = s.get("depends_on") or {}
        check(isinstance(deps, dict), where, "depends_on must be a mapping with conditions")
        for dep, spec in (deps.items() if isinstance(deps, dict) else []):
            cond = (spec or {}).get("condition")
            check(dep in services, where, f"depends on unknown service {dep}")
            check(cond in ("service_healthy", "service_completed_successfully"), where,
                  f"depends_on {dep} without a service_healthy/completed condition")
            if cond == "service_healthy" and dep in services:
                check("healthcheck" in services[dep], where, f"waits for {dep} to be healthy, which has no healthcheck")
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        entrypoint = " ".join(as_list(s.get("entrypoint")))
        args = as_list(s.get("command"))
        if kind == "server":
            runs_bootstrap = "modelfleet-bootstrap" in entrypoint
            allowed = server.env | (cli.env | bootstrap_vars if runs_bootstrap else set())
            for var in env:
                if var.startswith("MODELFLEET_"):
                    check(var in allowed, where, f"environment variable {var} is not one "
                          f"{'modelfleet-server, the CLI or modelfleet-bootstrap' if runs_bootstrap else 'modelfleet-server'} accepts")
            if not runs_bootstrap and args:
                check(args[0] in server.subcommands, where, f"'{args[0]}' is not a modelfleet-server subcommand")
                for flag in long_flags(args):
                    check(flag in server.flags, where, f"modelfleet-server has no flag {flag}")
            if "healthcheck" in s:
                test = " ".join(as_list(s["healthcheck"].get("test")))
                check("modelfleet-health" in test, where, "health check does not ask the server's gRPC health")
                listen = str(env.get("MODELFLEET_LISTEN", "0.0.0.0:7443"))
                check(listen.rsplit(":", 1)[-1] in test, where, f"health check does not use the listen port of {listen}")
        elif kind == "agent":
            for var in env:
                if var.startswith("MODELFLEET_"):
                    check(var in agent_entrypoint_vars, where, f"{var} is not read by modelfleet-agent-entrypoint")
            for key in agent_flag_keys(args):
                check(key in agent.keys, where, f"modelfleet-agent has no key --{key}")
            for vol in s.get("volumes") or []:
                src, _, rest = str(vol).partition(":")
                if rest.split(":")[0] == "/etc/modelfleet/agent.conf":
                    conf = os.path.normpath(os.path.join(deploy, src))
                    if check(os.path.isfile(conf), where, f"mounts {src}, which does not exist"):
                        for n, key in conf_keys(conf, include_commented=False):
                            check(key in agent.keys, f"{conf}:{n}", f"modelfleet-agent has no key '{key}'")
        elif kind == "cli":
            for var in env:
                if var.startswith("MODELFLEET_"):
                    check(var in cli.env, where, f"{var} is not one the modelfleet CLI reads")
        for vol in s.get("volumes") or []:
            src = str(vol).split(":")[0]
            if src.startswith("."):
                check(os.path.exists(os.path.join(deploy, src)), where, f"bind-mounts {src}, which does not exist")
    check("server" in kinds.values() and "agent" in kinds.values(), path, "has no server or no agent service")
    check(sum(1 for k in kinds.values() if k == "agent") >= 2, path, "wants a few agents")


# -------------------------------------------------------------------------------------- k8s


def check_k8s(deploy, server, rendered):
    k8s = os.path.join(deploy, "k8s")
    files = sorted(glob.glob(os.path.join(k8s, "*.yaml")))
    check(os.path.isfile(os.path.join(k8s, "kustomization.yaml")), k8s, "has no kustomization.yaml")
    raw = []
    for f in files:
        raw += [(f, d) for d in load_yaml_docs(f)]
    kust = next((d for f, d in raw if f.endswith("kustomization.yaml")), {})
    for res in kust.get("resources", []):
        check(os.path.exists(os.path.join(k8s, res)), f"{k8s}/kustomization.yaml", f"resource {res} does not exist")
    objects = [(f, d) for f, d in raw if not f.endswith("kustomization.yaml")]
    if rendered:
        objects = [(rendered, d) for d in load_yaml_docs(rendered)]
        secrets_extra = [(f, d) for f, d in raw if d.get("kind") == "Secret"]
    else:
        secrets_extra = []
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for f, d in objects if d.get("kind") == "ConfigMap"}
    secrets = {}
    for f, d in objects + secrets_extra:
        if d.get("kind") == "Secret":
            secrets[d["metadata"]["name"]] = {**(d.get("data") or {}), **(d.get("stringData") or {})}

    deployments = [(f, d) for f, d in objects if d.get("kind") == "Deployment"]
    server_pods = []
    for f, d in deployments:
        pod = d["spec"]["template"]["spec"]
        containers = pod.get("containers", [])
        is_server = [c for c in containers if "modelfleet/server" in str(c.get("image", ""))]
        if not is_server:
            continue
        where = f"{f}: Deployment {d['metadata']['name']}"
        check(int(d["spec"].get("replicas", 1)) >= 2, where, "wants several replicas")
        labels = d["spec"]["template"]["metadata"].get("labels", {})
        server_pods.append(labels)
        pod_sc = pod.get("securityContext", {})
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("initContainers", []) + containers:
            cwhere = f"{where}: container {c['name']}"
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            check(non_root is True, cwhere, "does not set runAsNonRoot: true")
            check(uid is None or int(uid) != 0, cwhere, "runs as uid 0")
            check(sc.get("readOnlyRootFilesystem") is True, cwhere, "root filesystem is not read-only")
            check(sc.get("allowPrivilegeEscalation") is False, cwhere, "does not forbid privilege escalation")
            # Environment handed to modelfleet-server: env, and every key of envFrom sources.
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    name = src["configMapRef"]["name"]
                    if check(name in config_maps, cwhere, f"envFrom ConfigMap {name} is not in the manifests"):
                        env.update(config_maps[name])
                if "secretRef" in src:
                    name = src["secretRef"]["name"]
                    if check(name in secrets, cwhere, f"envFrom Secret {name} has no manifest or example"):
                        env.update(secrets[name])
            for var in env:
                if var.startswith("MODELFLEET_"):
                    check(var in server.env, cwhere, f"environment variable {var} is not one modelfleet-server accepts")
            args = as_list(c.get("command"))[1:] + as_list(c.get("args"))
            if args:
                check(args[0] in server.subcommands, cwhere, f"'{args[0]}' is not a modelfleet-server subcommand")
            for flag in long_flags(args):
                check(flag in server.flags, cwhere, f"modelfleet-server has no flag {flag}")
            if c in pod.get("initContainers", []):
                check(args[:1] == ["migrate"], cwhere, "an init container of the server should only migrate")
                continue
            listen_port = int(str(env.get("MODELFLEET_LISTEN", "0.0.0.0:7443")).rsplit(":", 1)[-1])
            ports = [p["containerPort"] for p in c.get("ports", [])]
            check(listen_port in ports, cwhere, f"does not expose the listen port {listen_port}")
            http_listen = str(env.get("MODELFLEET_HTTP_LISTEN", "") or "")
            http_port = int(http_listen.rsplit(":", 1)[-1]) if http_listen else None
            if http_port is not None:
                check(http_port in ports, cwhere, f"does not expose the HTTP port {http_port}")
            named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            # Probes: gRPC health on the listen port, or the HTTP face's /readyz and /healthz.
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                spec = c.get(probe) or {}
                grpc, http_get = spec.get("grpc"), spec.get("httpGet")
                if not check(grpc is not None or http_get is not None, cwhere, f"has no gRPC or HTTP {probe}"):
                    continue
                if grpc is not None:
                    check(int(grpc.get("port", -1)) == listen_port, cwhere,
                          f"{probe} asks port {grpc.get('port')}, the server listens on {listen_port}")
                    check(not grpc.get("service"), cwhere, f"{probe} names a service; the server reports ''")
                else:
                    port = http_get.get("port")
                    port = named.get(port, port) if isinstance(port, str) else port
                    check(http_port is not None and port == http_port, cwhere,
                          f"{probe} asks HTTP port {http_get.get('port')}, the server serves HTTP on {http_port}")
                    check(http_get.get("path") == path, cwhere, f"{probe} asks {http_get.get('path')}, not {path}")
            cache_dir = str(env.get("MODELFLEET_CACHE_DIR", "/var/cache/modelfleet"))
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if check(cache_dir in mounts, cwhere, f"the artifact cache {cache_dir} is not a mounted volume"):
                vol = volumes.get(mounts[cache_dir], {})
                if check("emptyDir" in vol, cwhere, f"the artifact cache volume {mounts[cache_dir]} is not an emptyDir"):
                    limit = parse_quantity((vol["emptyDir"] or {}).get("sizeLimit", ""))
                    cache_bytes = int(env.get("MODELFLEET_CACHE_BYTES", 2 << 30))
                    check(limit is None or cache_bytes < limit, cwhere,
                          f"MODELFLEET_CACHE_BYTES {cache_bytes} does not fit the cache emptyDir ({limit} bytes)")
            res = c.get("resources", {})
            check(res.get("requests") and res.get("limits"), cwhere, "has no resource requests and limits")
    check(bool(server_pods), k8s, "has no Deployment of modelfleet/server")

    def selects(selector, labels):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    services = [d for f, d in objects if d.get("kind") == "Service"]
    check(any(any(selects(s["spec"].get("selector", {}), l) for l in server_pods) and
              any(p.get("name") == "grpc" or p.get("appProtocol") == "grpc" for p in s["spec"].get("ports", []))
              for s in services), k8s, "no Service selects the server pods with a gRPC port")
    pdbs = [d for f, d in objects if d.get("kind") == "PodDisruptionBudget"]
    check(any(any(selects(p["spec"]["selector"].get("matchLabels", {}), l) for l in server_pods) for p in pdbs),
          k8s, "no PodDisruptionBudget selects the server pods")


# ------------------------------------------------------------------------ the other files


def check_examples(deploy, server, agent):
    example = os.path.join(deploy, "agent.conf.example")
    if os.path.isfile(example):
        documented = set()
        for n, key in conf_keys(example, include_commented=True):
            documented.add(key)
            check(key in agent.keys, f"{example}:{n}", f"modelfleet-agent has no key '{key}'")
        for key in sorted(agent.keys - documented):
            check(False, example, f"does not document the agent's key '{key}'")
    env_example = os.path.join(deploy, "modelfleet-server.env.example")
    if os.path.isfile(env_example):
        with open(env_example) as f:
            for n, line in enumerate(f, 1):
                m = re.match(r"^\s*#?\s*(MODELFLEET_[A-Z0-9_]+)=", line)
                if m:
                    check(m.group(1) in server.env, f"{env_example}:{n}", f"modelfleet-server has no {m.group(1)}")
    for unit, keys_of in (("modelfleet-server.service", None), ("modelfleet-agent.service", agent.keys)):
        path = os.path.join(deploy, unit)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.startswith("ExecStart="):
                    continue
                args = shlex.split(line.split("=", 1)[1])[1:]
                if keys_of is None:
                    if args:
                        check(args[0] in server.subcommands, f"{path}:{n}", f"'{args[0]}' is not a subcommand")
                    for flag in long_flags(args):
                        check(flag in server.flags, f"{path}:{n}", f"modelfleet-server has no flag {flag}")
                else:
                    for key in agent_flag_keys(args):
                        check(key in keys_of, f"{path}:{n}", f"modelfleet-agent has no key --{key}")


def check_bootstrap(deploy, server, cli):
    """The CLI commands and server flags the bootstrap script uses exist; returns its own variables."""
    path = os.path.join(deploy, "docker", "modelfleet-bootstrap")
    with open(path) as f:
        text = f.read()
    # Comments out, continuation lines joined; each command ends at a pipe or a redirection.
    code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")).replace("\\\n", " ")
    for m in re.finditer(r"^\s*modelfleet-server\s+([^|>\n]*)", code, re.M):
        args = shlex.split(m.group(1))
        check(args[0] in server.subcommands, path, f"modelfleet-server has no subcommand {args[0]}")
        for flag in long_flags(args):
            check(flag in server.flags, path, f"modelfleet-server {args[0]} has no flag {flag}")
    for m in re.finditer(r"^\s*modelfleet\s+([^|>\n]*)", code, re.M):
        words = shlex.split(m.group(1))
        globals_, command = [], []
        i = 0
        while i < len(words) and words[i].startswith("-"):      # global options before the command
            globals_.append(words[i])
            i += 2 if words[i] in ("-o", "--output", "--server", "--token", "--tls-ca", "--config") else 1
        while i < len(words) and re.fullmatch(r"[a-z][a-z-]*", words[i]):
            command.append(words[i])
            i += 1
        options = [w.split("=")[0] for w in words[i:] if w.startswith("--")]
        for g in globals_:
            check(g in cli.flags, path, f"the modelfleet CLI has no global option {g}")
        check(bool(command), path, f"cannot read the command of `modelfleet {m.group(1).strip()}`")
        ok, why = cli.command_exists(command, options)
        check(ok, path, f"`modelfleet {' '.join(command)} {' '.join(options)}` is not a CLI command: {why}")
    return set(re.findall(r"MODELFLEET_BOOTSTRAP_[A-Z0-9_]+", text))


def check_dockerfile(deploy, source_dir, server=None):
    path = os.path.join(deploy, "docker", "Dockerfile")
    logical, pending, first = [], "", 0      # instructions with their continuation lines joined
    with open(path) as f:
        for n, raw_line in enumerate(f, 1):
            if not pending:
                first = n
            if raw_line.rstrip("\n").endswith("\\"):
                pending += raw_line.rstrip("\n")[:-1] + " "
                continue
            logical.append((first, pending + raw_line.rstrip("\n")))
            pending = ""
    stages, current = {}, None
    for n, line in logical:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        op = words[0].upper()
        if op == "FROM":
            base = words[1]
            check(base == "debian:12" or base in stages, f"{path}:{n}", f"FROM {base}: only debian:12 or an earlier stage")
            current = words[3] if len(words) >= 4 and words[2].upper() == "AS" else f"#{n}"
            parent = stages.get(base, {})
            stages[current] = {"user": parent.get("user"), "entrypoint": parent.get("entrypoint")}
        elif op == "USER":
            stages[current]["user"] = words[1]
        elif op == "ENV" and server is not None:
            for word in words[1:]:
                var = word.split("=", 1)[0]
                if var.startswith("MODELFLEET_"):
                    check(var in server.env, f"{path}:{n}", f"ENV {var} is not one modelfleet-server accepts")
        elif op == "ENTRYPOINT":
            stages[current]["entrypoint"] = line
        elif op == "COPY" and not any(w.startswith("--from") for w in words):
            for src in words[1:-1]:
                if not src.startswith("--") and src != ".":
                    check(os.path.exists(os.path.join(source_dir, src)), f"{path}:{n}", f"COPY {src}: no such file")
    for target in ("server", "agent", "cli"):
        if check(target in stages, path, f"has no target '{target}'"):
            user = stages[target]["user"]
            check(user is not None and user.split(":")[0] not in ("0", "root"), path, f"target {target} runs as root")
            check(stages[target]["entrypoint"] is not None, path, f"target {target} has no ENTRYPOINT")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--agent-bin", required=True)
    parser.add_argument("--cli-bin", required=True)
    parser.add_argument("--rendered-k8s", help="output of kubectl kustomize deploy/k8s")
    args = parser.parse_args()
    deploy = os.path.join(args.source_dir, "deploy")
    server, agent, cli = Server(args.server_bin), Agent(args.agent_bin), Cli(args.cli_bin)
    entrypoint = os.path.join(deploy, "docker", "modelfleet-agent-entrypoint")
    with open(entrypoint) as f:
        agent_entrypoint_vars = set(re.findall(r"MODELFLEET_AGENT_[A-Z0-9_]+", f.read()))
    bootstrap_vars = check_bootstrap(deploy, server, cli)
    check_compose(deploy, server, agent, cli, bootstrap_vars, agent_entrypoint_vars)
    check_k8s(deploy, server, args.rendered_k8s)
    check_examples(deploy, server, agent)
    check_dockerfile(deploy, args.source_dir, server)
    for f in FAILURES:
        print("FAIL", f)
    print(f"check_deploy: {CHECKS[0] - len(FAILURES)} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
