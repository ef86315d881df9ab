// What the gateway changes about the Node process it runs in, in one explicit call that
// `fngate serve` makes at start-up (and tests that want the same process make). No module does
// any of this on import.
import { enableYoungGarbageReclaim } from './young-garbage.ts';

export interface ProcessSetup {
  /** Whether young native garbage is scavenged as the data plane goes (see young-garbage.ts). */
  readonly youngGarbageReclaim: boolean;
}

export function setUpProcess(): ProcessSetup {
  return { youngGarbageReclaim: enableYoungGarbageReclaim() };
}
