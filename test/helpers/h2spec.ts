// Runs h2spec (built by `make conformance-tools`, make/conformance.mk) against a server and
// reads its JUnit report: each case with its section id, description and h2spec's own
// expected/actual text. Shared by the conformance test of the gateway's listeners and by
// lib/h2's own conformance test.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const H2SPEC = process.env['H2SPEC'] ?? fileURLToPath(new URL('../../.cache/bin/h2spec', import.meta.url));
if (!existsSync(H2SPEC)) throw new Error(`${H2SPEC} is missing: run \`make conformance-tools\` (make test does)`);

/** The sections of h2spec's 146 cases. */
export const SECTIONS = ['generic', 'http2', 'hpack'];

export interface H2specCase {
  /** `http2/6.9.1/2`: the section's id and the case's number in it, as h2spec numbers them. */
  id: string;
  /** `6.9.1. The Flow Control Window: Sends SETTINGS frame to set the initial window size ...` */
  description: string;
  failed: boolean;
  skipped: boolean;
  /** h2spec's expected/actual text of a failure. */
  detail: string;
}

/** Undoes Go's encoding/xml escaping. */
function unescapeXml(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(Number(e.slice(1)));
    return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[e] ?? '';
  });
}

/** h2spec's JUnit report (reporter/junit_report.go): testsuites > testsuite > testcase. */
function parseJUnit(xml: string): H2specCase[] {
  const sectionNames = new Map<string, string>();
  for (const m of xml.matchAll(/<testsuite name="([^"]*)" package="([^"]*)"/g)) sectionNames.set(unescapeXml(m[2] ?? ''), unescapeXml(m[1] ?? ''));
  const numbers = new Map<string, number>();
  const cases: H2specCase[] = [];
  for (const m of xml.matchAll(/<testcase package="([^"]*)" classname="([^"]*)" time="[^"]*">([\s\S]*?)<\/testcase>/g)) {
    const pkg = unescapeXml(m[1] ?? '');
    const n = (numbers.get(pkg) ?? 0) + 1;
    numbers.set(pkg, n);
    const body = m[3] ?? '';
    const problem = /<(failure|error)>([\s\S]*?)<\/\1>/.exec(body);
    cases.push({
      id: `${pkg}/${n}`,
      description: `${sectionNames.get(pkg) ?? pkg}: ${unescapeXml(m[2] ?? '')}`,
      failed: problem !== null,
      skipped: /<skipped/.test(body),
      detail: problem === null ? '' : unescapeXml(problem[2] ?? '').trim(),
    });
  }
  return cases;
}

export interface H2specRun {
  cases: H2specCase[];
  failed: Map<string, H2specCase>;
  /** h2spec's console output. */
  output: string;
}

export function runH2spec(address: string, useTls: boolean, report: string, sections: readonly string[] = SECTIONS): Promise<H2specRun> {
  const colon = address.lastIndexOf(':');
  const args = [...sections, '-h', address.slice(0, colon), '-p', address.slice(colon + 1), '--timeout', '2', '-j', report];
  if (useTls) args.push('--tls', '-k');
  return new Promise((resolve, reject) => {
    // h2spec exits 1 when a case fails: the report is what counts.
    execFile(H2SPEC, args, { timeout: 240_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const output = `$ h2spec ${args.join(' ')}\n${stdout}${stderr}`;
      if (err !== null && (err.killed || !existsSync(report))) {
        reject(new Error(`h2spec did not finish${err.killed ? ' (killed after 240 s)' : ''}:\n${output}`));
        return;
      }
      const cases = parseJUnit(readFileSync(report, 'utf8'));
      if (cases.length === 0) {
        reject(new Error(`h2spec wrote no test cases to ${report}:\n${output}`));
        return;
      }
      resolve({ cases, failed: new Map(cases.filter((c) => c.failed).map((c) => [c.id, c])), output });
    });
  });
}

/** h2spec's failure text ("expected 1\nexpected 2\nactual", or "Expect:\n...\nActual:\n...") on one line. */
function outcome(detail: string): string {
  const lines = detail.split('\n').filter((l) => l !== '' && l !== 'Expect:' && l !== 'Actual:');
  const actual = lines.pop() ?? '';
  return `expected ${lines.join(' or ')}; got ${actual}`;
}

export const describe = (c: H2specCase): string => `${c.id} "${c.description}" (${outcome(c.detail)})`;

