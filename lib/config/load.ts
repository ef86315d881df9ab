// Builds the one Config from command-line flags, FNGATE_* environment variables and a YAML
// file (--config), in that order of precedence over built-in defaults. A single table of
// settings drives all three sources, the validation and --help, so the sources cannot drift.
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isDns1123Label } from './names.ts';
import { parseDuration } from './duration.ts';
import type { Config, ListenAddress, LogLevel } from './types.ts';

/** A setting that stops start-up; the message is `KEY: REASON`. */
export class ConfigError extends Error {
  /** The flag (`--listen`), environment variable (`FNGATE_LISTEN`) or `FILE: key` at fault. */
  readonly key: string;
  readonly reason: string;
  constructor(key: string, reason: string) {
    super(`${key}: ${reason}`);
    this.name = 'ConfigError';
    this.key = key;
    this.reason = reason;
  }
}

/** Thrown for --help / -h so the CLI can print usage() and exit 0. */
export class HelpRequested extends Error {
  constructor() {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

type Kind = 'string' | 'address' | 'duration' | 'bool' | 'int' | 'ratio' | 'enum' | 'path';

interface Setting<T> {
  /** Flag name without the dashes; also the YAML key and, upper-snaked, the env var. */
  readonly flag: string;
  readonly kind: Kind;
  /** Value placeholder for --help; empty for bool flags, which take no separate value. */
  readonly arg: string;
  readonly help: string;
  /** As text, so it is checked by the same parser as user input and shown as-is in --help. */
  readonly default: string | undefined;
  /** Text (undefined = set nowhere) to value; `base` is where relative paths start. Throws Error(reason). */
  readonly read: (text: string | undefined, base: string) => T;
}

function required<T>(
  flag: string, kind: Kind, arg: string, def: string, help: string, parse: (text: string) => T,
): Setting<T> {
  return { flag, kind, arg, help, default: def, read: (text) => parse(text ?? def) };
}

// Optional settings are only strings (paths and names); absent means undefined, never a default.

function optional(
  flag: string, kind: Kind, arg: string, help: string, parse: (text: string, base: string) => string,
): Setting<string | undefined> {
  const read = (text: string | undefined, base: string) => (text === undefined ? undefined : parse(text, base));
  return { flag, kind, arg, help, default: undefined, read };
}

const address = (flag: string, def: string, help: string): Setting<ListenAddress> =>
  required(flag, 'address', 'ADDR', def, help, parseAddress);

const optionalAddress = (flag: string, help: string): Setting<ListenAddress | undefined> => ({
  flag, kind: 'address', arg: 'ADDR', help, default: undefined,
  read: (text) => (text === undefined ? undefined : parseAddress(text)),
});

const duration = (flag: string, def: string, help: string, positive = false): Setting<number> =>
  required(flag, 'duration', 'DURATION', def, help, (text) => {
    const ms = parseDuration(text);
    if (positive && ms === 0) throw new Error('must be greater than 0s');
    return ms;
  });

const path = (flag: string, arg: string, help: string): Setting<string | undefined> =>
  optional(flag, 'path', arg, help, (text, base) => resolve(base, text));

type Check = (value: string) => void;
const str = (flag: string, arg: string, help: string, check: Check = () => {}): Setting<string | undefined> =>
  optional(flag, 'string', arg, help, (value) => {
    check(value);
    return value;
  });

const bool = (flag: string, help: string): Setting<boolean> =>
  required(flag, 'bool', '', 'false', help, (value) => {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new Error(`expected true, false, 1 or 0, got "${value}"`);
  });

const int = (flag: string, def: string, min: number, max: number, help: string): Setting<number> =>
  required(flag, 'int', 'N', def, `${help}, ${min} to ${max}`, (value) => {
    const n = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!(n >= min && n <= max)) throw new Error(`expected an integer from ${min} to ${max}, got "${value}"`);
    return n;
  });

const ratio = (flag: string, def: string, help: string): Setting<number> =>
  required(flag, 'ratio', 'RATIO', def, `${help}, 0 to 1`, (value) => {
    const n = /^(\d+(\.\d*)?|\.\d+)$/.test(value) ? Number(value) : NaN;
    if (!(n >= 0 && n <= 1)) throw new Error(`expected a number from 0 to 1, got "${value}"`);
    return n;
  });

/** off, stdout, stderr, or a file (relative paths from the directory of the file that names it). */
const accessLogTarget = (flag: string, help: string): Setting<string> => ({
  flag,
  kind: 'path',
  arg: 'off|stdout|stderr|FILE',
  help,
  default: 'off',
  read: (text, base) => {
    const value = text ?? 'off';
    return value === 'off' || value === 'stdout' || value === 'stderr' ? value : resolve(base, value);
  },
});

const oneOf = <T extends string>(flag: string, arg: string, values: readonly T[], def: T, help: string): Setting<T> =>
  required(flag, 'enum', arg, def, `${help}: ${values.join('|')}`, (value) => {
    const found = values.find((v) => v === value);
    if (found === undefined) throw new Error(`expected one of ${values.join(', ')}, got "${value}"`);
    return found;
  });

/** Parses `host:port`, `[v6]:port` or `:port` (all interfaces); port 0 asks the OS for a free one. */
export function parseAddress(text: string): ListenAddress {
  const expected = `expected host:port, [ipv6]:port or :port, got "${text}"`;
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw new Error(expected);
  const hostPart = text.slice(0, colon);
  const portPart = text.slice(colon + 1);
  let host: string;
  if (hostPart === '') host = '0.0.0.0';
  else if (hostPart.startsWith('[') && hostPart.endsWith(']')) {
    host = hostPart.slice(1, -1);
    if (!isIPv6(host)) throw new Error(`"${host}" is not an IPv6 address; ${expected}`);
  } else if (hostPart.includes(':')) {
    throw new Error(`an IPv6 address needs brackets, as in [::1]:10081; ${expected}`);
  } else if (/^[A-Za-z0-9.-]+$/.test(hostPart)) host = hostPart;
  else throw new Error(`invalid host "${hostPart}"; ${expected}`);
  const port = /^\d{1,5}$/.test(portPart) ? Number(portPart) : NaN;
  if (!(port <= 65535)) throw new Error(`invalid port "${portPart}", expected 0 to 65535`);
  return Object.freeze({ host, port, text });
}

function checkHttpUrl(value: string): void {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw new Error(`expected an http:// or https:// URL, got "${value}"`);
  }
}

function checkHostPort(value: string): void {
  if (!/^[A-Za-z0-9.-]+:\d{1,5}$/.test(value) || Number(value.slice(value.lastIndexOf(':') + 1)) > 65535) {
    throw new Error(`expected host:port (a DNS name or IPv4 address and a port), got "${value}"`);
  }
}

function checkNamespace(value: string): void {
  if (!isDns1123Label(value)) {
    throw new Error(`"${value}" is not a valid Kubernetes namespace (lowercase RFC 1123 label)`);
  }
}

const logLevels = ['debug', 'info', 'warn', 'error'] as const satisfies readonly LogLevel[];

// The table. Its type makes the compiler check one setting of the right type per Config field.
// Order here is the order in --help.
const settings: { readonly [F in keyof Config]: Setting<Config[F]> } = {
  configFile: path('config', 'FILE', 'YAML file of settings, keyed by flag name without dashes'),
  listen: address('listen', '0.0.0.0:10081', 'plaintext h2c (prior knowledge) listener'),
  tlsListen: address('tls-listen', '0.0.0.0:10443', 'TLS listener, opened when --tls-cert and --tls-key are set'),
  tlsCert: path('tls-cert', 'FILE', 'TLS certificate chain (PEM), reloaded when it changes'),
  tlsKey: path('tls-key', 'FILE', 'TLS private key (PEM), reloaded when it changes'),
  functions: path('functions', 'DIR', 'directory of Function YAML files (local mode)'),
  kubernetes: bool('kubernetes', 'watch Function resources in Kubernetes'),
  namespace: str('namespace', 'NS', 'Kubernetes namespace to watch; default all', checkNamespace),
  apiKeys: path('api-keys', 'FILE', 'API keys YAML file'),
  jwksUrl: str('jwks-url', 'URL', 'JWKS URL for verifying JWTs', checkHttpUrl),
  jwksFile: path('jwks-file', 'FILE', 'JWKS file for verifying JWTs'),
  jwtIssuer: str('jwt-issuer', 'ISSUER', 'required JWT "iss"'),
  jwtAudience: str('jwt-audience', 'AUDIENCE', 'required JWT "aud"'),
  idleTimeoutMs: duration('idle-timeout', '30s', 'close client connections with no open stream after this', true),
  maxConnectionsPerIp: int('max-connections-per-ip', '1000', 0, 1_000_000, 'client connections one IP address may hold open (0 = unlimited)'),
  drainTimeoutMs: duration('drain-timeout', '30s', 'on SIGTERM, let open streams finish for this long'),
  sessionLingerMs: duration('session-linger', '30s', 'how long an ended session can be resumed'),
  sessionKeyFile: path('session-key-file', 'FILE', 'secrets sealing session ids, one per line, shared by all replicas (default: a key of this process only)'),
  maxConnectionAgeMs: duration('max-connection-age', '0s', 'GOAWAY to client connections older than this, ±10% (0s = never)'),
  admin: address('admin', '0.0.0.0:9090', 'admin HTTP listener: /healthz, /readyz, /metrics'),
  scalerListen: optionalAddress('scaler-listen', "KEDA external scaler (gRPC): sessions per function version, for scaling from and to zero"),
  scalerAddress: str('scaler-address', 'HOST:PORT', 'where KEDA reaches --scaler-listen (the scaler Service); written into the ScaledObjects the gateway keeps', checkHostPort),
  workers: int('workers', '1', 1, 256, 'worker processes'),
  logLevel: oneOf('log-level', 'LEVEL', logLevels, 'info', 'minimum level of log lines'),
  accessLog: accessLogTarget('access-log', 'one JSON line per RPC: off, stdout, stderr or a file (appended)'),
  accessLogSample: ratio('access-log-sample', '1', 'share of successful RPCs in the access log (errors are always logged)'),
  debugSessions: bool('debug-sessions', 'serve admin /debug/sessions: live sessions per endpoint'),
};

type Field = keyof Config;
// Object.keys loses the key type; the table's type guarantees these are exactly Config's keys.
const fields = Object.keys(settings) as Field[];
const byFlag = new Map<string, Field>(fields.map((f) => [settings[f].flag, f]));

const envName = (flag: string): string => `FNGATE_${flag.toUpperCase().replaceAll('-', '_')}`;

/** A value as given, with the key to blame in messages and the directory relative paths start from. */
interface Raw {
  readonly text: string;
  readonly key: string;
  readonly base: string;
}
type Source = Map<Field, Raw>;

/** Loads, validates and deep-freezes the configuration; argv are the arguments after the subcommand. */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Config {
  // Help wins over any other mistake on the same command line.
  if (argv.some((arg) => arg === '--help' || arg === '-h')) throw new HelpRequested();
  const cwd = process.cwd();
  const flags = readFlags(argv, cwd);
  const environment = readEnv(env, cwd);
  const given = flags.get('configFile') ?? environment.get('configFile');
  const configFile = resolveValue('configFile', given, cwd);
  const fromFile = configFile === undefined ? new Map<Field, Raw>() : readFile(configFile, given?.key ?? '--config');
  const pick = (field: Field): Raw | undefined => flags.get(field) ?? environment.get(field) ?? fromFile.get(field);

  type Mutable<T> = { -readonly [K in keyof T]: T[K] };
  const config = {} as Mutable<Config>;
  const assign = <F extends Field>(field: F): void => {
    config[field] = resolveValue(field, pick(field), cwd);
  };
  for (const field of fields) assign(field);
  checkCombinations(config, (field) => pick(field)?.key ?? `--${settings[field].flag}`);
  return Object.freeze(config);
}

function resolveValue<F extends Field>(field: F, raw: Raw | undefined, cwd: string): Config[F] {
  const setting = settings[field];
  if (raw?.text === '') throw new ConfigError(raw.key, 'missing value');
  try {
    return setting.read(raw?.text, raw?.base ?? cwd);
  } catch (err) {
    throw new ConfigError(raw?.key ?? `default of --${setting.flag}`, err instanceof Error ? err.message : String(err));
  }
}

function readFlags(argv: readonly string[], cwd: string): Source {
  const out: Source = new Map();
  let bareBool: string | undefined; // the previous argument, if it was a bool flag without "="
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('-') || arg === '-' || arg === '--') {
      if (bareBool !== undefined && /^(true|false|1|0)$/.test(arg)) {
        throw new ConfigError(bareBool, `takes no separate value; write ${bareBool}=${arg}`);
      }
      throw new ConfigError(`argument "${arg}"`, 'unexpected; settings are given as --flag value or --flag=value');
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const field = name.startsWith('--') ? byFlag.get(name.slice(2)) : undefined;
    if (field === undefined) throw new ConfigError(name, `unknown flag${didYouMean(name.replace(/^--?/, ''), '--')}`);
    const setting = settings[field];
    let value: string;
    bareBool = setting.kind === 'bool' && eq < 0 ? name : undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (setting.kind === 'bool') value = 'true';
    else {
      const next = argv[i + 1];
      // A following flag means the value was forgotten; such values need the --flag=value form.
      if (next === undefined || (next.startsWith('-') && next !== '-')) {
        throw new ConfigError(name, `missing value; expected ${name} ${setting.arg}`);
      }
      value = next;
      i++;
    }
    out.set(field, { text: value, key: name, base: cwd });
  }
  return out;
}

// An empty variable counts as unset, as is usual for env vars rendered from templates.
function readEnv(env: NodeJS.ProcessEnv, cwd: string): Source {
  const out: Source = new Map();
  for (const field of fields) {
    const key = envName(settings[field].flag);
    const text = env[key];
    if (text !== undefined && text !== '') out.set(field, { text, key, base: cwd });
  }
  return out;
}

function readFile(file: string, key: string): Source {
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(key, `cannot read config file: ${err instanceof Error ? err.message : String(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(source);
  } catch (err) {
    throw new ConfigError(file, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`);
  }
  const out: Source = new Map();
  if (doc === null || doc === undefined) return out; // empty or all comments
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(file, 'expected a mapping of setting names to values, such as "listen: :10081"');
  }
  const base = dirname(file);
  for (const [name, value] of Object.entries(doc)) {
    const at = `${file}: ${name}`;
    const field = byFlag.get(name);
    if (field === 'configFile') throw new ConfigError(at, 'a config file cannot name another config file');
    if (field === undefined) throw new ConfigError(at, `unknown key${didYouMean(name, '')}`);
    if (value === null) continue; // "key:" with nothing after it leaves the setting unset
    if (typeof value === 'object') throw new ConfigError(at, 'expected a single value, not a list or mapping');
    out.set(field, { text: String(value), key: at, base });
  }
  return out;
}

/** Rules that span settings; `keyOf` names whichever source set a field. */
function checkCombinations(c: Config, keyOf: (field: Field) => string): void {
  const flag = (field: Field) => `--${settings[field].flag}`;
  const requires = (field: Field, other: string) => new ConfigError(keyOf(field), `requires ${other} as well`);
  const conflict = (a: Field, b: Field) => new ConfigError(keyOf(a), `cannot be combined with ${keyOf(b)}`);
  if (c.tlsCert !== undefined && c.tlsKey === undefined) throw requires('tlsCert', flag('tlsKey'));
  if (c.tlsKey !== undefined && c.tlsCert === undefined) throw requires('tlsKey', flag('tlsCert'));
  if (c.functions !== undefined && c.kubernetes) throw conflict('functions', 'kubernetes');
  if (c.jwksUrl !== undefined && c.jwksFile !== undefined) throw conflict('jwksUrl', 'jwksFile');
  if (c.namespace !== undefined && !c.kubernetes) throw requires('namespace', flag('kubernetes'));
  // Without a key set no token can verify, so an issuer or audience alone is surely a mistake.
  const jwks = `${flag('jwksUrl')} or ${flag('jwksFile')}`;
  const hasJwks = c.jwksUrl !== undefined || c.jwksFile !== undefined;
  if (c.jwtIssuer !== undefined && !hasJwks) throw requires('jwtIssuer', jwks);
  if (c.jwtAudience !== undefined && !hasJwks) throw requires('jwtAudience', jwks);
  // Worker processes share the scaler's port; only replica Leases let each answer for all of them.
  if (c.scalerListen !== undefined && c.workers > 1 && !c.kubernetes) {
    throw new ConfigError(keyOf('scalerListen'), `with ${keyOf('workers')} above 1 requires ${flag('kubernetes')} (workers publish their session counts in Kubernetes Leases)`);
  }
  if (c.scalerAddress !== undefined && c.scalerListen === undefined) throw requires('scalerAddress', flag('scalerListen'));
}

/** " (did you mean --x?)" when a known setting is a near typo of `name`, else "". */
function didYouMean(name: string, prefix: string): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const known of byFlag.keys()) {
    const d = editDistance(name, known);
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  const near = bestDistance <= Math.min(2, Math.floor(name.length / 3));
  return best !== undefined && near ? ` (did you mean ${prefix}${best}?)` : '';
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = (row[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      next.push(Math.min(substitute, (row[j] ?? 0) + 1, (next[j - 1] ?? 0) + 1));
    }
    row = next;
  }
  return row[b.length] ?? 0;
}

/** The --help text: every flag with its placeholder, help, default and environment variable. */
export function usage(command = 'fngate serve'): string {
  const column = 30;
  const lines = [
    `Usage: ${command} [flags]`,
    '',
    'Every flag can also be set by the environment variable shown, or by a key of the',
    '--config YAML file (the flag name without dashes). Flags win over the environment,',
    'which wins over the file. Relative paths in the file are relative to the file.',
    '',
    'Flags:',
  ];
  for (const s of Object.values(settings)) {
    const head = `  --${s.flag}${s.arg === '' ? '' : ` ${s.arg}`}`;
    const def = s.default === undefined || s.kind === 'bool' ? '' : ` (default ${s.default})`;
    const pad = head.length < column ? head.padEnd(column) : `${head}\n${' '.repeat(column)}`;
    lines.push(`${pad}${s.help}${def}`, `${' '.repeat(column)}env ${envName(s.flag)}`);
  }
  lines.push('  -h, --help'.padEnd(column) + 'show this help');
  return `${lines.join('\n')}\n`;
}
