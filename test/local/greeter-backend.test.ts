import t from 'tap';
import grpc from '@grpc/grpc-js';
import type { ClientDuplexStream, ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findGreeterProto, GREETER_SERVICE, loadGreeterDefinition, serviceDefinition, startGreeterBackend } from '../../lib/local/greeter-backend.ts';

interface HelloReply { message: string }

// The generic client's methods are untyped; this is the shape the proto gives them.
interface GreeterClient extends grpc.Client {
  SayHello(req: { name?: string }, cb: (err: ServiceError | null, reply?: HelloReply) => void): grpc.ClientUnaryCall;
  SayHelloStream(req: { name?: string; count?: number; interval_ms?: number }): ClientReadableStream<HelloReply>;
  Chat(): ClientDuplexStream<{ name?: string }, HelloReply>;
}

const Greeter = grpc.makeGenericClientConstructor(serviceDefinition(loadGreeterDefinition(), GREETER_SERVICE), 'Greeter');

function sayHello(client: GreeterClient, name?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.SayHello(name === undefined ? {} : { name }, (err, reply) => (err ? reject(err) : resolve(reply?.message ?? '')));
  });
}

function collect(call: ClientReadableStream<HelloReply> | ClientDuplexStream<{ name?: string }, HelloReply>): Promise<string[]> {
  const messages: string[] = [];
  return new Promise((resolve, reject) => {
    call.on('data', (reply: HelloReply) => messages.push(reply.message));
    call.on('error', reject);
    call.on('end', () => resolve(messages));
  });
}

t.test('serves SayHello, SayHelloStream and Chat', async (t) => {
  const backend = await startGreeterBackend({ port: 0 });
  t.teardown(() => backend.stop());
  t.ok(backend.port > 0);
  t.equal(backend.address, `127.0.0.1:${backend.port}`);
  const client = new Greeter(backend.address, grpc.credentials.createInsecure()) as unknown as GreeterClient;
  t.teardown(() => client.close());

  t.equal(await sayHello(client, 'fngate'), 'Hello, fngate!');
  t.equal(await sayHello(client), 'Hello, world!', 'name defaults to world');

  const started = Date.now();
  t.same(await collect(client.SayHelloStream({ name: 'fngate' })), ['Hello, fngate! (1/3)', 'Hello, fngate! (2/3)', 'Hello, fngate! (3/3)'], '3 by default');
  t.ok(Date.now() - started >= 350, 'about 200ms apart by default');
  t.same(await collect(client.SayHelloStream({ name: 'a', count: 5, interval_ms: 1 })), [1, 2, 3, 4, 5].map((i) => `Hello, a! (${i}/5)`));
  const capped = await collect(client.SayHelloStream({ count: 100000, interval_ms: 1 }));
  t.equal(capped.length, 1000, 'count is capped');
  t.equal(capped[999], 'Hello, world! (1000/1000)');

  const chat = client.Chat();
  const replies = collect(chat);
  chat.write({ name: 'Alice' });
  chat.write({ name: 'Bob' });
  chat.write({});
  chat.end();
  t.same(await replies, ['Hello, Alice!', 'Hello, Bob!', 'Hello, world!']);
});

t.test('cancelling a stream mid-way is fine, and stop() returns', async (t) => {
  const backend = await startGreeterBackend({ host: '127.0.0.1' });
  const client = new Greeter(backend.address, grpc.credentials.createInsecure()) as unknown as GreeterClient;
  const call = client.SayHelloStream({ count: 10, interval_ms: 50 });
  const first = await new Promise<string>((resolve) => call.once('data', (r: HelloReply) => resolve(r.message)));
  t.equal(first, 'Hello, world! (1/10)');
  const status = new Promise<number>((resolve) => call.on('status', (s: grpc.StatusObject) => resolve(s.code)));
  call.on('error', () => {});
  call.cancel();
  t.equal(await status, grpc.status.CANCELLED);
  client.close();
  await backend.stop();
});

t.test('grpc.health.v1.Health', async (t) => {
  const backend = await startGreeterBackend({});
  t.teardown(() => backend.stop());
  // Raw bytes on a plain client, so the test does not depend on the server's own definition.
  const client = new grpc.Client(backend.address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  // HealthCheckRequest { string service = 1 }; HealthCheckResponse { ServingStatus status = 1 }.
  const encode = (service: string): Buffer => {
    const s = Buffer.from(service);
    return s.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, s.length]), s]);
  };
  const check = (service: string): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest('/grpc.health.v1.Health/Check', encode, (b: Buffer) => b, service, (err, reply) => (err ? reject(err) : resolve(reply ?? Buffer.alloc(0))));
    });
  t.same([...(await check(''))], [0x08, 1], 'SERVING');
  t.same([...(await check(GREETER_SERVICE))], [0x08, 1], 'SERVING');
  await t.rejects(check('nope'), { code: grpc.status.NOT_FOUND });
});

t.test('the proto is found from lib/local and from dist/lib/local', async (t) => {
  const root = t.testdir({ protos: { 'greeter.proto': '' }, lib: { local: {} }, dist: { lib: { local: {} } } });
  t.equal(findGreeterProto(join(root, 'dist', 'lib', 'local')), join(root, 'protos', 'greeter.proto'));
  t.equal(findGreeterProto(join(root, 'lib', 'local')), join(root, 'protos', 'greeter.proto'));
  t.match(findGreeterProto(), /protos[/\\]greeter\.proto$/);
  t.throws(() => findGreeterProto(tmpdir()), /protos\/greeter\.proto not found/);
});
