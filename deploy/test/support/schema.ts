/**
 * Validation of rendered Kubernetes objects against the API's own schemas, in two layers:
 *
 * 1. JSON Schema (ajv): `kubernetes-models` (generated from the Kubernetes OpenAPI document),
 *    `@kubernetes-models/cert-manager` and `@kubernetes-models/prometheus-operator` (from those
 *    projects' CRDs) ship, for every kind, an ajv validator compiled from that schema: types,
 *    formats, enums, required fields.
 * 2. Unknown fields, as `kubectl --validate=strict` or `kubeconform -strict` reject them: those
 *    compiled schemas allow extra properties (a typo such as `readinesProbe` would pass), so every
 *    object is also type-checked by the TypeScript compiler as a literal of the same package's
 *    generated interface (`IDeployment`, ...), whose excess-property check rejects any field the
 *    schema does not define.
 *
 * Neither npm nor Debian carries the Kubernetes JSON schemas as plain files (kubeconform and
 * kubeval download theirs), so these packages are the schema source.
 */
import path from 'node:path';
import ts from 'typescript';
import { DEPLOY, id, type K8sObject } from './kustomize.js';

/** API groups whose models come from a package other than kubernetes-models. */
const PACKAGE_OF_GROUP: Record<string, string> = {
  'cert-manager.io': '@kubernetes-models/cert-manager',
  'acme.cert-manager.io': '@kubernetes-models/cert-manager',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
};

/** The module of a kind's model, e.g. `kubernetes-models/apps/v1/Deployment`. */
function moduleOf(object: K8sObject): string | undefined {
  if (typeof object?.apiVersion !== 'string' || typeof object.kind !== 'string' || !/^[A-Z][A-Za-z0-9]*$/.test(object.kind))
    return undefined;
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  if (!version || !/^[a-z0-9.-]*$/.test(group!) || !/^v\d+((alpha|beta)\d+)?$/.test(version)) return undefined;
  const pkg = PACKAGE_OF_GROUP[group!] ?? 'kubernetes-models';
  return `${pkg}/${group ? `${group}/` : ''}${version}/${object.kind}`;
}

type Model = new (data: unknown) => { validate(): void };

async function loadModel(spec: string, kind: string): Promise<Model | undefined> {
  try {
    const mod = (await import(/* @vite-ignore */ spec)) as Record<string, unknown>;
    return typeof mod[kind] === 'function' ? (mod[kind] as Model) : undefined;
  } catch {
    return undefined;
  }
}

/** Layer 2: TypeScript's excess-property (and type) check against the generated interfaces. */
function strictProblems(objects: K8sObject[], specs: (string | undefined)[]): string[][] {
  const problems: string[][] = objects.map(() => []);
  // Virtual files beside this one, so that module resolution finds the root node_modules.
  const files = new Map<string, { index: number; text: string }>();
  specs.forEach((spec, index) => {
    if (!spec) return;
    const file = path.join(DEPLOY, 'test', `__k8s_object_${index}.ts`);
    const text = `import type { I${objects[index]!.kind} as T } from '${spec}';\nexport const object: T = ${JSON.stringify(objects[index], null, 2)};\n`;
    files.set(file, { index, text });
  });
  if (files.size === 0) return problems;

  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  // Called with .call(host, ...) below: bound to the host they came from.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => {
    const virtual = files.get(path.resolve(name));
    return virtual ? ts.createSourceFile(name, virtual.text, language) : getSourceFile.call(host, name, language, ...rest);
  };
  host.fileExists = (name) => files.has(path.resolve(name)) || fileExists.call(host, name);
  host.readFile = (name) => files.get(path.resolve(name))?.text ?? readFile.call(host, name);

  const program = ts.createProgram([...files.keys()], options, host);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const virtual = d.file ? files.get(path.resolve(d.file.fileName)) : undefined;
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!virtual) throw new Error(`TypeScript could not check the manifests: ${message}`);
    const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
    const source = virtual.text.split('\n')[line]?.trim() ?? '';
    problems[virtual.index]!.push(`${message} (at ${source})`);
  }
  return problems;
}

/**
 * The object as the API server decodes it. kustomize wraps the base64 of Secret data over several
 * lines; Go's base64 decoder skips those newlines, the schema's `byte` format does not.
 */
function decoded(object: K8sObject): K8sObject {
  const binary =
    object?.apiVersion === 'v1' && object.kind === 'Secret'
      ? 'data'
      : object?.apiVersion === 'v1' && object.kind === 'ConfigMap'
        ? 'binaryData'
        : undefined;
  const data = binary ? object[binary] : undefined;
  if (!data || typeof data !== 'object') return object;
  const unwrapped = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, typeof v === 'string' ? v.replace(/[\r\n]/g, '') : v]));
  return { ...object, [binary!]: unwrapped };
}

/** Every problem of each object, in order: an empty list means the object is valid. */
export async function validateObjects(input: K8sObject[]): Promise<string[][]> {
  const objects = input.map(decoded);
  const specs = objects.map(moduleOf);
  const problems = await Promise.all(
    objects.map(async (object, i) => {
      const spec = specs[i];
      const Model = spec ? await loadModel(spec, object.kind) : undefined;
      if (!Model) {
        specs[i] = undefined;
        return [`no schema for ${object?.apiVersion}/${object?.kind}`];
      }
      try {
        new Model(object).validate();
        return [];
      } catch (err) {
        return [`schema: ${(err as Error).message}`];
      }
    }),
  );
  strictProblems(objects, specs).forEach((list, i) => problems[i]!.push(...list.map((p) => `strict: ${p}`)));
  return problems;
}

/** `Kind/ns/name: problem` lines for every invalid object. */
export async function invalid(objects: K8sObject[]): Promise<string[]> {
  const problems = await validateObjects(objects);
  return problems.flatMap((list, i) => list.map((p) => `${id(objects[i]!)}: ${p}`));
}
