import { join, relative, resolve } from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError, HelpRequested, loadConfig, parseAddress, usage } from '../../lib/config/load.ts';
import type { Config } from '../../lib/config/types.ts';

type Env = NodeJS.ProcessEnv;
const cwd = process.cwd();

/** The ConfigError loadConfig throws; fails the test run if it throws nothing or something else. */
function errorOf(argv: readonly string[], env: Env = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

/** Writes a config file in a fresh test directory and returns its absolute path. */
function configFile(t: Test, yaml: string, name = 'fngate.yaml'): string {
  const dir = t.testdir({ [name]: yaml });
  return join(dir, name);
}

t.test('defaults', async (t) => {
  const c = loadConfig([], {});
  t.same(c, {
    configFile: undefined,
    listen: { host: '0.0.0.0', port: 10081, text: '0.0.0.0:10081' },
    tlsListen: { host: '0.0.0.0', port: 10443, text: '0.0.0.0:10443' },
    tlsCert: undefined,
    tlsKey: undefined,
    functions: undefined,
    kubernetes: false,
    namespace: undefined,
    apiKeys: undefined,
    jwksUrl: undefined,
    jwksFile: undefined,
    jwtIssuer: undefined,
    jwtAudience: undefined,
    idleTimeoutMs: 30_000,
    maxConnectionsPerIp: 1000,
    drainTimeoutMs: 30_000,
    sessionLingerMs: 30_000,
    sessionKeyFile: undefined,
    maxConnectionAgeMs: 0,
    admin: { host: '0.0.0.0', port: 9090, text: '0.0.0.0:9090' },
    scalerListen: undefined,
    scalerAddress: undefined,
    workers: 1,
    logLevel: 'info',
    accessLog: 'off',
    accessLogSample: 1,
    debugSessions: false,
  } satisfies Config);
});

t.test('the result is deep-frozen', async (t) => {
  const c = loadConfig(['--listen', '127.0.0.1:0'], {});
  t.ok(Object.isFrozen(c));
  for (const a of [c.listen, c.tlsListen, c.admin]) t.ok(Object.isFrozen(a), a.text);
  t.throws(() => {
    Object.assign(c, { workers: 2 });
  }, TypeError);
  t.throws(() => {
    Object.assign(c.listen, { port: 1 });
  }, TypeError);
});

// One row per setting: its flag, env var and YAML key, a value and the Config it gives.
// Each row is checked through all three sources, so a setting missing from one shows up here.
const base = '/abs';
const everySetting: [flag: string, value: string, expect: Partial<Config>][] = [
  ['listen', '127.0.0.1:8080', { listen: { host: '127.0.0.1', port: 8080, text: '127.0.0.1:8080' } }],
  ['tls-listen', ':8443', { tlsListen: { host: '0.0.0.0', port: 8443, text: ':8443' } }],
  ['tls-cert', `${base}/tls.crt`, { tlsCert: `${base}/tls.crt` }],
  ['tls-key', `${base}/tls.key`, { tlsKey: `${base}/tls.key` }],
  ['functions', `${base}/functions`, { functions: `${base}/functions` }],
  ['kubernetes', 'true', { kubernetes: true }],
  ['namespace', 'team-a', { namespace: 'team-a' }],
  ['api-keys', `${base}/keys.yaml`, { apiKeys: `${base}/keys.yaml` }],
  ['jwks-url', 'https://idp.example/jwks.json', { jwksUrl: 'https://idp.example/jwks.json' }],
  ['jwks-file', `${base}/jwks.json`, { jwksFile: `${base}/jwks.json` }],
  ['jwt-issuer', 'https://idp.example', { jwtIssuer: 'https://idp.example' }],
  ['jwt-audience', 'fngate', { jwtAudience: 'fngate' }],
  ['idle-timeout', '2s', { idleTimeoutMs: 2_000 }],
  ['max-connections-per-ip', '0', { maxConnectionsPerIp: 0 }],
  ['drain-timeout', '1m30s', { drainTimeoutMs: 90_000 }],
  ['session-linger', '500ms', { sessionLingerMs: 500 }],
  ['session-key-file', `${base}/session.key`, { sessionKeyFile: `${base}/session.key` }],
  ['max-connection-age', '10m', { maxConnectionAgeMs: 600_000 }],
  ['admin', '[::1]:0', { admin: { host: '::1', port: 0, text: '[::1]:0' } }],
  ['scaler-listen', ':9443', { scalerListen: { host: '0.0.0.0', port: 9443, text: ':9443' } }],
  ['scaler-address', 'fngate-scaler.fngate.svc:9443', { scalerAddress: 'fngate-scaler.fngate.svc:9443' }],
  ['workers', '8', { workers: 8 }],
  ['log-level', 'debug', { logLevel: 'debug' }],
];
// Settings that are only valid together with another one.
const companions: Record<string, string[]> = {
  'tls-cert': ['--tls-key=/abs/k'],
  'tls-key': ['--tls-cert=/abs/c'],
  namespace: ['--kubernetes'],
  'jwt-issuer': ['--jwks-file=/abs/j'],
  'jwt-audience': ['--jwks-file=/abs/j'],
  'scaler-address': ['--scaler-listen=:9443'],
};
const envOf = (flag: string) => `FNGATE_${flag.toUpperCase().replaceAll('-', '_')}`;

t.test('every setting by flag (both forms), environment and config file', async (t) => {
  for (const [flag, value, expect] of everySetting) {
    const extra = companions[flag] ?? [];
    // A bool flag takes no separate value (see 'bool flag forms').
    const spaced = flag === 'kubernetes' ? [`--${flag}`] : [`--${flag}`, value];
    t.match(loadConfig([...extra, ...spaced], {}), expect, `--${flag} VALUE`);
    t.match(loadConfig([...extra, `--${flag}=${value}`], {}), expect, `--${flag}=VALUE`);
    t.match(loadConfig(extra, { [envOf(flag)]: value }), expect, envOf(flag));
    const file = configFile(t, `${flag}: ${JSON.stringify(value)}\n`);
    t.match(loadConfig([...extra, '--config', file], {}), { ...expect, configFile: file }, `yaml ${flag}`);
  }
});

t.test('precedence: flag > environment > file > default', async (t) => {
  const file = configFile(t, 'idle-timeout: 3s\nworkers: 3\nlog-level: warn\nlisten: ":3"\n');
  const env = { FNGATE_IDLE_TIMEOUT: '2s', FNGATE_WORKERS: '2', FNGATE_CONFIG: file };
  const c = loadConfig(['--idle-timeout', '1s'], env);
  t.equal(c.idleTimeoutMs, 1_000, 'flag beats environment and file');
  t.equal(c.workers, 2, 'environment beats file');
  t.equal(c.logLevel, 'warn', 'file beats default');
  t.equal(c.listen.port, 3, 'file beats default');
  t.equal(c.drainTimeoutMs, 30_000, 'default when set nowhere');
  t.equal(c.configFile, file, 'FNGATE_CONFIG names the file');

  const other = configFile(t, 'workers: 7\n', 'other.yaml');
  t.equal(loadConfig(['--config', other], { FNGATE_CONFIG: file }).workers, 7, '--config beats FNGATE_CONFIG');
  t.equal(loadConfig(['--workers=4', '--workers', '5'], {}).workers, 5, 'the last of a repeated flag wins');
});

t.test('bool flag forms', async (t) => {
  t.equal(loadConfig(['--kubernetes'], {}).kubernetes, true);
  for (const [text, value] of [['true', true], ['1', true], ['false', false], ['0', false]] as const) {
    t.equal(loadConfig([`--kubernetes=${text}`], {}).kubernetes, value, `--kubernetes=${text}`);
    t.equal(loadConfig([], { FNGATE_KUBERNETES: text }).kubernetes, value, `FNGATE_KUBERNETES=${text}`);
  }
  t.equal(loadConfig(['--kubernetes=false'], { FNGATE_KUBERNETES: 'true' }).kubernetes, false, 'flag overrides env');
  t.equal(loadConfig(['--config', configFile(t, 'kubernetes: true\n')], {}).kubernetes, true, 'YAML boolean');
  t.equal(loadConfig(['--config', configFile(t, 'kubernetes: 0\n')], {}).kubernetes, false, 'YAML number');

  const e = errorOf(['--kubernetes', 'true']);
  t.equal(e.key, '--kubernetes', 'a separate value after a bool flag is explained');
  t.match(e.message, /takes no separate value; write --kubernetes=true/);
  t.match(errorOf([], { FNGATE_KUBERNETES: 'yes' }), {
    key: 'FNGATE_KUBERNETES',
    message: /^FNGATE_KUBERNETES: expected true, false, 1 or 0, got "yes"/,
  });
});

t.test('YAML scalars of other types are read as their text', async (t) => {
  const file = configFile(t, 'workers: 4\nidle-timeout: 1m\ntls-cert:\ntls-key: ~\n');
  const c = loadConfig(['--config', file], {});
  t.equal(c.workers, 4);
  t.equal(c.idleTimeoutMs, 60_000);
  t.equal(c.tlsCert, undefined, 'an empty key leaves the setting unset');
  t.equal(c.tlsKey, undefined, 'null leaves the setting unset');
  t.match(errorOf(['--config', configFile(t, 'idle-timeout: 30\n')]), {
    key: `${file}: idle-timeout`,
    message: /missing unit/,
  });
});

t.test('addresses', async (t) => {
  t.same(parseAddress('localhost:80'), { host: 'localhost', port: 80, text: 'localhost:80' });
  t.same(parseAddress('10.0.0.1:65535'), { host: '10.0.0.1', port: 65535, text: '10.0.0.1:65535' });
  t.same(parseAddress(':0'), { host: '0.0.0.0', port: 0, text: ':0' });
  t.same(parseAddress('[::]:443'), { host: '::', port: 443, text: '[::]:443' });
  t.same(parseAddress('[fe80::1]:1'), { host: 'fe80::1', port: 1, text: '[fe80::1]:1' });

  const bad: [string, RegExp][] = [
    ['localhost', /expected host:port, \[ipv6\]:port or :port, got "localhost"/],
    ['10081', /expected host:port/],
    ['localhost:', /invalid port ""/],
    [':65536', /invalid port "65536", expected 0 to 65535/],
    [':123456', /invalid port/],
    [':http', /invalid port "http"/],
    [':-1', /invalid port "-1"/],
    ['::1:80', /IPv6 address needs brackets/],
    ['[nope]:80', /"nope" is not an IPv6 address/],
    ['ho st:80', /invalid host "ho st"/],
    ['http://x:80', /IPv6 address needs brackets|invalid host/],
  ];
  for (const [text, pattern] of bad) {
    const e = errorOf(['--admin', text]);
    t.equal(e.key, '--admin', text);
    t.match(e.message, pattern, text);
  }
  t.match(errorOf([], { FNGATE_LISTEN: 'nope' }), {
    key: 'FNGATE_LISTEN',
    message: /^FNGATE_LISTEN: expected host:port/,
  });
});

t.test('paths', async (t) => {
  t.test('from flags and environment, relative to the current directory', async (t) => {
    const c = loadConfig(['--tls-cert', 'certs/tls.crt', '--tls-key=/etc/tls.key'], { FNGATE_FUNCTIONS: 'fns' });
    t.equal(c.tlsCert, resolve(cwd, 'certs/tls.crt'));
    t.equal(c.tlsKey, '/etc/tls.key');
    t.equal(c.functions, resolve(cwd, 'fns'));
  });

  t.test('from the config file, relative to the file', async (t) => {
    const dir = t.testdir({
      conf: {
        'fngate.yaml': [
          'tls-cert: tls/tls.crt',
          'tls-key: ../secret/tls.key',
          'functions: fns',
          'api-keys: /etc/fngate/keys.yaml',
          'jwks-file: ./jwks.json',
          '',
        ].join('\n'),
      },
    });
    const file = join(dir, 'conf', 'fngate.yaml');
    // A relative --config is itself relative to the current directory.
    const c = loadConfig(['--config', relative(cwd, file)], { FNGATE_API_KEYS: 'keys.yaml' });
    t.equal(c.configFile, file);
    t.equal(c.tlsCert, join(dir, 'conf', 'tls', 'tls.crt'));
    t.equal(c.tlsKey, join(dir, 'secret', 'tls.key'));
    t.equal(c.functions, join(dir, 'conf', 'fns'));
    t.equal(c.jwksFile, join(dir, 'conf', 'jwks.json'));
    t.equal(c.apiKeys, resolve(cwd, 'keys.yaml'), 'an env override is relative to the current directory');
  });
});

t.test('environment', async (t) => {
  t.equal(loadConfig([], { FNGATE_WORKERS: '' }).workers, 1, 'an empty variable counts as unset');
  // Kubernetes injects service links such as these for a Service named "fngate".
  const links = { FNGATE_PORT: 'tcp://10.0.0.1:10081', FNGATE_SERVICE_HOST: '10.0.0.1', FNGATE_SERVICE_PORT: '10081' };
  t.doesNotThrow(() => loadConfig([], links), 'unrelated FNGATE_* variables are ignored');
});

t.test('command-line errors name the flag', async (t) => {
  const cases: [argv: string[], key: string, pattern: RegExp][] = [
    [['--idle-timout', '1s'], '--idle-timout', /^--idle-timout: unknown flag \(did you mean --idle-timeout\?\)$/],
    [['--tls-crt=x'], '--tls-crt', /did you mean --tls-cert\?/],
    [['-listen', ':1'], '-listen', /unknown flag \(did you mean --listen\?\)/],
    [['--frobnicate'], '--frobnicate', /^--frobnicate: unknown flag$/],
    [['-x'], '-x', /^-x: unknown flag$/],
    [['serve'], 'argument "serve"', /unexpected; settings are given as --flag value or --flag=value/],
    [['--', '--listen'], 'argument "--"', /unexpected/],
    [['--listen'], '--listen', /^--listen: missing value; expected --listen ADDR$/],
    [['--listen', '--admin', ':1'], '--listen', /missing value/],
    [['--listen='], '--listen', /^--listen: missing value$/],
    [['--config='], '--config', /missing value/],
    [['--idle-timeout', 'soon'], '--idle-timeout', /^--idle-timeout: invalid duration "soon"; expected a duration/],
    [['--drain-timeout=-5s'], '--drain-timeout', /negative duration/],
    [['--session-linger', '30'], '--session-linger', /missing unit/],
    [['--idle-timeout', '0s'], '--idle-timeout', /^--idle-timeout: must be greater than 0s$/],
    [['--workers', '0'], '--workers', /^--workers: expected an integer from 1 to 256, got "0"$/],
    [['--workers', '257'], '--workers', /from 1 to 256, got "257"/],
    [['--workers', '2.5'], '--workers', /got "2.5"/],
    [['--workers', 'four'], '--workers', /got "four"/],
    [['--log-level', 'trace'], '--log-level', /^--log-level: expected one of debug, info, warn, error, got "trace"$/],
    [['--log-level', 'INFO'], '--log-level', /got "INFO"/],
    [['--jwks-url', 'ftp://idp/jwks'], '--jwks-url', /expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/idp\/jwks"/],
    [['--jwks-url', 'idp.example/jwks'], '--jwks-url', /expected an http/],
    [['--kubernetes', '--namespace', 'Bad_NS'], '--namespace', /"Bad_NS" is not a valid Kubernetes namespace/],
    [['--scaler-listen', ':1', '--scaler-address', 'http://x:1'], '--scaler-address', /expected host:port .*got "http:\/\/x:1"/],
  ];
  for (const [argv, key, pattern] of cases) {
    const e = errorOf(argv);
    t.equal(e.key, key, argv.join(' '));
    t.match(e.message, pattern, argv.join(' '));
    t.equal(e.name, 'ConfigError');
    t.ok(e.message.startsWith(`${e.key}: ${e.reason}`));
  }
});

t.test('combination errors name the source of each setting', async (t) => {
  const cases: [argv: string[], env: Env, key: string, pattern: RegExp][] = [
    [['--tls-cert', 'c'], {}, '--tls-cert', /^--tls-cert: requires --tls-key as well$/],
    [[], { FNGATE_TLS_KEY: 'k' }, 'FNGATE_TLS_KEY', /^FNGATE_TLS_KEY: requires --tls-cert as well$/],
    [['--functions', 'fns', '--kubernetes'], {}, '--functions', /^--functions: cannot be combined with --kubernetes$/],
    [['--functions', 'fns'], { FNGATE_KUBERNETES: '1' }, '--functions', /cannot be combined with FNGATE_KUBERNETES/],
    [['--jwks-url', 'https://x/j', '--jwks-file', 'j'], {}, '--jwks-url', /cannot be combined with --jwks-file/],
    [['--namespace', 'default'], {}, '--namespace', /^--namespace: requires --kubernetes as well$/],
    [['--namespace', 'default', '--kubernetes=false'], {}, '--namespace', /requires --kubernetes/],
    [['--jwt-issuer', 'i'], {}, '--jwt-issuer', /requires --jwks-url or --jwks-file as well/],
    [[], { FNGATE_JWT_AUDIENCE: 'a' }, 'FNGATE_JWT_AUDIENCE', /requires --jwks-url or --jwks-file/],
    [['--scaler-listen', ':9443', '--workers', '2'], {}, '--scaler-listen', /^--scaler-listen: with --workers above 1 requires --kubernetes/],
    [['--scaler-address', 'a:1'], {}, '--scaler-address', /^--scaler-address: requires --scaler-listen as well$/],
  ];
  for (const [argv, env, key, pattern] of cases) {
    const e = errorOf(argv, env);
    t.equal(e.key, key, key);
    t.match(e.message, pattern, key);
  }
  const file = configFile(t, 'functions: fns\nkubernetes: true\n');
  t.match(errorOf(['--config', file]), {
    key: `${file}: functions`,
    message: `${file}: functions: cannot be combined with ${file}: kubernetes`,
  });
  t.doesNotThrow(() => loadConfig(['--tls-cert', 'c', '--tls-key', 'k', '--kubernetes', '--namespace', 'a'], {}));
});

t.test('config file errors name the file and key', async (t) => {
  t.test('unreadable', async (t) => {
    const missing = join(t.testdir(), 'missing.yaml');
    t.match(errorOf(['--config', missing]), {
      key: '--config',
      message: /^--config: cannot read config file: ENOENT.*missing\.yaml/,
    });
    t.match(errorOf([], { FNGATE_CONFIG: missing }), { key: 'FNGATE_CONFIG', message: /cannot read config file/ });
    t.match(errorOf(['--config', t.testdir()]), { key: '--config', message: /cannot read config file: EISDIR/ });
  });

  t.test('not YAML, or not a mapping', async (t) => {
    const cases: [yaml: string, pattern: RegExp][] = [
      ['listen: [::1]:80\n', /invalid YAML/],
      ['workers: 1\nworkers: 2\n', /invalid YAML: Map keys must be unique/],
      ['- listen: :1\n', /expected a mapping of setting names to values/],
      ['just a string\n', /expected a mapping/],
      ['42\n', /expected a mapping/],
    ];
    for (const [yaml, pattern] of cases) {
      const file = configFile(t, yaml);
      const e = errorOf(['--config', file]);
      t.equal(e.key, file, yaml);
      t.match(e.message, pattern, yaml);
    }
  });

  t.test('keys and values', async (t) => {
    const file = configFile(t, 'idle-timeout: 1s\nidle_timeout: 2s\n');
    t.match(errorOf(['--config', file]), {
      key: `${file}: idle_timeout`,
      message: `${file}: idle_timeout: unknown key (did you mean idle-timeout?)`,
    });
    const camel = configFile(t, 'logLevel: debug\n');
    t.match(errorOf(['--config', camel]), { key: `${camel}: logLevel`, message: /unknown key/ });
    const nested = configFile(t, 'config: other.yaml\n');
    t.match(errorOf(['--config', nested]), { key: `${nested}: config`, message: /cannot name another config file/ });
    const list = configFile(t, 'functions: [a, b]\n');
    t.match(errorOf(['--config', list]), {
      key: `${list}: functions`,
      message: /expected a single value, not a list or mapping/,
    });
    const bad = configFile(t, 'workers: many\n');
    t.match(errorOf(['--config', bad]), {
      key: `${bad}: workers`,
      message: `${bad}: workers: expected an integer from 1 to 256, got "many"`,
    });
    const empty = configFile(t, 'jwt-issuer: ""\n');
    t.match(errorOf(['--config', empty]), { key: `${empty}: jwt-issuer`, message: /missing value/ });
  });

  t.test('an empty or all-comment file is an empty mapping', async (t) => {
    for (const yaml of ['', '# nothing yet\n']) {
      const file = configFile(t, yaml);
      t.equal(loadConfig(['--config', file], {}).configFile, file);
    }
  });

  t.test('only the winning value is checked', async (t) => {
    const file = configFile(t, 'workers: 0\n');
    t.equal(loadConfig(['--config', file, '--workers', '2'], {}).workers, 2);
  });
});

t.test('help', async (t) => {
  t.throws(() => loadConfig(['--help'], {}), HelpRequested);
  t.throws(() => loadConfig(['-h'], {}), HelpRequested);
  t.throws(() => loadConfig(['--bogus', '--help'], {}), HelpRequested, 'help wins over other mistakes');

  const text = usage();
  t.match(text, /^Usage: fngate serve \[flags\]/);
  t.match(usage('fngate local'), /^Usage: fngate local \[flags\]/);
  for (const [flag] of everySetting) {
    t.match(text, `--${flag}`, `lists --${flag}`);
    t.match(text, envOf(flag), `lists ${envOf(flag)}`);
  }
  t.match(text, '--config FILE');
  t.match(text, 'FNGATE_CONFIG');
  for (const def of ['0.0.0.0:10081', '0.0.0.0:10443', '0.0.0.0:9090', '(default 30s)', '(default 1)', '(default info)']) {
    t.match(text, def, `shows default ${def}`);
  }
  t.match(text, /--help/);
});
