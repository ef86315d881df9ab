// What one HTTP/2 connection may cost, and the counters of what the protections cut. Each limit
// answers one attack class: rapid reset (CVE-2023-44487) and resets the peer provokes us into
// (CVE-2025-8671, "MadeYouReset") share one budget; CONTINUATION floods and oversized header
// lists (CVE-2024-27316 class) are bounded by the block size and frame count; SETTINGS and PING
// floods and empty frames (CVE-2019-9512, 9515, 9518) by budgets; a peer that does not read
// (CVE-2019-9517) by the bytes queued toward it; a silent peer by the preface deadline.

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise; streams past it get RST_STREAM(REFUSED_STREAM). */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise: how much a stream may send before we consume. */
  readonly streamWindow: number;
  /** The connection-level receive window (raised by WINDOW_UPDATE right after SETTINGS). */
  readonly connectionWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE we advertise. */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE we advertise; a longer list resets its stream (ENHANCE_YOUR_CALM). */
  readonly maxHeaderListSize: number;
  /** A header block (HEADERS + CONTINUATION) longer than this ends the connection (ENHANCE_YOUR_CALM). */
  readonly maxHeaderBlockBytes: number;
  /** CONTINUATION frames one block may take. */
  readonly maxContinuationFrames: number;
  /** Stream resets, the peer's and those it provoked from us: a burst, then a rate per second. */
  readonly resetBurst: number;
  readonly resetsPerSecond: number;
  /** Frames that make us answer (SETTINGS, PING): a burst, then a rate per second. */
  readonly controlBurst: number;
  readonly controlPerSecond: number;
  /** Empty DATA, HEADERS or CONTINUATION frames in a row (without END_STREAM). */
  readonly maxEmptyFrames: number;
  /** Octets queued toward a peer that is not reading them, past which the connection is cut. */
  readonly maxOutgoingBytes: number;
  /** Time for our SETTINGS to be acknowledged. */
  readonly settingsTimeoutMs: number;
  /** Time from the connection to the client preface and its SETTINGS (server side). */
  readonly prefaceTimeoutMs: number;
}

/** Defaults in line with Envoy's and Go's x/net/http2's. */
export const DEFAULT_LIMITS: H2Limits = Object.freeze({
  maxConcurrentStreams: 1000,
  streamWindow: 1 << 20,
  connectionWindow: 8 << 20,
  maxFrameSize: 16_384,
  maxHeaderListSize: 64 * 1024,
  maxHeaderBlockBytes: 256 * 1024,
  maxContinuationFrames: 32,
  resetBurst: 1000,
  resetsPerSecond: 100,
  controlBurst: 10_000,
  controlPerSecond: 100_000,
  maxEmptyFrames: 100,
  maxOutgoingBytes: 1 << 20,
  settingsTimeoutMs: 10_000,
  prefaceTimeoutMs: 10_000,
});

/** What each protection cut, over the process's life (exported to /metrics by the gateway). */
export interface H2Counters {
  rapidReset: number;
  provokedResets: number;
  continuationFlood: number;
  headerListTooLarge: number;
  controlFlood: number;
  emptyFrameFlood: number;
  outgoingQueueFull: number;
  prefaceTimeout: number;
  settingsTimeout: number;
  refusedStreams: number;
  connectionErrors: number;
  streamErrors: number;
}

export function newCounters(): H2Counters {
  return {
    rapidReset: 0,
    provokedResets: 0,
    continuationFlood: 0,
    headerListTooLarge: 0,
    controlFlood: 0,
    emptyFrameFlood: 0,
    outgoingQueueFull: 0,
    prefaceTimeout: 0,
    settingsTimeout: 0,
    refusedStreams: 0,
    connectionErrors: 0,
    streamErrors: 0,
  };
}

/** A token bucket: `burst` at once, refilled at `perSecond`. */
export class Budget {
  readonly #burst: number;
  readonly #perMs: number;
  #tokens: number;
  #at = performance.now();

  constructor(burst: number, perSecond: number) {
    this.#burst = burst;
    this.#perMs = perSecond / 1000;
    this.#tokens = burst;
  }

  /** Spends one token; false once the budget is gone. */
  take(): boolean {
    if (this.#tokens >= 1) {
      this.#tokens--;
      return true;
    }
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}
