// `fngate keys create`: argument handling around api-key-create.ts. The record goes to
// stdout so it can be redirected or piped (`| kubectl apply -f -`); the key goes to stderr,
// so it reaches the operator's terminal but never the file or the cluster.
import { KEY_SECRET_NAME_PREFIX } from '../registry/api-key-format.ts';
import { ID_PATTERN, ID_RULE, isDns1123Label } from '../config/names.ts';
import { createApiKey, renderKeyFileRecord, renderKeySecret } from './api-key-create.ts';

export const KEYS_USAGE = `Usage: fngate keys create --name NAME [--functions ID,...] [--output file|secret] [--namespace NS]

Makes a new random API key. The key is printed once, on stderr; only its SHA-256 is kept.

  --name NAME       lower-case a-z, 0-9, '-', '.'; also names the Secret (${KEY_SECRET_NAME_PREFIX}NAME)
  --functions IDS   comma-separated function ids the key may invoke, or '*' for all (default '*')
  --output FORMAT   file: an entry for the --api-keys file, to add under 'keys:' (default)
                    secret: a Kubernetes Secret, e.g. ... --output secret | kubectl apply -f -
  --namespace NS    namespace of the Secret (--output secret only)
`;

const FLAGS = ['name', 'functions', 'output', 'namespace'] as const;
type Flag = (typeof FLAGS)[number];
const isFlag = (s: string): s is Flag => (FLAGS as readonly string[]).includes(s);

class UsageError extends Error {}

/** `--flag value` and `--flag=value`; every flag takes a value and may be given once. */
function parseFlags(args: readonly string[]): Partial<Record<Flag, string>> {
  const flags: Partial<Record<Flag, string>> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    if (m === null) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const flag = m[1] ?? '';
    if (!isFlag(flag)) throw new UsageError(`--${flag}: unknown flag`);
    if (flags[flag] !== undefined) throw new UsageError(`--${flag}: given more than once`);
    let value = m[2];
    if (value === undefined) {
      value = args[i + 1];
      // `--name --functions x` is a forgotten value, not a name starting with "--".
      if (value === undefined || value.startsWith('--')) throw new UsageError(`--${flag}: needs a value`);
      i++;
    }
    flags[flag] = value;
  }
  return flags;
}

function parseFunctions(list: string): '*' | string[] {
  const ids = list.split(',').map((s) => s.trim());
  for (const id of ids) {
    if (id === '') throw new UsageError(`--functions: empty function id in ${JSON.stringify(list)}`);
    if (id !== '*' && !ID_PATTERN.test(id)) throw new UsageError(`--functions: function id ${JSON.stringify(id)} ${ID_RULE}`);
  }
  return ids.includes('*') ? '*' : ids;
}

function create(args: readonly string[], out: (s: string) => void, err: (s: string) => void): void {
  const flags = parseFlags(args);
  const name = flags.name;
  if (name === undefined) throw new UsageError('--name: required');
  const functions = parseFunctions(flags.functions ?? '*');
  const output = flags.output ?? 'file';
  if (output !== 'file' && output !== 'secret') throw new UsageError(`--output: ${JSON.stringify(output)} must be file or secret`);
  const namespace = flags.namespace;
  if (namespace !== undefined) {
    if (output !== 'secret') throw new UsageError('--namespace: only applies to --output secret');
    if (!isDns1123Label(namespace)) throw new UsageError(`--namespace: ${JSON.stringify(namespace)} is not a Kubernetes namespace name`);
  }

  let made: ReturnType<typeof createApiKey>;
  try {
    made = createApiKey({ name, functions });
  } catch (e) {
    // Function ids were checked above, so what is left is about the name.
    throw new UsageError(`--name: ${e instanceof Error ? e.message : String(e)}`);
  }
  out(output === 'secret' ? renderKeySecret(made.record, namespace) : renderKeyFileRecord(made.record));
  err(
    `API key ${JSON.stringify(name)} (shown only once; only its SHA-256 is stored):\n` +
      `  ${made.key}\n` +
      `Send it with every call as the metadata "authorization: Bearer ${made.key}".\n` +
      (output === 'secret'
        ? 'Register it by applying the Secret printed on stdout (kubectl apply -f -).\n'
        : "Register it by adding the entry printed on stdout under 'keys:' in the --api-keys file.\n"),
  );
}

/**
 * `fngate keys ...` with argv the arguments after `keys`. Writes whole lines (ending in
 * "\n") to out/err. Returns the exit code: 0, or 2 for a usage error (reported on err).
 */
export function runKeysCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): number {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h' || sub === 'help' || rest.includes('--help') || rest.includes('-h')) {
    out(KEYS_USAGE);
    return 0;
  }
  try {
    if (sub === undefined) throw new UsageError('missing subcommand (create)');
    if (sub !== 'create') throw new UsageError(`unknown subcommand ${JSON.stringify(sub)} (expected create)`);
    create(rest, out, err);
    return 0;
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`fngate keys: ${e.message}\nRun "fngate keys --help" for usage.\n`);
    return 2;
  }
}
