// Runs test/python/echo_client.py (grpcio, from `make tools`) and parses its JSON output.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MetadataRecord } from './echo-client.ts';

export const PYTHON = fileURLToPath(new URL('../../.cache/venv/bin/python', import.meta.url));
export const ECHO_CLIENT_PY = fileURLToPath(new URL('../python/echo_client.py', import.meta.url));

/** One call's outcome, as echo_client.py prints it. */
export interface PyCall {
  /** "OK" or the status name, e.g. "UNAVAILABLE". */
  code: string;
  code_value: number;
  details: string;
  /** From the first reply; null without one. */
  backend: string | null;
  received_bytes: number | null;
  received_messages: number | null;
  backend_metadata: string | null;
  replies: number;
  reply_bytes: number;
  /** `-bin` values in base64; repeated keys joined with ", ". */
  initial_metadata: Record<string, string>;
  trailing_metadata: Record<string, string>;
  channel: number;
  elapsed_ms: number;
  /** When the call started: wall clock, ms since the epoch. */
  started_at_ms: number;
}

export interface PyResult {
  calls: PyCall[];
}

/** `-H key=value` arguments for echo_client.py (`-bin` values as Buffers, sent base64). */
export function pyHeaderArgs(md: MetadataRecord): string[] {
  return Object.entries(md).flatMap(([k, v]) => ['-H', `${k}=${typeof v === 'string' ? v : v.toString('base64')}`]);
}

/**
 * `echo_client.py ...args`, e.g. `['--target', addr, '-H', 'k=v', 'unary', '--calls', '3']`.
 * Rejects (with stderr) on a non-zero exit or after `timeoutMs` (default 60 s).
 */
export function runPythonClient(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<PyResult> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [ECHO_CLIENT_PY, ...args],
      { timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`echo_client.py ${args.join(' ')}: ${err.killed ? 'timed out' : `exit ${err.code ?? err.signal}`}\n${stderr}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as PyResult);
        } catch {
          reject(new Error(`echo_client.py ${args.join(' ')}: output is not JSON\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}
