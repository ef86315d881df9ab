// The client side of an HTTP/2 connection (the gateway toward a function endpoint): the preface,
// our SETTINGS and the first request go out in one write, without waiting for the server's
// SETTINGS (RFC 9113 3.4 allows it); responses are checked as RFC 9113 8.3.2 says; a GOAWAY
// ends the streams above its last stream id as refused (REFUSED_STREAM: not processed, safe
// to retry on a new connection) and lets those below run to their end.
import type { Socket } from 'node:net';
import { CLIENT_PREFACE, ErrorCode, MAX_STREAM_ID, Setting } from './constants.ts';
import { Http2Connection, type ConnectionHooks } from './connection.ts';
import { checkResponse, checkTrailers } from './fields.ts';
import type { H2Counters, H2Limits } from './limits.ts';
import type { SocketReads } from './read-buffers.ts';
import type { H2Stream, StreamHandler } from './stream.ts';

export class ClientConnection extends Http2Connection {
  #nextStreamId = 1;
  protected readonly waitsForPeerFin = false;
  protected readonly goawayWhenIdle = false;

  /**
   * The preface, our SETTINGS and what is requested in this turn go to `socket` in one write
   * (a connecting socket queues it): one segment, and one wakeup of the server, instead of two.
   */
  constructor(socket: Socket, limits: H2Limits, counters: H2Counters, hooks: ConnectionHooks, reads?: SocketReads) {
    super(socket, limits, counters, reads);
    this.hooks = hooks;
    this.writer.raw(CLIENT_PREFACE);
    this.sendPreface([[Setting.ENABLE_PUSH, 0]]);
  }

  /** Whether a new request may go out on this connection now. */
  get available(): boolean {
    return !this.closed && this.goawayReceived < 0 && this.goawaySent < 0 && this.#nextStreamId <= MAX_STREAM_ID && this.openStreams < this.peerMaxConcurrentStreams;
  }

  /** Opens a request stream with `fields`; undefined when the connection takes no new stream. */
  request(fields: readonly string[], endStream: boolean, handler: StreamHandler, context?: unknown): H2Stream | undefined {
    if (!this.available) return undefined;
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const stream = this.addStream(id, false);
    stream.handler = handler;
    stream.context = context;
    stream.writeHeaders(fields, endStream);
    return stream;
  }

  protected isIdle(streamId: number): boolean {
    // Even ids would be pushed streams, which we disabled.
    return (streamId & 1) === 0 || streamId >= this.#nextStreamId;
  }

  protected onNewStream(streamId: number): void {
    this.connectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}, which this client did not open`);
  }

  protected onStreamHeaders(stream: H2Stream, fields: string[], endStream: boolean): void {
    if (!stream.headersReceived) {
      if (checkResponse(fields) !== undefined) return this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR, stream);
      const status = fields[fields.indexOf(':status') + 1] as string;
      if (status.charCodeAt(0) === 0x31) {
        // 1xx: informational, another HEADERS follows (an interim response cannot end the stream).
        if (endStream) this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR, stream);
        return;
      }
      stream.headersReceived = true;
    } else if (!endStream || checkTrailers(fields) !== undefined) {
      return this.streamError(stream.id, ErrorCode.PROTOCOL_ERROR, stream);
    }
    if (endStream) this.remoteEnded(stream);
    stream.handler.onHeaders(stream, fields, endStream);
    if (endStream) this.maybeFinish(stream);
  }

  protected onPeerGoaway(lastStreamId: number): void {
    for (const stream of [...this.streams.values()]) {
      if (stream.id > lastStreamId) this.finish(stream, ErrorCode.REFUSED_STREAM);
    }
  }
}
