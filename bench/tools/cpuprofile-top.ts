// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by file, and
// inclusive time of the fngate functions, so a profile reads without DevTools.
//
//   node bench/tools/cpuprofile-top.ts PROFILE.cpuprofile [TOP=25]
//
// Under `make bench`, BENCH_FNGATE_NODE_FLAGS="--cpu-prof --cpu-prof-dir=DIR" profiles every
// fngate process the harness starts (written when it exits).
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/tools/cpuprofile-top.ts PROFILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from the samples and their time deltas (µs).
const self = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i] as number;
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

const short = (url: string): string => url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:') || '(native)';
const label = (n: Node): string => `${n.callFrame.functionName || '(anonymous)'} ${short(n.callFrame.url)}${n.callFrame.url ? ':' + (n.callFrame.lineNumber + 1) : ''}`;

function table(title: string, rows: Map<string, number>): void {
  process.stdout.write(`\n${title}\n`);
  const sorted = [...rows.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, us] of sorted) process.stdout.write(`${((100 * us) / total).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}\n`);
}

const selfByFn = new Map<string, number>();
const selfByFile = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id) as Node;
  selfByFn.set(label(n), (selfByFn.get(label(n)) ?? 0) + us);
  const f = n.callFrame.url ? short(n.callFrame.url) : n.callFrame.functionName;
  selfByFile.set(f, (selfByFile.get(f) ?? 0) + us);
  // Inclusive: every distinct function on the stack of this sample gets its time once.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const key = label(byId.get(cur) as Node);
    if (!seen.has(key)) {
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + us);
    }
  }
}
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled (${((profile.endTime - profile.startTime) / 1e6).toFixed(2)} s wall)\n`);
table('self time by function', selfByFn);
table('self time by file', selfByFile);
const ours = new Map([...inclusive].filter(([k]) => k.includes('dist/lib/') || k.includes('dist/cmd/') || k.includes('/lib/')));
table('inclusive time, fngate functions', ours);
table('inclusive time, all', inclusive);
