// Upstream connections for tests of the sessions layer's bookkeeping: they never dial, and
// record which sessions' connections were opened and closed.
import type { Endpoint } from '../../lib/registry/types.ts';
import type { OpenUpstream, SessionUpstream } from '../../lib/sessions/session.ts';

export interface StubUpstreams {
  /** The factory to hand a SessionManager. */
  readonly open: OpenUpstream;
  /** Endpoint keys of the connections made, in order. */
  readonly opened: string[];
  /** Endpoint keys of the connections closed, in order. */
  readonly closed: string[];
}

export function stubUpstreams(): StubUpstreams {
  const opened: string[] = [];
  const closed: string[] = [];
  const open = (endpoint: Endpoint): SessionUpstream => {
    opened.push(endpoint.key);
    return {
      request() {
        throw new Error('a stub upstream carries no streams');
      },
      close() {
        closed.push(endpoint.key);
      },
    };
  };
  return { open, opened, closed };
}
