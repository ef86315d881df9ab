// `fngate local`: the embedded default. An example Greeter backend, a Function for it and a
// fresh demo key written as ordinary files, then the same `serve` an operator runs, so what
// a newcomer tries here is exactly the file-source path.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createApiKey, renderKeyFileRecord } from '../auth/api-key-create.ts';
import { loadConfig, ConfigError } from '../config/load.ts';
import { startServe, type RunningGateway } from '../serve/serve.ts';
import type { Logger } from '../telemetry/log.ts';
import { findGreeterProto, startGreeterBackend, type GreeterBackend } from './greeter-backend.ts';

/** A fixed id, so the printed commands stay valid across restarts (only the key changes). */
export const GREETER_FUNCTION_ID = '6f1e2c1a-3b1d-4c55-9a8e-0f7c2d1b9e10';

const notForLocal = ['--functions', '--api-keys', '--kubernetes', '--namespace'];

export interface RunningLocal {
  readonly gateway: RunningGateway;
  readonly backend: GreeterBackend;
  readonly apiKey: string;
  readonly dir: string;
  stop(): Promise<void>;
}

export async function startLocal(argv: readonly string[], env: NodeJS.ProcessEnv, log: Logger): Promise<RunningLocal> {
  for (const arg of argv) {
    const flag = arg.split('=', 1)[0] as string;
    if (notForLocal.includes(flag)) {
      throw new ConfigError(flag, 'not used by `fngate local`, which makes its own function and key; use `fngate serve`');
    }
  }
  const backend = await startGreeterBackend({ host: '127.0.0.1', port: 0 });
  const dir = await mkdtemp(join(tmpdir(), 'fngate-local-'));
  const functionsDir = join(dir, 'functions');
  await mkdir(functionsDir);
  await writeFile(join(functionsDir, 'greeter.yaml'), greeterFunction(backend.address));
  const { key, record } = createApiKey({ name: 'local-demo', functions: [GREETER_FUNCTION_ID] });
  const keysFile = join(dir, 'keys.yaml');
  await writeFile(keysFile, 'keys:\n' + renderKeyFileRecord(record));

  const config = loadConfig([...argv, '--functions', functionsDir, '--api-keys', keysFile], env);
  let gateway: RunningGateway;
  try {
    gateway = await startServe(config, log);
  } catch (err) {
    await backend.stop();
    throw err;
  }
  return {
    gateway,
    backend,
    apiKey: key,
    dir,
    stop: async () => {
      await gateway.drain();
      await backend.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function greeterFunction(endpoint: string): string {
  return `apiVersion: fngate.dev/v1alpha1
kind: Function
metadata: { name: greeter, namespace: default }
spec:
  functionId: ${GREETER_FUNCTION_ID}
  activeVersion: v1
  maxSessionsPerEndpoint: 0
  versions:
    - versionId: v1
      endpoints: ["${endpoint}"]
`;
}

/** The copy-paste instructions `fngate local` prints. */
export function localInstructions(local: RunningLocal): string {
  const addr = local.gateway.h2c.replace(/^0\.0\.0\.0:|^\[::\]:/, 'localhost:');
  const admin = local.gateway.admin.replace(/^0\.0\.0\.0:|^\[::\]:/, 'localhost:');
  const root = dirname(dirname(findGreeterProto()));
  const rel = (p: string): string => relative(process.cwd(), join(root, p)) || '.';
  return `
fngate local is running: an example Greeter function behind the gateway.

  gateway (h2c)   ${addr}
  function-id     ${GREETER_FUNCTION_ID}
  API key         ${local.apiKey}   (demo key, made for this run)
  admin           http://${admin}/metrics
  files           ${local.dir}  (Function YAML and keys file, watched for edits)

Call it:

  grpcurl -plaintext -import-path ${rel('protos')} -proto greeter.proto \\
    -H 'authorization: Bearer ${local.apiKey}' \\
    -H 'function-id: ${GREETER_FUNCTION_ID}' \\
    -d '{"name": "world"}' ${addr} helloworld.Greeter/SayHello

  export FNGATE_ADDR=${addr} FNGATE_API_KEY=${local.apiKey} FNGATE_FUNCTION_ID=${GREETER_FUNCTION_ID}
  python3 ${rel('examples/python/greeter_client.py')}     # pip install grpcio grpcio-tools
  node ${rel('examples/node/greeter_client.mjs')}          # uses this package's @grpc/grpc-js
  ${rel('examples/grpcurl.sh')}

Ctrl-C drains and stops.
`;
}
