// The layering of lib/ and cmd/, enforced: a module imports only from its own layer and the
// layers below it, and from another layer only what that layer offers (its surface), never its
// internals. Data flows one way, listener -> auth -> route -> session -> forward, and no module
// reaches back up. Every relative import counts, static, re-exported or dynamic, types too.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

interface Layer {
  /** A folder of lib/ (or cmd). */
  readonly name: string;
  /**
   * The modules other layers may import, relative to the folder; absent: every module. The rest
   * is the layer's own business, free to change without a look above.
   */
  readonly surface?: readonly string[];
}

/** Bottom first: each layer may import from those before it, never from those after it. */
const LAYERS: readonly Layer[] = [
  // The Node process under the data plane: allocator, young-garbage pacing; the clock.
  { name: 'runtime' },
  // The validated configuration, and the formats written in it and in Function files (durations, names).
  { name: 'config' },
  // HTTP/2 of our own; knows nothing of gRPC. Framing and HPACK stay inside.
  { name: 'h2', surface: ['client-connection.ts', 'server-connection.ts', 'connection.ts', 'stream.ts', 'constants.ts', 'limits.ts', 'read-buffers.ts'] },
  // gRPC on top of HTTP/2: statuses, trailers-only answers, grpc-timeout, proto loading.
  { name: 'grpc' },
  // Logs, metrics, traces, access log: a sink every layer above reports to and reads nothing back from.
  { name: 'telemetry', surface: ['log.ts', 'events.ts', 'telemetry.ts'] },
  // Watching the files the gateway reads for changes.
  { name: 'files' },
  // What Functions, versions, endpoints and keys exist; manifest and key formats.
  { name: 'registry' },
  // A credential -> a principal (API keys, JWT); key creation.
  { name: 'auth' },
  // Request metadata -> the function invoked, its version and the session id asked for.
  { name: 'route' },
  // Pinning a connection's calls to an endpoint: sessions, their ids, caps, waiting for room.
  { name: 'sessions' },
  // A session's own HTTP/2 connection to its endpoint.
  { name: 'upstreams' },
  // One client stream <-> one upstream stream.
  { name: 'forward' },
  // Listeners, client connections and the stream pipeline: auth -> route -> session -> forward.
  { name: 'gateway', surface: ['gateway.ts', 'listeners.ts'] },
  // Fill the registry from files or from Kubernetes; they return data, serve applies it.
  { name: 'sources', surface: ['file/api-keys-file.ts', 'file/functions-dir.ts', 'file/session-key-file.ts', 'kubernetes/kubernetes-source.ts'] },
  // KEDA's external scaler, and session counts summed over replicas.
  { name: 'scaling' },
  // Admin HTTP: probes, metrics, /debug/sessions.
  { name: 'admin' },
  // `fngate serve`: wires every layer below, and takes it down again.
  { name: 'serve' },
  // `fngate local`: serve plus an example function and a demo key.
  { name: 'local', surface: ['local-mode.ts'] },
  // The command line.
  { name: 'cmd' },
];

const root = join(import.meta.dirname, '..', '..');

interface Place {
  readonly layer: Layer;
  readonly rank: number;
  /** The module's path inside its layer's folder. */
  readonly inner: string;
}

/** Where a repository path ("lib/h2/stream.ts", "cmd/fngate.ts") sits; undefined outside every layer. */
function placeOf(path: string): Place | undefined {
  const [top, folder, ...rest] = path.split('/');
  const name = top === 'cmd' ? 'cmd' : top === 'lib' ? folder : undefined;
  const rank = LAYERS.findIndex((layer) => layer.name === name);
  const layer = LAYERS[rank];
  if (layer === undefined) return undefined;
  return { layer, rank, inner: top === 'cmd' ? [folder, ...rest].join('/') : rest.join('/') };
}

/** What is wrong with `from` importing `spec`, if anything. */
function violation(from: string, spec: string): string | undefined {
  const target = relative(root, join(root, dirname(from), spec));
  const here = placeOf(from);
  const there = placeOf(target);
  if (here === undefined) return `${from} is in no layer: add its folder to LAYERS`;
  if (there === undefined) return `${from} imports ${spec}, which is in no layer`;
  if (there.layer === here.layer) return undefined;
  if (there.rank > here.rank) return `${from} imports ${spec}: ${there.layer.name} is above ${here.layer.name}`;
  if (there.layer.surface !== undefined && !there.layer.surface.includes(there.inner)) {
    return `${from} imports ${spec}: internal to ${there.layer.name} (its surface: ${there.layer.surface.join(', ')})`;
  }
  return undefined;
}

function modules(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => join(dir, file))
    .sort();
}

function relativeImports(path: string): string[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(join(root, path), 'utf8'), true, true);
  return importedFiles.map((f) => f.fileName).filter((spec) => spec.startsWith('./') || spec.startsWith('../'));
}

t.test('the rule itself: down is fine, up and into internals are named', async (t) => {
  t.equal(violation('lib/gateway/gateway.ts', '../sessions/session-manager.ts'), undefined, 'a higher layer uses a lower one');
  t.equal(violation('lib/h2/connection.ts', './hpack/decoder.ts'), undefined, 'a layer uses its own internals');
  t.equal(violation('lib/registry/registry.ts', '../gateway/gateway.ts'), 'lib/registry/registry.ts imports ../gateway/gateway.ts: gateway is above registry');
  t.match(violation('lib/forward/forward.ts', '../h2/hpack/encoder.ts'), /^lib\/forward\/forward\.ts imports \.\.\/h2\/hpack\/encoder\.ts: internal to h2/);
  t.match(violation('lib/newthing/x.ts', '../h2/stream.ts'), /is in no layer/);
});

t.test('every module of lib/ and cmd/ imports only down, and only what a layer offers', async (t) => {
  const files = [...modules('lib'), ...modules('cmd')];
  t.ok(files.length > 50, `${files.length} modules read`);
  const problems: string[] = [];
  let imports = 0;
  for (const file of files) {
    for (const spec of relativeImports(file)) {
      imports++;
      const problem = violation(file, spec);
      if (problem !== undefined) problems.push(problem);
    }
  }
  t.ok(imports > 150, `${imports} relative imports checked`);
  t.same(problems, [], problems.length === 0 ? 'no import reaches up or into internals' : problems.join('\n'));
});
