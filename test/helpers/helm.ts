// The helm binary and the chart for the tests that run helm (test/helm/*, kube-fixtures.ts):
// helm comes from `make helm-tools` (.cache/bin/helm; FNGATE_HELM overrides). helm runs
// without user state: its cache, config and data live in the test's scratch dir.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHART_DIR = join(REPO_ROOT, 'deploy/helm/fngate');
export const HELM_BIN = process.env['FNGATE_HELM'] ?? join(REPO_ROOT, '.cache/bin/helm');

/** Throws (with how to get it) when the helm binary is missing. */
export function requireHelm(): void {
  if (!existsSync(HELM_BIN)) throw new Error(`${HELM_BIN} is missing: run \`make helm-tools\` first`);
}

/**
 * The environment for helm: ours without HELM_* and KUBECONFIG, helm's cache, config and data
 * under `work`, and KUBECONFIG `kubeconfig` when given.
 */
export function helmEnv(work: string, kubeconfig?: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('HELM_') && k !== 'KUBECONFIG') env[k] = v;
  Object.assign(env, { HELM_CACHE_HOME: join(work, 'helm/cache'), HELM_CONFIG_HOME: join(work, 'helm/config'), HELM_DATA_HOME: join(work, 'helm/data') });
  if (kubeconfig !== undefined) env['KUBECONFIG'] = kubeconfig;
  return env;
}

export type Values = Record<string, unknown>;

export interface HelmRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Helm {
  /** Runs helm with `args`; never rejects. */
  run(args: string[]): Promise<HelmRun>;
  /** Writes `values` as YAML to a new file `<stem>-N.yaml` in `work`; returns its path. */
  valuesFile(values: Values, stem?: string): string;
}

/**
 * helm in scratch dir `work` (the caller removes it) against `kubeconfig`; with `timeoutMs`,
 * a helm still running then is killed (SIGKILL).
 */
export function helmIn(work: string, opts: { kubeconfig: string; timeoutMs?: number }): Helm {
  let nfiles = 0;
  return {
    run: (args) =>
      new Promise((resolve) => {
        const child = spawn(HELM_BIN, args, { env: helmEnv(work, opts.kubeconfig), stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        const timer = opts.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
        child.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
      }),
    valuesFile: (values, stem = 'values') => {
      const file = join(work, `${stem}-${nfiles++}.yaml`);
      writeFileSync(file, stringify(values));
      return file;
    },
  };
}
