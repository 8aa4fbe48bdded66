// The Kubernetes manifests in config/kubernetes as data, for tests that check them without a
// cluster: every document of every file, the pod specs of workloads, a container's environment
// resolved the way the kubelet resolves it (values, Secret and ConfigMap keys), and the files a
// container would see under its volume mounts.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

export const KUBERNETES_DIR = path.resolve(import.meta.dirname, '../../config/kubernetes');

/** A Kubernetes object as parsed from YAML (only the fields the tests read are typed). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: { template?: { metadata?: { labels?: Record<string, string> }; spec: PodSpec } };
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; configMapKeyRef?: KeyRef };
}
interface KeyRef {
  name: string;
  key: string;
}

export interface Probe {
  httpGet?: { path: string; port: number | string };
}

export interface Container {
  name: string;
  image: string;
  restartPolicy?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean; readOnlyRootFilesystem?: boolean };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}

export interface PodSpec {
  serviceAccountName?: string;
  terminationGracePeriodSeconds?: number;
  restartPolicy?: string;
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
}

export interface ManifestFile {
  /** Path under config/kubernetes. */
  readonly file: string;
  readonly objects: readonly K8sObject[];
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return yamlFiles(full);
    return /\.ya?ml$/.test(entry.name) ? [full] : [];
  });
}

/** Every manifest file; a YAML error throws naming the file. */
export function readManifestFiles(dir = KUBERNETES_DIR): ManifestFile[] {
  return yamlFiles(dir)
    .sort()
    .map((full) => {
      const docs = YAML.parseAllDocuments(readFileSync(full, 'utf8'));
      const objects = docs.map((doc) => {
        if (doc.errors.length > 0) throw new Error(`${full}: ${doc.errors[0]!.message}`);
        return doc.toJS() as K8sObject;
      });
      return { file: path.relative(dir, full), objects: objects.filter((object) => object !== null) };
    });
}

export function findObject(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name);
  if (!found) throw new Error(`no ${kind} named ${name} in the manifests`);
  return found;
}

/** A key of a ConfigMap or Secret (stringData as written, data base64-decoded). */
export function objectKey(object: K8sObject, key: string): string {
  const plain = object.data?.[key];
  if (object.kind === 'Secret') {
    if (object.stringData?.[key] !== undefined) return object.stringData[key];
    if (plain !== undefined) return Buffer.from(plain, 'base64').toString('utf8');
  } else if (plain !== undefined) {
    return plain;
  }
  throw new Error(`${object.kind} ${object.metadata.name} has no key ${key}`);
}

export function podSpecOf(workload: K8sObject): PodSpec {
  const spec = workload.spec?.template?.spec;
  if (!spec) throw new Error(`${workload.kind} ${workload.metadata.name} has no pod template`);
  return spec;
}

export function containerNamed(pod: PodSpec, name: string): Container {
  const found = [...(pod.initContainers ?? []), ...pod.containers].find((container) => container.name === name);
  if (!found) throw new Error(`no container ${name}`);
  return found;
}

/** The container's environment as the kubelet would set it (only value, secretKeyRef and configMapKeyRef). */
export function resolveEnv(container: Container, objects: readonly K8sObject[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const secret = variable.valueFrom?.secretKeyRef;
    const configMap = variable.valueFrom?.configMapKeyRef;
    if (secret) env[variable.name] = objectKey(findObject(objects, 'Secret', secret.name), secret.key);
    else if (configMap) env[variable.name] = objectKey(findObject(objects, 'ConfigMap', configMap.name), configMap.key);
    else if (variable.value !== undefined) env[variable.name] = variable.value;
    else throw new Error(`env ${variable.name} of ${container.name}: only value, secretKeyRef and configMapKeyRef are resolved here`);
  }
  return env;
}

export interface MountedVolume {
  readonly mountPath: string;
  /** File name under mountPath -> contents. */
  readonly files: Readonly<Record<string, string>>;
}

/** Whether `file` (an absolute container path) is a file one of the mounts shows. */
export function isMountedFile(mounts: readonly MountedVolume[], file: string | undefined): boolean {
  return file !== undefined && mounts.some((mount) => path.dirname(file) === mount.mountPath && path.basename(file) in mount.files);
}

/** The files each of the container's volume mounts shows (ConfigMap and Secret volumes). */
export function mountedFiles(pod: PodSpec, container: Container, objects: readonly K8sObject[]): MountedVolume[] {
  return (container.volumeMounts ?? []).map((mount) => {
    const volume = pod.volumes?.find((candidate) => candidate.name === mount.name);
    if (!volume) throw new Error(`${container.name} mounts ${mount.name}, which the pod does not define`);
    const source = volume.configMap
      ? findObject(objects, 'ConfigMap', volume.configMap.name)
      : volume.secret
        ? findObject(objects, 'Secret', volume.secret.secretName)
        : undefined;
    if (!source) throw new Error(`volume ${mount.name}: only ConfigMap and Secret volumes are emulated`);
    const items = volume.secret?.items ?? Object.keys({ ...source.data, ...source.stringData }).map((key) => ({ key, path: key }));
    const files: Record<string, string> = {};
    for (const item of items) files[item.path] = objectKey(source, item.key);
    return { mountPath: mount.mountPath, files };
  });
}
