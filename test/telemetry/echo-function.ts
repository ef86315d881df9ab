// The set-up access-log.test.ts and tracing.test.ts share: in the test's dir, an Echo backend
// as the only endpoint of Function fn-echo (`functions/`), an API key file (`keys.yaml`) and a
// session key file, so the test can open the ids the gateway hands out and find their sid.
import type { Test } from 'tap';
import { join } from 'node:path';
import { startEchoBackend } from '../helpers/backend.ts';
import type { EchoBackend } from '../helpers/backend.ts';
import { writeFunctionsDir, writeKeysFile } from '../helpers/files.ts';
import type { TestKey } from '../helpers/files.ts';
import { writeSessionKeys } from '../helpers/session-ids.ts';

export interface EchoFunction {
  /** t.testdir(). */
  dir: string;
  /** Stopped at teardown. */
  echo: EchoBackend;
  /** The gateway's --functions, --api-keys and --session-key-file. */
  args: string[];
  /** The short session id (what logs and spans carry) inside an nvcf-reqid the gateway sent. */
  sidOf(token: string): string;
}

export async function echoFunction(t: Test, keys: TestKey[]): Promise<EchoFunction> {
  const dir = t.testdir({});
  const fnDir = join(dir, 'functions');
  const keysFile = join(dir, 'keys.yaml');
  const echo = await startEchoBackend({ name: 'echo' });
  t.teardown(() => echo.stop(1000));
  writeFunctionsDir(fnDir, [{ name: 'echo', functionId: 'fn-echo', activeVersion: 'v1', versions: [{ versionId: 'v1', endpoints: [echo.address] }] }]);
  writeKeysFile(keysFile, keys);
  const sessionKeys = writeSessionKeys(dir);
  return { dir, echo, args: ['--functions', fnDir, '--api-keys', keysFile, '--session-key-file', sessionKeys.path], sidOf: sessionKeys.sidOf };
}
