// The server side of an HTTP/2 connection (the gateway toward its clients): the client preface
// and its deadline, request streams opened by the peer (odd ids, increasing), the request rules
// of RFC 9113 8.3.1, concurrency beyond SETTINGS_MAX_CONCURRENT_STREAMS refused per stream, and
// trailers.
import type { Socket } from 'node:net';
import { CLIENT_PREFACE, ErrorCode, Setting } from './constants.ts';
import { Http2Connection, type ConnectionHooks } from './connection.ts';
import { checkRequest, checkTrailers, type RequestInfo } from './fields.ts';
import type { H2Counters, H2Limits } from './limits.ts';
import type { SocketReads } from './read-buffers.ts';
import type { H2Stream } from './stream.ts';

export class ServerConnection extends Http2Connection {
  /** Octets of the client preface matched so far. */
  #preface = 0;
  #prefaceTimer: NodeJS.Timeout | undefined;
  readonly #info: RequestInfo = { contentLength: -1 };
  protected readonly waitsForPeerFin = true;
  protected readonly goawayWhenIdle = true;

  /**
   * Takes over `socket` (already connected, TLS or not) and sends our SETTINGS at once; the
   * client preface must follow within limits.prefaceTimeoutMs.
   */
  constructor(socket: Socket, limits: H2Limits, counters: H2Counters, hooks: ConnectionHooks, reads?: SocketReads) {
    super(socket, limits, counters, reads);
    this.hooks = hooks;
    this.sendPreface([
      [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
      [Setting.ENABLE_PUSH, 0],
    ]);
    this.#prefaceTimer = setTimeout(onPrefaceTimeout, limits.prefaceTimeoutMs, this).unref();
  }

  prefaceTimedOut(): void {
    this.#prefaceTimer = undefined;
    this.counters.prefaceTimeout++;
    this.destroy();
  }

  protected override onBytes(chunk: Buffer): void {
    if (this.#preface < CLIENT_PREFACE.length) {
      const n = Math.min(CLIENT_PREFACE.length - this.#preface, chunk.length);
      if (chunk.compare(CLIENT_PREFACE, this.#preface, this.#preface + n, 0, n) !== 0) return this.badPreface();
      this.#preface += n;
      if (this.#preface < CLIENT_PREFACE.length) return;
      clearTimeout(this.#prefaceTimer);
      this.#prefaceTimer = undefined;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    super.onBytes(chunk);
  }

  protected isIdle(streamId: number): boolean {
    // Even ids are the server's own, and this server opens none.
    return (streamId & 1) === 0 || streamId > this.lastPeerStreamId;
  }

  protected onNewStream(streamId: number, fields: string[] | null, endStream: boolean, selfDependent: boolean): void {
    if ((streamId & 1) === 0) return this.connectionError(ErrorCode.PROTOCOL_ERROR, `request HEADERS on even stream ${streamId}`);
    this.lastPeerStreamId = streamId;
    // Streams above our GOAWAY's last stream id are ignored (RFC 9113 6.8).
    if (this.goawaySent >= 0 && streamId > this.goawaySent) return;
    if (selfDependent) return this.streamError(streamId, ErrorCode.PROTOCOL_ERROR);
    if (fields === null) {
      this.counters.headerListTooLarge++;
      return this.streamError(streamId, ErrorCode.ENHANCE_YOUR_CALM);
    }
    if (this.openStreams >= this.limits.maxConcurrentStreams) {
      this.counters.refusedStreams++;
      return this.streamError(streamId, ErrorCode.REFUSED_STREAM);
    }
    const info = this.#info;
    if (checkRequest(fields, info) !== undefined || (endStream && info.contentLength > 0)) return this.streamError(streamId, ErrorCode.PROTOCOL_ERROR);
    const stream = this.addStream(streamId, endStream);
    stream.headersReceived = true;
    stream.expectedLength = info.contentLength;
    this.hooks.onStream(stream, fields, endStream);
    this.hooks.onStreamCountChanged(this.openStreams);
  }

  protected onStreamHeaders(stream: H2Stream, fields: string[], endStream: boolean): void {
    // A second HEADERS block from a client is trailers: it must end the stream and hold no pseudo-header.
    if (!endStream || checkTrailers(fields) !== undefined) return this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR, stream);
    if (stream.expectedLength >= 0 && stream.receivedLength !== stream.expectedLength) return this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR, stream);
    this.remoteEnded(stream);
    stream.handler.onHeaders(stream, fields, true);
    this.maybeFinish(stream);
  }

  protected onPeerGoaway(): void {
    // A client's GOAWAY limits the streams we would push; we push none.
  }
}

function onPrefaceTimeout(connection: ServerConnection): void {
  connection.guarded('preface timeout', () => connection.prefaceTimedOut());
}
