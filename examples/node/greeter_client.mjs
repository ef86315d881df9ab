// Call the example Greeter function through fngate with @grpc/grpc-js.
//
//   FNGATE_API_KEY=... FNGATE_FUNCTION_ID=... node examples/node/greeter_client.mjs
//
// FNGATE_ADDR (default localhost:10081); FNGATE_TLS=1 for TLS, FNGATE_CA=ca.pem to trust a CA.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const protoPath = fileURLToPath(new URL('../../protos/greeter.proto', import.meta.url));
const { helloworld } = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath));

const { FNGATE_ADDR = 'localhost:10081', FNGATE_API_KEY, FNGATE_FUNCTION_ID } = process.env;
if (!FNGATE_API_KEY || !FNGATE_FUNCTION_ID) {
  console.error('set FNGATE_API_KEY and FNGATE_FUNCTION_ID (fngate local prints both)');
  process.exit(1);
}

const credentials = process.env.FNGATE_TLS === '1'
  ? grpc.credentials.createSsl(process.env.FNGATE_CA ? readFileSync(process.env.FNGATE_CA) : null)
  : grpc.credentials.createInsecure();
const greeter = new helloworld.Greeter(FNGATE_ADDR, credentials);

// Every call carries the key and the function to invoke (the NVCF metadata contract).
const metadata = new grpc.Metadata();
metadata.set('authorization', `Bearer ${FNGATE_API_KEY}`);
metadata.set('function-id', FNGATE_FUNCTION_ID);

// Prints every reply; resolves when the call ends OK. fngate puts the session id
// `nvcf-reqid` in the response headers (in the trailers when the call fails at once).
function run(name, call) {
  let reqid;
  call.on('metadata', (headers) => { reqid = headers.get('nvcf-reqid')[0]; });
  call.on('data', (reply) => console.log(`${name}: ${reply.message}`));
  call.on('error', () => {}); // reported by 'status' below
  return new Promise((resolve, reject) => call.on('status', (status) => {
    reqid ??= status.metadata.get('nvcf-reqid')[0];
    console.log(`  (nvcf-reqid: ${reqid ?? 'none'})`);
    if (status.code === grpc.status.OK) resolve();
    else reject(new Error(`${name} failed: ${grpc.status[status.code]}: ${status.details}`));
  }));
}

try {
  await run('SayHello', greeter.sayHello({ name: 'fngate' }, metadata, (err, reply) => {
    if (reply) console.log(`SayHello: ${reply.message}`);
  }));
  await run('SayHelloStream', greeter.sayHelloStream({ name: 'fngate', count: 3 }, metadata));
  const chat = greeter.chat(metadata);
  const done = run('Chat', chat);
  chat.write({ name: 'Alice' });
  chat.write({ name: 'Bob' });
  chat.end();
  await done;
} catch (err) {
  console.error(err.message);
  process.exitCode = 1;
} finally {
  greeter.close();
}
