// grpc-js client for the test Echo service: each call resolves with its status (never throws
// for a gRPC status), replies and metadata. Every echoClient() has its own connection.
import * as grpc from '@grpc/grpc-js';
import { echoMethods, echoService } from './echo-proto.ts';
import type { EchoReply, EchoRequest } from './echo-proto.ts';
import { waitFor } from './wait.ts';

export type MetadataRecord = Record<string, string | Buffer>;

export interface CallResult {
  status: number;
  details: string;
  /** Unary/client-stream: the reply; server-stream/bidi: the first reply. */
  reply?: EchoReply;
  /** Every reply, in order (empty with `keepReplies: false`). */
  replies: EchoReply[];
  replyCount: number;
  /** Payload bytes of all replies. */
  replyBytes: number;
  /** Response headers ({} for a trailers-only response); repeated text keys joined with ", ". */
  initial: MetadataRecord;
  trailing: MetadataRecord;
  elapsedMs: number;
}

export interface CallOpts {
  deadlineMs?: number;
  /** Aborting cancels the call (RST_STREAM CANCEL). */
  signal?: AbortSignal;
  /** Called per reply; while a returned promise is pending the call is not read (flow control). */
  onReply?: (reply: EchoReply, index: number) => void | Promise<void>;
  /** Keep every reply in `replies` (default true); false for huge streams. */
  keepReplies?: boolean;
  /** The raw grpc-js call, once started. */
  onCall?: (call: grpc.ClientUnaryCall) => void;
}

export type Messages = AsyncIterable<EchoRequest> | Iterable<EchoRequest>;

export interface EchoClient {
  readonly target: string;
  /** The generated grpc-js client (`raw.Unary(...)` etc.). */
  readonly raw: grpc.Client;
  unary(md?: MetadataRecord, req?: EchoRequest, opts?: CallOpts): Promise<CallResult>;
  serverStream(md?: MetadataRecord, req?: EchoRequest, opts?: CallOpts): Promise<CallResult>;
  clientStream(md: MetadataRecord, messages: Messages, opts?: CallOpts): Promise<CallResult>;
  bidi(md: MetadataRecord, messages: Messages, opts?: CallOpts): Promise<CallResult>;
  /** Connects (or rejects) within `timeoutMs` (default 5000). */
  waitForReady(timeoutMs?: number): Promise<void>;
  close(): void;
}

export interface EchoClientOpts {
  tls?: { ca: Buffer; serverName?: string };
  channelOptions?: grpc.ChannelOptions;
}

const EchoClientCtor = grpc.makeGenericClientConstructor(echoService, 'Echo');

/** Request metadata; string values of `-bin` keys are base64. */
export function toMetadata(md: MetadataRecord = {}): grpc.Metadata {
  const out = new grpc.Metadata();
  for (const [key, value] of Object.entries(md)) {
    const k = key.toLowerCase();
    out.add(k, k.endsWith('-bin') && typeof value === 'string' ? Buffer.from(value, 'base64') : value);
  }
  return out;
}

/** Metadata as a record: repeated text values joined with ", ", binary keys keep their first value. */
export function fromMetadata(md: grpc.Metadata): MetadataRecord {
  const out: MetadataRecord = {};
  for (const [key, values] of Object.entries(md.toJSON())) {
    const first = values[0];
    if (first === undefined) continue;
    out[key] = typeof first === 'string' ? values.map(String).join(', ') : first;
  }
  return out;
}

export function echoClient(target: string, opts: EchoClientOpts = {}): EchoClient {
  const options: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_http_proxy': 0,
    ...(opts.tls?.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': opts.tls.serverName, 'grpc.default_authority': opts.tls.serverName }),
    ...opts.channelOptions,
  };
  const creds = opts.tls ? grpc.credentials.createSsl(opts.tls.ca) : grpc.credentials.createInsecure();
  const client = new EchoClientCtor(target, creds, options);
  const m = echoMethods;
  const callOptions = (o: CallOpts): grpc.CallOptions => (o.deadlineMs === undefined ? {} : { deadline: Date.now() + o.deadlineMs });

  return {
    target,
    raw: client,
    unary(md = {}, req = {}, o = {}) {
      return track(o, true, (done) =>
        client.makeUnaryRequest(m.Unary.path, m.Unary.requestSerialize, m.Unary.responseDeserialize, req, toMetadata(md), callOptions(o), (_err, value) => done(value)),
      );
    },
    clientStream(md, messages, o = {}) {
      return track(o, true, (done) => {
        const call = client.makeClientStreamRequest(m.ClientStream.path, m.ClientStream.requestSerialize, m.ClientStream.responseDeserialize, toMetadata(md), callOptions(o), (_err, value) => done(value));
        pump(call, messages);
        return call;
      });
    },
    serverStream(md = {}, req = {}, o = {}) {
      return track(o, false, () => client.makeServerStreamRequest(m.ServerStream.path, m.ServerStream.requestSerialize, m.ServerStream.responseDeserialize, req, toMetadata(md), callOptions(o)));
    },
    bidi(md, messages, o = {}) {
      return track(o, false, () => {
        const call = client.makeBidiStreamRequest(m.Bidi.path, m.Bidi.requestSerialize, m.Bidi.responseDeserialize, toMetadata(md), callOptions(o));
        pump(call, messages);
        return call;
      });
    },
    waitForReady: (timeoutMs = 5000) =>
      new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()))),
    close: () => client.close(),
  };
}

/**
 * Runs one call and collects its outcome. `unaryReply`: the reply comes from the callback
 * (unary, client-stream) rather than from 'data' events.
 */
function track(
  o: CallOpts,
  unaryReply: boolean,
  start: (done: (reply: EchoReply | undefined) => void) => grpc.ClientUnaryCall | grpc.ClientReadableStream<EchoReply>,
): Promise<CallResult> {
  const started = performance.now();
  const r: CallResult = { status: -1, details: '', replies: [], replyCount: 0, replyBytes: 0, initial: {}, trailing: {}, elapsedMs: 0 };
  const take = (reply: EchoReply): void => {
    if (r.replyCount === 0) r.reply = reply;
    if (o.keepReplies !== false) r.replies.push(reply);
    r.replyCount++;
    r.replyBytes += reply.payload.length;
  };
  return new Promise<CallResult>((resolve, reject) => {
    let status: grpc.StatusObject | undefined;
    let ended = unaryReply; // streams: until 'end', replies may still be queued
    let failed = false;
    const cancel = (): void => call.cancel();
    const finish = (): void => {
      if (status === undefined || !ended || failed) return;
      o.signal?.removeEventListener('abort', cancel);
      r.status = status.code;
      r.details = status.details;
      r.trailing = fromMetadata(status.metadata);
      r.elapsedMs = performance.now() - started;
      resolve(r);
    };
    let call: ReturnType<typeof start>;
    try {
      call = start((reply) => {
        if (reply !== undefined) take(reply);
      });
    } catch (err) {
      // grpc-js throws for a call on a closed client ("Channel has been shut down"): a test's
      // teardown closed it while calls were still being started. Never a throw out of here.
      r.status = grpc.status.CANCELLED;
      r.details = `the call was not started: ${(err as Error).message}`;
      r.elapsedMs = performance.now() - started;
      resolve(r);
      return;
    }
    call.on('metadata', (md: grpc.Metadata) => {
      r.initial = fromMetadata(md);
    });
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      finish();
    });
    if (!unaryReply) {
      const stream = call as grpc.ClientReadableStream<EchoReply>;
      stream.on('error', () => {}); // the status says it
      stream.on('data', (reply: EchoReply) => {
        const index = r.replyCount;
        take(reply);
        const pending = o.onReply?.(reply, index);
        if (pending instanceof Promise) {
          stream.pause();
          pending.then(
            () => stream.resume(),
            (err: unknown) => {
              failed = true;
              call.cancel();
              reject(err);
            },
          );
        }
      });
      const onEnd = (): void => {
        ended = true;
        finish();
      };
      stream.on('end', onEnd);
      stream.on('close', onEnd);
    }
    o.onCall?.(call);
    if (o.signal?.aborted) call.cancel();
    else o.signal?.addEventListener('abort', cancel, { once: true });
  });
}

/** Writes `messages` with backpressure (waits for 'drain'), then half-closes. Stops when the call ends. */
function pump(call: grpc.ClientWritableStream<EchoRequest>, messages: Messages): void {
  const over = new AbortController();
  call.on('status', () => over.abort());
  const drained = (): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        call.off('drain', done);
        over.signal.removeEventListener('abort', done);
        resolve();
      };
      call.once('drain', done);
      over.signal.addEventListener('abort', done, { once: true });
    });
  void (async () => {
    try {
      for await (const message of messages) {
        if (over.signal.aborted) break;
        if (!call.write(message)) await drained();
        if (over.signal.aborted) break;
      }
    } catch {
      // A failing message source cancels the call; its status (CANCELLED) reports it.
      call.cancel();
      return;
    }
    if (!over.signal.aborted) call.end();
  })();
}

export interface HeldStream {
  /** Replies received so far: 1 while held (the backend sends no more). */
  readonly replies: number;
  /** Cancels the stream from the client and resolves with its outcome. */
  cancel(): Promise<CallResult>;
}

/**
 * A server-stream on `client` that the Echo backend holds open after its one reply
 * (x-echo-hold), e.g. to keep a drain going; resolves once that reply has arrived.
 */
export async function holdStream(client: EchoClient, md: MetadataRecord, what: string): Promise<HeldStream> {
  const abort = new AbortController();
  let replies = 0;
  const result = client.serverStream({ ...md, 'x-echo-hold': '1' }, { count: 1 }, { signal: abort.signal, onReply: () => void replies++ });
  await waitFor(() => replies === 1, 5000, what);
  return {
    get replies() {
      return replies;
    },
    cancel() {
      abort.abort();
      return result;
    },
  };
}
