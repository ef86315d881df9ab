// Flow control end to end with lib/h2 on both ends of a real socket (ClientConnection sending a
// request body to a ServerConnection): a server-side consumer that never calls consume() stops
// the sender at the stream window, so what the receiver holds is bounded by the window and not
// by the body; consuming reopens the window and the sender's onWritable resumes it to the end.
// And against a scripted peer: a stream whose side has ended hears no onWritable, even when a
// WINDOW_UPDATE for it arrives afterwards (it once did, depending on timing).
import t from 'tap';
import net from 'node:net';
import { ClientConnection } from '../../lib/h2/client-connection.ts';
import type { ConnectionHooks } from '../../lib/h2/connection.ts';
import { CLIENT_PREFACE, Flag, FrameType } from '../../lib/h2/constants.ts';
import { FrameReader } from '../../lib/h2/frame-reader.ts';
import { ServerConnection } from '../../lib/h2/server-connection.ts';
import { DEFAULT_LIMITS, newCounters } from '../../lib/h2/limits.ts';
import { DISCARD, type H2Stream, type StreamHandler } from '../../lib/h2/stream.ts';
import { pingFrame, settingsAck, settingsFrame, windowUpdate } from '../abuse/h2-wire.ts';
import { waitFor } from '../helpers/wait.ts';

const BODY = 4 * DEFAULT_LIMITS.streamWindow;

function hooks(onStream: ConnectionHooks['onStream'], internalErrors: unknown[]): ConnectionHooks {
  return {
    onStream,
    onGoaway() {},
    onClose() {},
    onInternalError(_where, err) {
      internalErrors.push(err);
    },
    onStreamCountChanged() {},
  };
}

t.test('an unconsumed request stops its sender at the stream window; consuming resumes it', async (t) => {
  const internalErrors: unknown[] = [];
  let held = 0; // received and not consumed
  let received = 0;
  let ended = false;
  let serverStream: H2Stream | undefined;
  const consuming = { on: false };
  const receiver: StreamHandler = {
    ...DISCARD,
    onData(stream, data, endStream) {
      held += data.length;
      received += data.length;
      if (endStream) ended = true;
      if (consuming.on) {
        stream.consume(held);
        held = 0;
      }
    },
  };
  const server = net.createServer((socket) => {
    new ServerConnection(
      socket,
      DEFAULT_LIMITS,
      newCounters(),
      hooks((stream) => {
        serverStream = stream;
        stream.handler = receiver;
      }, internalErrors),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => {
    socket.destroy();
    server.close();
  });

  const client = new ClientConnection(socket, DEFAULT_LIMITS, newCounters(), hooks(() => {}, internalErrors));
  let writable = 0;
  const sender: StreamHandler = {
    ...DISCARD,
    onWritable() {
      writable++;
    },
  };
  const request = [':method', 'POST', ':scheme', 'http', ':path', '/upload', ':authority', 'test'];
  const stream = client.request(request, false, sender) as H2Stream;
  t.equal(stream.writeData(Buffer.alloc(BODY, 0x61)), false, 'a body four windows long does not fit: writeData says wait');

  await waitFor(() => held === DEFAULT_LIMITS.streamWindow, 10_000, 'the receiver holds one stream window');
  t.equal(stream.sendWindow, 0, 'the sender has used up the stream window');
  t.equal(stream.queuedBytes, BODY - DEFAULT_LIMITS.streamWindow, 'the rest waits at the sender, not at the receiver');
  t.equal(writable, 0, 'no onWritable while the window is shut');
  t.notOk(ended, 'the body has not ended');

  consuming.on = true;
  serverStream!.consume(held);
  held = 0;
  await waitFor(() => writable > 0, 10_000, 'the sender told its queue drained');
  t.equal(stream.queuedBytes, 0, 'nothing left queued at the sender');
  stream.end();
  await waitFor(() => ended, 10_000, 'the whole body arrived, then its end');
  t.equal(received, BODY, 'every octet arrived');
  t.equal(writable, 1, 'the sender was told once');
  t.same(internalErrors, [], 'no internal error');
});

t.test('a WINDOW_UPDATE that comes after our END_STREAM does not wake the layer above', async (t) => {
  // A scripted server: it opens the windows once the first 64 KiB are in, then, once the body
  // has ended, sends one more WINDOW_UPDATE for the stream and a PING to know it was read.
  const seen: Array<{ type: number; flags: number; streamId: number }> = [];
  let bytes = 0;
  const server = net.createServer((socket) => {
    let skip = CLIENT_PREFACE.length;
    const reader = new FrameReader({
      onFrame(type, flags, streamId, payload) {
        seen.push({ type, flags, streamId });
        if (type === FrameType.SETTINGS && (flags & Flag.ACK) === 0) socket.write(settingsAck());
        if (type !== FrameType.DATA) return;
        const before = bytes;
        bytes += payload.length;
        if (before < 65_535 && bytes >= 65_535) {
          socket.write(Buffer.concat([windowUpdate(0, 1 << 20), windowUpdate(streamId, 1 << 20)]));
        }
        if (flags & Flag.END_STREAM) {
          socket.write(Buffer.concat([windowUpdate(streamId, 1000), pingFrame(7)]));
        }
      },
      onFrameTooLarge() {
        socket.destroy();
      },
    });
    socket.write(settingsFrame());
    socket.on('data', (chunk: Buffer) => {
      const rest = chunk.subarray(Math.min(skip, chunk.length));
      skip -= chunk.length - rest.length;
      if (rest.length > 0) reader.push(rest);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => {
    socket.destroy();
    server.close();
  });
  const internalErrors: unknown[] = [];
  const client = new ClientConnection(socket, DEFAULT_LIMITS, newCounters(), hooks(() => {}, internalErrors));
  let writable = 0;
  const stream = client.request([':method', 'POST', ':scheme', 'http', ':path', '/upload', ':authority', 'test'], false, {
    ...DISCARD,
    onWritable() {
      writable++;
    },
  }) as H2Stream;
  t.equal(stream.writeData(Buffer.alloc(200_000, 0x62), true), false, 'past the initial 64 KiB window: wait');

  await waitFor(() => seen.some((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0), 10_000, 'the PING after the late WINDOW_UPDATE answered');
  t.equal(bytes, 200_000, 'the whole body was sent');
  t.equal(writable, 0, 'no onWritable for a stream whose side had ended');
  t.same(internalErrors, [], 'no internal error');
});
