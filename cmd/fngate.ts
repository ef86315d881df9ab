#!/usr/bin/env node
// fngate: serve | local | keys. Start-up errors print one line naming what was wrong and
// exit non-zero; SIGTERM/SIGINT drain (GOAWAY, open streams finish) and exit 0.
import type { Cluster } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { ConfigError, HelpRequested, loadConfig, usage } from '../lib/config/load.ts';
import type { Config } from '../lib/config/types.ts';
import { startServe, type ServeOptions } from '../lib/serve/serve.ts';
import { createLogger, type Logger } from '../lib/telemetry/log.ts';

const USAGE = `Usage: fngate <command> [flags]

Commands:
  serve    run the gateway (see: fngate serve --help)
  local    the embedded default: serve + an example Greeter function + a demo key
  keys     create API keys (see: fngate keys --help)
`;

// A log line that cannot be written (full disk, closed pipe) is lost, never fatal: without a
// listener a failed write to stdout/stderr would be an unhandled 'error' and end the process.
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'local':
      return local(rest);
    case 'keys': {
      const { runKeysCommand } = await import('../lib/auth/keys-command.ts');
      return runKeysCommand(rest, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`fngate: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

/** Parses flags; undefined when start-up should stop with `code`. */
function config(argv: readonly string[], command: string): Config | number {
  try {
    return loadConfig(argv, process.env);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(usage(`fngate ${command}`));
      return 0;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`fngate: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function serve(argv: readonly string[]): Promise<number> {
  const cfg = config(argv, 'serve');
  if (typeof cfg === 'number') return cfg;
  const log = createLogger(cfg.logLevel);
  let options: ServeOptions = {};
  if (cfg.workers > 1) {
    // Loaded only for --workers > 1: with child_process and dgram it is ~1 MiB of RSS that a
    // single process would carry for nothing. Workers run this same command line.
    const { default: cluster } = await import('node:cluster');
    if (cluster.isPrimary) return supervise(cluster, cfg.workers, log);
    options = workerOptions(cfg.workers);
  }
  const running = await startServe(cfg, log, options);
  return untilSignal(log, () => running.drain());
}

async function local(argv: readonly string[]): Promise<number> {
  const cfg = config(argv, 'local'); // validates the flags (and answers --help) before anything starts
  if (typeof cfg === 'number') return cfg;
  const log = createLogger(cfg.logLevel);
  // Loaded only here: the example backend brings grpc-js, which `serve` has no use for.
  const { localInstructions, startLocal } = await import('../lib/local/local-mode.ts');
  const running = await startLocal(argv, process.env, log);
  process.stdout.write(localInstructions(running));
  return untilSignal(log, () => running.stop());
}

/**
 * What the primary hands each worker: one session secret for all (without --session-key-file)
 * so ids resume on any of them, and the worker's number, for its share of session caps.
 */
const WORKER_SESSION_SECRET = 'FNGATE_WORKER_SESSION_SECRET';
const WORKER_INDEX = 'FNGATE_WORKER_INDEX';

function workerOptions(workers: number): ServeOptions {
  return {
    sessionSecret: process.env[WORKER_SESSION_SECRET],
    worker: { index: Number(process.env[WORKER_INDEX] ?? 0), count: workers },
  };
}

/** --workers N: N processes share the listeners (the primary only supervises). */
function supervise(cluster: Cluster, workers: number, log: Logger): Promise<number> {
  const secret = randomBytes(32).toString('hex');
  let stopping = false;
  const fork = (index: number): void => {
    cluster.fork({ [WORKER_SESSION_SECRET]: secret, [WORKER_INDEX]: String(index) }).once('exit', (code, signal) => {
      if (stopping) return;
      // A replacement takes the same number: the shares stay dealt out as they were.
      log.error('worker exited; starting another', { index, code, signal });
      fork(index);
    });
  };
  for (let i = 0; i < workers; i++) fork(i);
  return new Promise((resolve) => {
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
      cluster.on('exit', () => {
        if (Object.keys(cluster.workers ?? {}).length === 0) resolve(0);
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

/** Runs until SIGTERM/SIGINT, then drains; a second signal exits at once. */
function untilSignal(log: Logger, drain: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info('signal received, draining', { signal });
      process.once(signal, () => {
        log.warn('second signal: exiting without waiting for open streams');
        process.exit(1);
      });
      drain().then(
        () => resolve(0),
        (err: Error) => {
          log.error('drain failed', { error: err.message });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`fngate: ${err.message}\n`);
    process.exit(1);
  },
);
